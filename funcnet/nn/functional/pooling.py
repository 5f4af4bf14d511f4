"""Pooling: torch.nn.functional's max/avg/adaptive pooling, with torch's exact window rules.

Inputs are ``[N, C, *spatial]`` or unbatched ``[C, *spatial]``. Output sizes follow
torch's ``pooling_output_shape``: ``⌊(L + 2p − d(k−1) − 1 + (s−1 if ceil_mode))/s⌋ + 1``,
minus one when ``ceil_mode`` would start the last window past the input and its left
padding. Average pooling divides by torch's window count (``count_include_pad`` counts
the zero padding but not the ceil-mode overhang). Max pooling breaks ties as torch
does: the first maximum in the window's row-major order gets the whole gradient.

Differences from torch: ``return_indices`` gives int32 indices (JAX's default integer,
torch's are int64), flat over each channel's spatial positions as in torch.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from funcnet.nn.functional.conv import IntOrTuple, _batched, _ntuple, _shifted_windows

OptSize = int | None | Sequence[int | None]


# -- sizes --------------------------------------------------------------------------------
def _pool_out_size(size: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> int:
    """torch's ``pooling_output_shape`` (aten/src/ATen/native/Pool.h)."""
    out = (size + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1  # the last window must start inside the input or its left padding
    return out


def _pool_args(name: str, n: int, kernel_size: IntOrTuple, stride: IntOrTuple | None, padding: IntOrTuple,
               dilation: IntOrTuple) -> tuple[tuple[int, ...], ...]:
    k = _ntuple(kernel_size, n, "kernel_size")
    no_stride = stride is None or (not isinstance(stride, int) and len(stride) == 0)
    s = k if no_stride else _ntuple(stride, n, "stride")
    p = _ntuple(padding, n, "padding")
    d = _ntuple(dilation, n, "dilation")
    if any(v <= 0 for v in k + s + d):
        raise ValueError(f"{name}: kernel_size, stride and dilation must be positive, got {k}, {s}, {d}")
    return k, s, p, d


def _out_sizes(name: str, spatial: Sequence[int], k, s, p, d, ceil_mode: bool) -> tuple[int, ...]:
    out = tuple(
        _pool_out_size(i, kk, ss, pp, dd, ceil_mode)
        for i, kk, ss, pp, dd in zip(spatial, k, s, p, d, strict=True)
    )
    if any(o <= 0 for o in out):
        raise ValueError(
            f"{name}: given input size {tuple(spatial)}, calculated output size {out}: "
            f"output size is too small"
        )
    return out


def _pool_padding(spatial, out, k, s, p, d) -> list[tuple[int, int]]:
    """(left, right) padding so that a VALID window sweep gives exactly ``out`` windows."""
    return [
        (pp, max((o - 1) * ss + dd * (kk - 1) + 1 - i - pp, 0))
        for i, o, kk, ss, pp, dd in zip(spatial, out, k, s, p, d, strict=True)
    ]


def _lowest(dtype: Any) -> Any:
    if jnp.issubdtype(dtype, jnp.floating):
        return -jnp.inf
    if jnp.issubdtype(dtype, jnp.integer):
        return jnp.iinfo(dtype).min
    return False


# -- gather-based windows (dilated/indexed max pooling, adaptive max pooling) -------------
def _window_table(positions: Sequence[np.ndarray], spatial: Sequence[int]) -> np.ndarray:
    """Flat input index for each (output position, window element).

    ``positions[a]`` is ``[out_a, k_a]`` of input coordinates along axis ``a``, −1 where
    the window element lies outside the input. Returns ``[∏out, ∏k]`` flat indices with
    ``∏spatial`` (a sentinel slot) for elements outside the input.
    """
    n = len(spatial)
    strides = [math.prod(spatial[a + 1:]) for a in range(n)]
    flat = np.zeros([1] * (2 * n), np.int64)
    valid = np.ones([1] * (2 * n), bool)
    for a, pos in enumerate(positions):
        shape = [1] * (2 * n)
        shape[a], shape[n + a] = pos.shape
        pos = pos.reshape(shape)
        flat = flat + np.where(pos >= 0, pos, 0) * strides[a]
        valid = valid & (pos >= 0)
    table = np.where(valid, flat, math.prod(spatial))
    out = [p.shape[0] for p in positions]
    k = [p.shape[1] for p in positions]
    return np.broadcast_to(table, out + k).reshape(math.prod(out), math.prod(k))


def _gather_max(x: jax.Array, positions: Sequence[np.ndarray], return_indices: bool):
    """Max over gathered windows; ties go to the first element, as torch's ``val > maxval``."""
    spatial = x.shape[2:]
    out = tuple(p.shape[0] for p in positions)
    table = _window_table(positions, spatial)
    flat = x.reshape(x.shape[:2] + (-1,))
    sentinel = jnp.full(x.shape[:2] + (1,), _lowest(x.dtype), x.dtype)
    flat = jnp.concatenate([flat, sentinel], axis=-1)
    windows = flat[..., table]  # [N, C, P, K]
    arg = jnp.argmax(windows, axis=-1)
    values = jnp.take_along_axis(windows, arg[..., None], axis=-1)[..., 0].reshape(x.shape[:2] + out)
    if not return_indices:
        return values
    indices = jnp.asarray(table, jnp.int32)[jnp.arange(table.shape[0]), arg]
    return values, indices.reshape(x.shape[:2] + out)


# -- max over strided slices (XLA:CPU) ------------------------------------------------------
def _padded_windows(x: jax.Array, k: tuple[int, ...], s: tuple[int, ...], pads, out: tuple[int, ...]):
    """The −∞-padded input's ``∏k`` strided slices ``[N, C, *out]``, in the window's row-major order."""
    config = [(0, 0, 0), (0, 0, 0)] + [(lo, hi, 0) for lo, hi in pads]
    xp = lax.pad(x, np.array(_lowest(x.dtype), x.dtype), config)
    return _shifted_windows(xp, k, s, (1,) * len(k), out)


def _window_max(x: jax.Array, k: tuple[int, ...], s: tuple[int, ...], pads, out: tuple[int, ...]) -> jax.Array:
    """The elementwise max of the window's shifted slices (one fused loop on CPU)."""
    return functools.reduce(jnp.maximum, _padded_windows(x, k, s, pads, out))


def _window_max_grad(x: jax.Array, g: jax.Array, k: tuple[int, ...], s: tuple[int, ...], pads,
                     out: tuple[int, ...]) -> jax.Array:
    """The gradient of :func:`_window_max`: the whole of ``g`` to the first maximal element of each
    window (torch's ``val > maxval`` scan; a NaN counts as maximal), scattered back by the
    transpose of the slicing."""
    windows, scatter = jax.vjp(lambda x: _padded_windows(x, k, s, pads, out), x)
    # The window offset that takes the gradient, as one argmax reduction (first maximum; a NaN is
    # maximal, as in jnp.argmax): XLA materialises it, where an elementwise formula (a running
    # "taken" mask) was fused into, and recomputed for, each of the ∏k terms of the scatter below
    # (81 comparisons per input element for a 3×3 window).
    winner = jnp.argmax(jnp.stack(windows), axis=0)
    if s == k:
        return _spread_to_winners(winner, g, k, pads, x.shape[2:])
    zero = jnp.zeros((), g.dtype)
    return scatter([jnp.where(winner == offset, g, zero) for offset in range(len(windows))])[0]


def _axis_stages(k: tuple[int, ...], s: tuple[int, ...], pads, spatial, out: tuple[int, ...]) -> list[tuple]:
    """``(k, s, pads, out)`` of 1-D poolings, last axis first, whose composition is the n-D pooling.

    The max over a window is the max over its rows of each row's max, and the first maximum of
    each row, then the first row holding the overall maximum, is the first maximum in row-major
    order: the same element takes the gradient as in one n-D pass.
    """
    n, sizes, stages = len(k), list(spatial), []
    for axis in reversed(range(n)):
        if k[axis] == s[axis] == 1 and tuple(pads[axis]) == (0, 0):
            continue
        sizes[axis] = out[axis]
        along = lambda value, other, axis=axis: tuple(value if i == axis else other for i in range(n))
        stages.append((along(k[axis], 1), along(s[axis], 1), along(tuple(pads[axis]), (0, 0)), tuple(sizes)))
    return stages


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3, 4))
def _slice_max(x: jax.Array, k: tuple[int, ...], s: tuple[int, ...], pads, out: tuple[int, ...]) -> jax.Array:
    """Max pooling as an elementwise max of the window's shifted slices. Differentiated, windows
    that overlap (stride < kernel) are pooled one axis at a time (:func:`_axis_stages`): ResNet's
    3×3/2 max pooling forward + backward in 0.57-0.61x the time of one n-D pass and its scatter."""
    return _window_max(x, k, s, pads, out)


