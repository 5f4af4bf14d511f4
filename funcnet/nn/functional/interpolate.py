"""``F.interpolate`` (and ``F.upsample*``) with torch's sampling rules, exactly.

Every mode here is separable, so each spatial dim is resampled by a small ``[out, in]`` matrix
built on the host from torch's own index arithmetic (``aten/src/ATen/native/UpSample.h``, in
float32 as torch computes it) and applied with one ``tensordot`` per dim: the values equal
torch's up to float rounding, gradients come from JAX, and nothing depends on traced values.

Modes: ``nearest``, ``nearest-exact``, ``linear``/``bilinear``/``trilinear`` (with
``align_corners``), ``bicubic`` (A = −0.75, border-clamped, with ``align_corners``), ``area``
(adaptive average pooling). ``antialias=True`` is not supported (raises).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

_LINEAR_MODES = {"linear": 1, "bilinear": 2, "trilinear": 3, "bicubic": 2}
_F32 = np.float32


def _scale(in_size: int, out_size: int, align_corners: bool, scale: float | None) -> np.float32:
    """torch's ``area_pixel_compute_scale``."""
    if align_corners:
        return _F32((in_size - 1) / (out_size - 1)) if out_size > 1 else _F32(0)
    return _F32(1.0 / scale) if scale is not None and scale > 0 else _F32(in_size / out_size)


def _source_index(scale: np.float32, dst: np.ndarray, align_corners: bool, cubic: bool) -> np.ndarray:
    """torch's ``area_pixel_compute_source_index`` for every output index ``dst``."""
    if align_corners:
        return scale * dst
    # torch's x86 build contracts this to one fused multiply-add (a single rounding): the float64
    # product of two float32 values is exact, so rounding once to float32 reproduces it.
    src = (np.float64(scale) * (dst + _F32(0.5)).astype(np.float64) - 0.5).astype(_F32)
    return src if cubic else np.maximum(src, _F32(0))


def _nearest_matrix(in_size: int, out_size: int, scale: float | None, exact: bool) -> np.ndarray:
    dst = np.arange(out_size, dtype=_F32)
    s = _F32(1.0 / scale) if scale is not None and scale > 0 else _F32(in_size / out_size)
    if exact:
        src = np.floor((dst + _F32(0.5)) * s).astype(np.int64)
    elif out_size == in_size:
        src = np.arange(out_size)
    elif out_size == 2 * in_size:
        src = np.arange(out_size) >> 1
    else:
        src = np.floor(dst * s).astype(np.int64)
    src = np.minimum(src, in_size - 1)
    m = np.zeros((out_size, in_size), _F32)
    m[np.arange(out_size), src] = 1
    return m


def _linear_matrix(in_size: int, out_size: int, align_corners: bool, scale: float | None) -> np.ndarray:
    s = _scale(in_size, out_size, align_corners, scale)
    src = _source_index(s, np.arange(out_size, dtype=_F32), align_corners, cubic=False)
    i0 = src.astype(np.int64)  # truncation, as torch's (int64_t) cast of a non-negative value
    i1 = i0 + (i0 < in_size - 1)
    lam1 = (src - i0).astype(_F32)
    m = np.zeros((out_size, in_size), _F32)
    rows = np.arange(out_size)
    np.add.at(m, (rows, i0), _F32(1) - lam1)
    np.add.at(m, (rows, i1), lam1)
    return m


def _cubic_matrix(in_size: int, out_size: int, align_corners: bool, scale: float | None) -> np.ndarray:
    a = _F32(-0.75)
    s = _scale(in_size, out_size, align_corners, scale)
    src = _source_index(s, np.arange(out_size, dtype=_F32), align_corners, cubic=True)
    i0 = np.floor(src)
    t = (src - i0).astype(_F32)  # torch: guard_index_and_lambda clamps t to [0, 1]
    t = np.clip(t, _F32(0), _F32(1))
    i0 = i0.astype(np.int64)

    def cc1(x):  # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def cc2(x):  # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    coeffs = [cc2(t + 1), cc1(t), cc1(1 - t), cc2(2 - t)]
    m = np.zeros((out_size, in_size), _F32)
    rows = np.arange(out_size)
    for k, c in enumerate(coeffs):
        np.add.at(m, (rows, np.clip(i0 - 1 + k, 0, in_size - 1)), c.astype(_F32))
    return m


def _area_matrix(in_size: int, out_size: int) -> np.ndarray:
    """Adaptive average pooling's windows: [floor(i·in/out), ceil((i+1)·in/out))."""
    m = np.zeros((out_size, in_size), _F32)
    for i in range(out_size):
        start, end = (i * in_size) // out_size, -((-(i + 1) * in_size) // out_size)
        m[i, start:end] = _F32(1) / _F32(end - start)
    return m


