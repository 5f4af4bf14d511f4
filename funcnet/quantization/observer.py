"""Observer modules: torch's ``torch.ao.quantization.observer``, with their statistics as buffers.

An observer is an identity layer that records the range of what flows through it. In
funcnet its statistics are buffers, so calibration is an ordinary pure call that
returns them updated (``prepared.apply(variables, x, train=True)`` → ``(out, buffers)``;
or :func:`funcnet.quantization.calibrate`), under ``jit`` too. The observed values are
turned into ``(scale, zero_point)`` once, at ``convert``, by :meth:`calculate_qparams`
(numpy, float32, torch's ``_calculate_qparams`` operation for operation).

=============================  ================================  ===========================
funcnet                        torch                             buffers (state_dict keys)
=============================  ================================  ===========================
``MinMaxObserver``             ``MinMaxObserver``                ``eps, min_val, max_val``
``MovingAverageMinMaxObserver````MovingAverageMinMaxObserver``   ``eps, min_val, max_val``
``HistogramObserver``          ``HistogramObserver``             ``eps, histogram, min_val, max_val``
``PerChannelMinMaxObserver``   ``PerChannelMinMaxObserver``      weights only (see below)
=============================  ================================  ===========================

Weights are observed at ``convert`` from their final values (torch's ``from_float`` does the
same), so weight observers are not modules with buffers here: :meth:`observe_weight` gives
the qparams of an array directly.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from funcnet.nn.module import Module
from funcnet.nn.parameter import Buffer
from funcnet.quantization import histogram as hist

EPS = np.finfo(np.float32).eps
QUINT8, QINT8 = "quint8", "qint8"
PER_TENSOR_AFFINE, PER_TENSOR_SYMMETRIC = "per_tensor_affine", "per_tensor_symmetric"
PER_CHANNEL_AFFINE, PER_CHANNEL_SYMMETRIC = "per_channel_affine", "per_channel_symmetric"
_DTYPE_RANGE = {QUINT8: (0, 255), QINT8: (-128, 127)}


class ObserverBase(Module):
    """``UniformQuantizationObserverBase``: dtype, qscheme, reduce_range and the qparams formula.

    Args:
        dtype: ``"quint8"`` (activations) or ``"qint8"`` (weights), torch's ``torch.quint8``/``qint8``.
        qscheme: ``"per_tensor_affine"``, ``"per_tensor_symmetric"`` (or the per-channel ones).
        reduce_range: use 7 bits (``[0, 127]`` / ``[-64, 63]``), as fbgemm/x86 activations.
    """

    def __init__(self, dtype: str = QUINT8, qscheme: str = PER_TENSOR_AFFINE, reduce_range: bool = False,
                 eps: float = float(EPS)) -> None:
        super().__init__()
        if dtype not in _DTYPE_RANGE:
            raise ValueError(f"{type(self).__name__}: dtype must be one of {sorted(_DTYPE_RANGE)}, got {dtype!r}")
        schemes = (PER_TENSOR_AFFINE, PER_TENSOR_SYMMETRIC, PER_CHANNEL_AFFINE, PER_CHANNEL_SYMMETRIC)
        if qscheme not in schemes:
            raise ValueError(f"{type(self).__name__}: qscheme must be one of {schemes}, got {qscheme!r}")
        self.dtype = dtype
        self.qscheme = qscheme
        self.reduce_range = reduce_range
        self.eps_value = np.float32(eps)
        qmin, qmax = _DTYPE_RANGE[dtype]
        if reduce_range:
            qmin, qmax = qmin // 2, qmax // 2
        self.quant_min, self.quant_max = qmin, qmax
        self.eps = Buffer((), np.float32(eps))

    @property
    def symmetric(self) -> bool:
        return self.qscheme in (PER_TENSOR_SYMMETRIC, PER_CHANNEL_SYMMETRIC)

    def qparams_from_range(self, min_val: Any, max_val: Any) -> tuple[np.ndarray, np.ndarray]:
        """torch's ``_calculate_qparams(min_val, max_val)`` → float32 scale, int64 zero point.

        Affine: ``scale = (max(max,0) - min(min,0)) / (qmax - qmin)`` floored at eps,
        ``zero_point = clamp(qmin - round_half_even(min(min,0) / scale))``. Symmetric:
        ``scale = max(|min|, max) / ((qmax - qmin) / 2)``, zero point 0 (128 for quint8).
        """
        f = np.float32
        min_val, max_val = np.asarray(min_val, f), np.asarray(max_val, f)
        if min_val.size == 0 or (min_val.ndim == 0 and (min_val == np.inf and max_val == -np.inf)):
            return np.ones(min_val.shape, f), np.zeros(min_val.shape, np.int64)  # torch warns, returns 1, 0
        if np.any(min_val > max_val):
            raise ValueError(f"{type(self).__name__}: min_val {min_val} > max_val {max_val}")
        min_neg = np.minimum(min_val, f(0))
        max_pos = np.maximum(max_val, f(0))
        qmin, qmax = self.quant_min, self.quant_max
        if self.symmetric:
            amax = np.maximum(-min_neg, max_pos)
            scale = np.maximum((amax / f((qmax - qmin) / 2)).astype(f), self.eps_value)
            zp = np.full(scale.shape, 128 if self.dtype == QUINT8 else 0, np.int64)
        else:
            scale = np.maximum(((max_pos - min_neg) / f(qmax - qmin)).astype(f), self.eps_value)
            zp = qmin - np.rint((min_neg / scale).astype(f)).astype(np.int64)
            zp = np.clip(zp, qmin, qmax)
        return scale.astype(f), zp

    def calculate_qparams(self, buffers: dict) -> tuple[np.ndarray, np.ndarray]:
        """The ``(scale, zero_point)`` of this observer's calibrated ``buffers``."""
        return self.qparams_from_range(buffers["min_val"], buffers["max_val"])

    def observe_weight(self, weight: Any) -> tuple[np.ndarray, np.ndarray]:
        """Observe one array (a weight, at convert) and return its qparams."""
        w = np.asarray(weight, np.float32)
        return self.qparams_from_range(w.min(), w.max())

    def extra_repr(self) -> str:
        return f"dtype={self.dtype}, qscheme={self.qscheme}, reduce_range={self.reduce_range}"

    @classmethod
    def with_args(cls, **kwargs: Any) -> functools.partial:
        """torch's ``Observer.with_args``: a factory building this observer with ``kwargs``."""
        return functools.partial(cls, **kwargs)