def _slice_max_fwd(x, k, s, pads, out):
    if s == k:
        return _window_max(x, k, s, pads, out), (x,)
    inputs = []
    for stage in _axis_stages(k, s, pads, x.shape[2:], out):
        inputs.append(x)
        x = _window_max(x, *stage)
    return x, tuple(inputs)


def _slice_max_bwd(k, s, pads, out, inputs, g):
    stages = [(k, s, pads, out)] if s == k else _axis_stages(k, s, pads, inputs[0].shape[2:], out)
    for stage, x in zip(reversed(stages), reversed(inputs), strict=True):
        g = _window_max_grad(x, g, *stage)
    return (g,)


def _spread_to_winners(winner: jax.Array, g: jax.Array, k: tuple[int, ...], pads, spatial) -> jax.Array:
    """The gradient of non-overlapping windows (stride = kernel, as ``MaxPool2d(2)``): each input
    position's window holds ``winner`` and ``g`` at the position divided by ``k``, so the gradient
    is one elementwise select over nearest-upsampled ``winner`` and ``g`` (0.55-0.77x the time of
    scattering ``∏k`` slices back, which XLA:CPU lowers as interior-padded sums)."""
    n = len(k)
    out = winner.shape[2:]

    def upsample(a):  # [N, C, *out] -> [N, C, *(out·k)]: every window's value at all of its positions
        expanded = a.reshape(a.shape[:2] + tuple(d for o in out for d in (o, 1)))
        tiled = jnp.broadcast_to(expanded, a.shape[:2] + tuple(d for o, kk in zip(out, k) for d in (o, kk)))
        return tiled.reshape(a.shape[:2] + tuple(o * kk for o, kk in zip(out, k)))

    # Each position's offset inside its window, row-major as the windows are stacked.
    offset = np.zeros(tuple(o * kk for o, kk in zip(out, k)), np.int32)
    for axis, kk in enumerate(k):
        position = np.arange(out[axis] * kk).reshape((-1,) + (1,) * (n - 1 - axis))
        offset = offset * kk + position % kk
    covered = jnp.where(upsample(winner.astype(jnp.int32)) == offset, upsample(g), jnp.zeros((), g.dtype))
    # The windows cover the padded input from its first row to out·k: crop the padding, and give
    # rows no window reached (floor mode's remainder) a zero gradient.
    config = [(0, 0, 0)] * 2 + [(-lo, size + lo - o * kk, 0) for (lo, _), size, o, kk in zip(pads, spatial, out, k)]
    return lax.pad(covered, jnp.zeros((), g.dtype), config)


