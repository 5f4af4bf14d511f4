"""``funcnet.jit``: torch.jit's helpers that model code calls, as no-ops (compilation is ``jax.jit``).

TorchScript annotations in torch model files (``@torch.jit.unused``, ``torch.jit.is_scripting()``,
``torch.jit.annotate(T, v)``, ``@torch.jit._overload_method``) only steer torch's script
compiler; here they return what they are given so the same code runs unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def unused(fn: Callable) -> Callable:
    """``torch.jit.unused``: the function itself."""
    return fn


def ignore(drop: Any = False, **kwargs: Any) -> Any:
    """``torch.jit.ignore`` (``@ignore`` or ``@ignore(drop=...)``): the function itself."""
    if callable(drop):
        return drop
    return lambda fn: fn


def export(fn: Callable) -> Callable:
    """``torch.jit.export``: the function itself."""
    return fn


def _overload_method(fn: Callable) -> Callable:
    """``torch.jit._overload_method``: the function itself (a later definition replaces it, as in Python)."""
    return fn


def _overload(fn: Callable) -> Callable:
    """``torch.jit._overload``: the function itself."""
    return fn


def is_scripting() -> bool:
    """``torch.jit.is_scripting``: always False (funcnet never runs TorchScript)."""
    return False


def is_tracing() -> bool:
    """``torch.jit.is_tracing``: always False (``jax.jit`` tracing is not torch's tracer)."""
    return False


def annotate(the_type: Any, the_value: Any) -> Any:
    """``torch.jit.annotate(T, value)``: the value."""
    return the_value


def script(obj: Any, *args: Any, **kwargs: Any) -> Any:
    """``torch.jit.script``: the object itself; compile with ``jax.jit`` instead."""
    return obj


Final = Any  # torch.jit.Final[T]: a typing marker only
