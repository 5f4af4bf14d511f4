"""``default_collate``: a list of samples -> one batch (numpy arrays), torch's rules adapted to JAX.

- arrays (numpy, JAX, anything with ``__array__``) are stacked along a new axis 0; shapes must be
  equal (a ragged batch raises and names the sample positions and shapes);
- Python ``float`` -> float32, ``int`` -> int32, ``bool`` -> bool, numpy scalars keep their dtype;
- ``str``/``bytes`` -> list; ``None`` -> list;
- mappings -> a dict of collated values; namedtuples -> the same namedtuple type;
  tuples -> **tuples** and lists -> lists of collated fields (same length required).

Differences from torch: the result is numpy (host) arrays, not tensors; Python floats/ints become
float32/int32 (JAX's default dtypes; torch gives float64/int64) — int64/float64 when
``jax_enable_x64`` is on; tuples stay tuples (torch turns them into lists) so a batch is a
pytree of the same structure as a sample.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def _x64() -> bool:
    import jax

    return bool(jax.config.jax_enable_x64)


def _describe(x: Any) -> str:
    shape = getattr(x, "shape", None)
    return f"shape {tuple(shape)}" if shape is not None else f"length {len(x)}"


def _stack(batch: Sequence[Any], path: str) -> np.ndarray:
    arrays = [np.asarray(x) for x in batch]
    first = arrays[0].shape
    for i, a in enumerate(arrays):
        if a.shape != first:
            raise ValueError(
                f"default_collate: ragged batch at {path or 'the sample'}: sample 0 has shape {first} but "
                f"sample {i} has shape {a.shape}; arrays in a batch must have equal shapes (pad them, "
                f"or pass a collate_fn)"
            )
    return np.stack(arrays)


def _collate(batch: Sequence[Any], path: str) -> Any:
    elem = batch[0]
    kind = type(elem)
    if isinstance(elem, bool):
        return np.asarray(batch, dtype=np.bool_)
    if isinstance(elem, int):
        return np.asarray(batch, dtype=np.int64 if _x64() else np.int32)
    if isinstance(elem, float):
        return np.asarray(batch, dtype=np.float64 if _x64() else np.float32)
    if isinstance(elem, (str, bytes)) or elem is None:
        return list(batch)
    if isinstance(elem, (np.ndarray, np.generic)) or hasattr(elem, "__array__"):
        return _stack(batch, path)
    if isinstance(elem, Mapping):
        keys = list(elem.keys())
        for i, x in enumerate(batch):
            if list(x.keys()) != keys:
                raise ValueError(f"default_collate: sample {i} has keys {list(x.keys())} but sample 0 has "
                                 f"{keys} at {path or 'the sample'}")
        return {k: _collate([x[k] for x in batch], f"{path}[{k!r}]") for k in keys}
    if isinstance(elem, tuple) and hasattr(elem, "_fields"):  # namedtuple
        return kind(*(_collate(list(field), f"{path}.{name}")
                      for name, field in zip(elem._fields, zip(*batch, strict=False), strict=False)))
    if isinstance(elem, Sequence):
        size = len(elem)
        for i, x in enumerate(batch):
            if len(x) != size:
                raise RuntimeError(
                    f"each element in list of batch should be of equal size: sample 0 at "
                    f"{path or 'the sample'} has {size} elements but sample {i} has {len(x)}"
                )
        fields = [_collate(list(field), f"{path}[{j}]") for j, field in enumerate(zip(*batch, strict=False))]
        return tuple(fields) if isinstance(elem, tuple) else fields
    raise TypeError(f"default_collate: batch must contain arrays, numbers, dicts or lists; found "
                    f"{kind.__name__} at {path or 'the sample'}")


def default_collate(batch: Sequence[Any]) -> Any:
    """Collate a list of samples into a batch (see the module docstring for the rules).

    Example: ``default_collate([(x0, 1), (x1, 2)]) == (np.stack([x0, x1]), np.array([1, 2], int32))``.
    """
    if len(batch) == 0:
        raise ValueError("default_collate: got an empty list of samples")
    return _collate(list(batch), "")
