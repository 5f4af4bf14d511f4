"""Host memory: XLA:CPU's per-step buffers reused from one step to the next (Linux with glibc).

XLA:CPU allocates the temporary buffer of every execution with ``malloc`` and frees it when the
execution ends: 54 MB for ResNet-18's train step at batch 16 on 64×64 images, 158 MB for
ResNet-50's, 125 MB for MobileNetV2's, 92 MB for the benchmark ViT's. glibc hands blocks above
its mmap threshold (32 MiB at most) to ``mmap`` and returns them with ``munmap``, and its arenas
for threads other than the main one cannot hold a block over 64 MiB at all. So every step mapped
a fresh buffer, and the kernel faulted in and zeroed each of its pages again: 19,000–49,000 page
faults a step for those models, about 1 µs each on the benchmark machine.

At ``import funcnet``, on Linux with glibc and unless a GPU/TPU backend is configured, funcnet
sets three ``mallopt`` parameters for the process: one malloc arena (``M_ARENA_MAX = 1``), no
``mmap`` for large blocks (``M_MMAP_MAX = 0``) and no trimming of the heap's free top
(``M_TRIM_THRESHOLD`` at its maximum). Large blocks then come from the heap, and a step reuses
the memory the previous one freed: no page faults once the heap has grown to the step's needs.

The cost: memory the process frees stays mapped for reuse instead of going back to the system,
so the resident size stays at its peak (as with PyTorch's caching allocator on GPU), and all
threads share one arena, whose large-block search took ~5% of ResNet-50's CPU time (where page
faults took ~5% before; the step is 5-9% faster overall), and whose lock, when two threads allocate
at once, sleeps in the kernel: funcnet's oneDNN shim therefore allocates nothing per call (creating
its oneDNN memory objects per call had cost 5-20 us a block; ``funcnet/onednn/shim.h``).
``FUNCNET_HOST_ALLOCATOR=system``, set before ``import funcnet``, keeps glibc's defaults. The
parameters hold for threads that allocate for the first time after they are set: import funcnet
before running JAX computations.
:func:`policy` says what was applied.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import pkgutil
import sys
import warnings

ENV_VAR = "FUNCNET_HOST_ALLOCATOR"
POLICIES = ("reuse", "system")

# glibc's <malloc.h>
_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8
_INT_MAX = 2**31 - 1

_policy: str | None = None


def _glibc() -> ctypes.CDLL | None:
    """The C library when it is glibc on Linux (``mallopt`` and its parameters are glibc's)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018 - absent from musl and other C libraries
    except (OSError, AttributeError):
        return None
    return libc


def _accelerator_configured() -> bool:
    """Whether JAX will run on a GPU/TPU: ``JAX_PLATFORMS`` names one first, or (unset) a GPU/TPU
    plugin is installed. Checked without starting a JAX backend."""
    platforms = os.environ.get("JAX_PLATFORMS", "").strip().lower()
    if platforms:
        return platforms.split(",")[0].strip() not in ("cpu", "")
    if importlib.util.find_spec("libtpu") is not None:
        return True
    try:
        import jax_plugins
    except ImportError:
        return False
    return any(True for _ in pkgutil.iter_modules(jax_plugins.__path__))


def _jax_backend_started() -> bool:
    """Whether JAX already created its backends (and their threads, which keep their arenas)."""
    bridge = sys.modules.get("jax._src.xla_bridge")
    return bool(getattr(bridge, "_backends", None))


def _requested() -> str:
    value = os.environ.get(ENV_VAR, "").strip().lower() or "reuse"
    if value not in POLICIES:
        raise ValueError(f"${ENV_VAR}: expected one of {POLICIES}, got {value!r}")
    return value


def apply_default() -> str:
    """Set the parameters once (``import funcnet`` calls this); returns :func:`policy`."""
    global _policy
    if _policy is not None:
        return _policy
    if _requested() == "system":
        _policy = "system"
    elif _accelerator_configured():
        _policy = "system (GPU/TPU backend configured)"
    else:
        libc = _glibc()
        if libc is None:
            _policy = "system (not Linux with glibc)"
        elif all(libc.mallopt(param, value) == 1 for param, value in
                 ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, _INT_MAX))):
            _policy = "reuse"
            if _jax_backend_started():
                _policy = "reuse (partly: JAX's backend started before import funcnet)"
                warnings.warn(
                    "funcnet was imported after JAX started its CPU backend: the threads JAX has already "
                    "started keep glibc's allocator defaults, and CPU steps whose buffers exceed 32 MiB "
                    "page-fault them in again at every call (funcnet.host_memory). Import funcnet before "
                    f"the first JAX computation, or set {ENV_VAR}=system to silence this.",
                    stacklevel=3,
                )
        else:
            _policy = "system (mallopt refused)"
    return _policy


def policy() -> str:
    """``"reuse"`` when funcnet set the parameters above (``"reuse (partly: ...)"`` when JAX had
    started its threads before), else ``"system"`` with the reason."""
    return apply_default()
