"""Pooling layers: ``MaxPool1d/2d/3d``, ``AvgPool1d/2d/3d``, ``AdaptiveAvgPool1d/2d/3d``,
``AdaptiveMaxPool1d/2d/3d``, with torch's arguments, defaults and ``repr``.

Stateless: no parameters or buffers. Inputs ``[N, C, *spatial]`` or unbatched
``[C, *spatial]``. The arithmetic is in :mod:`funcnet.nn.functional.pooling`
(torch's ``ceil_mode``, ``count_include_pad`` and adaptive-bin rules).
"""

from __future__ import annotations

from typing import Any

import jax

from funcnet.nn.functional import pooling as Fp
from funcnet.nn.functional.conv import IntOrTuple, _ntuple
from funcnet.nn.functional.pooling import OptSize
from funcnet.nn.module import Module

_SHAPE_TEXT = {1: "[N, C, L] or [C, L]", 2: "[N, C, H, W] or [C, H, W]", 3: "[N, C, D, H, W] or [C, D, H, W]"}


class _Pool(Module):
    _n = 2

    def _check_input(self, x: jax.Array) -> None:
        if x.ndim not in (self._n + 1, self._n + 2):
            raise self.shape_error(_SHAPE_TEXT[self._n], x.shape)


class _MaxPoolNd(_Pool):
    _functional = staticmethod(Fp.max_pool2d)

    def __init__(
        self,
        kernel_size: IntOrTuple,
        stride: IntOrTuple | None = None,
        padding: IntOrTuple = 0,
        dilation: IntOrTuple = 1,
        return_indices: bool = False,
        ceil_mode: bool = False,
    ) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride if (stride is not None) else kernel_size
        self.padding = padding
        self.dilation = dilation
        self.return_indices = return_indices
        self.ceil_mode = ceil_mode

    def forward(self, x: jax.Array) -> Any:
        self._check_input(x)
        return self._functional(x, self.kernel_size, self.stride, self.padding, self.dilation,
                                ceil_mode=self.ceil_mode, return_indices=self.return_indices)

    def extra_repr(self) -> str:
        return (
            f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"
            f", dilation={self.dilation}, ceil_mode={self.ceil_mode}"
        )


class MaxPool1d(_MaxPoolNd):
    """``torch.nn.MaxPool1d(kernel_size, stride=None, padding=0, dilation=1, return_indices=False,
    ceil_mode=False)``: ``[N, C, L]`` or ``[C, L]``. ``return_indices`` gives int32 indices."""

    _n = 1
    _functional = staticmethod(Fp.max_pool1d)


class MaxPool2d(_MaxPoolNd):
    """``torch.nn.MaxPool2d``: ``[N, C, H, W]`` or ``[C, H, W]`` → ``[N, C, H_out, W_out]``.

    ``stride=None`` means ``kernel_size``; with ``return_indices=True`` the output is
    ``(values, indices)``, indices flat over ``H·W`` (int32; torch's are int64).
    """

    _n = 2
    _functional = staticmethod(Fp.max_pool2d)


class MaxPool3d(_MaxPoolNd):
    """``torch.nn.MaxPool3d``: ``[N, C, D, H, W]`` or ``[C, D, H, W]``."""

    _n = 3
    _functional = staticmethod(Fp.max_pool3d)


class _AvgPoolNd(_Pool):
    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AvgPool1d(_AvgPoolNd):
    """``torch.nn.AvgPool1d(kernel_size, stride=None, padding=0, ceil_mode=False,
    count_include_pad=True)``: ``[N, C, L]`` or ``[C, L]`` → ``[N, C, L_out]``."""

    _n = 1

    def __init__(
        self,
        kernel_size: IntOrTuple,
        stride: IntOrTuple | None = None,
        padding: IntOrTuple = 0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
    ) -> None:
        super().__init__()
        self.kernel_size = _ntuple(kernel_size, 1, "kernel_size")
        self.stride = _ntuple(stride if stride is not None else kernel_size, 1, "stride")
        self.padding = _ntuple(padding, 1, "padding")
        self.ceil_mode = ceil_mode
        self.count_include_pad = count_include_pad

    def forward(self, x: jax.Array) -> jax.Array:
        self._check_input(x)
        return Fp.avg_pool1d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                             self.count_include_pad)