_slice_max.defvjp(_slice_max_fwd, _slice_max_bwd)


def _max_poolnd(n: int, name: str, input: jax.Array, kernel_size, stride, padding, dilation,
                ceil_mode: bool, return_indices: bool):
    x, batched = _batched(input, n, name)
    k, s, p, d = _pool_args(name, n, kernel_size, stride, padding, dilation)
    for kk, pp in zip(k, p, strict=True):
        if pp < 0 or pp > kk // 2:  # torch 2.13 checks the undilated kernel size
            raise ValueError(
                f"{name}: pad should be smaller than or equal to half of kernel size, but got "
                f"padding={p}, kernel_size={k}"
            )
    spatial = x.shape[2:]
    out = _out_sizes(name, spatial, k, s, p, d, ceil_mode)
    if return_indices or any(dd != 1 for dd in d):
        # lax.reduce_window has no gradient with window dilation and gives no indices.
        positions = []
        for i, o, kk, ss, pp, dd in zip(spatial, out, k, s, p, d, strict=True):
            pos = np.arange(o)[:, None] * ss - pp + np.arange(kk)[None, :] * dd
            positions.append(np.where((pos >= 0) & (pos < i), pos, -1))
        result = _gather_max(x, positions, return_indices)
    elif jax.default_backend() == "cpu" and jnp.issubdtype(x.dtype, jnp.floating):
        # XLA:CPU's reduce_window gradient (select-and-scatter) is ~1.7x slower here.
        result = _slice_max(x, k, s, tuple(_pool_padding(spatial, out, k, s, p, d)), out)
    else:
        pads = _pool_padding(spatial, out, k, s, p, d)
        y = lax.reduce_window(x, np.array(_lowest(x.dtype), x.dtype), lax.max, (1, 1) + k, (1, 1) + s,
                              [(0, 0), (0, 0)] + pads)
        result = y[(slice(None), slice(None)) + tuple(slice(0, o) for o in out)]
    if batched:
        return result
    return tuple(r[0] for r in result) if return_indices else result[0]


