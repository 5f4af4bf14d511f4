"""A converted model's state_dict in torch's layout, both ways (torch imported lazily).

funcnet keeps an int8 layer's weight, weight scales and bias as separate readable arrays
(``weight``, ``weight_scale``, ``weight_zero_point``, ``bias``, ``scale``, ``zero_point``);
torch packs the first three into a quantized tensor (Conv: ``weight`` is a ``qint8`` tensor)
or a packed object (Linear: ``_packed_params._packed_params = (qweight, bias)``). These two
functions translate, so a torch-converted model's int8 weights, scales and zero points load into
funcnet's converted model and funcnet's into torch's (``load_state_dict(strict=True)``):

==================  ============================================  ===========================
funcnet layer       torch keys                                    values
==================  ============================================  ===========================
``Quantize``        ``scale [1]``, ``zero_point [1]``             float32, int64
``Conv1d/2d(ReLU)`` ``weight``, ``bias``, ``scale``, ``zero_point``  qint8 tensor, float, 0-d
``Linear(ReLU)``    ``scale``, ``zero_point``,                    0-d, 0-d,
                    ``_packed_params.dtype``,                     ``torch.qint8``,
                    ``_packed_params._packed_params``             ``(qint8 weight, bias)``
``QFunctional``     ``scale``, ``zero_point``                     0-d
==================  ============================================  ===========================

Every other entry (layers left in float) has the same key and value in both.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np

from funcnet.nn.module import Module, Variables
from funcnet.quantization import quantized as nq


def _prefix(path: str) -> str:
    return f"{path}." if path else ""


def _weighted(module: Module) -> bool:
    return isinstance(module, (nq.Linear, nq._ConvNd))


def to_torch_state_dict(qmodel: Module, qvariables: Variables) -> OrderedDict:
    """The converted model's ``state_dict`` as torch's converted model has it (torch tensors)."""
    import torch
    import torch.ao.nn.quantized as tnq

    flat = qmodel.state_dict(qvariables)
    out: OrderedDict = OrderedDict()
    # torch's load_state_dict reads each module's format version from _metadata; without it the
    # quantized Linear would take the legacy (version 1) layout
    out._metadata = OrderedDict()
    special = {path: m for path, m in qmodel.named_modules() if _weighted(m) or isinstance(m, nq.Quantize)}
    handled: set[str] = set()
    for key in flat:
        path = key.rsplit(".", 1)[0] if "." in key else ""
        if path not in special:
            out[key] = torch.tensor(np.asarray(flat[key]))
            continue
        if path in handled:
            continue
        handled.add(path)
        module, p = special[path], _prefix(path)
        if isinstance(module, nq.Quantize):
            out[p + "scale"] = torch.tensor(np.asarray(flat[p + "scale"]), dtype=torch.float32)
            out[p + "zero_point"] = torch.tensor(np.asarray(flat[p + "zero_point"]), dtype=torch.int64)
            continue
        w = torch.tensor(np.asarray(flat[p + "weight"]))
        scales, zps = np.asarray(flat[p + "weight_scale"]), np.asarray(flat[p + "weight_zero_point"])
        if scales.ndim:
            qw = torch._make_per_channel_quantized_tensor(
                w, torch.tensor(scales, dtype=torch.float64), torch.tensor(zps, dtype=torch.int64), 0)
        else:
            qw = torch._make_per_tensor_quantized_tensor(w, float(scales), int(zps))
        bias = torch.tensor(np.asarray(flat[p + "bias"])) if p + "bias" in flat else None
        scale = torch.tensor(float(np.asarray(flat[p + "scale"])), dtype=torch.float32)
        zp = torch.tensor(int(np.asarray(flat[p + "zero_point"])), dtype=torch.int64)
        if isinstance(module, nq.Linear):
            out._metadata[path] = {"version": tnq.Linear._version}
            out._metadata[p + "_packed_params"] = {"version": tnq.modules.linear.LinearPackedParams._version}
            out[p + "scale"], out[p + "zero_point"] = scale, zp
            out[p + "_packed_params.dtype"] = torch.qint8
            out[p + "_packed_params._packed_params"] = (qw, bias)
        else:
            out._metadata[path] = {"version": tnq.Conv2d._version}
            out[p + "weight"] = qw
            if bias is not None:
                out[p + "bias"] = bias
            out[p + "scale"], out[p + "zero_point"] = scale, zp
    return out


def _numpy(t: Any) -> np.ndarray:
    return t.detach().cpu().numpy() if hasattr(t, "detach") else np.asarray(t)


def from_torch_state_dict(qmodel: Module, state_dict: dict, strict: bool = True) -> Variables:
    """Variables for funcnet's converted ``qmodel`` from a torch-converted model's ``state_dict``.

    Raises:
        RuntimeError: missing/unexpected keys (``strict``), shapes that do not match, or a torch
            weight whose quantization scheme funcnet's layer does not have (per tensor vs channel).
    """
    flat: dict = {}
    consumed: set[str] = set()
    for path, module in qmodel.named_modules():
        if not _weighted(module):
            continue
        p = _prefix(path)
        if isinstance(module, nq.Linear):
            key = p + "_packed_params._packed_params"
            if key not in state_dict:
                raise RuntimeError(f"from_torch_state_dict: missing {key!r} for {path} ({type(module).__name__})")
            qw, bias = state_dict[key]
            consumed.update({key, p + "_packed_params.dtype"})
        else:
            qw, bias = state_dict.get(p + "weight"), state_dict.get(p + "bias")
            if qw is None:
                raise RuntimeError(f"from_torch_state_dict: missing {p + 'weight'!r} for {path}")
            consumed.update({p + "weight", p + "bias"})
        if not getattr(qw, "is_quantized", False):
            raise RuntimeError(f"from_torch_state_dict: {path}'s weight is not a quantized tensor")
        per_channel = qw.qscheme() in (_torch().per_channel_affine, _torch().per_channel_symmetric)
        if per_channel != module.per_channel:
            ours = "per-channel" if module.per_channel else "per-tensor"
            raise RuntimeError(f"from_torch_state_dict: {path} is {ours} in funcnet, torch's weight is {qw.qscheme()}")
        flat[p + "weight"] = _numpy(qw.int_repr())
        if per_channel:
            flat[p + "weight_scale"] = _numpy(qw.q_per_channel_scales()).astype(np.float32)
            flat[p + "weight_zero_point"] = _numpy(qw.q_per_channel_zero_points()).astype(np.int32)
        else:
            flat[p + "weight_scale"] = np.float32(qw.q_scale())
            flat[p + "weight_zero_point"] = np.int32(qw.q_zero_point())
        if bias is not None:
            flat[p + "bias"] = _numpy(bias).astype(np.float32)
    for key, value in state_dict.items():
        if key not in consumed and key not in flat:
            flat[key] = _numpy(value) if not isinstance(value, (tuple, type(None))) else value
    variables, _ = qmodel.load_state_dict(flat, strict=strict)
    return variables


def _torch():
    import torch

    return torch
