"""Backend settings: which lowering funcnet's convolutions get (torch's ``torch.backends`` in spirit).

``F.conv*`` and ``F.conv_transpose*`` (and so every ``nn.Conv*``) can lower either to XLA's
convolution (``lax.conv_general_dilated``) or to an equivalent formulation built from strided
slices, matrix multiplications and pads (see ``funcnet.nn.functional.conv`` for the rule and
the measurements behind it). The choice:

- ``"auto"`` (default): the rule measured per backend and shape — on CPU the matmul
  formulations where XLA:CPU's convolution is slow and oneDNN's kernels (``funcnet.onednn``,
  when installed) for the larger dense 2-D ones; XLA's convolution on GPU/TPU (cuDNN).
- ``"xla"``: always ``lax.conv_general_dilated``.
- ``"matmul"``: always the slice/matmul formulations.
- ``"onednn"``: oneDNN for every float32 2-D convolution (others as ``"auto"``); an error when
  oneDNN is unavailable (``funcnet.onednn.status()`` says why).

Set it with ``set_conv_impl(...)``, temporarily with ``with conv_impl("xla"): ...``, or
with the environment variable ``FUNCNET_CONV_IMPL=auto|xla|matmul|onednn`` (read when a convolution
is traced; an explicit ``set_conv_impl`` wins). The choice is made when a function is traced:
a ``jax.jit`` function already compiled keeps the lowering it was traced with.
``funcnet.nn.functional.conv_lowering(...)`` says which lowering a given shape gets.

XLA compiler options: :func:`compiler_options` is what funcnet's own compiled steps
(``make_train_step``, ``make_eval_step``, ``make_epoch_fn``, ``fit``) pass to
``jax.jit(..., compiler_options=...)``. On CPU it moves XLA's convolutions from YNNPACK, which
runs each one on a single thread, to Eigen's multi-threaded kernels (dots and reductions stay on
YNNPACK). Pass it to your own ``jax.jit`` to get the same; ``FUNCNET_XLA_OPTIONS=off`` turns it off.
"""

from __future__ import annotations

import contextlib
import functools
import os
import warnings
from collections.abc import Iterator
from typing import Any

CONV_IMPLS = ("auto", "xla", "matmul", "onednn")
ENV_VAR = "FUNCNET_CONV_IMPL"

_conv_impl: str | None = None  # None: the environment variable, else "auto"


def _checked(impl: str, source: str) -> str:
    if impl not in CONV_IMPLS:
        raise ValueError(f"{source}: convolution implementation must be one of {CONV_IMPLS}, got {impl!r}")
    return impl


def get_conv_impl() -> str:
    """The current setting: ``set_conv_impl``'s value, else ``$FUNCNET_CONV_IMPL``, else ``"auto"``."""
    if _conv_impl is not None:
        return _conv_impl
    env = os.environ.get(ENV_VAR, "").strip().lower()
    return _checked(env, f"${ENV_VAR}") if env else "auto"


def set_conv_impl(impl: str | None) -> None:
    """Force ``"xla"``, ``"matmul"`` or ``"onednn"`` convolutions, or ``"auto"``; ``None`` returns to the env var."""
    global _conv_impl
    _conv_impl = None if impl is None else _checked(impl, "set_conv_impl")


@contextlib.contextmanager
def conv_impl(impl: str) -> Iterator[None]:
    """``with conv_impl("xla"): ...`` — the setting inside the block (for tracing), restored after."""
    global _conv_impl
    previous = _conv_impl
    set_conv_impl(impl)
    try:
        yield
    finally:
        _conv_impl = previous


XLA_OPTIONS_ENV_VAR = "FUNCNET_XLA_OPTIONS"

# XLA:CPU's default YNNPACK library fusions are {individual dot, reduce, individual convolution};
# this keeps the first two. YNNPACK runs a convolution on one thread (same time with one or two
# XLA threads), Eigen's on the intra-op pool: per layer 1.2-2.5x faster on two cores, ResNet-18/50
# train steps 4-8% (benchmarks/RESULTS.md). A jaxlib that drops the option gets none (see below).
_CPU_OPTIONS = {
    "xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_REDUCE",
}


def compiler_options(backend: str | None = None) -> dict[str, Any] | None:
    """XLA compiler options for ``jax.jit(f, compiler_options=...)`` on ``backend`` (default: JAX's).

    CPU: ``{"xla_cpu_experimental_ynn_fusion_type": ...}`` (convolutions on Eigen, see the module
    docstring). ``None`` (nothing to set) on GPU/TPU, with ``FUNCNET_XLA_OPTIONS=off``, when
    ``XLA_FLAGS`` already sets that option (yours wins), or when this jaxlib rejects it (a warning
    says so once). The options change which kernels run, not the maths: results agree with
    XLA's defaults to float32 rounding.
    """
    import jax

    if (backend or jax.default_backend()) != "cpu":
        return None
    setting = os.environ.get(XLA_OPTIONS_ENV_VAR, "").strip().lower()
    if setting in ("0", "off", "false", "no"):
        return None
    if setting not in ("", "1", "on", "true", "yes"):
        raise ValueError(f"${XLA_OPTIONS_ENV_VAR} must be on or off, got {setting!r}")
    user_flags = os.environ.get("XLA_FLAGS", "")
    options = {k: v for k, v in _CPU_OPTIONS.items() if f"--{k}" not in user_flags}
    return dict(options) if options and _accepted(tuple(options.items())) else None


@functools.cache
def _accepted(options: tuple[tuple[str, Any], ...]) -> bool:
    """Whether this jaxlib's XLA:CPU compiles with ``options`` (once per process: one tiny compile)."""
    import jax
    import numpy as np

    try:
        jax.jit(lambda x: x + 1, compiler_options=dict(options)).lower(np.float32(0)).compile()
    except Exception as error:  # an unknown option or enum value: XLA says INVALID_ARGUMENT
        warnings.warn(f"funcnet: XLA:CPU rejected compiler options {dict(options)} ({error}); "
                      "compiling with XLA's defaults", RuntimeWarning, stacklevel=3)
        return False
    return True
