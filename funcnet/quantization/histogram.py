"""The arithmetic of torch's ``HistogramObserver``, step for step.

* :func:`histc` / :func:`linspace` / :func:`combine`: the running histogram of
  ``HistogramObserver.forward`` in jax (traceable: calibration runs under ``jit``).
  ``torch.linspace`` is reproduced with the element order of its vectorized CPU kernel
  (chunks of ``2 * lanes`` computed as ``base + k * step``, the tail by the scalar
  formula), because the upscaled histogram's bin edges decide which bin a value lands in.
* :func:`non_linear_param_search`: ``HistogramObserver._non_linear_param_search`` (the
  L2-error search for a clipped range), in numpy float32 with torch's operation order.
  It runs once per observer at ``convert`` time.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

#: float32 lanes of torch's ``Vectorized<float>`` on an AVX512 CPU (8 on AVX2); only the
#: last bit of a few upscaled bin edges depends on it.
TORCH_VECTOR_LANES = 16
UPSAMPLE_RATE = 16


def linspace(start: jax.Array, end: jax.Array, steps: int, lanes: int = TORCH_VECTOR_LANES) -> jax.Array:
    """``torch.linspace(start, end, steps)`` in float32, element for element (CPU kernel)."""
    start = jnp.asarray(start, jnp.float32)
    end = jnp.asarray(end, jnp.float32)
    step = (end - start) / jnp.float32(steps - 1)
    idx = np.arange(steps)
    halfway = steps // 2
    vector_end = steps - steps % (2 * lanes)
    base = idx - idx % lanes
    k = (idx % lanes).astype(np.float32)
    vec_from_start = base < halfway
    # vector chunks: arange(start + step * base, step) or arange(end - step * (steps - base - 1), step)
    vec_base = jnp.where(vec_from_start, start + step * base.astype(np.float32),
                         end - step * (steps - base - 1).astype(np.float32))
    vec = vec_base + jnp.asarray(k) * step
    scalar = jnp.where(idx < halfway, start + step * idx.astype(np.float32),
                       end - step * (steps - idx - 1).astype(np.float32))
    return jnp.where(idx < vector_end, vec, scalar)


def histc(x: jax.Array, bins: int, lo: jax.Array, hi: jax.Array) -> jax.Array:
    """``torch.histc(x, bins, min=lo, max=hi)`` as float32 counts; values outside are ignored."""
    x = x.reshape(-1).astype(jnp.float32)
    same = lo == hi
    lo, hi = jnp.where(same, lo - 1, lo), jnp.where(same, hi + 1, hi)
    inside = (x >= lo) & (x <= hi)
    pos = jnp.floor((x - lo) * jnp.float32(bins) / (hi - lo)).astype(jnp.int32)
    pos = jnp.clip(pos, 0, bins - 1)  # pos == bins only for x == hi: torch puts it in the last bin
    return jnp.zeros(bins, jnp.float32).at[pos].add(inside.astype(jnp.float32))


def _upscale(histogram, orig_min, orig_max, new_min, new_max):
    """``HistogramObserver._upscale_histogram``: the old histogram in the new range."""
    bins = histogram.shape[0]
    n = bins * UPSAMPLE_RATE
    fine = jnp.repeat(histogram, UPSAMPLE_RATE) / jnp.float32(UPSAMPLE_RATE)
    bin_size = (orig_max - orig_min) / jnp.float32(n)
    mids = linspace(orig_min, orig_max, n + 1)[:-1] + jnp.float32(0.5) * bin_size
    edges = linspace(new_min, new_max, bins + 1)
    bucket = jnp.searchsorted(edges, mids, side="right") - 1  # torch.bucketize(right=True) - 1
    bucket = jnp.clip(bucket, 0, bins - 1)
    return jnp.zeros(bins, jnp.float32).at[bucket].add(fine)


def combine(histogram, min_val, max_val, x):
    """One ``HistogramObserver.forward(x)``: ``(histogram, min_val, max_val)`` after seeing ``x``."""
    finite = jnp.isfinite(x)
    x_min = jnp.min(jnp.where(finite, x, jnp.inf))
    x_max = jnp.max(jnp.where(finite, x, -jnp.inf))
    any_finite = jnp.any(finite)
    x = jnp.where(finite, x, jnp.nan)  # torch drops +-inf; histc ignores nan (outside every bin)
    bins = histogram.shape[0]
    uninit = (min_val == jnp.inf) | (max_val == -jnp.inf)
    new_min = jnp.where(uninit, x_min, jnp.minimum(min_val, x_min))
    new_max = jnp.where(uninit, x_max, jnp.maximum(max_val, x_max))
    update = histc(x, bins, new_min, new_max)
    same_range = (new_min == min_val) & (new_max == max_val)
    single = min_val == max_val
    from_single = histc(min_val[None], bins, new_min, new_max) * jnp.sum(histogram) + update
    upscaled = _upscale(histogram, min_val, max_val, new_min, new_max) + update
    combined = jnp.where(same_range, histogram + update, jnp.where(single, from_single, upscaled))
    new_hist = jnp.where(uninit, update, combined)
    keep = ~any_finite
    return (jnp.where(keep, histogram, new_hist), jnp.where(keep, min_val, new_min),
            jnp.where(keep, max_val, new_max))


# -- the range search (numpy, once at convert) ----------------------------------------------
def _norm(delta_begin, delta_end, density):
    f = np.float32
    return density * ((delta_end * delta_end * delta_end - delta_begin * delta_begin * delta_begin) / f(3))


def _quantization_error(histogram, min_val, max_val, start_bin, end_bin, dst_nbins):
    """``HistogramObserver._compute_quantization_error`` (float32 tensors, double scalars)."""
    f = np.float32
    bins = histogram.shape[0]
    bin_width = (float(max_val) - float(min_val)) / bins
    dst_bin_width = bin_width * (end_bin - start_bin + 1) / dst_nbins
    if dst_bin_width == 0.0:
        return 0.0
    bw, dbw = f(bin_width), f(dst_bin_width)
    src_bin = np.arange(bins)
    src_begin = (src_bin - start_bin).astype(f) * bw
    src_end = src_begin + bw
    dst_of_begin = np.clip(np.floor_divide(src_begin, dbw), 0, dst_nbins - 1).astype(f)
    dst_of_begin_center = (dst_of_begin + f(0.5)) * dbw
    dst_of_end = np.clip(np.floor_divide(src_end, dbw), 0, dst_nbins - 1).astype(f)
    density = histogram / bw
    norm = np.zeros(bins, f)
    norm += _norm(src_begin - dst_of_begin_center, np.ones(bins, f) * f(dst_bin_width / 2), density)
    norm += (dst_of_end - dst_of_begin - f(1)) * _norm(f(-dst_bin_width / 2), f(dst_bin_width / 2), density)
    dst_of_end_center = dst_of_end * dbw + f(dst_bin_width / 2)
    norm += _norm(f(-dst_bin_width / 2), src_end - dst_of_end_center, density)
    return float(norm.sum(dtype=f))


def non_linear_param_search(histogram, min_val, max_val, dst_nbins: int) -> tuple[np.float32, np.float32]:
    """``HistogramObserver._non_linear_param_search``: the ``(min, max)`` that minimises the
    L2 quantization error of the histogram, moving one end inward by quantiles of 1e-5."""
    f = np.float32
    histogram = np.asarray(histogram, f)
    min_val, max_val = f(min_val), f(max_val)
    bins = histogram.shape[0]
    bin_width = (max_val - min_val) / f(bins)
    total = float(histogram.sum(dtype=f))
    csum = np.cumsum(histogram.astype(np.float64)).astype(f)  # torch's CPU cumsum accumulates in double
    stepsize, alpha, beta = 1e-5, 0.0, 1.0
    start_bin, end_bin = 0, bins - 1
    norm_min = float("inf")
    while alpha < beta:
        next_alpha, next_beta = alpha + stepsize, beta - stepsize
        lo_bound, hi_bound = f(next_alpha * total), f(next_beta * total)  # tensor-vs-scalar: float32
        # torch walks bin by bin; csum is non-decreasing, so a binary search finds the same bins
        left = min(end_bin, max(start_bin, int(np.searchsorted(csum, lo_bound, "left"))))
        right = max(start_bin, min(end_bin, int(np.searchsorted(csum, hi_bound, "right")) - 1))
        next_start, next_end = start_bin, end_bin
        if (left - start_bin) > (end_bin - right):
            next_start, alpha = left, next_alpha
        else:
            next_end, beta = right, next_beta
        if next_start == start_bin and next_end == end_bin:
            continue
        norm = _quantization_error(histogram, min_val, max_val, next_start, next_end, dst_nbins)
        if norm > norm_min:
            break
        norm_min, start_bin, end_bin = norm, next_start, next_end
    new_min = min_val + bin_width * f(start_bin)
    new_max = min_val + bin_width * f(end_bin + 1)
    return f(new_min), f(new_max)
