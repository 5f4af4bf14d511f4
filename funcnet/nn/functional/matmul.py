"""The matrix products inside ``linear`` and attention: oneDNN's on CPU, else XLA's.

``matmul(a, b, transpose_b=False)`` is ``a @ b`` (``a @ bᵀ`` with ``transpose_b``; the transpose
is a stride, never a copy) for ``a`` ``[*batch, M, K]`` and ``b`` ``[*batch, K, N]`` (``[*batch, N,
K]``), as ``jnp.matmul``. :func:`matmul_lowering` says which kernel a product gets:

- ``"onednn"``: on CPU, float32, equal batch dimensions, when ``funcnet.onednn`` is available.
  On a 2-core x86 with AVX-512 (jax 0.10.2), alone, forward: XLA:CPU's dots (YNNPACK/Eigen) took
  1.4–2.2× torch's time for a small ViT's ``linear`` products and 4–7× for its attention products;
  oneDNN's (``funcnet.onednn.matmul``) 1.1–1.6× and 2.3–2.5×. In whole steps the small ViT took
  0.91× the time with them (``benchmarks/RESULTS.md``).
- ``"xla"``: ``jnp.matmul`` otherwise (and always on GPU/TPU).

``FUNCNET_ONEDNN=off`` keeps every product on XLA's dots.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

from funcnet import onednn

# False: XLA's dots everywhere, for an in-process A/B (benchmarks/variant_ab.py).
_CPU_ONEDNN = True


# Smallest products (multiply-adds) given to oneDNN: a batch of matrices (attention), and a single
# matrix product (linear). In whole train steps: the seed MLP's 512x784x128 (51M) took 1.01-1.08x
# XLA's time through oneDNN; a small ViT's 1040x192x{576,768} (115-153M) and its attention
# products (13M in 64 matrices) gained 4% each.
_CPU_ONEDNN_MIN_BATCHED = 1 << 22
_CPU_ONEDNN_MIN_SINGLE = 1 << 26


def matmul_lowering(a_shape: tuple[int, ...], b_shape: tuple[int, ...], dtype: Any = jnp.float32,
                    transpose_b: bool = False, backend: str | None = None, min_macs: int | None = None) -> str:
    """``"onednn"`` or ``"xla"``: the kernel :func:`matmul` uses for these operand shapes.
    ``min_macs`` replaces the size thresholds above (0: oneDNN at every size; the pointwise
    convolutions' products)."""
    if (not _CPU_ONEDNN or (backend or jax.default_backend()) != "cpu" or jnp.dtype(dtype) != jnp.float32
            or len(a_shape) < 2 or len(b_shape) < 2 or tuple(a_shape[:-2]) != tuple(b_shape[:-2])):
        return "xla"
    batch = math.prod(a_shape[:-2])
    macs = batch * a_shape[-2] * a_shape[-1] * (b_shape[-2] if transpose_b else b_shape[-1])
    if min_macs is None:
        min_macs = _CPU_ONEDNN_MIN_BATCHED if batch > 1 else _CPU_ONEDNN_MIN_SINGLE
    if macs < min_macs:
        return "xla"
    return "onednn" if onednn.available() else "xla"


def matmul(a: jax.Array, b: jax.Array, transpose_b: bool = False, min_macs: int | None = None) -> jax.Array:
    """``a @ b`` (``a @ swapaxes(b, -1, -2)`` with ``transpose_b``), on the kernel
    :func:`matmul_lowering` picks."""
    if a.dtype == b.dtype and matmul_lowering(a.shape, b.shape, a.dtype, transpose_b, min_macs=min_macs) == "onednn":
        return onednn.matmul(a, b, transpose_b=transpose_b)
    return jnp.matmul(a, jnp.swapaxes(b, -1, -2) if transpose_b else b)
