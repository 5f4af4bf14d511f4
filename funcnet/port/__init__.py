"""``funcnet.port``: convert PyTorch model code to funcnet (``python -m funcnet.port model.py -o out.py``).

:func:`convert` rewrites a file's torch imports into funcnet ones and the tensor-method idioms a
``jax.Array`` cannot carry (``x.view(...)``, ``x.size(1)``, ``x.permute(...)``, ``x[i] = v``) into
calls of :mod:`funcnet.port.ops` (imported as ``tm``), with torch's semantics. It is built on
LibCST (the ``port`` extra), so comments and formatting are kept. A construct it cannot convert
exactly is left as it was and flagged: a ``# funcnet.port: ...`` comment above the statement and a
``file:line: ...`` line on stderr.

Converted code needs only :mod:`funcnet.port.ops` at run time, not LibCST: this package imports
the converter on first use.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from funcnet.port._convert import Flag

__all__ = ["Flag", "PortSyntaxError", "convert", "convert_with_flags"]


def _converter() -> Any:
    try:
        from funcnet.port import _convert
    except ImportError as e:  # libcst missing
        raise ImportError(f"funcnet.port's converter needs LibCST: pip install 'funcnet[port]' ({e})") from e
    return _convert


def convert_with_flags(source: str, filename: str = "<string>") -> tuple[str, list[Flag]]:
    """Convert torch source to funcnet source; returns ``(code, flags)`` and prints nothing.

    Raises :class:`PortSyntaxError` (``file:line:col: syntax error: ...``) for invalid Python."""
    return _converter().convert_module(source, filename)


def convert(source: str, filename: str = "<string>", stderr: TextIO | None = None) -> str:
    """Convert torch source to funcnet source; each flag goes to ``stderr`` as ``filename:line: message``."""
    code, flags = convert_with_flags(source, filename)
    out = sys.stderr if stderr is None else stderr
    for flag in flags:
        print(f"{filename}:{flag.line}: {flag.message}", file=out)
    return code


def __getattr__(name: str) -> Any:
    if name in ("Flag", "PortSyntaxError"):
        return getattr(_converter(), name)
    raise AttributeError(f"module 'funcnet.port' has no attribute '{name}'")
