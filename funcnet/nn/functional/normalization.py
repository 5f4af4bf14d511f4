"""Normalisation functions: torch.nn.functional's ``layer_norm``, ``group_norm``,
``instance_norm``, ``batch_norm`` and ``normalize``.

Statistics are computed in at least float32 (also for bfloat16/float16 inputs)
with the two-pass biased variance E[(x − μ)²], as torch does; the result is cast
back to the input dtype.

Difference from torch: JAX arrays cannot be mutated, so ``batch_norm`` and
``instance_norm`` *never update running statistics*; they return only the
output. The modules (``BatchNorm2d``, ``InstanceNorm2d(track_running_stats=True)``)
return the updated statistics as new buffers from ``apply(..., train=True)``;
:func:`running_stats_update` is the update rule they use.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp

from funcnet.nn.functional.column_sums import broadcast_rows
from funcnet.nn.functional.row_sums import row_sums


def _stat_dtype(x: jax.Array):
    return jnp.promote_types(x.dtype, jnp.float32)


# False: means over trailing axes as jnp.mean on CPU too, for an in-process A/B (benchmarks/variant_ab.py).
_CPU_TRAILING_MEAN_AS_DOT = True


def _mean(x: jax.Array, axes: tuple[int, ...]) -> jax.Array:
    """``jnp.mean(x, axes, keepdims=True)``; on CPU, over trailing axes (LayerNorm, GroupNorm,
    InstanceNorm), as a matrix-vector product with ones (``row_sums``): LayerNorm forward on
    [16, 65, 192] took 0.11 ms instead of 0.17 (torch 0.05); the benchmark ViT's train step
    0.94-0.97x the time."""
    k = len(axes)
    trailing = tuple(sorted(a % x.ndim for a in axes)) == tuple(range(x.ndim - k, x.ndim))
    if not (trailing and _CPU_TRAILING_MEAN_AS_DOT):
        return jnp.mean(x, axis=axes, keepdims=True)
    return row_sums(x, k) / math.prod(x.shape[x.ndim - k:])


def _normalize_over(
    x: jax.Array, axes: tuple[int, ...], eps: float
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(x − mean)/√(var + eps) over ``axes`` in float32+, with the (keepdims) mean and biased var."""
    xs = x.astype(_stat_dtype(x))
    mean = _mean(xs, axes)
    var = _mean(jnp.square(xs - mean), axes)
    return (xs - mean) * jax.lax.rsqrt(var + eps), mean, var


@functools.partial(jax.custom_jvp, nondiff_argnums=(1, 2))
def _batch_normalize(x: jax.Array, axes: tuple[int, ...], eps: float) -> jax.Array:
    """``(x − mean)/√(var + eps)`` over ``axes`` (train-mode BatchNorm), with a hand-written JVP
    that is linear in the tangent, so its transpose (the VJP) is the textbook two-reduction
    backward ``rstd·(g − mean(g) − x̂·mean(g·x̂))`` where autodiff of the formula gave XLA a longer
    chain to fuse (train steps: ResNet-50 0.89×, MobileNetV2 0.88×, ResNet-18 0.95× the time).
    A JVP rather than a VJP keeps forward mode and higher orders (``jacfwd``, Hessians) working."""
    return _normalize_over(x, axes, eps)[0]


@_batch_normalize.defjvp
def _batch_normalize_jvp(axes, eps, primals, tangents):
    (x,), (t,) = primals, tangents
    y, _mean, var = _normalize_over(x, axes, eps)
    rstd = jax.lax.rsqrt(var + eps)
    t = t.astype(y.dtype)
    t_out = rstd * (t - jnp.mean(t, axis=axes, keepdims=True) - y * jnp.mean(t * y, axis=axes, keepdims=True))
    return y, t_out


# False: plain autodiff of the formula, for an in-process A/B (benchmarks/variant_ab.py) and the tests.
_BN_CUSTOM_JVP = True


# False: plain broadcasting in LayerNorm's affine (XLA's reductions for its gradients), for an A/B.
_AFFINE_GRAD_AS_COLUMN_SUMS = True


