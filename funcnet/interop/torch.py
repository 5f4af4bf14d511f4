"""PyTorch interchange: torch ``state_dict`` (or ``.pt`` file) ⇄ funcnet ``Variables``.

funcnet modules use torch's parameter layouts and ``state_dict`` key names, so
the conversion is a rename-free copy:

    variables = from_torch(model, torch_model.state_dict())     # or a path to torch.save's file
    torch_model.load_state_dict(to_torch(model, variables))     # strict=True works

torch stays optional: it is imported inside the functions. Dtypes are kept
(bfloat16 and float8 included) except where funcnet and torch differ by
design: ``num_batches_tracked`` is int32 in funcnet and int64 in torch, and
each direction converts it. Loading casts to each funcnet declaration's dtype,
as torch's ``load_state_dict`` copies into the existing parameter's dtype.
"""

from __future__ import annotations

import os
import warnings
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import numpy as np

from funcnet.nn.module import Module, Variables, as_variables

__all__ = ["from_torch", "tensor_to_numpy", "numpy_to_tensor", "to_torch"]

# torch dtypes numpy has no native type for, by their ml_dtypes name.
_ML_DTYPES = ("bfloat16", "float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz")
_SAME_SIZE_INT = {1: "uint8", 2: "int16"}


def tensor_to_numpy(t: Any) -> np.ndarray:
    """A torch tensor as a numpy array of the same dtype (bfloat16/float8 via ml_dtypes); a copy."""
    import torch

    t = t.detach().cpu()
    name = str(t.dtype).removeprefix("torch.")
    if name in _ML_DTYPES:
        import ml_dtypes

        raw = t.contiguous().view(getattr(torch, _SAME_SIZE_INT[t.element_size()])).numpy()
        return raw.view(getattr(ml_dtypes, name)).copy()
    return t.numpy().copy()


def numpy_to_tensor(a: Any) -> Any:
    """A numpy/jax array as a torch tensor of the same dtype (bfloat16/float8 included); a copy."""
    import torch

    a = np.array(a, copy=True, order="C")
    if a.dtype.name in _ML_DTYPES:
        raw = a.view(_SAME_SIZE_INT[a.dtype.itemsize])
        return torch.from_numpy(raw).view(getattr(torch, a.dtype.name))
    return torch.from_numpy(a)


def _as_state_dict(obj: Any, where: str) -> Mapping:
    if not isinstance(obj, Mapping):
        raise TypeError(
            f"from_torch: {where} holds a {type(obj).__name__}, not a state_dict (a dict of tensors)"
        )
    not_arrays = [k for k, v in obj.items() if not hasattr(v, "shape")]
    if not_arrays:
        raise TypeError(
            f"from_torch: {where} is not a flat state_dict: entries {not_arrays[:5]} are not tensors "
            f"(a training checkpoint? pass its model entry, e.g. obj['model_state_dict'])"
        )
    return obj


def from_torch(
    model: Module,
    state_dict_or_path: Any,
    strict: bool = True,
    into: Variables | None = None,
) -> Variables:
    """funcnet ``Variables`` from a torch ``state_dict`` or a file written by ``torch.save``.

    Args:
        model: the funcnet model (torch's key names and layouts).
        state_dict_or_path: ``torch_model.state_dict()`` (tensors or arrays), the torch model
            itself, or the path of a ``torch.save(state_dict, path)`` file, read with
            ``torch.load(weights_only=True)`` on CPU (so the file cannot run code).
        strict: as ``torch.nn.Module.load_state_dict``: missing/unexpected keys raise
            ``RuntimeError('Error(s) in loading state_dict for ...')``. Size mismatches raise
            even when not strict.
        into: where keys the state dict lacks come from under ``strict=False``
            (e.g. ``model.init(key)``).

    Returns:
        ``Variables(params, buffers)`` in each declaration's dtype. Under ``strict=False``
        missing/unexpected keys are reported with a ``UserWarning``.
    """
    if isinstance(state_dict_or_path, (str, os.PathLike)):
        import torch

        where = repr(os.fspath(state_dict_or_path))
        obj = torch.load(state_dict_or_path, map_location="cpu", weights_only=True)
    else:
        where, obj = "the argument", state_dict_or_path
        if callable(getattr(obj, "state_dict", None)) and not isinstance(obj, Mapping):
            obj = obj.state_dict()  # a torch.nn.Module itself
    sd = _as_state_dict(obj, where)
    arrays = {k: tensor_to_numpy(v) if hasattr(v, "detach") else np.asarray(v) for k, v in sd.items()}
    variables, incompatible = model.load_state_dict(arrays, strict=strict, into=into)
    if incompatible.missing_keys or incompatible.unexpected_keys:
        warnings.warn(
            f"from_torch({type(model).__name__}, strict=False): missing keys {incompatible.missing_keys}, "
            f"unexpected keys {incompatible.unexpected_keys}",
            UserWarning,
            stacklevel=2,
        )
    return variables


def to_torch(model: Module, variables: Any) -> OrderedDict:
    """A torch ``state_dict`` (``OrderedDict[str, torch.Tensor]``) of funcnet ``variables``.

    ``variables``: ``Variables``, a ``(params, buffers)`` pair or a ``TrainState`` (params alone
    only for a model without buffers; see ``funcnet.nn.module.as_variables``). Keys and order are
    torch's; a torch twin of ``model`` accepts it with ``load_state_dict(sd, strict=True)``.
    Dtypes are preserved, except ``num_batches_tracked`` which becomes int64 as in torch.
    Tensors are CPU copies.
    """
    variables = as_variables(model, variables, where="interop.to_torch")
    out: OrderedDict = OrderedDict()
    for key, value in model.state_dict(variables).items():
        tensor = numpy_to_tensor(np.asarray(value))
        if key.rsplit(".", 1)[-1] == "num_batches_tracked":
            import torch

            tensor = tensor.to(torch.int64)
        out[key] = tensor
    return out
