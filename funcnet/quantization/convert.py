"""``convert``: replace observed float layers by their int8 versions, with a report.

torch's ``torch.ao.quantization.convert``: every observed layer's output observer gives its
output ``(scale, zero_point)``; its weight is observed with the qconfig's weight observer and
quantized to int8; ``QuantStub``/``DeQuantStub`` become ``Quantize``/``DeQuantize``; layers that
only move quantized values (max pooling, ReLU, dropout, flatten, identity) run on them as is.

A layer under a qconfig that funcnet cannot quantize is never silently wrong: it stays in
float (quantized inputs are dequantized in front of it, its output stays float) and is listed
in ``ConversionReport.float_modules`` (also ``qmodel.conversion_report``), with a warning.
"""

from __future__ import annotations

import copy
import warnings
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from funcnet.nn.module import Module, Variables
from funcnet.nn.modules import activation as act
from funcnet.nn.modules import dropout as drop
from funcnet.nn.modules import flatten as flat
from funcnet.nn.modules import pooling as pool
from funcnet.nn.modules.container import ModuleDict, ModuleList, Sequential
from funcnet.nn.modules.conv import Conv1d, Conv2d
from funcnet.nn.modules.linear import Identity, Linear
from funcnet.quantization import fuse, quantized
from funcnet.quantization.observers import quantize_weight
from funcnet.quantization.prepare import OBSERVER, _Observed
from funcnet.quantization.stubs import DeQuantStub, FloatFunctional, QuantStub


class ConversionReport(NamedTuple):
    """What ``convert`` did: ``quantized`` ``[(path, float type, int8 type)]`` and
    ``float_modules`` ``[(path, type, reason)]`` left in float."""

    quantized: list
    float_modules: list

    def __str__(self) -> str:
        lines = [f"{len(self.quantized)} layer(s) quantized:"]
        lines += [f"  {p or '<root>'}: {a} -> {b}" for p, a, b in self.quantized]
        if self.float_modules:
            lines.append(f"{len(self.float_modules)} layer(s) left in float:")
            lines += [f"  {p}: {t} ({r})" for p, t, r in self.float_modules]
        return "\n".join(lines)


_PASS_THROUGH = (pool.MaxPool1d, pool.MaxPool2d, pool.MaxPool3d, pool.AdaptiveMaxPool1d, pool.AdaptiveMaxPool2d,
                 drop.Dropout, drop.Dropout2d, flat.Flatten, flat.Unflatten, Identity)
_ROUNDING = (pool.AvgPool1d, pool.AvgPool2d, pool.AdaptiveAvgPool1d, pool.AdaptiveAvgPool2d)
_CONTAINERS = (Sequential, ModuleList, ModuleDict)
_QUANTIZED_FOR = {Conv1d: quantized.Conv1d, Conv2d: quantized.Conv2d, Linear: quantized.Linear,
                  fuse.ConvReLU1d: quantized.ConvReLU1d, fuse.ConvReLU2d: quantized.ConvReLU2d,
                  fuse.LinearReLU: quantized.LinearReLU}


def _node(tree: dict, path: tuple[str, ...]) -> dict:
    for part in path:
        tree = tree[part]
    return tree


class _NotReached(Exception):
    """An observer that saw no data while others did: its layer was not run in calibration."""


def _saw_data(buffers: dict, path: tuple[str, ...]) -> bool:
    state = _node(buffers, (*path, OBSERVER))
    return not (np.all(np.asarray(state["min_val"]) == np.inf) and np.all(np.asarray(state["max_val"]) == -np.inf))


