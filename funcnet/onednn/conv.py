"""oneDNN's 2-D convolution as three JAX primitives (forward, backward-data, backward-weights).

``conv2d(x, w, stride, padding, dilation, groups)`` computes ``lax.conv_general_dilated`` in
NCHW/OIHW (torch's ``F.conv2d`` without bias) by an XLA custom call into oneDNN, the library
behind torch's CPU convolutions. The three primitives are one bilinear family, so JAX
differentiates them to any order in both modes:

========================  ==========================  =============================================
primitive                  operands -> result          transposes (w.r.t. first / second operand)
========================  ==========================  =============================================
``conv``                   x, w -> y                   backward_data(ct, w) / backward_weights(x, ct)
``conv_backward_data``     dy, w -> dx                 conv(ct, w) / backward_weights(ct, dy)
``conv_backward_weights``  x, dy -> dw                 backward_data(dy, ct) / conv(x, ct)
========================  ==========================  =============================================

Every primitive carries the whole geometry as parameters (``x_hw`` and ``kernel_hw`` included,
since a transpose must rebuild the shape it cannot see). Leading dimensions beyond the 4 of
NCHW are a batch (``jax.vmap``): the handler runs one slice at a time; a batched input with a
shared weight is folded into N instead. oneDNN runs on CPU only
(``funcnet.nn.functional.conv_lowering`` picks these primitives on CPU only); a program traced
on CPU but lowered for another platform, or for ``jax.export``, gets XLA's convolution instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.interpreters import ad, batching

from funcnet.onednn._primitives import (
    check_float32,
    new_primitive,
    register_lowerings,
    require_available,
    with_leading_batch,
)

_NHWC = (0, 2, 3, 1)


def _geometry(stride, padding, dilation, groups, x_hw, kernel_hw) -> dict:
    return dict(stride=tuple(int(s) for s in stride), padding=tuple((int(lo), int(hi)) for lo, hi in padding),
                dilation=tuple(int(d) for d in dilation), groups=int(groups),
                x_hw=tuple(int(s) for s in x_hw), kernel_hw=tuple(int(k) for k in kernel_hw))


def output_hw(x_hw: Sequence[int], kernel_hw: Sequence[int], stride: Sequence[int],
              padding: Sequence[tuple[int, int]], dilation: Sequence[int]) -> tuple[int, ...]:
    return tuple((x_hw[i] + padding[i][0] + padding[i][1] - dilation[i] * (kernel_hw[i] - 1) - 1) // stride[i] + 1
                 for i in range(2))


def _shapes(n: int, c_in: int, c_out: int, p: dict):
    """Logical NCHW/OIHW shapes ``(x, w, y)`` of one slice (without leading batch dimensions)."""
    x = (n, c_in, *p["x_hw"])
    w = (c_out, c_in // p["groups"], *p["kernel_hw"])
    y = (n, c_out, *output_hw(p["x_hw"], p["kernel_hw"], p["stride"], p["padding"], p["dilation"]))
    return x, w, y


def _check_lead(name: str, lead: tuple[int, ...], other) -> None:
    if other.ndim < 4 or tuple(other.shape[:-4]) != tuple(lead):
        raise ValueError(f"funcnet.onednn.{name}: operands need the same leading (batch) dimensions before "
                         f"their 4 NCHW/OIHW ones, got {tuple(lead)} and {tuple(other.shape)}")


# Abstract evaluation: the result shape of each primitive, from its operands and geometry.
def _conv_abstract(x, w, **p):
    check_float32("conv2d", x, w)
    lead, (n, c_in) = x.shape[:-4], x.shape[-4:-2]
    _check_lead("conv2d", lead, w)
    _, _, y = _shapes(n, c_in, w.shape[-4], p)
    return jax.core.ShapedArray(lead + y, jnp.float32)


def _backward_data_abstract(dy, w, **p):
    check_float32("conv2d backward data", dy, w)
    lead, n = dy.shape[:-4], dy.shape[-4]
    _check_lead("conv2d backward data", lead, w)
    return jax.core.ShapedArray(lead + (n, w.shape[-3] * p["groups"], *p["x_hw"]), jnp.float32)


def _backward_weights_abstract(x, dy, **p):
    check_float32("conv2d backward weights", x, dy)
    lead = x.shape[:-4]
    _check_lead("conv2d backward weights", lead, dy)
    return jax.core.ShapedArray(lead + (dy.shape[-3], x.shape[-3] // p["groups"], *p["kernel_hw"]), jnp.float32)


conv_p = new_primitive("funcnet_onednn_conv", _conv_abstract)
backward_data_p = new_primitive("funcnet_onednn_conv_backward_data", _backward_data_abstract)
backward_weights_p = new_primitive("funcnet_onednn_conv_backward_weights", _backward_weights_abstract)


# Lowering: activations cross into oneDNN channels-last (XLA fuses these transposes into the
# neighbouring ops; oneDNN's NHWC kernels then need no reorders), weights as OIHW.
def _attributes(x, w, y, p: dict) -> dict:
    as_i64 = partial(np.asarray, dtype=np.int64)
    return dict(x_shape=as_i64(x), w_shape=as_i64(w), y_shape=as_i64(y), stride=as_i64(p["stride"]),
                pad_l=as_i64([lo for lo, _ in p["padding"]]), pad_r=as_i64([hi for _, hi in p["padding"]]),
                dilation=as_i64(p["dilation"]), groups=np.int64(p["groups"]))


def _to_nhwc(a):
    lead = a.ndim - 4
    return jnp.transpose(a, tuple(range(lead)) + tuple(lead + i for i in _NHWC))


def _from_nhwc(a):
    lead = a.ndim - 4
    return jnp.transpose(a, tuple(range(lead)) + (lead, lead + 3, lead + 1, lead + 2))


def _nhwc_struct(shape):
    lead, (n, c, h, w) = shape[:-4], shape[-4:]
    return jax.ShapeDtypeStruct(lead + (n, h, w, c), jnp.float32)


def _conv_lowered(x, w, **p):
    xs, ws, ys = _shapes(*x.shape[-4:-2], w.shape[-4], p)
    out = _nhwc_struct(x.shape[:-4] + ys)
    y = jax.ffi.ffi_call("funcnet_onednn_conv_forward", out)(_to_nhwc(x), w, **_attributes(xs, ws, ys, p))
    return _from_nhwc(y)


def _backward_data_lowered(dy, w, **p):
    n, c_out = dy.shape[-4:-2]
    xs, ws, ys = _shapes(n, w.shape[-3] * p["groups"], c_out, p)
    out = _nhwc_struct(dy.shape[:-4] + xs)
    dx = jax.ffi.ffi_call("funcnet_onednn_conv_backward_data", out)(_to_nhwc(dy), w, **_attributes(xs, ws, ys, p))
    return _from_nhwc(dx)


def _backward_weights_lowered(x, dy, **p):
    if p["groups"] == x.shape[-3] and np.prod(p["kernel_hw"]) >= _DEPTHWISE_WEIGHTS_BY_XLA_FROM_TAPS:
        return _per_slice(lambda x, dy: _depthwise_weights_by_xla(x, dy, p), x)(x, dy)
    xs, ws, ys = _shapes(*x.shape[-4:-2], dy.shape[-3], p)
    out = jax.ShapeDtypeStruct(x.shape[:-4] + ws, jnp.float32)
    return jax.ffi.ffi_call("funcnet_onednn_conv_backward_weights", out)(
        _to_nhwc(x), _to_nhwc(dy), **_attributes(xs, ws, ys, p))


# The weight gradient of a depthwise convolution (one input channel per group) with a 5x5 or larger
# kernel is XLA's one reduction over dY, as in funcnet's own depthwise lowering: oneDNN's took
# 3.9-4.3 ms for ConvNeXt's 7x7 kernels on 4x4 and 2x2 maps at batch 16, the reduction 0.5-0.7 ms
# (ConvNeXt-Tiny's step: 0.82x the time). For 3x3 kernels oneDNN's is kept (MobileNetV2's step took
# 1.010-1.025x with the reduction). A huge value: oneDNN's everywhere, for an in-process A/B.
_DEPTHWISE_WEIGHTS_BY_XLA_FROM_TAPS = 25


def _depthwise_weights_by_xla(x, dy, p: dict):
    from funcnet.nn.functional.conv import _depthwise_weight_gradient  # the depthwise lowering's

    return _depthwise_weight_gradient(x, dy, p["padding"], p["kernel_hw"], p["stride"], p["dilation"])


# Elsewhere (other platforms, jax.export): the same maths as XLA's convolution and its transposes.
def _lax_conv(x, w, p: dict):
    return lax.conv_general_dilated(x, w, p["stride"], p["padding"], rhs_dilation=p["dilation"],
                                    feature_group_count=p["groups"], dimension_numbers=("NCHW", "OIHW", "NCHW"))


def _per_slice(fn, operand):
    """``fn`` of one NCHW/OIHW slice, mapped over ``operand``'s leading (batch) dimensions."""
    for _ in range(operand.ndim - 4):
        fn = jax.vmap(fn)
    return fn


