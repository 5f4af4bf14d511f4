"""safetensors files of a model's flat ``state_dict``, with torch's key names.

A file written here loads into the torch twin of the model with
``safetensors.torch.load_file`` + ``load_state_dict(strict=True)``, and a file
written by ``safetensors.torch.save_file(torch_model.state_dict(), path)``
loads here. safetensors holds raw tensors only (no code, no pickle), so it is
safe to load from anywhere. Dtypes are preserved (bfloat16 included);
``num_batches_tracked`` is written as int64, as torch has it. The safetensors
numpy API cannot read float8 tensors. The ``safetensors`` package is optional
(``pip install funcnet[io]``); it is imported inside the functions.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from funcnet.nn.module import Module, Variables, as_variables
from funcnet.serialization import atomic_write_bytes

__all__ = ["load_safetensors", "save_safetensors"]


def save_safetensors(
    model: Module,
    variables: Any,
    path: str | os.PathLike,
    metadata: dict[str, str] | None = None,
) -> None:
    """Write ``model.state_dict(variables)`` to ``path`` in safetensors format, atomically.

    Args:
        model: the funcnet model (gives the torch key names and order).
        variables: its ``Variables(params, buffers)``, a ``(params, buffers)`` pair or a
            ``TrainState`` (params alone only for a model without buffers).
        path: the target file (replaced atomically: temp file, fsync, rename).
        metadata: optional ``str -> str`` header metadata.
    """
    from safetensors.numpy import save as st_save

    variables = as_variables(model, variables, where="interop.save_safetensors")
    tensors = {}
    for key, value in model.state_dict(variables).items():
        arr = np.ascontiguousarray(np.asarray(value))
        if key.rsplit(".", 1)[-1] == "num_batches_tracked":
            arr = arr.astype(np.int64)
        tensors[key] = arr
    atomic_write_bytes(path, st_save(tensors, metadata=metadata))


def load_safetensors(
    model: Module,
    path: str | os.PathLike,
    strict: bool = True,
    into: Variables | None = None,
) -> Variables:
    """``Variables`` of ``model`` from a safetensors file with torch's key names.

    Args:
        model: the funcnet model.
        path: a ``.safetensors`` file (funcnet's or ``safetensors.torch.save_file``'s).
        strict, into: as ``Module.load_state_dict`` (torch's missing/unexpected-key and
            size-mismatch errors).

    Returns:
        ``Variables(params, buffers)`` cast to each declaration's dtype.
    """
    from safetensors import safe_open

    with safe_open(os.fspath(path), framework="numpy") as f:
        arrays = {key: f.get_tensor(key) for key in f.keys()}
    variables, _ = model.load_state_dict(arrays, strict=strict, into=into)
    return variables
