"""``fuse_modules``: fold BatchNorm into the preceding Conv/Linear and merge a following ReLU.

torch's ``torch.ao.quantization.fuse_modules`` for eval-mode (post-training) fusion. The
weights are those of ``torch.nn.utils.fusion.fuse_conv_bn_eval`` / ``fuse_linear_bn_eval``,
computed with the same float32 operations in the same order, so they are bit-identical::

    w' = w * (gamma * rsqrt(var + eps))[:, None, ...]
    b' = (b - mean) * rsqrt(var + eps) * gamma + beta          (conv)
    b' = (b - mean) * (gamma * rsqrt(var + eps)) + beta        (linear)

As in torch, the first module of each group becomes the fused module (``ConvReLU2d`` and
``LinearReLU`` are ``Sequential(conv, relu)``, so their keys are ``conv.0.weight``, a
Conv+BN pair becomes a plain conv with a bias), and the others become ``nn.Identity``.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np

from funcnet.nn.module import Module, Variables
from funcnet.nn.modules.activation import ReLU
from funcnet.nn.modules.batchnorm import BatchNorm1d, BatchNorm2d
from funcnet.nn.modules.container import Sequential
from funcnet.nn.modules.conv import Conv1d, Conv2d
from funcnet.nn.modules.linear import Identity, Linear
from funcnet.nn.parameter import Parameter


class _FusedModule(Sequential):
    """torch's ``torch.ao.nn.intrinsic._FusedModule``: a Sequential that quantizes as one layer."""


class ConvReLU1d(_FusedModule):
    """``torch.ao.nn.intrinsic.ConvReLU1d``: ``Sequential(Conv1d, ReLU)``."""


class ConvReLU2d(_FusedModule):
    """``torch.ao.nn.intrinsic.ConvReLU2d``: ``Sequential(Conv2d, ReLU)``."""


class LinearReLU(_FusedModule):
    """``torch.ao.nn.intrinsic.LinearReLU``: ``Sequential(Linear, ReLU)``."""


_BN_FOR = {Conv1d: BatchNorm1d, Conv2d: BatchNorm2d, Linear: BatchNorm1d}
_WITH_RELU = {Conv1d: ConvReLU1d, Conv2d: ConvReLU2d, Linear: LinearReLU}


def _rsqrt(v: np.ndarray) -> np.ndarray:
    # torch.rsqrt on CPU: 1 / sqrt(x), both correctly rounded in float32
    return (np.float32(1) / np.sqrt(v)).astype(np.float32)


def fuse_conv_bn_weights(w, b, mean, var, eps, gamma, beta) -> tuple[np.ndarray, np.ndarray]:
    """``torch.nn.utils.fusion.fuse_conv_bn_weights`` (not transposed), float32."""
    f = np.float32
    w, mean, var = (np.asarray(a, f) for a in (w, mean, var))
    b = np.zeros_like(mean) if b is None else np.asarray(b, f)
    gamma = np.ones_like(mean) if gamma is None else np.asarray(gamma, f)
    beta = np.zeros_like(mean) if beta is None else np.asarray(beta, f)
    rs = _rsqrt((var + f(eps)).astype(f))
    shape = (-1,) + (1,) * (w.ndim - 1)
    fused_w = (w * (gamma * rs).reshape(shape)).astype(f)
    fused_b = ((b - mean) * rs * gamma + beta).astype(f)
    return fused_w, fused_b


def fuse_linear_bn_weights(w, b, mean, var, eps, gamma, beta) -> tuple[np.ndarray, np.ndarray]:
    """``torch.nn.utils.fusion.fuse_linear_bn_weights``, float32."""
    f = np.float32
    w, mean, var = (np.asarray(a, f) for a in (w, mean, var))
    b = np.zeros_like(mean) if b is None else np.asarray(b, f)
    gamma = np.ones_like(mean) if gamma is None else np.asarray(gamma, f)
    beta = np.zeros_like(mean) if beta is None else np.asarray(beta, f)
    scale = (gamma * _rsqrt((var + f(eps)).astype(f))).astype(f)
    return (w * scale[:, None]).astype(f), ((b - mean) * scale + beta).astype(f)


def _node(tree: dict, path: Sequence[str]) -> dict:
    for part in path:
        tree = tree.setdefault(part, {})
    return tree