def _conv_portable(x, w, **p):
    return _per_slice(lambda x, w: _lax_conv(x, w, p), x)(x, w)


def _backward_data_portable(dy, w, **p):
    def one(dy, w):
        x = jax.ShapeDtypeStruct((dy.shape[0], w.shape[1] * p["groups"], *p["x_hw"]), dy.dtype)
        return jax.linear_transpose(lambda x: _lax_conv(x, w, p), x)(dy)[0]

    return _per_slice(one, dy)(dy, w)


def _backward_weights_portable(x, dy, **p):
    def one(x, dy):
        w = jax.ShapeDtypeStruct((dy.shape[1], x.shape[1] // p["groups"], *p["kernel_hw"]), x.dtype)
        return jax.linear_transpose(lambda w: _lax_conv(x, w, p), w)(dy)[0]

    return _per_slice(one, x)(x, dy)


register_lowerings(conv_p, _conv_lowered, _conv_portable)
register_lowerings(backward_data_p, _backward_data_lowered, _backward_data_portable)
register_lowerings(backward_weights_p, _backward_weights_lowered, _backward_weights_portable)


# Differentiation: each primitive is bilinear; the transposes are the other two (table above).
ad.defbilinear(conv_p,
               lambda ct, x, w, **p: backward_data_p.bind(ct, w, **p),
               lambda ct, x, w, **p: backward_weights_p.bind(x, ct, **p))
ad.defbilinear(backward_data_p,
               lambda ct, dy, w, **p: conv_p.bind(ct, w, **p),
               lambda ct, dy, w, **p: backward_weights_p.bind(ct, dy, **p))
ad.defbilinear(backward_weights_p,
               lambda ct, x, dy, **p: backward_data_p.bind(dy, ct, **p),
               lambda ct, x, dy, **p: conv_p.bind(x, ct, **p))


# Batching: a batched activation with a shared weight folds into N; otherwise every operand gets
# the batch as a leading dimension and the handler loops over it.
def _fold_into_n(a, d):
    a = jnp.moveaxis(a, d, -5)
    return a.reshape(a.shape[:-5] + (a.shape[-5] * a.shape[-4],) + a.shape[-3:]), a.shape[-5]


def _unfold_n(a, size):
    return a.reshape(a.shape[:-4] + (size, a.shape[-4] // size) + a.shape[-3:])


def _batch_activation_first(primitive, args, dims, **p):
    """``conv`` and ``backward_data``: operand 0 is an activation (N first), operand 1 the weight."""
    (a, w), (da, dw) = args, dims
    if dw is None:
        folded, size = _fold_into_n(a, da)
        return _unfold_n(primitive.bind(folded, w, **p), size), folded.ndim - 4
    a, w = with_leading_batch(args, dims)
    return primitive.bind(a, w, **p), 0


def _batch_weights(args, dims, **p):
    x, dy = with_leading_batch(args, dims)
    return backward_weights_p.bind(x, dy, **p), 0


batching.primitive_batchers[conv_p] = partial(_batch_activation_first, conv_p)
batching.primitive_batchers[backward_data_p] = partial(_batch_activation_first, backward_data_p)
batching.primitive_batchers[backward_weights_p] = _batch_weights


def conv2d(x: jax.Array, w: jax.Array, stride: Sequence[int], padding: Sequence[tuple[int, int]],
           dilation: Sequence[int], groups: int = 1) -> jax.Array:
    """``lax.conv_general_dilated(x, w, stride, padding, rhs_dilation=dilation,
    feature_group_count=groups)`` in NCHW/OIHW, float32, by oneDNN (CPU only).

    ``x``: ``[N, C_in, H, W]``; ``w``: ``[C_out, C_in/groups, kh, kw]``; returns
    ``[N, C_out, H_out, W_out]``. Raises ``RuntimeError`` (with the reason) when oneDNN is
    unavailable (:func:`funcnet.onednn.status`).
    """
    require_available("conv2d")
    if x.ndim != 4 or w.ndim != 4:
        raise ValueError(f"funcnet.onednn.conv2d: expected x [N, C, H, W] and w [O, I, kh, kw], "
                         f"got {tuple(x.shape)} and {tuple(w.shape)}")
    return conv_p.bind(x, w, **_geometry(stride, padding, dilation, groups, x.shape[2:], w.shape[2:]))
