"""torch's random draws in converted code, keyed by the call site (``tm.rand``, ``tm.bernoulli_``, …).

torch draws from a global generator; JAX from explicit keys. Inside a module's own method the
converter passes ``self.make_rng()``. Model code also draws in free functions that a module calls
(torchvision's ``stochastic_depth``, Swin's ``F.dropout`` in ``shifted_window_attention``), where no
module is in reach: there :func:`call_site_key` gives the key of the innermost module being
applied, exactly what that module's ``self.make_rng()`` would give. So the draws come from the
``key`` given to ``Module.apply``, differ between call sites and calls, and repeat for the same key.
Outside ``apply``, or in train mode without a key, they raise and say so.

The helpers follow torch's signatures and result shapes and dtypes (float32 by default; integers
in JAX's default int32, torch's are int64); the numbers are JAX's, not torch's stream.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from funcnet.nn import _context
from funcnet.port._args import canonical_dtype, dims


def call_site_key() -> jax.Array:
    """A fresh PRNG key from the innermost module being applied (its ``self.make_rng()``)."""
    ctx = _context.current()
    if ctx is None or not ctx.stack:
        raise RuntimeError("funcnet.port: random numbers in converted torch code are drawn inside Module.apply, "
                           "from the key given to it (apply(..., key=jax.random.key(0), train=True)); this draw "
                           "is outside any apply")
    return ctx.make_rng(ctx.stack[-1])


def _float_dtype(dtype: Any, like: jax.Array | None = None) -> Any:
    dtype = canonical_dtype(dtype if dtype is not None else (like.dtype if like is not None else jnp.float32))
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"funcnet.port: a floating dtype is needed for this random draw, got {dtype}")
    return dtype


def _no_generator(generator: Any) -> None:
    if generator is not None:
        raise TypeError("funcnet.port: torch.Generator objects have no JAX meaning; the draws come from the key "
                        "given to Module.apply (drop generator=)")


# ---- factories: torch.rand(...) -------------------------------------------------------------------
def rand(*size: Any, dtype: Any = None, generator: Any = None, **_device: Any) -> jax.Array:
    """``torch.rand(*size)``: uniform on [0, 1)."""
    _no_generator(generator)
    return jax.random.uniform(call_site_key(), dims(size), _float_dtype(dtype))


def randn(*size: Any, dtype: Any = None, generator: Any = None, **_device: Any) -> jax.Array:
    """``torch.randn(*size)``: standard normal."""
    _no_generator(generator)
    return jax.random.normal(call_site_key(), dims(size), _float_dtype(dtype))


def rand_like(x: jax.Array, dtype: Any = None, **_device: Any) -> jax.Array:
    """``torch.rand_like(x)``: uniform on [0, 1), ``x``'s shape and dtype."""
    return jax.random.uniform(call_site_key(), jnp.shape(x), _float_dtype(dtype, jnp.asarray(x)))


def randn_like(x: jax.Array, dtype: Any = None, **_device: Any) -> jax.Array:
    """``torch.randn_like(x)``: standard normal, ``x``'s shape and dtype."""
    return jax.random.normal(call_site_key(), jnp.shape(x), _float_dtype(dtype, jnp.asarray(x)))


def randint(*args: Any, size: Any = None, dtype: Any = None, generator: Any = None, **_device: Any) -> jax.Array:
    """``torch.randint(high, size)`` / ``torch.randint(low, high, size)``: integers in [low, high)."""
    _no_generator(generator)
    if size is None:
        *bounds, size = args
    else:
        bounds = list(args)
    low, high = (0, bounds[0]) if len(bounds) == 1 else tuple(bounds)
    return jax.random.randint(call_site_key(), dims((size,)), low, high, canonical_dtype(dtype or jnp.int32))


def randperm(n: int, dtype: Any = None, generator: Any = None, **_device: Any) -> jax.Array:
    """``torch.randperm(n)``: a random permutation of ``0 … n-1``."""
    _no_generator(generator)
    return jax.random.permutation(call_site_key(), jnp.arange(int(n), dtype=dtype or jnp.int32))


def bernoulli(input: jax.Array, p: Any = None, generator: Any = None) -> jax.Array:
    """``torch.bernoulli(input)``: 1 with probability ``input`` (or the scalar ``p``), ``input``'s
    shape and dtype."""
    _no_generator(generator)
    input = jnp.asarray(input)
    prob = input if p is None else p
    return jax.random.bernoulli(call_site_key(), prob, input.shape).astype(input.dtype)


# ---- in place on a receiver: x.bernoulli_(p) -> x = tm.bernoulli_(x, p) ----------------------------
def bernoulli_(x: jax.Array, p: Any = 0.5, generator: Any = None) -> jax.Array:
    """``x.bernoulli_(p)`` as a new array: 1 with probability ``p``, else 0, in ``x``'s shape and dtype."""
    _no_generator(generator)
    return jax.random.bernoulli(call_site_key(), p, x.shape).astype(x.dtype)


def uniform_(x: jax.Array, a: Any = 0.0, b: Any = 1.0, generator: Any = None) -> jax.Array:
    """``x.uniform_(a, b)`` as a new array: uniform on [a, b) in ``x``'s shape and dtype."""
    _no_generator(generator)
    return jax.random.uniform(call_site_key(), x.shape, _float_dtype(None, x), a, b)


def normal_(x: jax.Array, mean: Any = 0.0, std: Any = 1.0, generator: Any = None) -> jax.Array:
    """``x.normal_(mean, std)`` as a new array, in ``x``'s shape and dtype."""
    _no_generator(generator)
    return mean + std * jax.random.normal(call_site_key(), x.shape, _float_dtype(None, x))
