"""Sums over the leading axes, and the broadcast over leading axes whose transpose they are.

A bias or an affine weight ``v [*trail]`` is broadcast over the rows of ``y [*lead, *trail]``;
its gradient sums the incoming gradient over those rows. XLA:CPU reduces a leading axis slowly
(a [1040, 576] bias gradient: 120-140 us against torch's 17-23 us), so the pair is two linear
primitives, each the other's transpose (the benchmark ViT's train step: 0.978x the time with
``linear``'s bias gradients as these sums, 0.992x with LayerNorm's affine gradients too):

- :func:`broadcast_rows` lowers to XLA's broadcast on every platform (XLA fuses it into its
  consumer, as it would ``y + bias``);
- :func:`column_sums` lowers, on CPU for float32 when funcnet's native shim is available
  (``funcnet.onednn.available()``), to the shim's column-sum kernel (``funcnet/onednn/sums.cc``);
  elsewhere, and for ``jax.export``, to XLA's reduction.

Both are differentiable to any order in both modes and batch under ``vmap`` (a batched call
falls back to XLA's broadcast/reduction).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.core import Primitive
from jax.interpreters import ad, batching, mlir

from funcnet.onednn._primitives import register_lowerings


def _lead(shape: tuple[int, ...], trail: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(shape[: len(shape) - len(trail)])


# -- broadcast_rows: v [*trail] -> [*lead, *trail] -------------------------------------------------
broadcast_rows_p = Primitive("funcnet_broadcast_rows")
broadcast_rows_p.def_impl(lambda v, *, shape: jnp.broadcast_to(v, shape))
broadcast_rows_p.def_abstract_eval(lambda v, *, shape: jax.core.ShapedArray(shape, v.dtype))
mlir.register_lowering(
    broadcast_rows_p, mlir.lower_fun(lambda v, *, shape: jnp.broadcast_to(v, shape), multiple_results=False))


def broadcast_rows(v: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """``jnp.broadcast_to(v, shape)`` where ``v.shape`` is the trailing part of ``shape`` (a bias or
    affine weight spread over rows), with :func:`column_sums` as its transpose."""
    shape = tuple(int(d) for d in shape)
    if tuple(v.shape) != shape[len(shape) - v.ndim:]:
        raise ValueError(f"broadcast_rows: {tuple(v.shape)} is not the trailing part of {shape}")
    return broadcast_rows_p.bind(v, shape=shape)


# -- column_sums: x [*lead, *trail] -> [*trail] ----------------------------------------------------
column_sums_p = Primitive("funcnet_column_sums")
column_sums_p.def_impl(lambda x, *, trail: jnp.sum(x, axis=tuple(range(x.ndim - len(trail)))))
column_sums_p.def_abstract_eval(lambda x, *, trail: jax.core.ShapedArray(tuple(trail), x.dtype))


def column_sums(x: jax.Array, trailing: int = 1) -> jax.Array:
    """``jnp.sum(x, axis=<all but the last `trailing` axes>)``, with :func:`broadcast_rows` as its
    transpose; on CPU for float32 the shim's kernel (float32 partial sums of 8 rows added in
    float64)."""
    if not 0 <= trailing <= x.ndim:
        raise ValueError(f"column_sums: trailing={trailing} for an array of shape {tuple(x.shape)}")
    return column_sums_p.bind(x, trail=tuple(int(d) for d in x.shape[x.ndim - trailing:]))


# Smaller sums stay with XLA, fused into their producer: a custom call costs a few microseconds
# and materialises its operand (the seed MLP's [64, 128] bias gradients: its step 1.03x raw JAX).
_CPU_KERNEL_FROM_ELEMENTS = 1 << 16


def _reduce(x, *, trail):
    return jnp.sum(x, axis=tuple(range(x.ndim - len(trail))))


def _cpu_kernel(x, *, trail):
    from funcnet import onednn

    if x.dtype != jnp.float32 or x.size < _CPU_KERNEL_FROM_ELEMENTS or not onednn.available():
        return _reduce(x, trail=trail)
    cols = math.prod(trail)
    out = jax.ShapeDtypeStruct((cols,), jnp.float32)
    sums = jax.ffi.ffi_call("funcnet_column_sums", out)(x, rows=np.int64(x.size // cols), cols=np.int64(cols))
    return sums.reshape(trail)


# The shim's kernel on CPU; XLA's reduction on other platforms and in jax.export.
register_lowerings(column_sums_p, _cpu_kernel, _reduce)


# -- each the other's transpose; both linear, so their JVPs are themselves ------------------------
def _broadcast_rows_transpose(ct, v, *, shape):
    return [column_sums_p.bind(ct, trail=tuple(v.aval.shape))]


def _column_sums_transpose(ct, x, *, trail):
    return [broadcast_rows_p.bind(ct, shape=tuple(x.aval.shape))]


ad.deflinear2(broadcast_rows_p, _broadcast_rows_transpose)
ad.deflinear2(column_sums_p, _column_sums_transpose)


# -- vmap: XLA's own broadcast and reduction with the batch axis in front --------------------------
def _broadcast_rows_batch(args, dims, *, shape):
    (v,), (d,) = args, dims
    v = jnp.moveaxis(v, d, 0)
    lead = _lead(shape, v.shape[1:])
    v = v.reshape((v.shape[0],) + (1,) * len(lead) + v.shape[1:])
    return jnp.broadcast_to(v, (v.shape[0], *shape)), 0


def _column_sums_batch(args, dims, *, trail):
    (x,), (d,) = args, dims
    x = jnp.moveaxis(x, d, 0)
    return jnp.sum(x, axis=tuple(range(1, x.ndim - len(trail)))), 0


batching.primitive_batchers[broadcast_rows_p] = _broadcast_rows_batch
batching.primitive_batchers[column_sums_p] = _column_sums_batch