def max_pool1d(input: jax.Array, kernel_size: IntOrTuple, stride: IntOrTuple | None = None,
               padding: IntOrTuple = 0, dilation: IntOrTuple = 1, ceil_mode: bool = False,
               return_indices: bool = False):
    """``torch.nn.functional.max_pool1d``: ``[N, C, L]`` or ``[C, L]`` → ``[N, C, L_out]``.

    ``stride=None`` means ``kernel_size``; padding is −∞ and at most ``kernel_size // 2``.
    With ``return_indices=True`` returns ``(values, indices)`` (int32 flat positions in L).
    """
    return _max_poolnd(1, "max_pool1d", input, kernel_size, stride, padding, dilation, ceil_mode,
                       return_indices)


def max_pool2d(input: jax.Array, kernel_size: IntOrTuple, stride: IntOrTuple | None = None,
               padding: IntOrTuple = 0, dilation: IntOrTuple = 1, ceil_mode: bool = False,
               return_indices: bool = False):
    """``torch.nn.functional.max_pool2d``: ``[N, C, H, W]`` or ``[C, H, W]`` → ``[N, C, H_out, W_out]``.

    With ``return_indices=True`` returns ``(values, indices)``, indices flat over ``H·W``
    (int32; torch's are int64).
    """
    return _max_poolnd(2, "max_pool2d", input, kernel_size, stride, padding, dilation, ceil_mode,
                       return_indices)


def max_pool3d(input: jax.Array, kernel_size: IntOrTuple, stride: IntOrTuple | None = None,
               padding: IntOrTuple = 0, dilation: IntOrTuple = 1, ceil_mode: bool = False,
               return_indices: bool = False):
    """``torch.nn.functional.max_pool3d``: ``[N, C, D, H, W]`` or ``[C, D, H, W]``."""
    return _max_poolnd(3, "max_pool3d", input, kernel_size, stride, padding, dilation, ceil_mode,
                       return_indices)


# -- average pooling ----------------------------------------------------------------------
def _avg_counts(size: int, out: int, k: int, s: int, p: int, count_include_pad: bool) -> np.ndarray:
    """torch's per-window divisor along one axis (aten AvgPoolKernel)."""
    start = np.arange(out) * s - p
    end = np.minimum(start + k, size + p)
    pool_size = end - start
    inside = np.minimum(end, size) - np.maximum(start, 0)
    return pool_size if count_include_pad else inside


