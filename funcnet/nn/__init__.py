"""``funcnet.nn``: torch.nn's modules, declared as configuration with pure ``init``/``apply``."""

from funcnet.nn import functional, init, transfer, utils
from funcnet.nn.module import IncompatibleKeys, Module, ShapeError, Variables, as_variables
from funcnet.nn.modules import *  # noqa: F403
from funcnet.nn.modules import __all__ as _modules_all
from funcnet.nn.parameter import Buffer, Parameter


def functional_call(module: Module, variables, args, kwargs=None, **apply_kwargs):
    """``torch.func.functional_call``: ``module.apply`` with ``(params, buffers)`` and an args tuple."""
    if not isinstance(args, tuple):
        args = (args,)
    variables = as_variables(module, variables, where="functional_call")
    return module.apply(variables, *args, **(kwargs or {}), **apply_kwargs)


__all__ = [
    "Buffer",
    "IncompatibleKeys",
    "Module",
    "Parameter",
    "ShapeError",
    "Variables",
    "as_variables",
    "functional",
    "functional_call",
    "init",
    "transfer",
    "utils",
    *_modules_all,
]