def _affine(
    y: jax.Array, weight: jax.Array | None, bias: jax.Array | None, shape: tuple[int, ...]
) -> jax.Array:
    """``y * weight + bias`` with both reshaped to ``shape``. Where ``shape`` is ``y``'s trailing
    shape (LayerNorm), they are spread with ``broadcast_rows``, so that their gradients are
    funcnet's column sums."""
    rows = _AFFINE_GRAD_AS_COLUMN_SUMS and tuple(shape) == tuple(y.shape[y.ndim - len(shape):])

    def spread(v):
        v = v.astype(y.dtype).reshape(shape)
        return broadcast_rows(v, y.shape) if rows else v

    if weight is not None:
        y = y * spread(weight)
    if bias is not None:
        y = y + spread(bias)
    return y


def layer_norm(
    input: jax.Array,
    normalized_shape: int | Sequence[int],
    weight: jax.Array | None = None,
    bias: jax.Array | None = None,
    eps: float = 1e-5,
) -> jax.Array:
    """``F.layer_norm``: normalise over the trailing ``normalized_shape`` dims (biased variance).

    Input ``[*, *normalized_shape]``; ``weight``/``bias`` have shape ``normalized_shape``.
    """
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    k = len(shape)
    if k == 0 or input.ndim < k or tuple(input.shape[input.ndim - k:]) != shape:
        raise ValueError(
            f"layer_norm: expected input with shape [*, {', '.join(map(str, shape))}], "
            f"but got input of size {tuple(input.shape)}"
        )
    axes = tuple(range(input.ndim - k, input.ndim))
    y, _, _ = _normalize_over(input, axes, eps)
    return _affine(y, weight, bias, shape).astype(input.dtype)


def group_norm(
    input: jax.Array,
    num_groups: int,
    weight: jax.Array | None = None,
    bias: jax.Array | None = None,
    eps: float = 1e-5,
) -> jax.Array:
    """``F.group_norm``: input ``[N, C, *]``; statistics per sample over each group of channels."""
    if input.ndim < 2:
        raise ValueError(f"group_norm: expected input of shape [N, C, *], got {tuple(input.shape)}")
    n, c = input.shape[0], input.shape[1]
    if c % num_groups != 0:
        raise ValueError(
            f"group_norm: expected number of channels in input ({c}) to be divisible by "
            f"num_groups ({num_groups}), input shape {tuple(input.shape)}"
        )
    grouped = input.reshape(n, num_groups, -1)
    y, _, _ = _normalize_over(grouped, (2,), eps)
    y = y.reshape(input.shape)
    return _affine(y, weight, bias, (1, c) + (1,) * (input.ndim - 2)).astype(input.dtype)


def running_stats_update(
    running_mean: jax.Array,
    running_var: jax.Array,
    batch_mean: jax.Array,
    batch_var: jax.Array,
    n: int,
    momentum: float | jax.Array,
) -> tuple[jax.Array, jax.Array]:
    """torch's running-statistics rule: ``r ← (1−m)·r + m·batch``, with the variance made unbiased (n/(n−1)).

    ``batch_var`` is the biased variance over ``n`` values. Returns the new
    ``(running_mean, running_var)`` in the running buffers' dtype.
    """
    unbiased = batch_var * (n / max(n - 1, 1))
    new_mean = (1 - momentum) * running_mean + momentum * batch_mean
    new_var = (1 - momentum) * running_var + momentum * unbiased
    return new_mean.astype(running_mean.dtype), new_var.astype(running_var.dtype)