class _AvgPoolNdOverride(_AvgPoolNd):
    _functional = staticmethod(Fp.avg_pool2d)

    def __init__(
        self,
        kernel_size: IntOrTuple,
        stride: IntOrTuple | None = None,
        padding: IntOrTuple = 0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
        divisor_override: int | None = None,
    ) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride if (stride is not None) else kernel_size
        self.padding = padding
        self.ceil_mode = ceil_mode
        self.count_include_pad = count_include_pad
        self.divisor_override = divisor_override

    def forward(self, x: jax.Array) -> jax.Array:
        self._check_input(x)
        return self._functional(x, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                                self.count_include_pad, self.divisor_override)


class AvgPool2d(_AvgPoolNdOverride):
    """``torch.nn.AvgPool2d(kernel_size, stride=None, padding=0, ceil_mode=False,
    count_include_pad=True, divisor_override=None)``: ``[N, C, H, W]`` or ``[C, H, W]``."""

    _n = 2
    _functional = staticmethod(Fp.avg_pool2d)


class AvgPool3d(_AvgPoolNdOverride):
    """``torch.nn.AvgPool3d``: ``[N, C, D, H, W]`` or ``[C, D, H, W]``."""

    _n = 3
    _functional = staticmethod(Fp.avg_pool3d)


class _AdaptiveAvgPoolNd(_Pool):
    _functional = staticmethod(Fp.adaptive_avg_pool2d)

    def __init__(self, output_size: OptSize) -> None:
        super().__init__()
        self.output_size = output_size

    def forward(self, x: jax.Array) -> jax.Array:
        self._check_input(x)
        return self._functional(x, self.output_size)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


class AdaptiveAvgPool1d(_AdaptiveAvgPoolNd):
    """``torch.nn.AdaptiveAvgPool1d(output_size)``: ``[N, C, L]`` or ``[C, L]`` → ``[N, C, out]``."""

    _n = 1
    _functional = staticmethod(Fp.adaptive_avg_pool1d)


class AdaptiveAvgPool2d(_AdaptiveAvgPoolNd):
    """``torch.nn.AdaptiveAvgPool2d(output_size)``: ``[N, C, H, W]`` or ``[C, H, W]`` → ``[N, C, oh, ow]``.

    ``output_size`` is an int, a pair, or has ``None`` for "keep the input size".
    """

    _n = 2
    _functional = staticmethod(Fp.adaptive_avg_pool2d)


class AdaptiveAvgPool3d(_AdaptiveAvgPoolNd):
    """``torch.nn.AdaptiveAvgPool3d(output_size)``: ``[N, C, D, H, W]`` or ``[C, D, H, W]``."""

    _n = 3
    _functional = staticmethod(Fp.adaptive_avg_pool3d)


class _AdaptiveMaxPoolNd(_Pool):
    _functional = staticmethod(Fp.adaptive_max_pool2d)

    def __init__(self, output_size: OptSize, return_indices: bool = False) -> None:
        super().__init__()
        self.output_size = output_size
        self.return_indices = return_indices

    def forward(self, x: jax.Array) -> Any:
        self._check_input(x)
        return self._functional(x, self.output_size, self.return_indices)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


class AdaptiveMaxPool1d(_AdaptiveMaxPoolNd):
    """``torch.nn.AdaptiveMaxPool1d(output_size, return_indices=False)``: ``[N, C, L]`` or ``[C, L]``."""

    _n = 1
    _functional = staticmethod(Fp.adaptive_max_pool1d)


class AdaptiveMaxPool2d(_AdaptiveMaxPoolNd):
    """``torch.nn.AdaptiveMaxPool2d(output_size, return_indices=False)``: ``[N, C, H, W]`` or
    ``[C, H, W]`` → ``[N, C, oh, ow]`` (indices int32, flat over ``H·W``)."""

    _n = 2
    _functional = staticmethod(Fp.adaptive_max_pool2d)


class AdaptiveMaxPool3d(_AdaptiveMaxPoolNd):
    """``torch.nn.AdaptiveMaxPool3d(output_size, return_indices=False)``: ``[N, C, D, H, W]``."""

    _n = 3
    _functional = staticmethod(Fp.adaptive_max_pool3d)
