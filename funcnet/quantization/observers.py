"""Quantization parameters the way torch's dynamic int8 Linear chooses them.

Two observers, one per operand:

* **weights** (once, at conversion): torch's ``default_weight_observer`` —
  ``MinMaxObserver(dtype=qint8, qscheme=per_tensor_symmetric)`` — or
  ``default_per_channel_weight_observer`` (``per_channel_symmetric``, axis 0).
  ``scale = max(|min(w, 0)|, max(w, 0)) / 127.5`` in float32, floored at float32 eps,
  ``zero_point = 0``, ``q = clamp(round_half_even(w * (1/scale)), -128, 127)``.
  Computed in numpy, outside ``jit`` (conversion is a one-off).
* **activations** (every call, traceable): ATen's ``quant_utils::ChooseQuantizationParams``
  as called by ``quantized::linear_dynamic`` — uint8 affine over the whole input
  tensor, the range extended to include 0, ``[0, 255]`` halved to ``[0, 127]`` by
  ``reduce_range``, ``scale = (max - min) / (qmax - qmin)`` (computed in double by
  torch; here with a float32 pair that gives the same correctly rounded float32),
  0.1 when it is 0 or its reciprocal overflows, floored at 6.1e-5, and the zero
  point ``nearbyint(qmin - min / scale)`` clamped to ``[qmin, qmax]``. Values are
  quantized as fbgemm does: ``clamp(nearbyint(x * (1/scale) + zero_point), qmin, qmax)``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

#: float32 machine epsilon: torch's observers floor the scale at ``torch.finfo(float32).eps``.
EPS = np.finfo(np.float32).eps
#: ATen's ``SMALL_SCALE_THRESHOLD`` (the smallest normal float16).
SMALL_SCALE_THRESHOLD = np.float32(6.1e-5)


# -- weights (numpy, at conversion time) ---------------------------------------------------
def weight_qparams(weight: Any, per_channel: bool = False) -> np.ndarray:
    """torch's symmetric qint8 weight scale: ``amax / 127.5``, floored at float32 eps.

    Args:
        weight: ``[out, in]`` float array.
        per_channel: one scale per output row (``PerChannelMinMaxObserver``, ``ch_axis=0``)
            instead of one for the whole tensor (``MinMaxObserver``).

    Returns:
        float32 scale: shape ``()`` per tensor, ``[out]`` per channel. The zero point is 0.
    """
    w = np.asarray(weight, dtype=np.float32)
    axes = tuple(range(1, w.ndim)) if per_channel else None
    min_neg = np.minimum(w.min(axis=axes), np.float32(0))
    max_pos = np.maximum(w.max(axis=axes), np.float32(0))
    amax = np.maximum(-min_neg, max_pos).astype(np.float32)
    # torch: max_val_pos / (float(quant_max - quant_min) / 2), a float32 tensor op.
    scale = (amax / np.float32(127.5)).astype(np.float32)
    return np.maximum(scale, EPS).astype(np.float32)


def quantize_weight(weight: Any, scale: Any) -> np.ndarray:
    """``torch.quantize_per_tensor/_per_channel(w, scale, 0, qint8).int_repr()``.

    fbgemm multiplies by the float32 reciprocal of the scale and rounds half to
    even (``nearbyint``); the result is clamped to ``[-128, 127]``.

    Args:
        weight: ``[out, in]`` float array.
        scale: float32 ``()`` or ``[out]`` (per output channel).

    Returns:
        int8 array ``[out, in]``.
    """
    w = np.asarray(weight, dtype=np.float32)
    scale = np.asarray(scale, dtype=np.float32)
    inv = (np.float32(1.0) / scale).astype(np.float32)
    if inv.ndim == 1:
        inv = inv.reshape((-1,) + (1,) * (w.ndim - 1))
    q = np.rint((w * inv).astype(np.float32))
    return np.clip(q, -128, 127).astype(np.int8)


# -- activations (traceable, every call) -----------------------------------------------------
def _two_sum(a: jax.Array, b: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Knuth's error-free sum: ``a + b == s + e`` exactly."""
    s = a + b
    bb = s - a
    e = (a - (s - bb)) + (b - bb)
    return s, e


