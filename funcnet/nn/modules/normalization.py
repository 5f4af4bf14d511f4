"""``LayerNorm``, ``GroupNorm`` and ``InstanceNorm1d/2d/3d`` with torch's arguments, keys and rules.

Statistics use the biased variance and are computed in at least float32.
``InstanceNorm*d(track_running_stats=True)`` keeps ``running_mean``,
``running_var`` and ``num_batches_tracked`` buffers like BatchNorm: in
``apply(..., train=True)`` the new values come back as the new buffers. As in
torch, InstanceNorm never increments ``num_batches_tracked`` and
``momentum=None`` freezes the running statistics (torch passes momentum 0.0).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from funcnet.nn import functional as F
from funcnet.nn import init
from funcnet.nn.functional.normalization import instance_norm_stats, running_stats_update
from funcnet.nn.module import Module
from funcnet.nn.modules.batchnorm import declare_norm_state
from funcnet.nn.parameter import Parameter


class LayerNorm(Module):
    """``torch.nn.LayerNorm(normalized_shape, eps=1e-5, elementwise_affine=True, bias=True, dtype=None)``.

    Input ``[*, *normalized_shape]``, normalised over the trailing dims.
    Parameters ``weight`` (ones) and ``bias`` (zeros) of shape ``normalized_shape``.
    """

    def __init__(
        self,
        normalized_shape: int | Sequence[int],
        eps: float = 1e-5,
        elementwise_affine: bool = True,
        bias: bool = True,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        if isinstance(normalized_shape, int):
            normalized_shape = (normalized_shape,)
        self.normalized_shape = tuple(int(s) for s in normalized_shape)
        self.eps = eps
        self.elementwise_affine = elementwise_affine
        if elementwise_affine:
            self.weight = Parameter(self.normalized_shape, init.ones, dtype)
            if bias:
                self.bias = Parameter(self.normalized_shape, init.zeros, dtype)
            else:
                self.register_parameter("bias", None)
        else:  # torch's attributes read None then
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def forward(self, x: jax.Array) -> jax.Array:
        k = len(self.normalized_shape)
        if x.ndim < k or tuple(x.shape[x.ndim - k:]) != self.normalized_shape:
            raise self.shape_error(f"[*, {', '.join(map(str, self.normalized_shape))}]", x.shape)
        weight = self.weight if "weight" in self._parameters else None
        bias = self.bias if "bias" in self._parameters else None
        return F.layer_norm(x, self.normalized_shape, weight, bias, self.eps)

    def extra_repr(self) -> str:
        return (
            f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}, "
            f"bias={'bias' in self._parameters}"
        )


class GroupNorm(Module):
    """``torch.nn.GroupNorm(num_groups, num_channels, eps=1e-5, affine=True, dtype=None, *, bias=True)``.

    Input ``[N, C, *]``; per-sample statistics over each of ``num_groups``
    groups of ``C/num_groups`` channels; per-channel ``weight`` (ones), ``bias`` (zeros).
    """

    def __init__(
        self,
        num_groups: int,
        num_channels: int,
        eps: float = 1e-5,
        affine: bool = True,
        dtype: Any = None,
        *,
        bias: bool = True,
    ) -> None:
        super().__init__()
        if num_channels % num_groups != 0:
            raise ValueError("num_channels must be divisible by num_groups")
        self.num_groups = num_groups
        self.num_channels = num_channels
        self.eps = eps
        self.affine = affine
        if affine:
            self.weight = Parameter((num_channels,), init.ones, dtype)
            if bias:
                self.bias = Parameter((num_channels,), init.zeros, dtype)
            else:
                self.register_parameter("bias", None)
        else:  # torch's attributes read None then
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def forward(self, x: jax.Array) -> jax.Array:
        if x.ndim < 2 or x.shape[1] != self.num_channels:
            raise self.shape_error(f"[N, {self.num_channels}, *]", x.shape)
        weight = self.weight if "weight" in self._parameters else None
        bias = self.bias if "bias" in self._parameters else None
        return F.group_norm(x, self.num_groups, weight, bias, self.eps)

    def extra_repr(self) -> str:
        return (
            f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}, "
            f"bias={'bias' in self._parameters}"
        )


class _InstanceNorm(Module):
    _spatial_dims = 0  # 1, 2, 3 for InstanceNorm1d/2d/3d

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = False,
        track_running_stats: bool = False,
        dtype: Any = None,
        *,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        declare_norm_state(self, num_features, affine, bias, track_running_stats, dtype)

    def _shape_text(self) -> str:
        spatial = ", ".join("DHW"[3 - self._spatial_dims:])
        return f"[N, {self.num_features}, {spatial}] or [{self.num_features}, {spatial}]"

    def forward(self, x: jax.Array) -> jax.Array:
        s = self._spatial_dims
        if x.ndim not in (s + 1, s + 2):
            raise self.shape_error(self._shape_text(), x.shape)
        unbatched = x.ndim == s + 1
        if unbatched:
            x = x[None]
        if x.shape[1] != self.num_features:
            if self.affine or self.track_running_stats:
                raise self.shape_error(self._shape_text(), x.shape[1:] if unbatched else x.shape)
            warnings.warn(
                f"{self.path}: input's size at the channel dim ({x.shape[1]}) does not match "
                f"num_features ({self.num_features}), which is unused because affine=False",
                stacklevel=2,
            )
        use_input_stats = self.training or not self.track_running_stats
        weight = self.weight if "weight" in self._parameters else None
        bias = self.bias if "bias" in self._parameters else None
        if use_input_stats:
            if math.prod(x.shape[2:]) == 1:
                raise self.shape_error(f"{self._shape_text()} with more than 1 spatial element", x.shape)
            y, mean, var = instance_norm_stats(x, self.eps)
            if self.training and self.track_running_stats:
                momentum = 0.0 if self.momentum is None else self.momentum
                self.running_mean, self.running_var = running_stats_update(
                    self.running_mean, self.running_var, jnp.mean(mean, 0), jnp.mean(var, 0),
                    math.prod(x.shape[2:]), momentum,
                )
            bshape = (1, x.shape[1]) + (1,) * s
            if weight is not None:
                y = y * weight.astype(y.dtype).reshape(bshape)
            if bias is not None:
                y = y + bias.astype(y.dtype).reshape(bshape)
            out = y.astype(x.dtype)
        else:
            out = F.instance_norm(
                x, self.running_mean, self.running_var, weight, bias, use_input_stats=False, eps=self.eps
            )
        return out[0] if unbatched else out

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
            f"bias={'bias' in self._parameters}, track_running_stats={self.track_running_stats}"
        )


class InstanceNorm1d(_InstanceNorm):
    """``torch.nn.InstanceNorm1d``: input ``[N, C, L]`` or ``[C, L]``; statistics per sample and channel."""

    _spatial_dims = 1


class InstanceNorm2d(_InstanceNorm):
    """``torch.nn.InstanceNorm2d(num_features, eps=1e-5, momentum=0.1, affine=False,
    track_running_stats=False)``.

    Input ``[N, C, H, W]`` or ``[C, H, W]``; statistics per sample and channel over H, W.
    """

    _spatial_dims = 2


class InstanceNorm3d(_InstanceNorm):
    """``torch.nn.InstanceNorm3d``: input ``[N, C, D, H, W]`` or ``[C, D, H, W]``."""

    _spatial_dims = 3