def _split(path: str) -> tuple[tuple[str, ...], str]:
    parts = path.split(".")
    return tuple(parts[:-1]), parts[-1]


def _copy(tree: dict) -> dict:
    return {k: _copy(v) if isinstance(v, dict) else v for k, v in tree.items()}


def _fuse_group(model: Module, params: dict, buffers: dict, names: Sequence[str]) -> None:
    mods = []
    for name in names:
        try:
            mods.append(_get(model, name))
        except AttributeError:
            raise KeyError(f"fuse_modules: {type(model).__name__} has no submodule {name!r}") from None
    kinds = tuple(type(m) for m in mods)
    head = kinds[0]
    pattern_ok = head in _BN_FOR and (
        kinds[1:] in ((_BN_FOR[head],), (ReLU,), (_BN_FOR[head], ReLU))
    )
    if not pattern_ok:
        raise NotImplementedError(
            f"fuse_modules: cannot fuse {list(names)} of types {[k.__name__ for k in kinds]}; supported: "
            f"Conv1d/Conv2d/Linear followed by its BatchNorm, ReLU, or BatchNorm then ReLU"
        )
    head_path, head_name = _split(names[0])
    head_params = _node(params, head_path).pop(head_name)
    fused = copy.deepcopy(mods[0])
    weights = {"weight": np.asarray(head_params["weight"])}
    if "bias" in head_params:
        weights["bias"] = np.asarray(head_params["bias"])
    if len(mods) > 1 and isinstance(mods[1], (BatchNorm1d, BatchNorm2d)):
        bn = mods[1]
        if not bn.track_running_stats:
            raise NotImplementedError(f"fuse_modules: {names[1]} has no running statistics to fold")
        bn_path, bn_name = _split(names[1])
        bn_params = _node(params, bn_path).get(bn_name, {})
        bn_buffers = _node(buffers, bn_path).get(bn_name, {})
        fold = fuse_linear_bn_weights if isinstance(fused, Linear) else fuse_conv_bn_weights
        w, b = fold(weights["weight"], weights.get("bias"), bn_buffers["running_mean"], bn_buffers["running_var"],
                    bn.eps, bn_params.get("weight"), bn_params.get("bias"))
        weights = {"weight": w, "bias": b}
        if "bias" not in fused._parameters:
            fused.bias = Parameter(b.shape, 0.0, np.float32)
    weights = {k: jnp.asarray(v) for k, v in weights.items()}
    if isinstance(mods[-1], ReLU):
        fused = _WITH_RELU[head](fused, ReLU())  # a fresh ReLU: the model's may be shared
        weights = {"0": weights}
    _set(model, names[0], fused)
    _node(params, head_path)[head_name] = weights
    for name in names[1:]:
        path, last = _split(name)
        _node(params, path).pop(last, None)
        _node(buffers, path).pop(last, None)
        _set(model, name, Identity())


def _get(model: Module, name: str) -> Module:
    module = model
    for part in name.split("."):
        children = module._modules
        if part not in children:
            raise AttributeError(name)
        module = children[part]
    return module


def _set(model: Module, name: str, new: Module) -> None:
    path, last = _split(name)
    parent = _get(model, ".".join(path)) if path else model
    parent._modules[last] = new  # in place: keeps the order of children


def fuse_modules(model: Module, variables: Variables | dict, modules_to_fuse: Sequence) -> tuple[Module, Variables]:
    """``torch.ao.quantization.fuse_modules(model, modules_to_fuse)`` for eval (post-training) fusion.

    Args:
        model: the float model (not modified).
        variables: its ``Variables`` (BatchNorm's running statistics are buffers).
        modules_to_fuse: a list of dotted names (one group) or a list of such lists, e.g.
            ``[["conv1", "bn1", "relu1"], ["fc1", "relu2"]]``.

    Returns:
        ``(fused_model, fused_variables)``: new objects; the inputs are left untouched.

    Raises:
        NotImplementedError: a group of types torch's eager fusion does not fuse.
    """
    if not isinstance(variables, Variables):
        variables = Variables(variables, {})
    if modules_to_fuse and isinstance(modules_to_fuse[0], str):
        modules_to_fuse = [modules_to_fuse]
    fused = copy.deepcopy(model)
    params, buffers = _copy(variables.params), _copy(variables.buffers)
    for group in modules_to_fuse:
        _fuse_group(fused, params, buffers, list(group))
    return fused, Variables(params, buffers)