def _avg_poolnd(n: int, name: str, input: jax.Array, kernel_size, stride, padding, ceil_mode: bool,
                count_include_pad: bool, divisor_override: int | None) -> jax.Array:
    x, batched = _batched(input, n, name)
    k, s, p, d = _pool_args(name, n, kernel_size, stride, padding, 1)
    for kk, pp in zip(k, p, strict=True):
        if pp < 0 or pp > kk // 2:
            raise ValueError(
                f"{name}: pad should be smaller than or equal to half of kernel size, but got "
                f"padW = {pp}, kW = {kk}"
            )
    if divisor_override is not None and divisor_override == 0:
        raise ValueError(f"{name}: divisor must be not zero")
    spatial = x.shape[2:]
    out = _out_sizes(name, spatial, k, s, p, d, ceil_mode)
    pads = _pool_padding(spatial, out, k, s, p, d)
    acc_dtype = jnp.promote_types(x.dtype, jnp.float32) if jnp.issubdtype(x.dtype, jnp.floating) else x.dtype
    summed = lax.reduce_window(x.astype(acc_dtype), np.array(0, acc_dtype), lax.add, (1, 1) + k,
                               (1, 1) + s, [(0, 0), (0, 0)] + pads)
    summed = summed[(slice(None), slice(None)) + tuple(slice(0, o) for o in out)]
    if divisor_override is not None:
        y = summed / divisor_override
    else:
        divisor = np.ones((), np.int64)
        for a in range(n):
            counts = _avg_counts(spatial[a], out[a], k[a], s[a], p[a], count_include_pad)
            divisor = np.multiply.outer(divisor, counts)
        divisor = np.where(divisor > 0, divisor, 1)  # an all-padding window sums to 0, as torch gives
        y = summed / jnp.asarray(divisor, acc_dtype)
    y = y.astype(x.dtype)
    return y if batched else y[0]


def avg_pool1d(input: jax.Array, kernel_size: IntOrTuple, stride: IntOrTuple | None = None,
               padding: IntOrTuple = 0, ceil_mode: bool = False, count_include_pad: bool = True) -> jax.Array:
    """``torch.nn.functional.avg_pool1d``: ``[N, C, L]`` or ``[C, L]`` → ``[N, C, L_out]``.

    ``count_include_pad=True`` divides by the window size clipped to the padded input.
    """
    return _avg_poolnd(1, "avg_pool1d", input, kernel_size, stride, padding, ceil_mode,
                       count_include_pad, None)


def avg_pool2d(input: jax.Array, kernel_size: IntOrTuple, stride: IntOrTuple | None = None,
               padding: IntOrTuple = 0, ceil_mode: bool = False, count_include_pad: bool = True,
               divisor_override: int | None = None) -> jax.Array:
    """``torch.nn.functional.avg_pool2d``: ``[N, C, H, W]`` or ``[C, H, W]`` → ``[N, C, H_out, W_out]``.

    ``divisor_override`` replaces every window's divisor.
    """
    return _avg_poolnd(2, "avg_pool2d", input, kernel_size, stride, padding, ceil_mode,
                       count_include_pad, divisor_override)


def avg_pool3d(input: jax.Array, kernel_size: IntOrTuple, stride: IntOrTuple | None = None,
               padding: IntOrTuple = 0, ceil_mode: bool = False, count_include_pad: bool = True,
               divisor_override: int | None = None) -> jax.Array:
    """``torch.nn.functional.avg_pool3d``: ``[N, C, D, H, W]`` or ``[C, D, H, W]``."""
    return _avg_poolnd(3, "avg_pool3d", input, kernel_size, stride, padding, ceil_mode,
                       count_include_pad, divisor_override)


# -- adaptive pooling ---------------------------------------------------------------------
def _adaptive_sizes(name: str, n: int, output_size: OptSize, spatial: Sequence[int]) -> tuple[int, ...]:
    if output_size is None or isinstance(output_size, (int, np.integer)):
        sizes = (output_size,) * n
    else:
        sizes = tuple(output_size)
        if len(sizes) == 1:
            sizes = sizes * n
        if len(sizes) != n:
            raise ValueError(f"{name}: output_size must be an int or {n} values, got {output_size!r}")
    out = tuple(i if o is None else int(o) for o, i in zip(sizes, spatial, strict=True))
    if any(o <= 0 for o in out) or any(i <= 0 for i in spatial):
        raise ValueError(f"{name}: output size {out} and input size {tuple(spatial)} must be positive")
    return out


def _bins(size: int, out: int) -> tuple[np.ndarray, np.ndarray]:
    """torch's adaptive bins: start = ⌊i·in/out⌋, end = ⌈(i+1)·in/out⌉."""
    i = np.arange(out)
    return (i * size) // out, -((-(i + 1) * size) // out)


