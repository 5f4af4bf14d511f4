"""oneDNN's matrix product as one JAX primitive: ``op(a) @ op(b)``, op = identity or transpose.

``matmul(a, b, transpose_a, transpose_b)`` on float32 arrays ``[*batch, M, K]`` (``[*batch, K, M]``
when ``transpose_a``) and ``[*batch, K, N]`` (``[*batch, N, K]`` when ``transpose_b``) with equal
batch dimensions returns ``[*batch, M, N]``, by an XLA custom call into oneDNN (the kernels behind
torch's CPU ``matmul``/``linear``). The transposes are strides inside oneDNN, never copies, so
the primitive's transposes are the primitive again with other flags (``ct`` is ``[*batch, M, N]``):

==============  ========================================  ========================================
                 w.r.t. ``a``                               w.r.t. ``b``
==============  ========================================  ========================================
not transposed   ``matmul(ct, b, False, not tb)``           ``matmul(a, ct, not ta, False)``
transposed       ``matmul(b, ct, tb, True)``                ``matmul(ct, a, True, ta)``
==============  ========================================  ========================================

so JAX differentiates it to any order in both modes. oneDNN on CPU only, like
``funcnet.onednn.conv``: lowered for another platform or for ``jax.export``, it is XLA's dot.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.interpreters import ad, batching

from funcnet.onednn._primitives import (
    check_float32,
    new_primitive,
    register_lowerings,
    require_available,
    with_leading_batch,
)


def _dims(a_shape, b_shape, transpose_a: bool, transpose_b: bool) -> tuple[int, int, int, int]:
    m, k = (a_shape[-1], a_shape[-2]) if transpose_a else (a_shape[-2], a_shape[-1])
    k_b, n = (b_shape[-1], b_shape[-2]) if transpose_b else (b_shape[-2], b_shape[-1])
    if k != k_b or tuple(a_shape[:-2]) != tuple(b_shape[:-2]):
        raise ValueError(f"funcnet.onednn.matmul: operands {tuple(a_shape)} (transpose_a={transpose_a}) and "
                         f"{tuple(b_shape)} (transpose_b={transpose_b}) need equal batch dimensions and inner sizes")
    return int(np.prod(a_shape[:-2], dtype=np.int64)), m, k, n


def _abstract(a, b, *, transpose_a, transpose_b):
    check_float32("matmul", a, b)
    for x in (a, b):
        if x.ndim < 2:
            raise ValueError(f"funcnet.onednn.matmul: operands need 2 or more dimensions, got {tuple(x.shape)}")
    _, m, _, n = _dims(a.shape, b.shape, transpose_a, transpose_b)
    return jax.core.ShapedArray(tuple(a.shape[:-2]) + (m, n), jnp.float32)


matmul_p = new_primitive("funcnet_onednn_matmul", _abstract)


def _lowered(a, b, *, transpose_a, transpose_b):
    batch, m, k, n = _dims(a.shape, b.shape, transpose_a, transpose_b)
    out = jax.ShapeDtypeStruct(tuple(a.shape[:-2]) + (m, n), jnp.float32)
    return jax.ffi.ffi_call("funcnet_onednn_matmul", out)(
        a, b, batch=np.int64(batch), m=np.int64(m), k=np.int64(k), n=np.int64(n),
        transpose_a=bool(transpose_a), transpose_b=bool(transpose_b))


def _portable(a, b, *, transpose_a, transpose_b):
    """Elsewhere (other platforms, jax.export): XLA's dot."""
    return jnp.matmul(jnp.swapaxes(a, -1, -2) if transpose_a else a, jnp.swapaxes(b, -1, -2) if transpose_b else b)


register_lowerings(matmul_p, _lowered, _portable)


def _transpose_a(ct, a, b, *, transpose_a, transpose_b):
    if transpose_a:
        return matmul_p.bind(b, ct, transpose_a=transpose_b, transpose_b=True)
    return matmul_p.bind(ct, b, transpose_a=False, transpose_b=not transpose_b)


def _transpose_b(ct, a, b, *, transpose_a, transpose_b):
    if transpose_b:
        return matmul_p.bind(ct, a, transpose_a=True, transpose_b=transpose_a)
    return matmul_p.bind(a, ct, transpose_a=not transpose_a, transpose_b=False)


ad.defbilinear(matmul_p, _transpose_a, _transpose_b)


def _batch(args, dims, *, transpose_a, transpose_b):
    (a, b), (da, db) = args, dims
    if db is None and not transpose_a and b.ndim == 2:  # a shared matrix: the batch joins a's rows
        a = jnp.moveaxis(a, da, -3)
        folded = a.reshape(a.shape[:-3] + (a.shape[-3] * a.shape[-2], a.shape[-1]))
        out = matmul_p.bind(folded, b, transpose_a=False, transpose_b=transpose_b)
        return out.reshape(a.shape[:-1] + (out.shape[-1],)), a.ndim - 3
    a, b = with_leading_batch(args, dims)
    return matmul_p.bind(a, b, transpose_a=transpose_a, transpose_b=transpose_b), 0


batching.primitive_batchers[matmul_p] = _batch


def matmul(a: jax.Array, b: jax.Array, transpose_a: bool = False, transpose_b: bool = False) -> jax.Array:
    """``op(a) @ op(b)`` by oneDNN (float32, CPU): ``a`` ``[*batch, M, K]`` (``[*batch, K, M]`` when
    ``transpose_a``), ``b`` ``[*batch, K, N]`` (``[*batch, N, K]`` when ``transpose_b``), equal
    batch dimensions → ``[*batch, M, N]``. Raises ``RuntimeError`` when oneDNN is unavailable."""
    require_available("matmul")
    return matmul_p.bind(a, b, transpose_a=bool(transpose_a), transpose_b=bool(transpose_b))
