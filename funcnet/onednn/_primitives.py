"""What oneDNN's JAX primitives (``conv.py``, ``matmul.py``) share: creation with an eager
implementation, lowering rules (oneDNN on CPU, the same maths in lax ops elsewhere and in
``jax.export``), the float32 check, operands with a common leading batch, the availability guard."""

from __future__ import annotations

import functools
from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp
from jax.extend.core import Primitive
from jax.interpreters import mlir


@functools.cache
def _compiled(primitive: Primitive, params: tuple) -> Callable:
    return jax.jit(partial(primitive.bind, **dict(params)))


def new_primitive(name: str, abstract_eval: Callable) -> Primitive:
    """A primitive with ``abstract_eval``; eager calls compile it alone, once per parameter set
    (as jax does for its own primitives)."""
    primitive = Primitive(name)
    primitive.def_abstract_eval(abstract_eval)
    primitive.def_impl(lambda *args, **params: _compiled(primitive, tuple(sorted(params.items())))(*args))
    return primitive


def exporting(ctx: mlir.LoweringRuleContext) -> bool:
    """Whether a lowering is for ``jax.export`` (or ``jax2tf``): its artifact may only contain custom
    calls with a compatibility guarantee, and runs where funcnet's shim is not loaded."""
    return bool(ctx.module_context.lowering_parameters.for_export)


def register_lowerings(primitive: Primitive, kernel: Callable, portable: Callable) -> None:
    """Lower ``primitive`` to ``kernel`` (a function of its operands and parameters that calls the
    shim) on CPU, and to ``portable`` (the same maths in lax ops) on every other platform and in
    exports. So a program traced on CPU also lowers for a GPU/TPU, and exports to any platform."""
    kernel_rule = mlir.lower_fun(kernel, multiple_results=False)
    portable_rule = mlir.lower_fun(portable, multiple_results=False)

    def cpu_rule(ctx, *args, **params):
        return (portable_rule if exporting(ctx) else kernel_rule)(ctx, *args, **params)

    mlir.register_lowering(primitive, portable_rule)
    mlir.register_lowering(primitive, cpu_rule, platform="cpu")


def check_float32(name: str, *avals) -> None:
    for aval in avals:
        if aval.dtype != jnp.float32:
            raise TypeError(f"funcnet.onednn.{name}: float32 only, got {aval.dtype}")


def with_leading_batch(args, dims) -> list[jax.Array]:
    """The operands of a batching rule with the batch moved to axis 0, broadcast where unbatched."""
    size = next(a.shape[d] for a, d in zip(args, dims) if d is not None)
    return [jnp.broadcast_to(a, (size,) + a.shape) if d is None else jnp.moveaxis(a, d, 0)
            for a, d in zip(args, dims)]


def require_available(name: str) -> None:
    """Raises ``RuntimeError`` with :func:`funcnet.onednn.status` when oneDNN cannot run."""
    from funcnet import onednn

    if not onednn.available():
        raise RuntimeError(f"funcnet.onednn.{name}: oneDNN is {onednn.status()}")