def batch_norm(
    input: jax.Array,
    running_mean: jax.Array | None,
    running_var: jax.Array | None,
    weight: jax.Array | None = None,
    bias: jax.Array | None = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> jax.Array:
    """``F.batch_norm`` for input ``[N, C, *]``; returns the output only.

    ``training=True`` normalises with the batch statistics (over N and the
    spatial dims). ``training=False`` uses ``running_mean``/``running_var``,
    which must then be given. Unlike torch, the running statistics are *not*
    updated (JAX cannot mutate; ``momentum`` is accepted and unused): use the
    ``BatchNorm*d`` modules, whose ``apply(..., train=True)`` returns them.
    """
    if input.ndim < 2:
        raise ValueError(f"batch_norm: expected input of shape [N, C, *], got {tuple(input.shape)}")
    c = input.shape[1]
    bshape = (1, c) + (1,) * (input.ndim - 2)
    if training:
        if input.size // c == 1:
            raise ValueError(
                f"Expected more than 1 value per channel when training, got input size {tuple(input.shape)}"
            )
        axes = (0, *range(2, input.ndim))
        y = _batch_normalize(input, axes, eps) if _BN_CUSTOM_JVP else _normalize_over(input, axes, eps)[0]
    else:
        if running_mean is None or running_var is None:
            raise ValueError(
                "batch_norm with training=False needs running_mean and running_var "
                "(pass training=True to normalise with the batch statistics)"
            )
        sd = _stat_dtype(input)
        mean = running_mean.astype(sd).reshape(bshape)
        y = (input.astype(sd) - mean) * jax.lax.rsqrt(running_var.astype(sd).reshape(bshape) + eps)
    return _affine(y, weight, bias, bshape).astype(input.dtype)


def instance_norm_stats(input: jax.Array, eps: float = 1e-5) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Instance-normalise ``[N, C, *]``: ``(y, mean [N, C], biased var [N, C])`` over the spatial dims."""
    axes = tuple(range(2, input.ndim))
    y, mean, var = _normalize_over(input, axes, eps)
    return y, mean.reshape(input.shape[:2]), var.reshape(input.shape[:2])


def instance_norm(
    input: jax.Array,
    running_mean: jax.Array | None = None,
    running_var: jax.Array | None = None,
    weight: jax.Array | None = None,
    bias: jax.Array | None = None,
    use_input_stats: bool = True,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> jax.Array:
    """``F.instance_norm`` for input ``[N, C, *]``: statistics per sample and channel over the spatial dims.

    ``use_input_stats=False`` normalises with ``running_mean``/``running_var``
    instead. As with :func:`batch_norm`, the running statistics are never
    updated here (``momentum`` is unused); ``InstanceNorm*d`` modules with
    ``track_running_stats=True`` return them as new buffers.
    """
    if input.ndim < 3:
        raise ValueError(f"instance_norm: expected input of shape [N, C, *spatial], got {tuple(input.shape)}")
    c = input.shape[1]
    bshape = (1, c) + (1,) * (input.ndim - 2)
    if use_input_stats:
        if math.prod(input.shape[2:]) == 1:
            raise ValueError(
                f"Expected more than 1 spatial element when training, got input size {tuple(input.shape)}"
            )
        y, _, _ = instance_norm_stats(input, eps)
    else:
        if running_mean is None or running_var is None:
            raise ValueError("instance_norm with use_input_stats=False needs running_mean and running_var")
        sd = _stat_dtype(input)
        y = (input.astype(sd) - running_mean.astype(sd).reshape(bshape)) * jax.lax.rsqrt(
            running_var.astype(sd).reshape(bshape) + eps
        )
    return _affine(y, weight, bias, bshape).astype(input.dtype)


def _safe_root(s: jax.Array, p: float) -> jax.Array:
    """s^(1/p) with a zero (not NaN) gradient at s = 0, like torch's norm backward."""
    positive = s > 0
    root = jnp.where(positive, s, jnp.ones_like(s)) ** (1.0 / p)
    return jnp.where(positive, root, jnp.zeros_like(s))


def normalize(input: jax.Array, p: float = 2.0, dim: int = 1, eps: float = 1e-12) -> jax.Array:
    """``F.normalize``: x / max(‖x‖_p along ``dim``, eps); p may be any positive float or ``inf``."""
    if p == math.inf:
        norm = jnp.max(jnp.abs(input), axis=dim, keepdims=True)
    elif p == 1:
        norm = jnp.sum(jnp.abs(input), axis=dim, keepdims=True)
    elif p > 0:
        if p == 2:
            powered = jnp.square(input)
        else:
            ax = jnp.abs(input)
            nonzero = ax > 0
            powered = jnp.where(nonzero, jnp.where(nonzero, ax, 1) ** p, 0)
        norm = _safe_root(jnp.sum(powered, axis=dim, keepdims=True), p)
    else:
        raise ValueError(f"normalize: p must be positive or inf, got {p}")
    return input / jnp.maximum(norm, jnp.asarray(eps, input.dtype))
