"""oneDNN for XLA:CPU: the kernels behind torch's CPU ``conv2d`` and ``matmul``, as JAX primitives.

XLA:CPU's own convolutions (Eigen's, or YNNPACK's single-threaded ones) are 1.2–1.9× slower than
torch's oneDNN on the 3×3 layers of a ResNet, and its dots 1.4–2.2× slower than torch's on a small
ViT's products. When oneDNN is installed (``pip install 'funcnet[onednn]'``) and a C++ compiler is
present, funcnet builds a small XLA FFI shim against it (once per machine, cached). ``F.conv2d``'s
CPU rule then hands float32 convolutions to :func:`conv2d` where that is faster
(``funcnet.nn.functional.conv_lowering`` says which shapes), and ``linear``/attention hand their
large float32 products to :func:`matmul` (``funcnet.nn.functional.matmul.matmul_lowering``). The
measurements are in those modules' docstrings. The same shim carries a column-sum kernel
(``sums.cc``) for the gradients of biases and LayerNorm's affine parameters
(``funcnet.nn.functional.column_sums``). Without oneDNN, nothing changes: XLA's lowerings
stay, and :func:`status` says why.

- :func:`available` — whether the shim is built and loaded (builds it on the first call).
- :func:`status` — one line: ``"available: oneDNN 3.2.0 (...)"`` or ``"unavailable: <reason>"``.
- :func:`conv2d` — the convolution itself (NCHW/OIHW), differentiable to any order, batchable.
- :func:`matmul` — ``op(a) @ op(b)`` with transposes as strides, differentiable, batchable.

``FUNCNET_ONEDNN=off`` keeps oneDNN out; ``FUNCNET_ONEDNN_ROOT`` points at a oneDNN install prefix
instead of the pip packages; ``FUNCNET_CACHE_DIR`` moves the build cache (see ``_build``).
"""

from __future__ import annotations

import functools

from funcnet.onednn import _build
from funcnet.onednn.conv import conv2d
from funcnet.onednn.matmul import matmul

__all__ = ["available", "conv2d", "matmul", "status"]


@functools.cache
def _outcome() -> tuple[bool, str]:
    try:
        lib, version = _build.load()
    except _build.Unavailable as reason:
        return False, f"unavailable: {reason}"
    return True, f"available: oneDNN {version} ({lib._name})"


def available() -> bool:
    """Whether oneDNN's kernels can run in this process (builds and loads the shim once)."""
    return _outcome()[0]


def status() -> str:
    """``"available: oneDNN <version> (<shim path>)"`` or ``"unavailable: <reason>"``."""
    return _outcome()[1]
