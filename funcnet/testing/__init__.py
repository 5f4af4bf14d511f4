"""Numeric testing tools for models and layers: torch's ``testing`` and ``gradcheck``, the JAX way.

- :func:`assert_close` — ``torch.testing.assert_close`` over pytrees of JAX/NumPy/torch arrays
  (torch's default tolerances per dtype, its failure message, the pytree path of the leaf);
- :func:`gradcheck`, :func:`gradgradcheck` — ``torch.autograd.gradcheck``: autodiff against
  finite differences in float64, naming the input leaf and element that fails;
- :func:`assert_module_matches_torch`, :func:`assert_function_matches_torch` — does a port compute
  torch's outputs and gradients with torch's weights;
- ``funcnet.testing.pytest_plugin`` — fixtures ``key`` and ``assert_close``, the marker
  ``funcnet_jit_and_eager``; enable it with ``-p funcnet.testing.pytest_plugin`` or
  ``pytest_plugins = ["funcnet.testing.pytest_plugin"]`` in your top-level ``conftest.py``.

torch is imported only by the torch-parity functions (and to read torch tensors you pass). The
names load on first use, so that the pytest plugin costs nothing until a fixture asks for JAX.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from funcnet.testing._compare import assert_close, default_tolerances
    from funcnet.testing._gradcheck import GradcheckError, gradcheck, gradgradcheck
    from funcnet.testing._torch_parity import assert_function_matches_torch, assert_module_matches_torch

_WHERE = {
    "assert_close": "_compare", "default_tolerances": "_compare",
    "GradcheckError": "_gradcheck", "gradcheck": "_gradcheck", "gradgradcheck": "_gradcheck",
    "assert_function_matches_torch": "_torch_parity", "assert_module_matches_torch": "_torch_parity",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'funcnet.testing' has no attribute '{name}'")
    value = getattr(importlib.import_module(f"funcnet.testing.{_WHERE[name]}"), name)
    globals()[name] = value
    return value

__all__ = [
    "GradcheckError", "assert_close", "assert_function_matches_torch", "assert_module_matches_torch",
    "default_tolerances", "gradcheck", "gradgradcheck",
]
