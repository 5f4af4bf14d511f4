"""funcnet.utils: ``funcnet.utils.data`` (datasets, samplers, DataLoader), as ``torch.utils``."""

from __future__ import annotations

import importlib
from typing import Any


def __getattr__(name: str) -> Any:
    if name == "data":
        module = importlib.import_module("funcnet.utils.data")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'funcnet.utils' has no attribute '{name}'")
