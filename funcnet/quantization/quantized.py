"""Static int8 layers: torch's ``torch.ao.nn.quantized`` / ``torch.ao.nn.intrinsic.quantized``.

Inputs and outputs are :class:`~funcnet.quantization.qtensor.QTensor` (uint8, per-tensor
``scale``/``zero_point``); weights are int8 symmetric (per output channel or per tensor).
Built by :func:`funcnet.quantization.convert`; parameters (funcnet keys → torch):

======================  =======================  ==============================================
key                     shape / dtype            torch
======================  =======================  ==============================================
``weight``              ``[out, ...]`` int8      ``weight().int_repr()``
``weight_scale``        ``[out]`` or ``()`` f32  ``weight().q_per_channel_scales()`` / ``q_scale()``
``weight_zero_point``   same, int32              ``q_per_channel_zero_points()`` / ``q_zero_point()``
``bias``                ``[out]`` float32        ``bias()``
``scale``               ``()`` float32           ``scale`` (the output's)
``zero_point``          ``()`` int32             ``zero_point``
======================  =======================  ==============================================

(torch stores weight, its scales and the bias in one quantized tensor or packed object;
:func:`funcnet.quantization.to_torch_state_dict` / ``from_torch_state_dict`` translate.)
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from funcnet.nn.module import Module
from funcnet.nn.parameter import Parameter
from funcnet.quantization import functional as QF
from funcnet.quantization.qtensor import QTensor, quantize_per_tensor


def _expect_q(module: Module, x: Any) -> QTensor:
    if not isinstance(x, QTensor):
        raise TypeError(
            f"{module.path} ({type(module).__name__}): expected a quantized input (QTensor), got "
            f"{type(x).__name__} {getattr(x, 'dtype', '')}; a QuantStub must quantize the input first"
        )
    return x


class Quantize(Module):
    """``torch.ao.nn.quantized.Quantize``: float → quint8 with fixed ``scale``/``zero_point`` (shape ``[1]``)."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = Parameter((1,), 1.0, jnp.float32)
        self.zero_point = Parameter((1,), 0, jnp.int32)

    def forward(self, x: jax.Array) -> QTensor:
        if isinstance(x, QTensor):
            raise TypeError(f"{self.path} (Quantize): input is already quantized")
        return quantize_per_tensor(x, self.scale[0], self.zero_point[0])


class DeQuantize(Module):
    """``torch.ao.nn.quantized.DeQuantize``: quint8 → float32 (a float input passes unchanged:
    it comes from a layer left in float, see ``ConversionReport``)."""

    def forward(self, x: Any) -> jax.Array:
        return x.dequantize() if isinstance(x, QTensor) else x


class _WeightedQuantized(Module):
    _relu = False

    def _declare(self, weight_shape: tuple, out: int, bias: bool, per_channel: bool) -> None:
        qshape = (out,) if per_channel else ()
        self.per_channel = per_channel
        self.weight = Parameter(weight_shape, 0, jnp.int8)
        self.weight_scale = Parameter(qshape, 1.0, jnp.float32)
        self.weight_zero_point = Parameter(qshape, 0, jnp.int32)
        if bias:
            self.bias = Parameter((out,), 0.0, jnp.float32)
        self.scale = Parameter((), 1.0, jnp.float32)
        self.zero_point = Parameter((), 0, jnp.int32)

    def _bias(self):
        return self.bias.astype(jnp.float32) if "bias" in self._parameters else None


