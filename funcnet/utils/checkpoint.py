"""``funcnet.utils.checkpoint``: torch's activation checkpointing as ``jax.checkpoint``.

``checkpoint(fn, *args)`` recomputes ``fn``'s activations in the backward pass instead of
storing them (DenseNet's ``memory_efficient=True``). Inside ``Module.apply``, buffer updates
made by ``fn`` (BatchNorm's running statistics in train mode) come out of the checkpointed
function as outputs and are recorded in the running apply, so no traced value leaks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

from funcnet.nn import _context


def checkpoint(function: Callable, *args: Any, use_reentrant: bool | None = None, context_fn: Any = None,
               determinism_check: str = "default", debug: bool = False, preserve_rng_state: bool = True,
               **kwargs: Any) -> Any:
    """``torch.utils.checkpoint.checkpoint``: ``function(*args, **kwargs)``, rematerialised in backward."""
    ctx = _context.current()
    if ctx is None:
        return jax.checkpoint(lambda *a: function(*a, **kwargs))(*args)
    if callable(ctx.key):  # a lazily derived key: resolve it outside the checkpointed trace
        ctx.key = ctx.key()

    def run(*a: Any) -> tuple[Any, dict]:
        outer = ctx.new_buffers
        ctx.new_buffers = _context._merge({}, outer)  # a copy: reads see earlier updates
        try:
            return function(*a, **kwargs), ctx.new_buffers
        finally:
            ctx.new_buffers = outer

    out, new_buffers = jax.checkpoint(run)(*args)
    ctx.new_buffers = new_buffers
    return out


def checkpoint_sequential(functions: Any, segments: int, input: Any, use_reentrant: bool | None = None,
                          **kwargs: Any) -> Any:
    """``torch.utils.checkpoint.checkpoint_sequential``: each of ``segments`` chunks checkpointed."""
    functions = list(functions.children()) if hasattr(functions, "children") else list(functions)
    size = max(1, -(-len(functions) // segments))
    for start in range(0, len(functions), size):
        chunk = functions[start:start + size]

        def run(x: Any, chunk: list = chunk) -> Any:
            for f in chunk:
                x = f(x)
            return x

        input = checkpoint(run, input)
    return input
