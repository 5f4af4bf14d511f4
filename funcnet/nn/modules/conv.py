"""``Conv1d/2d/3d`` and ``ConvTranspose1d/2d/3d`` with torch's arguments, layouts and init.

Weights are ``[out, in/groups, *k]`` (Conv) and ``[in, out/groups, *k]`` (ConvTranspose),
inputs ``[N, C, *spatial]`` or unbatched ``[C, *spatial]``, as in torch; the
``state_dict`` keys are ``weight`` and ``bias``. Default init is torch's
``_ConvNd.reset_parameters``: ``kaiming_uniform_(weight, a=√5)`` = U(±1/√fan_in) with
fan_in = ``weight.shape[1]·∏k`` of the weight's own shape (so for ConvTranspose it is
``out/groups·∏k``), and bias U(±1/√fan_in). Only the distributions match torch, not the values.

Differences from torch: no ``device=`` argument (placement is JAX's); ``padding_mode``
'reflect'/'replicate'/'circular' pad with ``jnp.pad`` ('reflect'/'edge'/'wrap') exactly as
torch's ``F.pad`` for pads smaller than the input; ConvTranspose ``output_size`` is a static
Python sequence.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from funcnet.nn import init
from funcnet.nn.functional import conv as Fc
from funcnet.nn.functional.conv import IntOrTuple, _ntuple
from funcnet.nn.module import Module
from funcnet.nn.parameter import Parameter

_PAD_MODES = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}
_SPATIAL_TEXT = {1: "L", 2: "H, W", 3: "D, H, W"}


class _ConvNd(Module):
    _n = 2

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntOrTuple,
        stride: IntOrTuple,
        padding: str | IntOrTuple,
        dilation: IntOrTuple,
        transposed: bool,
        output_padding: IntOrTuple,
        groups: int,
        bias: bool,
        padding_mode: str,
        dtype: Any,
    ) -> None:
        super().__init__()
        n = self._n
        if groups <= 0:
            raise ValueError("groups must be a positive integer")
        if in_channels % groups != 0:
            raise ValueError("in_channels must be divisible by groups")
        if out_channels % groups != 0:
            raise ValueError("out_channels must be divisible by groups")
        self.kernel_size = _ntuple(kernel_size, n, "kernel_size")
        self.stride = _ntuple(stride, n, "stride")
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                raise ValueError(
                    f"Invalid padding string {padding!r}, should be one of {{'same', 'valid'}}"
                )
            if padding == "same" and any(s != 1 for s in self.stride):
                raise ValueError("padding='same' is not supported for strided convolutions")
            self.padding: str | tuple[int, ...] = padding
        else:
            self.padding = _ntuple(padding, n, "padding")
        if padding_mode not in ("zeros", "reflect", "replicate", "circular"):
            raise ValueError(
                "padding_mode must be one of {'zeros', 'reflect', 'replicate', 'circular'}, "
                f"but got padding_mode='{padding_mode}'"
            )
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.dilation = _ntuple(dilation, n, "dilation")
        self.transposed = transposed
        self.output_padding = _ntuple(output_padding, n, "output_padding")
        self.groups = groups
        self.padding_mode = padding_mode
        if transposed:
            shape = (in_channels, out_channels // groups, *self.kernel_size)
        else:
            shape = (out_channels, in_channels // groups, *self.kernel_size)
        self.weight = Parameter(shape, init.torch_default_weight, dtype)
        if bias:
            fan_in, _ = init.calculate_fan_in_and_fan_out(shape)
            self.bias = Parameter((out_channels,), init.torch_default_bias(fan_in), dtype)
        else:
            self.register_parameter("bias", None)  # reads None, as torch's m.bias

    @property
    def has_bias(self) -> bool:
        return "bias" in self._parameters

    def _check_input(self, x: jax.Array) -> None:
        n, c = self._n, self.in_channels
        if x.ndim not in (n + 1, n + 2) or x.shape[-n - 1] != c:
            spatial = _SPATIAL_TEXT[n]
            raise self.shape_error(f"[N, {c}, {spatial}] or [{c}, {spatial}]", x.shape)

    def _torch_padding_pairs(self) -> list[tuple[int, int]]:
        """The (left, right) padding torch's ``_reversed_padding_repeated_twice`` encodes."""
        if self.padding == "same":
            totals = [d * (k - 1) for k, d in zip(self.kernel_size, self.dilation, strict=True)]
            return [(t // 2, t - t // 2) for t in totals]
        if self.padding == "valid":
            return [(0, 0)] * self._n
        return [(p, p) for p in self.padding]

    def extra_repr(self) -> str:
        """Exactly torch's ``_ConvNd.extra_repr``."""
        n = self._n
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0,) * n:
            s += f", padding={self.padding}"
        if self.dilation != (1,) * n:
            s += f", dilation={self.dilation}"
        if self.output_padding != (0,) * n:
            s += f", output_padding={self.output_padding}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if not self.has_bias:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode}"
        return s


class _Conv(_ConvNd):
    _functional = staticmethod(Fc.conv2d)

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntOrTuple,
        stride: IntOrTuple = 1,
        padding: str | IntOrTuple = 0,
        dilation: IntOrTuple = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        dtype: Any = None,
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, False, 0,
                         groups, bias, padding_mode, dtype)

    def forward(self, x: jax.Array) -> jax.Array:
        self._check_input(x)
        bias = self.bias if self.has_bias else None
        if self.padding_mode == "zeros":
            return self._functional(x, self.weight, bias, self.stride, self.padding, self.dilation,
                                    self.groups)
        pads = [(0, 0)] * (x.ndim - self._n) + self._torch_padding_pairs()
        x = jnp.pad(x, pads, mode=_PAD_MODES[self.padding_mode])
        return self._functional(x, self.weight, bias, self.stride, 0, self.dilation, self.groups)


