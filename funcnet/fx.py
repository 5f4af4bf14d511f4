"""``funcnet.fx``: ``torch.fx.wrap``, which model files call at import time, as a no-op."""

from __future__ import annotations

from typing import Any


def wrap(fn_or_name: Any) -> Any:
    """``torch.fx.wrap``: marks a function as a leaf for torch's FX tracer; returns its argument."""
    return fn_or_name
