"""Sums over the trailing axes, as a matrix-vector product with ones on CPU.

XLA:CPU gives reductions to YNNPACK, which wants its operand materialised and is slow on many
short rows (a softmax backward over [64, 1, 65, 65] attention weights: 1.3-1.5 ms a call); the
product is a multi-threaded GEMV on the matmul path. Used by LayerNorm/GroupNorm/InstanceNorm's
means and by the attention softmax's backward. Not on GPU/TPU, where float32 dots may run at
reduced precision (TF32) and reductions are fast.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

# False: jnp.sum everywhere, for an in-process A/B (benchmarks/variant_ab.py).
_CPU_AS_DOT = True


def row_sums(x: jax.Array, trailing: int = 1) -> jax.Array:
    """``jnp.sum(x, axis=<the last `trailing` axes>, keepdims=True)``."""
    axes = tuple(range(x.ndim - trailing, x.ndim))
    if not (_CPU_AS_DOT and jax.default_backend() == "cpu"):
        return jnp.sum(x, axis=axes, keepdims=True)
    rows = x.reshape(x.shape[: x.ndim - trailing] + (-1,))
    sums = rows @ jnp.ones((rows.shape[-1],), x.dtype)
    return sums.reshape(x.shape[: x.ndim - trailing] + (1,) * trailing)
