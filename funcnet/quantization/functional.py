"""Static int8 arithmetic: torch's ``quantized::conv2d``/``linear``/``add``/``cat`` (fbgemm/x86).

Integer products are accumulated exactly; the accumulator is requantized as fbgemm's
``ReQuantizeOutput`` with a float bias::

    acc   = Σ (x_q - x_zp) · w_q                              exact integers
    a·w   = x_scale * w_scale[c]                              float32
    y_q   = clamp(nearbyint((acc + bias[c] / a·w) * (a·w / y_scale)) + y_zp,
                  y_zp if relu else 0, 255)

**How the integers are multiplied** (``INT_PATH``; every path gives the same integers):

* matrix products: XLA:CPU sends an ``int8 x int8 -> int32`` ``dot_general``
  (``preferred_element_type=int32``) to YNNPACK's int8 GEMM, faster than the float32 GEMM
  once the int8 weights' conversion is counted. ``x_q - 128`` fits int8; the shift is undone
  with the weight row sums. Used by ``"auto"`` (default) and ``"int8"``.
* convolutions: XLA:CPU's int8 ``conv_general_dilated`` is a generic loop (~7x slower than
  float32). Two exact alternatives: (a) ``|x_q - x_zp| ≤ 255`` and ``|w_q| ≤ 128``, so every
  product is below 2**15 and any sum of up to 512 of them below 2**24: the float32
  convolution computes these integer sums *exactly* (longer contractions are split into
  chunks of 512 input taps summed in int32); (b) gather the windows (im2col) and use the int8
  GEMM. ``"float32"`` always takes (a), ``"int8"`` always (b), ``"auto"`` takes (b) for large
  batches (``IM2COL_MIN_ROWS``) and (a) otherwise; measured in benchmarks/quantization.py.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from funcnet.quantization.qtensor import QTensor

#: ``"auto"`` (int8 GEMM for Linear, exact float32 convolution), ``"float32"`` or ``"int8"`` (both ops).
INT_PATH = "auto"
#: ``"auto"`` gathers windows for the int8 GEMM from this many output positions (N·H_out·W_out) on;
#: below it the float32 convolution's lower fixed cost wins (measured: batch 1 vs 256 of the seed CNN).
IM2COL_MIN_ROWS = 1024
#: the longest contraction whose float32 sum of |products| < 2**24 is exact (255 * 128 * 512 < 2**24).
EXACT_CHUNK = 512


def _centered(x: QTensor) -> jax.Array:
    return x.int_repr.astype(jnp.int32) - x.zero_point


def int_matmul(x_c: jax.Array, w_q: jax.Array) -> jax.Array:
    """``Σ_k x_c[..., k] · w_q[o, k]`` exactly, as float32 (``x_c`` int32 in ±255, ``w_q`` int8)."""
    k = x_c.shape[-1]
    dims = (((x_c.ndim - 1,), (1,)), ((), ()))
    if k <= EXACT_CHUNK:
        return lax.dot_general(x_c.astype(jnp.float32), w_q.astype(jnp.float32), dims)
    total = None
    for start in range(0, k, EXACT_CHUNK):
        part = lax.dot_general(x_c[..., start:start + EXACT_CHUNK].astype(jnp.float32),
                               w_q[:, start:start + EXACT_CHUNK].astype(jnp.float32), dims).astype(jnp.int32)
        total = part if total is None else total + part
    return total.astype(jnp.float32)


def int_matmul_uint8(x: QTensor, w_q: jax.Array, path: str | None = None) -> jax.Array:
    """``Σ (x_q - x_zp) · w_q`` over the last axis of ``x``, exact, as float32."""
    path = path or INT_PATH
    if path in ("auto", "int8"):
        dims = (((x.ndim - 1,), (1,)), ((), ()))
        x_s = (x.int_repr.astype(jnp.int32) - 128).astype(jnp.int8)
        acc = lax.dot_general(x_s, w_q, dims, preferred_element_type=jnp.int32)
        acc = acc + (128 - x.zero_point) * jnp.sum(w_q.astype(jnp.int32), axis=1)
        return acc.astype(jnp.float32)
    return int_matmul(_centered(x), w_q)


def int_conv(x: QTensor, w_q: jax.Array, stride, padding, dilation, groups: int, path: str | None = None) -> jax.Array:
    """``conv(x_q - x_zp, w_q)`` (NC* layout, zero padding = the zero point) exactly, as float32."""
    path = path or INT_PATH
    n = w_q.ndim - 2
    spec = ("NC" + "DHW"[-n:], "OI" + "DHW"[-n:], "NC" + "DHW"[-n:])
    conv = lambda a, w, **kw: lax.conv_general_dilated(  # noqa: E731
        a, w, window_strides=stride, padding=padding, rhs_dilation=dilation,
        feature_group_count=groups, dimension_numbers=spec, **kw)
    if groups == 1 and (path == "int8" or (path == "auto" and _gemm_rows(x, w_q, stride) >= IM2COL_MIN_ROWS)):
        return _int8_im2col_conv(x, w_q, stride, padding, dilation)
    x_c = _centered(x).astype(jnp.float32)
    w = w_q.astype(jnp.float32)
    per_group_in = w_q.shape[1]
    taps = 1
    for s in w_q.shape[2:]:
        taps *= s
    if per_group_in * taps <= EXACT_CHUNK or groups != 1:
        if per_group_in * taps > EXACT_CHUNK:
            raise NotImplementedError("quantized grouped convolution with a fan-in above 512 per group")
        return conv(x_c, w)
    step = max(1, EXACT_CHUNK // taps)
    total = None
    for start in range(0, per_group_in, step):
        part = conv(x_c[:, start:start + step], w[:, start:start + step]).astype(jnp.int32)
        total = part if total is None else total + part
    return total.astype(jnp.float32)


def _gemm_rows(x: QTensor, w_q: jax.Array, stride) -> int:
    rows = x.shape[0]
    for size, s in zip(x.shape[2:], stride, strict=True):
        rows *= max(1, size // s)
    return rows


def _int8_im2col_conv(x: QTensor, w_q: jax.Array, stride, padding, dilation) -> jax.Array:
    """The convolution as one int8 x int8 -> int32 matmul over gathered windows (im2col).

    ``x_q - 128`` fits int8; the border is padded with ``x_zp - 128`` (the quantized real
    zero), so every window sums ``w·(x_q - x_zp)`` plus ``(x_zp - 128)·Σw`` per output
    channel, which is subtracted. Returns float32 ``[N, O, *out]``.
    """
    out_ch = w_q.shape[0]
    x_s = (x.int_repr.astype(jnp.int32) - 128).astype(jnp.int8)
    pad_value = (x.zero_point - 128).astype(jnp.int8)
    x_p = lax.pad(x_s, pad_value, [(0, 0, 0), (0, 0, 0)] + [(lo, hi, 0) for lo, hi in padding])
    spatial = x_p.shape[2:]
    kernel = w_q.shape[2:]
    out = [(size - d * (k - 1) - 1) // s + 1 for size, k, s, d in zip(spatial, kernel, stride, dilation, strict=True)]
    taps = []
    for offsets in np.ndindex(*kernel):
        starts = [0, 0] + [o * d for o, d in zip(offsets, dilation, strict=True)]
        limits = [x_p.shape[0], x_p.shape[1]] + [
            st + (m - 1) * s + 1 for st, m, s in zip(starts[2:], out, stride, strict=True)]
        taps.append(lax.slice(x_p, starts, limits, [1, 1, *stride]))
    patches = jnp.stack(taps, axis=2)  # [N, C, K, *out]
    patches = patches.reshape(patches.shape[0], -1, *out)  # [N, C*K, *out], C-major like the weight
    w2 = w_q.reshape(out_ch, -1)
    acc = lax.dot_general(patches, w2, (((1,), (1,)), ((), ())), preferred_element_type=jnp.int32)  # [N, *out, O]
    acc = acc - (x.zero_point - 128) * jnp.sum(w2.astype(jnp.int32), axis=1)
    return jnp.moveaxis(acc, -1, 1).astype(jnp.float32)


def requantize(acc: jax.Array, x_scale: jax.Array, w_scale: jax.Array, bias: jax.Array | None,
               out_scale: jax.Array, out_zero_point: jax.Array, relu: bool, channel_axis: int) -> QTensor:
    """fbgemm's ``ReQuantizeOutput`` (float bias, per-tensor or per-channel weight scale)."""
    shape = [1] * acc.ndim
    shape[channel_axis] = -1
    act_w = (x_scale * w_scale).astype(jnp.float32)
    multiplier = act_w / out_scale
    if act_w.ndim:
        act_w, multiplier = act_w.reshape(shape), multiplier.reshape(shape)
    if bias is not None:
        acc = acc + (bias.reshape(shape) / act_w)
    q = jnp.rint(acc * multiplier).astype(jnp.int32) + out_zero_point
    q = jnp.clip(q, out_zero_point if relu else 0, 255)
    return QTensor(q.astype(jnp.uint8), out_scale, out_zero_point)


def requantize_float(y: jax.Array, scale: jax.Array, zero_point: jax.Array, relu: bool = False) -> QTensor:
    """Quantize a float result to ``(scale, zero_point)`` (torch's quantized add/cat output)."""
    q = jnp.rint(y * (jnp.float32(1) / scale)).astype(jnp.int32) + zero_point
    q = jnp.clip(q, zero_point if relu else 0, 255)
    return QTensor(q.astype(jnp.uint8), scale, zero_point)


def add(a: QTensor, b: QTensor, scale, zero_point, relu: bool = False) -> QTensor:
    """``torch.ops.quantized.add(a, b, scale, zero_point)`` (``add_relu`` with ``relu``)."""
    return requantize_float(a.dequantize() + b.dequantize(), scale, zero_point, relu)


def cat(xs, dim: int, scale, zero_point) -> QTensor:
    """``torch.ops.quantized.cat``: each input requantized to the output's parameters."""
    return requantize_float(jnp.concatenate([x.dequantize() for x in xs], axis=dim), scale, zero_point)
