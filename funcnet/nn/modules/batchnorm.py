"""``BatchNorm1d``/``2d``/``3d`` with torch's exact running-statistics rules.

Train mode normalises with the biased batch variance and updates
``running_var`` with the unbiased one (n/(n−1)); ``momentum=None`` is the
cumulative average with factor 1/num_batches_tracked. The buffers
(``running_mean``, ``running_var``, ``num_batches_tracked``) come back from
``apply(..., train=True)`` as the new buffers. ``num_batches_tracked`` is int32
(JAX's default integer; torch uses int64 — the interop layer converts).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from funcnet.nn import init
from funcnet.nn.functional import normalization as _normalization
from funcnet.nn.module import Module
from funcnet.nn.parameter import Buffer, Parameter


def declare_norm_state(module: Module, num_features: int, affine: bool, bias: bool, track_running_stats: bool,
                       dtype: Any) -> None:
    """The per-channel state of torch's ``_NormBase`` (BatchNorm, InstanceNorm), in its
    ``state_dict`` order: ``weight`` (ones) and ``bias`` (zeros) if affine, then
    ``running_mean`` (zeros), ``running_var`` (ones) and int ``num_batches_tracked`` if tracked."""
    if affine:
        module.weight = Parameter((num_features,), init.ones, dtype)
        if bias:
            module.bias = Parameter((num_features,), init.zeros, dtype)
        else:
            module.register_parameter("bias", None)
    else:  # torch's attributes read None then
        module.register_parameter("weight", None)
        module.register_parameter("bias", None)
    if track_running_stats:
        module.running_mean = Buffer((num_features,), init.zeros, dtype)
        module.running_var = Buffer((num_features,), init.ones, dtype)
        module.num_batches_tracked = Buffer((), init.zeros, jnp.int32)
    else:
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            module.register_buffer(name, None)


class _BatchNorm(Module):
    _accepted_ndims: tuple[int, ...] = ()
    _shape_text = ""

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        device: Any = None,
        dtype: Any = None,
        *,
        bias: bool = True,
        axis_name: str | None = None,
    ) -> None:
        super().__init__()
        self.axis_name = axis_name
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        declare_norm_state(self, num_features, affine, bias, track_running_stats, dtype)

    def _check_input(self, x: jax.Array) -> None:
        if x.ndim not in self._accepted_ndims or x.shape[1] != self.num_features:
            raise self.shape_error(self._shape_text.format(C=self.num_features), x.shape)

    def forward(self, x: jax.Array) -> jax.Array:
        self._check_input(x)
        reduce_axes = (0,) + tuple(range(2, x.ndim))
        bshape = (1, self.num_features) + (1,) * (x.ndim - 2)
        use_batch_stats = self.training or not self.track_running_stats
        # Statistics in at least float32, also under a bfloat16 compute policy.
        stat_dtype = jnp.promote_types(x.dtype, jnp.float32)
        xs = x.astype(stat_dtype)
        if use_batch_stats:
            replicas = _bound_axis_size(self.axis_name)
            if (x.size // self.num_features) * (replicas or 1) == 1:
                raise self.shape_error(
                    f"{self._shape_text.format(C=self.num_features)} with more than 1 value per channel "
                    f"(batch statistics)",
                    x.shape,
                )
            if replicas is None:
                mean = jnp.mean(xs, axis=reduce_axes)
                var = jnp.mean(jnp.square(xs - mean.reshape(bshape)), axis=reduce_axes)
            else:  # SyncBatchNorm: global-batch statistics (equal per-device batch sizes)
                mean = jax.lax.pmean(jnp.mean(xs, axis=reduce_axes), self.axis_name)
                var = jax.lax.pmean(jnp.mean(jnp.square(xs - mean.reshape(bshape)), axis=reduce_axes),
                                    self.axis_name)
            if self.training and self.track_running_stats:
                self._update_running_stats(mean, var, (x.size // self.num_features) * (replicas or 1))
        else:
            mean, var = self.running_mean.astype(stat_dtype), self.running_var.astype(stat_dtype)
        if use_batch_stats and replicas is None and _normalization._BN_CUSTOM_JVP:
            y = _normalization._batch_normalize(xs, reduce_axes, self.eps)
        else:
            y = (xs - mean.reshape(bshape)) * jax.lax.rsqrt(var.reshape(bshape) + self.eps)
        if self.affine:
            y = y * self.weight.astype(stat_dtype).reshape(bshape)
            if "bias" in self._parameters:
                y = y + self.bias.astype(stat_dtype).reshape(bshape)
        return y.astype(x.dtype)

    def _update_running_stats(self, mean: jax.Array, var: jax.Array, n: int) -> None:
        count = self.num_batches_tracked + 1
        self.num_batches_tracked = count
        if self.momentum is None:
            factor = 1.0 / count.astype(mean.dtype)
        else:
            factor = self.momentum
        unbiased = var * (n / max(n - 1, 1))
        old_mean, old_var = self.running_mean, self.running_var
        self.running_mean = ((1 - factor) * old_mean + factor * mean).astype(old_mean.dtype)
        self.running_var = ((1 - factor) * old_var + factor * unbiased).astype(old_var.dtype)

    def extra_repr(self) -> str:
        text = (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
            f"bias={'bias' in self._parameters}, track_running_stats={self.track_running_stats}"
        )
        return text if self.axis_name is None else f"{text}, axis_name={self.axis_name!r}"


def _bound_axis_size(axis_name: str | None) -> int | None:
    """The size of mapped axis ``axis_name`` if it is bound here (pmap/shard_map), else None."""
    if axis_name is None:
        return None
    try:
        return int(jax.lax.psum(1, axis_name))
    except NameError:  # not inside a map over this axis: plain BatchNorm
        return None


class BatchNorm1d(_BatchNorm):
    """``torch.nn.BatchNorm1d``: input ``[N, C]`` or ``[N, C, L]``."""

    _accepted_ndims = (2, 3)
    _shape_text = "[N, {C}] or [N, {C}, L]"


class BatchNorm2d(_BatchNorm):
    """``torch.nn.BatchNorm2d``: input ``[N, C, H, W]``."""

    _accepted_ndims = (4,)
    _shape_text = "[N, {C}, H, W]"


class BatchNorm3d(_BatchNorm):
    """``torch.nn.BatchNorm3d``: input ``[N, C, D, H, W]``."""

    _accepted_ndims = (5,)
    _shape_text = "[N, {C}, D, H, W]"


class SyncBatchNorm(_BatchNorm):
    """``torch.nn.SyncBatchNorm``: BatchNorm over the global batch of a data-parallel step.

    Input ``[N, C, *]`` (any rank ≥ 2). torch's ``process_group`` becomes ``axis_name``,
    the name of the mapped device axis (``funcnet.parallel``'s pmap step uses ``"batch"``):
    the mean and variance are ``lax.pmean``-ed across it, assuming equal per-device batch
    sizes, and the running statistics use the global sample count. Outside a map over
    ``axis_name`` it behaves as ``BatchNorm`` (torch falls back the same way when not
    distributed); under a sharded ``jax.jit`` plain BatchNorm already sees the global batch.
    """

    _shape_text = "[N, {C}, *]"

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        process_group: Any = None,
        device: Any = None,
        dtype: Any = None,
        *,
        axis_name: str = "batch",
    ) -> None:
        if process_group is not None:
            raise ValueError("SyncBatchNorm: funcnet has no process groups; pass axis_name= (the mapped "
                             f"device axis, e.g. 'batch'), got process_group={process_group!r}")
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype,
                         axis_name=axis_name)

    def _check_input(self, x: jax.Array) -> None:
        if x.ndim < 2 or x.shape[1] != self.num_features:
            raise self.shape_error(self._shape_text.format(C=self.num_features), x.shape)