def _output_qparams(module: Module, buffers: dict, path: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    observer = module._modules[OBSERVER]
    if not _saw_data(buffers, path):
        raise _NotReached
    state = {k: np.asarray(v) for k, v in _node(buffers, (*path, OBSERVER)).items()}
    scale, zp = observer.calculate_qparams(state)
    return np.float32(np.reshape(scale, ())), np.int32(np.reshape(zp, ()))


def _quantize_weighted(module: Module, params: dict, buffers: dict, path: tuple[str, ...]):
    kind = type(module).__mro__[2]  # Observed<X> -> _Observed -> X
    float_layer = module._modules["0"] if isinstance(module, fuse._FusedModule) else module
    weights = params["0"] if isinstance(module, fuse._FusedModule) else params
    if isinstance(float_layer, (Conv1d, Conv2d)) and (float_layer.padding_mode != "zeros"
                                                     or isinstance(float_layer.padding, str)):
        return None, f"padding={float_layer.padding!r}, padding_mode={float_layer.padding_mode!r}"
    qconfig = module._active_qconfig
    weight_observer = qconfig.weight()
    w = np.asarray(weights["weight"], np.float32)
    w_scale, w_zp = weight_observer.observe_weight(w)
    if np.any(w_zp != 0):
        return None, "an asymmetric weight observer (funcnet's int8 kernels take symmetric weights)"
    per_channel = np.ndim(w_scale) == 1
    if not per_channel:
        w_scale, w_zp = np.reshape(w_scale, ()), np.reshape(w_zp, ())
    qw = quantize_weight(w, w_scale)
    has_bias = "bias" in weights
    cls = _QUANTIZED_FOR[kind]
    if isinstance(float_layer, Linear):
        q = cls(float_layer.in_features, float_layer.out_features, has_bias, per_channel)
    else:
        q = cls(float_layer.in_channels, float_layer.out_channels, float_layer.kernel_size, float_layer.stride,
                float_layer.padding, float_layer.dilation, float_layer.groups, has_bias, per_channel)
    scale, zp = _output_qparams(module, buffers, path)
    qparams = {"weight": jnp.asarray(qw), "weight_scale": jnp.asarray(w_scale, jnp.float32),
               "weight_zero_point": jnp.asarray(w_zp, jnp.int32)}
    if has_bias:
        qparams["bias"] = jnp.asarray(weights["bias"], jnp.float32)
    qparams["scale"], qparams["zero_point"] = jnp.asarray(scale), jnp.asarray(zp)
    return (q, qparams), None


def convert(prepared: Module, variables: Variables) -> tuple[Module, Variables]:
    """``torch.ao.quantization.convert(prepared)``: the int8 model and its variables.

    Returns:
        ``(qmodel, qvariables)``; ``qmodel.conversion_report`` is a :class:`ConversionReport`.
        Run it as any model: ``jax.jit(qmodel.apply)(qvariables, x)``.

    Raises:
        ValueError: the model was not prepared, or an observer saw no calibration data.
    """
    if not getattr(prepared, "_funcnet_prepared", False) or not any(
            name.endswith(OBSERVER) for name, _ in prepared.named_modules()):
        raise ValueError("convert: the model is not prepared (it has no observers); call "
                         "prepare(model, variables, qconfig), calibrate, then convert")
    if not isinstance(variables, Variables):
        raise TypeError(f"convert: variables must be the Variables returned by prepare/calibrate, got "
                        f"{type(variables).__name__}")
    observed = [tuple(n.split("."))[:-1] for n, _ in prepared.named_modules() if n.endswith(OBSERVER)]
    if not any(_saw_data(variables.buffers, path) for path in observed):
        names = ", ".join(".".join((*p, OBSERVER)) for p in observed[:3])
        raise ValueError(f"convert: the observers ({names}, ...) saw no data; calibrate first: "
                         f"variables = calibrate(prepared, variables, batches)")
    qmodel = copy.deepcopy(prepared)
    params, buffers = fuse._copy(variables.params), fuse._copy(variables.buffers)
    done, left = [], []

    def replace(parent: Module, name: str, new: Module) -> None:
        parent._modules[name] = new

    def keep_float(module: Module, name: str, child: Module, child_path: tuple, reason: str) -> None:
        """Leave an observed layer in float: drop its observer, dequantize its inputs."""
        del child._modules[OBSERVER]
        _node(buffers, child_path).pop(OBSERVER, None)
        base = type(child).__mro__[2] if isinstance(child, _Observed) else type(child)
        child.__class__ = base
        if not isinstance(child, (QuantStub, FloatFunctional)):
            quantized.with_mixin(child, quantized._FloatIsland, "Float")
        left.append((".".join(child_path), base.__name__, reason))

    def walk(module: Module, path: tuple[str, ...]) -> None:
        for name, child in list(module._modules.items()):
            try:
                visit(module, path, name, child)
            except _NotReached:
                keep_float(module, name, child, (*path, name), "not reached by the calibration batches")

    def visit(module: Module, path: tuple[str, ...], name: str, child: Module) -> None:
        child_path = (*path, name)
        dotted = ".".join(child_path)
        qconfig = child.__dict__.get("_active_qconfig")
        if name == OBSERVER:
            return
        if isinstance(child, QuantStub):
            if OBSERVER not in child._modules:
                return
            scale, zp = _output_qparams(child, buffers, child_path)
            replace(module, name, quantized.Quantize())
            _node(params, path)[name] = {"scale": jnp.asarray([scale]), "zero_point": jnp.asarray([zp])}
            _node(buffers, path).pop(name, None)
            done.append((dotted, "QuantStub", "quantized.Quantize"))
        elif isinstance(child, DeQuantStub):
            if qconfig is not None:
                replace(module, name, quantized.DeQuantize())
                done.append((dotted, "DeQuantStub", "quantized.DeQuantize"))
        elif isinstance(child, FloatFunctional):
            if OBSERVER not in child._modules:
                return
            scale, zp = _output_qparams(child, buffers, child_path)
            replace(module, name, quantized.QFunctional())
            _node(params, path)[name] = {"scale": jnp.asarray(scale), "zero_point": jnp.asarray(zp)}
            _node(buffers, path).pop(name, None)
            done.append((dotted, "FloatFunctional", "quantized.QFunctional"))
        elif OBSERVER in child._modules and isinstance(child, _Observed):
            result, reason = _quantize_weighted(child, _node(params, child_path), buffers, child_path)
            base = type(child).__mro__[2].__name__
            if result is None:
                keep_float(module, name, child, child_path, reason)
                return
            q, qparams = result
            replace(module, name, q)
            _node(params, path)[name] = qparams
            _node(buffers, path).pop(name, None)
            done.append((dotted, base, f"quantized.{type(q).__name__}"))
        elif qconfig is None:
            return
        elif isinstance(child, act.ReLU):
            quantized.with_mixin(child, quantized._QReLU, "Quantized")
        elif isinstance(child, _PASS_THROUGH):
            quantized.with_mixin(child, quantized._PassThrough, "Quantized")
        elif isinstance(child, _ROUNDING):
            quantized.with_mixin(child, quantized._Rounding, "Quantized")
        elif child._modules and (isinstance(child, _CONTAINERS) or not (child._parameters or child._buffers)):
            walk(child, child_path)
        else:
            left.append((dotted, type(child).__name__, "no int8 version in funcnet"))
            quantized.with_mixin(child, quantized._FloatIsland, "Float")
            if child._modules:
                walk(child, child_path)

    walk(qmodel, ())
    report = ConversionReport(done, left)
    object.__setattr__(qmodel, "conversion_report", report)
    object.__setattr__(qmodel, "_funcnet_prepared", False)
    if left:
        warnings.warn("convert: layer(s) left in float: " + ", ".join(f"{p} ({t})" for p, t, _ in left),
                      stacklevel=2)
    return qmodel, Variables(params, buffers)