class Conv1d(_Conv):
    """``torch.nn.Conv1d``: ``[N, C_in, L]`` or ``[C_in, L]`` → ``[N, C_out, L_out]``.

    ``weight [C_out, C_in/groups, k]``, ``bias [C_out]``; ``padding`` may be ``'same'``/
    ``'valid'``; ``padding_mode`` is ``'zeros'``, ``'reflect'``, ``'replicate'`` or ``'circular'``.
    """

    _n = 1
    _functional = staticmethod(Fc.conv1d)


class Conv2d(_Conv):
    """``torch.nn.Conv2d``: ``[N, C_in, H, W]`` or ``[C_in, H, W]`` → ``[N, C_out, H_out, W_out]``.

    ``weight [C_out, C_in/groups, kh, kw]`` (OIHW), ``bias [C_out]``; torch's arguments,
    defaults, init distribution and ``repr``.
    """

    _n = 2
    _functional = staticmethod(Fc.conv2d)


class Conv3d(_Conv):
    """``torch.nn.Conv3d``: ``[N, C_in, D, H, W]`` or ``[C_in, D, H, W]`` → ``[N, C_out, D', H', W']``.

    ``weight [C_out, C_in/groups, kd, kh, kw]``, ``bias [C_out]``.
    """

    _n = 3
    _functional = staticmethod(Fc.conv3d)


class _ConvTranspose(_ConvNd):
    _functional = staticmethod(Fc.conv_transpose2d)

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntOrTuple,
        stride: IntOrTuple = 1,
        padding: IntOrTuple = 0,
        output_padding: IntOrTuple = 0,
        groups: int = 1,
        bias: bool = True,
        dilation: IntOrTuple = 1,
        padding_mode: str = "zeros",
        dtype: Any = None,
    ) -> None:
        if padding_mode != "zeros":
            raise ValueError(f'Only "zeros" padding mode is supported for {type(self).__name__}')
        if isinstance(padding, str):
            raise ValueError(f"{type(self).__name__} takes integer padding, got padding={padding!r}")
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, True,
                         output_padding, groups, bias, padding_mode, dtype)

    def _output_padding(self, x: jax.Array, output_size: Sequence[int] | None) -> tuple[int, ...]:
        """torch's ``_ConvTransposeNd._output_padding``: the padding that yields ``output_size``."""
        if output_size is None:
            return self.output_padding
        n = self._n
        non_spatial = 2 if x.ndim == n + 2 else 1
        output_size = tuple(int(s) for s in output_size)
        if len(output_size) == non_spatial + n:
            output_size = output_size[non_spatial:]
        if len(output_size) != n:
            raise ValueError(
                f"ConvTranspose{n}D: for {x.ndim}D input, output_size must have {n} or "
                f"{non_spatial + n} elements (got {len(output_size)})"
            )
        min_sizes = [
            (x.shape[non_spatial + d] - 1) * self.stride[d] - 2 * self.padding[d]
            + self.dilation[d] * (self.kernel_size[d] - 1) + 1
            for d in range(n)
        ]
        max_sizes = [m + s - 1 for m, s in zip(min_sizes, self.stride, strict=True)]
        for size, lo, hi in zip(output_size, min_sizes, max_sizes, strict=True):
            if size < lo or size > hi:
                raise ValueError(
                    f"{self.path}: requested an output size of {list(output_size)}, but valid sizes "
                    f"range from {min_sizes} to {max_sizes} (for an input of {tuple(x.shape[non_spatial:])})"
                )
        return tuple(size - lo for size, lo in zip(output_size, min_sizes, strict=True))

    def forward(self, x: jax.Array, output_size: Sequence[int] | None = None) -> jax.Array:
        """``output_size`` (optional, static): the wanted spatial size, as torch's ``forward``."""
        self._check_input(x)
        bias = self.bias if self.has_bias else None
        output_padding = self._output_padding(x, output_size)
        return self._functional(x, self.weight, bias, self.stride, self.padding, output_padding,
                                self.groups, self.dilation)


class ConvTranspose1d(_ConvTranspose):
    """``torch.nn.ConvTranspose1d``: ``[N, C_in, L]`` or ``[C_in, L]`` → ``[N, C_out, L_out]``.

    ``weight [C_in, C_out/groups, k]`` (torch's transposed layout), ``bias [C_out]``;
    ``L_out = (L−1)·s − 2p + d(k−1) + output_padding + 1``. Init fan_in is ``C_out/groups·k``, as torch.
    """

    _n = 1
    _functional = staticmethod(Fc.conv_transpose1d)


class ConvTranspose2d(_ConvTranspose):
    """``torch.nn.ConvTranspose2d``: ``[N, C_in, H, W]`` or ``[C_in, H, W]`` → ``[N, C_out, H_out, W_out]``.

    ``weight [C_in, C_out/groups, kh, kw]``, ``bias [C_out]``; ``forward(x, output_size=None)``.
    """

    _n = 2
    _functional = staticmethod(Fc.conv_transpose2d)


class ConvTranspose3d(_ConvTranspose):
    """``torch.nn.ConvTranspose3d``: ``[N, C_in, D, H, W]`` or ``[C_in, D, H, W]``.

    ``weight [C_in, C_out/groups, kd, kh, kw]``, ``bias [C_out]``.
    """

    _n = 3
    _functional = staticmethod(Fc.conv_transpose3d)


__all__ = ["Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d"]