def _no_fma(product: jax.Array, x: jax.Array) -> jax.Array:
    """``product``, kept from being contracted with a following add into one FMA (XLA:CPU
    contracts ``a + b * c``; torch rounds the product and the sum separately). A select on a
    runtime condition between the multiply and the add blocks the contraction; an
    optimization barrier does not (XLA removes it before code generation)."""
    return jnp.where(jnp.isnan(jnp.max(x)), jnp.float32(0), product)


class MinMaxObserver(ObserverBase):
    """``torch.ao.quantization.MinMaxObserver``: running min and max of every value seen."""

    def __init__(self, dtype: str = QUINT8, qscheme: str = PER_TENSOR_AFFINE, reduce_range: bool = False,
                 eps: float = float(EPS)) -> None:
        super().__init__(dtype, qscheme, reduce_range, eps)
        self.min_val = Buffer((), np.float32(np.inf))
        self.max_val = Buffer((), np.float32(-np.inf))

    def forward(self, x: Any) -> Any:
        if x.size:
            self.min_val = jnp.minimum(self.min_val, jnp.min(x).astype(jnp.float32))
            self.max_val = jnp.maximum(self.max_val, jnp.max(x).astype(jnp.float32))
        return x


class MovingAverageMinMaxObserver(MinMaxObserver):
    """``MovingAverageMinMaxObserver``: ``min += c * (batch_min - min)`` (the first batch sets it)."""

    def __init__(self, averaging_constant: float = 0.01, dtype: str = QUINT8,
                 qscheme: str = PER_TENSOR_AFFINE, reduce_range: bool = False, eps: float = float(EPS)) -> None:
        super().__init__(dtype, qscheme, reduce_range, eps)
        self.averaging_constant = averaging_constant

    def forward(self, x: Any) -> Any:
        if x.size:
            c = jnp.float32(self.averaging_constant)
            x_min, x_max = jnp.min(x).astype(jnp.float32), jnp.max(x).astype(jnp.float32)
            first = (self.min_val == jnp.inf) & (self.max_val == -jnp.inf)
            d_min, d_max = _no_fma(c * (x_min - self.min_val), x), _no_fma(c * (x_max - self.max_val), x)
            self.min_val = jnp.where(first, x_min, self.min_val + d_min)
            self.max_val = jnp.where(first, x_max, self.max_val + d_max)
        return x