class Linear(_WeightedQuantized):
    """``torch.ao.nn.quantized.Linear``: quint8 ``[..., in]`` → quint8 ``[..., out]``."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, per_channel: bool = True) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self._declare((out_features, in_features), out_features, bias, per_channel)

    def forward(self, x: Any) -> QTensor:
        x = _expect_q(self, x)
        if x.ndim < 1 or x.shape[-1] != self.in_features:
            raise self.shape_error(f"[..., {self.in_features}]", x.shape)
        acc = QF.int_matmul_uint8(x, self.weight)
        return QF.requantize(acc, x.scale, self.weight_scale, self._bias(), self.scale, self.zero_point,
                             self._relu, acc.ndim - 1)

    def extra_repr(self) -> str:
        qscheme = "per_channel_affine" if self.per_channel else "per_tensor_affine"
        return f"in_features={self.in_features}, out_features={self.out_features}, qscheme={qscheme}"


class LinearReLU(Linear):
    """``torch.ao.nn.intrinsic.quantized.LinearReLU``: the ReLU is the clamp at the zero point."""

    _relu = True


class _ConvNd(_WeightedQuantized):
    _n = 2

    def __init__(self, in_channels: int, out_channels: int, kernel_size: tuple, stride: tuple, padding: tuple,
                 dilation: tuple, groups: int = 1, bias: bool = True, per_channel: bool = True) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding, self.dilation = kernel_size, stride, padding, dilation
        self.groups = groups
        self._declare((out_channels, in_channels // groups, *kernel_size), out_channels, bias, per_channel)

    def forward(self, x: Any) -> QTensor:
        x = _expect_q(self, x)
        n = self._n
        if x.ndim != n + 2 or x.shape[1] != self.in_channels:
            raise self.shape_error(f"[N, {self.in_channels}, {'H, W' if n == 2 else 'L'}]", x.shape)
        pads = [(p, p) for p in self.padding]
        acc = QF.int_conv(x, self.weight, self.stride, pads, self.dilation, self.groups)
        return QF.requantize(acc, x.scale, self.weight_scale, self._bias(), self.scale, self.zero_point,
                             self._relu, 1)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}")


class Conv1d(_ConvNd):
    """``torch.ao.nn.quantized.Conv1d``: quint8 ``[N, C, L]``."""

    _n = 1


class Conv2d(_ConvNd):
    """``torch.ao.nn.quantized.Conv2d``: quint8 ``[N, C, H, W]``."""

    _n = 2


class ConvReLU1d(Conv1d):
    """``torch.ao.nn.intrinsic.quantized.ConvReLU1d``."""

    _relu = True


class ConvReLU2d(Conv2d):
    """``torch.ao.nn.intrinsic.quantized.ConvReLU2d``."""

    _relu = True


class QFunctional(Module):
    """``torch.ao.nn.quantized.QFunctional``: ``add``/``add_relu``/``cat`` of quint8 tensors into
    the calibrated output ``scale``/``zero_point``."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = Parameter((), 1.0, jnp.float32)
        self.zero_point = Parameter((), 0, jnp.int32)

    def forward(self, x: Any) -> Any:
        raise RuntimeError("QFunctional is not called directly: use its add / add_relu / cat methods")

    def add(self, x: QTensor, y: QTensor) -> QTensor:
        return QF.add(_expect_q(self, x), _expect_q(self, y), self.scale, self.zero_point)

    def add_relu(self, x: QTensor, y: QTensor) -> QTensor:
        return QF.add(_expect_q(self, x), _expect_q(self, y), self.scale, self.zero_point, relu=True)

    def cat(self, xs, dim: int = 0) -> QTensor:
        return QF.cat([_expect_q(self, x) for x in xs], dim, self.scale, self.zero_point)


# -- layers that pass quantized tensors through (same scale and zero point) ------------------
class _PassThrough:
    """Mixin for a float layer whose op commutes with the affine quantization (max pooling,
    dropout, flatten): it runs on the uint8 values (exact in float32) and keeps the parameters."""

    def forward(self, x: Any, *args: Any, **kwargs: Any) -> Any:
        if not isinstance(x, QTensor):
            return super().forward(x, *args, **kwargs)
        y = super().forward(x.int_repr.astype(jnp.float32), *args, **kwargs)
        return QTensor(y.astype(jnp.uint8), x.scale, x.zero_point)


class _Rounding(_PassThrough):
    """Average pooling on uint8 values: the float mean rounded half to even, as torch's kernels."""

    def forward(self, x: Any, *args: Any, **kwargs: Any) -> Any:
        if not isinstance(x, QTensor):
            return super(_PassThrough, self).forward(x, *args, **kwargs)
        y = super(_PassThrough, self).forward(x.int_repr.astype(jnp.float32), *args, **kwargs)
        return QTensor(jnp.clip(jnp.rint(y), 0, 255).astype(jnp.uint8), x.scale, x.zero_point)


class _QReLU:
    """``ReLU`` on quint8: ``max(q, zero_point)`` (the quantized value of 0)."""

    def forward(self, x: Any) -> Any:
        if not isinstance(x, QTensor):
            return super().forward(x)
        q = jnp.maximum(x.int_repr.astype(jnp.int32), x.zero_point)
        return QTensor(q.astype(jnp.uint8), x.scale, x.zero_point)


class _FloatIsland:
    """A layer funcnet cannot quantize, kept in float: quantized inputs are dequantized and the
    output stays float (listed in ``ConversionReport.float_modules``)."""

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        args, kwargs = jax.tree.map(lambda a: a.dequantize() if isinstance(a, QTensor) else a, (args, kwargs),
                                    is_leaf=lambda a: isinstance(a, QTensor))
        return super().forward(*args, **kwargs)


_MIXED: dict = {}


def with_mixin(module: Module, mixin: type, prefix: str) -> Module:
    """Turn ``module`` (in place) into an instance of ``mixin + type(module)`` (same keys, same config)."""
    cls = type(module)
    key = (mixin, cls)
    if key not in _MIXED:
        _MIXED[key] = type(f"{prefix}{cls.__name__}", (mixin, cls), {"__module__": cls.__module__})
    module.__class__ = _MIXED[key]
    return module
