"""Weights in and out of funcnet: torch ``state_dict``/``.pt`` files and safetensors.

Both use torch's flat key names (``fc1.weight``, ``bn.running_mean``), so a
funcnet model and its torch twin exchange weights with ``strict=True``.
torch and safetensors stay optional: they are imported inside the functions.
"""

from funcnet.interop.safetensors import load_safetensors, save_safetensors
from funcnet.interop.torch import from_torch, to_torch

__all__ = ["from_torch", "load_safetensors", "save_safetensors", "to_torch"]
