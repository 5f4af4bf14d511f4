"""funcnet.utils: ``funcnet.utils.data`` (datasets, samplers, DataLoader) and
``funcnet.utils.checkpoint`` (``jax.checkpoint``), as ``torch.utils``."""

from __future__ import annotations

import importlib
from typing import Any


def __getattr__(name: str) -> Any:
    if name in ("data", "checkpoint"):
        module = importlib.import_module(f"funcnet.utils.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'funcnet.utils' has no attribute '{name}'")
