"""torch's argument forms that ``ops.py`` and ``random.py`` both read."""

from __future__ import annotations

from typing import Any

import jax


def dims(args: tuple) -> tuple:
    """torch's ``f(*dims)`` or ``f(dims)`` argument forms, as one tuple."""
    if len(args) == 1 and isinstance(args[0], (tuple, list)):
        return tuple(args[0])
    return tuple(args)


def canonical_dtype(d: Any) -> Any:
    """``d`` as JAX will hold it (float64 is float32 unless x64 is enabled)."""
    return jax.dtypes.canonicalize_dtype(d)