def _range_over(d_hi: jax.Array, d_lo: jax.Array, n: int) -> jax.Array:
    """float32((d_hi + d_lo) / n), correctly rounded without float64, for n = 2**k - 1.

    ``q = d_hi / n`` is within an ulp of the quotient. With ``p = n + 1`` a power of
    two, ``d_hi - q*n = (d_hi - q*p) + q``: ``q*p`` is exact, and both subtractions
    are exact by Sterbenz's lemma, so the remainder, and the correction, are exact
    up to the final rounding. (torch computes this quotient in double and rounds it
    to float32; the two agree except for double-rounding ties, about 1 in 2**29.)
    """
    p = n + 1
    # XLA rewrites a division by a constant into a multiplication by its rounded
    # reciprocal (and folds q*p into d_hi*(p/n)), which breaks the exact steps:
    # hide the constants behind an optimization barrier.
    n_, p_ = jax.lax.optimization_barrier((jnp.float32(n), jnp.float32(p)))
    if p & (p - 1):
        return (d_hi + d_lo) / n_
    q = d_hi / n_
    r = (d_hi - q * p_) + q
    return q + (r + d_lo) / n_


def activation_qparams(
    x: jax.Array, reduce_range: bool = True, qmin: int = 0, qmax: int = 255
) -> tuple[jax.Array, jax.Array]:
    """ATen's ``ChooseQuantizationParams`` over the whole tensor (traceable).

    Args:
        x: float input of any shape; statistics are over every element.
        reduce_range: halve ``[qmin, qmax]`` (torch's dynamic Linear passes True).

    Returns:
        ``(scale, zero_point)``: float32 and int32 scalars.

    The scale equals torch's (its double result rounded to float32) bit for bit.
    The zero point equals torch's except when ``-min * (qmax - qmin) / (max - min)``
    is within float32 rounding of a half-integer — e.g. an exactly symmetric range
    with ``reduce_range=False`` (127.5) — where torch's choice depends on the
    rounding noise of its double arithmetic; a zero point one step off changes
    only values that then clamp at ``qmax``.
    """
    if reduce_range:
        qmin, qmax = qmin // 2, qmax // 2
    n = qmax - qmin
    x = x.astype(jnp.float32)
    lo = jnp.minimum(jnp.min(x), 0.0)
    hi = jnp.maximum(jnp.max(x), 0.0)
    d_hi, d_lo = _two_sum(hi, -lo)
    scale = _range_over(d_hi, d_lo, n)
    bad = (scale == 0) | jnp.isinf(1.0 / scale)
    scale = jnp.where(bad, jnp.float32(0.1), scale)
    small = scale < SMALL_SCALE_THRESHOLD
    amplifier = SMALL_SCALE_THRESHOLD / scale
    lo_small = jnp.where(
        lo == 0, lo, jnp.where(hi == 0, -SMALL_SCALE_THRESHOLD * n, lo * amplifier)
    )
    hi_small = jnp.where(lo == 0, SMALL_SCALE_THRESHOLD * n, jnp.where(hi == 0, hi, hi * amplifier))
    lo = jnp.where(small, lo_small, lo)
    hi = jnp.where(small, hi_small, hi)
    scale = jnp.where(small, SMALL_SCALE_THRESHOLD, scale)
    # torch picks the zero point from whichever end adds smaller terms; both
    # formulas agree except for rounding, and the min end wins unless min == 0.
    from_min = qmin - lo / scale
    from_max = qmax - hi / scale
    err_min = abs(qmin) - jnp.abs(lo / scale)
    err_max = abs(qmax) - jnp.abs(hi / scale)
    initial = jnp.where(err_min < err_max, from_min, from_max)
    zero_point = jnp.clip(jnp.rint(initial), qmin, qmax).astype(jnp.int32)
    return scale.astype(jnp.float32), zero_point


def quantize_activation(
    x: jax.Array, scale: jax.Array, zero_point: jax.Array, qmin: int, qmax: int
) -> jax.Array:
    """fbgemm's ``Quantize<uint8>``: ``clamp(nearbyint(x * (1/scale) + zp), qmin, qmax)`` as int32."""
    inv = jnp.float32(1.0) / scale
    q = jnp.rint(x.astype(jnp.float32) * inv + zero_point.astype(jnp.float32))
    return jnp.clip(q, qmin, qmax).astype(jnp.int32)