def _adaptive_mean_axis(x: jax.Array, axis: int, out: int) -> jax.Array:
    size = x.shape[axis]
    if size % out == 0:
        shape = x.shape[:axis] + (out, size // out) + x.shape[axis + 1:]
        return jnp.mean(x.reshape(shape), axis=axis + 1)
    starts, ends = _bins(size, out)
    parts = [
        jnp.mean(lax.slice_in_dim(x, int(a), int(b), axis=axis), axis=axis)
        for a, b in zip(starts, ends, strict=True)
    ]
    return jnp.stack(parts, axis=axis)


def _adaptive_avg_poolnd(n: int, name: str, input: jax.Array, output_size: OptSize) -> jax.Array:
    x, batched = _batched(input, n, name)
    out = _adaptive_sizes(name, n, output_size, x.shape[2:])
    y = x.astype(jnp.promote_types(x.dtype, jnp.float32)) if jnp.issubdtype(x.dtype, jnp.floating) else x
    for a in range(n):  # a box mean is the mean of per-axis means: the bins are separable
        y = _adaptive_mean_axis(y, 2 + a, out[a])
    y = y.astype(x.dtype)
    return y if batched else y[0]


def adaptive_avg_pool1d(input: jax.Array, output_size: OptSize) -> jax.Array:
    """``torch.nn.functional.adaptive_avg_pool1d``: ``[N, C, L]`` or ``[C, L]`` → ``[N, C, out]``.

    Bin i averages ``[⌊i·L/out⌋, ⌈(i+1)·L/out⌉)``, as torch.
    """
    return _adaptive_avg_poolnd(1, "adaptive_avg_pool1d", input, output_size)


def adaptive_avg_pool2d(input: jax.Array, output_size: OptSize) -> jax.Array:
    """``torch.nn.functional.adaptive_avg_pool2d``: ``[N, C, H, W]`` or ``[C, H, W]`` →
    ``[N, C, oh, ow]``; ``output_size`` is an int, a pair, or has ``None`` for "keep this size"."""
    return _adaptive_avg_poolnd(2, "adaptive_avg_pool2d", input, output_size)


def adaptive_avg_pool3d(input: jax.Array, output_size: OptSize) -> jax.Array:
    """``torch.nn.functional.adaptive_avg_pool3d``: ``[N, C, D, H, W]`` or ``[C, D, H, W]``."""
    return _adaptive_avg_poolnd(3, "adaptive_avg_pool3d", input, output_size)


def _adaptive_max_poolnd(n: int, name: str, input: jax.Array, output_size: OptSize, return_indices: bool):
    x, batched = _batched(input, n, name)
    out = _adaptive_sizes(name, n, output_size, x.shape[2:])
    positions = []
    for size, o in zip(x.shape[2:], out, strict=True):
        starts, ends = _bins(size, o)
        width = int((ends - starts).max())
        pos = starts[:, None] + np.arange(width)[None, :]
        positions.append(np.where(pos < ends[:, None], pos, -1))
    result = _gather_max(x, positions, return_indices)
    if batched:
        return result
    return tuple(r[0] for r in result) if return_indices else result[0]


def adaptive_max_pool1d(input: jax.Array, output_size: OptSize, return_indices: bool = False):
    """``torch.nn.functional.adaptive_max_pool1d``: ``[N, C, L]`` or ``[C, L]`` → ``[N, C, out]``."""
    return _adaptive_max_poolnd(1, "adaptive_max_pool1d", input, output_size, return_indices)


def adaptive_max_pool2d(input: jax.Array, output_size: OptSize, return_indices: bool = False):
    """``torch.nn.functional.adaptive_max_pool2d``: ``[N, C, H, W]`` or ``[C, H, W]`` → ``[N, C, oh, ow]``.

    Bins as :func:`adaptive_avg_pool2d`; ``return_indices`` gives int32 flat ``H·W`` positions.
    """
    return _adaptive_max_poolnd(2, "adaptive_max_pool2d", input, output_size, return_indices)


def adaptive_max_pool3d(input: jax.Array, output_size: OptSize, return_indices: bool = False):
    """``torch.nn.functional.adaptive_max_pool3d``: ``[N, C, D, H, W]`` or ``[C, D, H, W]``."""
    return _adaptive_max_poolnd(3, "adaptive_max_pool3d", input, output_size, return_indices)
