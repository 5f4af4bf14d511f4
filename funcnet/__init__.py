"""funcnet: PyTorch's concepts, the JAX way — pure functions over pytrees, compiled with ``jax.jit``.

Subpackages load on first use so that ``import funcnet`` stays cheap:
``funcnet.nn``, ``funcnet.optim``, ``funcnet.utils.data``, ``funcnet.datasets``,
``funcnet.train``, ``funcnet.parallel``, ``funcnet.distributed``, ``funcnet.vision``,
``funcnet.quantization``, ``funcnet.interop``, ``funcnet.checkpoint``, ``funcnet.testing``.
"""

from __future__ import annotations

import importlib
from typing import Any

from funcnet import host_memory

host_memory.apply_default()  # before JAX's threads first allocate: see funcnet.host_memory

from funcnet.tensor import (  # noqa: E402 - after the allocator policy. torch-named tensor functions (torch.sum(x, dim, keepdim) → funcnet.sum ...)
    _assert,
    abs,
    amax,
    amin,
    arange,
    argmax,
    cat,
    ceil,
    chunk,
    clamp,
    clip,
    cos,
    empty,
    exp,
    flatten,
    floor,
    full,
    log,
    log2,
    log_softmax,
    manual_seed,
    matmul,
    mean,
    meshgrid,
    ones,
    ones_like,
    permute,
    pow,
    relu,
    roll,
    round,
    rsqrt,
    sigmoid,
    sign,
    sin,
    softmax,
    split,
    sqrt,
    squeeze,
    stack,
    std,
    sum,
    tanh,
    tensor,
    transpose,
    unsqueeze,
    var,
    where,
    zeros,
    zeros_like,
)

__version__ = "0.1.0"

_SUBPACKAGES = {
    "backends", "nn", "optim", "utils", "data", "datasets", "train", "parallel", "distributed",
    "vision", "quantization", "interop", "checkpoint", "serialization", "testing", "jit", "fx", "port",
}

# Top-level names that live in a subpackage: name -> (module, attribute).
_LAZY_ATTRS = {
    "save": ("funcnet.serialization", "save"),
    "load": ("funcnet.serialization", "load"),
}


def __getattr__(name: str) -> Any:
    if name in _SUBPACKAGES:
        module = importlib.import_module(f"funcnet.{name}")
        globals()[name] = module
        return module
    if name in _LAZY_ATTRS:
        module_name, attr = _LAZY_ATTRS[name]
        value = getattr(importlib.import_module(module_name), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'funcnet' has no attribute '{name}'")


__all__ = [
    "__version__", "_assert", "abs", "amax", "amin", "arange", "argmax", "cat", "ceil", "chunk", "clamp", "clip",
    "cos", "empty", "exp", "flatten", "floor", "full", "load", "log", "log2", "log_softmax", "manual_seed",
    "matmul", "mean", "meshgrid", "ones", "ones_like", "permute", "pow", "relu", "roll", "round", "rsqrt", "save",
    "sigmoid", "sign", "sin", "softmax", "split", "sqrt", "squeeze", "stack", "std", "sum", "tanh", "tensor",
    "transpose", "unsqueeze", "var", "where", "zeros", "zeros_like",
]
