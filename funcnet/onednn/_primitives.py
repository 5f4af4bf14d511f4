"""What oneDNN's JAX primitives (``conv.py``, ``matmul.py``) share: creation with an eager
implementation, the float32 check, operands with a common leading batch, the availability guard."""

from __future__ import annotations

import functools
from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp
from jax.extend.core import Primitive


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