def _output_sizes(shape: tuple[int, ...], size: Any, scale_factor: Any) -> tuple[list[int], list[float | None]]:
    dims = len(shape) - 2
    if size is not None and scale_factor is not None:
        raise ValueError("only one of size or scale_factor should be defined")
    if size is not None:
        sizes = list(size) if isinstance(size, Sequence) else [size] * dims
        if len(sizes) != dims:
            raise ValueError(f"Input and output must have the same number of spatial dimensions, but got "
                             f"input with spatial dimensions of {list(shape[2:])} and output size of {sizes}. "
                             "Please provide input tensor in (N, C, d1, d2, ...,dK) format and output size in "
                             "(o1, o2, ...,oK) format.")
        return [int(s) for s in sizes], [None] * dims
    if scale_factor is None:
        raise ValueError("either size or scale_factor should be defined")
    scales = list(scale_factor) if isinstance(scale_factor, Sequence) else [scale_factor] * dims
    if len(scales) != dims:
        raise ValueError(f"Input and scale_factor must have the same number of spatial dimensions, but got "
                         f"input with spatial dimensions of {list(shape[2:])} and scale_factor of shape {scales}.")
    return [math.floor(float(n) * float(s)) for n, s in zip(shape[2:], scales, strict=True)], [float(s) for s in scales]


def interpolate(
    input: jax.Array,
    size: int | Sequence[int] | None = None,
    scale_factor: float | Sequence[float] | None = None,
    mode: str = "nearest",
    align_corners: bool | None = None,
    recompute_scale_factor: bool | None = None,
    antialias: bool = False,
) -> jax.Array:
    """``torch.nn.functional.interpolate``: resample ``[N, C, *spatial]`` (1–3 spatial dims).

    Output spatial size is ``size``, or ``floor(in · scale_factor)``; with ``scale_factor`` and
    ``recompute_scale_factor`` unset, the sampling uses ``1/scale_factor`` as torch does.
    """
    if input.ndim not in (3, 4, 5):
        raise ValueError(f"interpolate: expected a 3-, 4- or 5-d input [N, C, *spatial], "
                         f"got shape {tuple(input.shape)}")
    if antialias:
        raise NotImplementedError("interpolate(antialias=True) is not supported in funcnet")
    spatial = input.ndim - 2
    if mode in ("nearest", "nearest-exact", "area"):
        if align_corners is not None:
            raise ValueError("align_corners option can only be set with the interpolating modes: "
                             "linear | bilinear | bicubic | trilinear")
    elif mode in _LINEAR_MODES:
        if _LINEAR_MODES[mode] != spatial:
            raise NotImplementedError(f"interpolate: mode {mode!r} needs a {_LINEAR_MODES[mode] + 2}-d input, "
                                      f"got shape {tuple(input.shape)}")
        align_corners = bool(align_corners)
    else:
        raise NotImplementedError(f"interpolate: mode {mode!r} is not supported (nearest, nearest-exact, linear, "
                                  "bilinear, bicubic, trilinear, area)")
    out_sizes, scales = _output_sizes(tuple(input.shape), size, scale_factor)
    if recompute_scale_factor or mode == "area":
        scales = [None] * spatial
    x = input
    for axis, (n_in, n_out, sc) in enumerate(zip(input.shape[2:], out_sizes, scales, strict=True), start=2):
        if n_out <= 0:
            raise ValueError(f"interpolate: output size {out_sizes} must be positive")
        if mode in ("nearest", "nearest-exact"):
            m = _nearest_matrix(n_in, n_out, sc, exact=mode == "nearest-exact")
        elif mode == "area":
            m = _area_matrix(n_in, n_out)
        elif mode == "bicubic":
            m = _cubic_matrix(n_in, n_out, align_corners, sc)
        else:
            m = _linear_matrix(n_in, n_out, align_corners, sc)
        x = _apply_along(x, jnp.asarray(m, dtype=x.dtype if jnp.issubdtype(x.dtype, jnp.floating) else jnp.float32),
                         axis)
    return x.astype(input.dtype) if not jnp.issubdtype(input.dtype, jnp.floating) else x


def _apply_along(x: jax.Array, m: jax.Array, axis: int) -> jax.Array:
    """``out[..., i, ...] = Σ_j m[i, j] · x[..., j, ...]`` along ``axis``."""
    y = jnp.tensordot(x.astype(m.dtype), m, axes=[[axis], [1]], precision=jax.lax.Precision.HIGHEST)
    return jnp.moveaxis(y, -1, axis)


def upsample(input: jax.Array, size: Any = None, scale_factor: Any = None, mode: str = "nearest",
             align_corners: bool | None = None) -> jax.Array:
    """``F.upsample`` (deprecated in torch): :func:`interpolate`."""
    return interpolate(input, size, scale_factor, mode, align_corners)


def upsample_nearest(input: jax.Array, size: Any = None, scale_factor: Any = None) -> jax.Array:
    """``F.upsample_nearest``: :func:`interpolate` with ``mode='nearest'``."""
    return interpolate(input, size, scale_factor, mode="nearest")


def upsample_bilinear(input: jax.Array, size: Any = None, scale_factor: Any = None) -> jax.Array:
    """``F.upsample_bilinear``: bilinear with ``align_corners=True``, as torch."""
    return interpolate(input, size, scale_factor, mode="bilinear", align_corners=True)