class HistogramObserver(MinMaxObserver):
    """``HistogramObserver``: a 2048-bin running histogram; ``convert`` picks the range that
    minimises the L2 quantization error (torch's ``_non_linear_param_search``, same bins)."""

    def __init__(self, bins: int = 2048, dtype: str = QUINT8, qscheme: str = PER_TENSOR_AFFINE,
                 reduce_range: bool = False, eps: float = float(EPS)) -> None:
        if qscheme not in (PER_TENSOR_AFFINE, PER_TENSOR_SYMMETRIC):
            raise NotImplementedError("HistogramObserver supports per_tensor_affine and per_tensor_symmetric only")
        super().__init__(dtype, qscheme, reduce_range, eps)
        self.bins = bins
        # torch's state_dict order: eps, histogram, min_val, max_val
        del self._buffers["min_val"], self._buffers["max_val"]
        self.histogram = Buffer((bins,), np.float32(0))
        self.min_val = Buffer((), np.float32(np.inf))
        self.max_val = Buffer((), np.float32(-np.inf))

    def forward(self, x: Any) -> Any:
        if x.size:
            h, lo, hi = hist.combine(self.histogram, self.min_val, self.max_val, x.astype(jnp.float32))
            self.histogram, self.min_val, self.max_val = h, lo, hi
        return x

    def calculate_qparams(self, buffers: dict) -> tuple[np.ndarray, np.ndarray]:
        min_val, max_val = np.float32(buffers["min_val"]), np.float32(buffers["max_val"])
        if min_val == np.inf and max_val == -np.inf:
            return np.ones((), np.float32), np.zeros((), np.int64)
        dst_nbins = 2 ** 8
        new_min, new_max = hist.non_linear_param_search(buffers["histogram"], min_val, max_val, dst_nbins)
        return self.qparams_from_range(new_min, new_max)


class PerChannelMinMaxObserver(ObserverBase):
    """``PerChannelMinMaxObserver``: one range per slice along ``ch_axis`` (weights)."""

    def __init__(self, ch_axis: int = 0, dtype: str = QINT8, qscheme: str = PER_CHANNEL_SYMMETRIC,
                 reduce_range: bool = False, eps: float = float(EPS)) -> None:
        super().__init__(dtype, qscheme, reduce_range, eps)
        self.ch_axis = ch_axis

    def forward(self, x: Any) -> Any:
        raise NotImplementedError(
            f"{self.path} (PerChannelMinMaxObserver): funcnet observes per-channel ranges of weights "
            f"only (at convert); use a per-tensor observer for activations"
        )

    def observe_weight(self, weight: Any) -> tuple[np.ndarray, np.ndarray]:
        w = np.moveaxis(np.asarray(weight, np.float32), self.ch_axis, 0).reshape(np.shape(weight)[self.ch_axis], -1)
        return self.qparams_from_range(w.min(axis=1), w.max(axis=1))


def default_weight_observer() -> MinMaxObserver:
    """torch's ``default_weight_observer``: qint8, per-tensor symmetric."""
    return MinMaxObserver(dtype=QINT8, qscheme=PER_TENSOR_SYMMETRIC)


def default_per_channel_weight_observer() -> PerChannelMinMaxObserver:
    """torch's ``default_per_channel_weight_observer``: qint8, per-channel symmetric, axis 0."""
    return PerChannelMinMaxObserver(ch_axis=0, dtype=QINT8, qscheme=PER_CHANNEL_SYMMETRIC)
