"""Host-side randomness for parameter initialisation: cheap to start, same bits under ``jit``.

Drawing initial weights with ``jax.random`` compiles a threefry kernel for every
parameter shape — about 0.15 s each on a CPU, a second for a small MLP before the
first step can run. funcnet instead derives a 64-bit seed per parameter from the
user's key and the parameter's dotted name, and draws with numpy's PCG64. When the
key is traced (``jax.jit(model.init)``, ``vmap`` over keys) the same numpy code runs
through ``jax.pure_callback``, so eager and compiled ``init`` give identical arrays.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import numpy as np

_MASK = 0xFFFFFFFF


def _is_traced(x: Any) -> bool:
    return isinstance(x, jax.core.Tracer)


def key_words(key: jax.Array) -> jax.Array | np.ndarray:
    """The uint32 words of a typed or raw (``uint32[2]``) key; numpy when concrete."""
    words = jax.random.key_data(key) if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key) else key
    return words if _is_traced(words) else np.asarray(words, np.uint32)


def _mix(words, salt: int, xp) -> Any:
    """A murmur3-style finaliser of each word with ``salt``: uint32 arithmetic, identical in numpy and jnp."""
    x = words.astype(xp.uint32) ^ xp.uint32(salt & _MASK)
    x = x ^ (x >> xp.uint32(16))
    x = x * xp.uint32(0x85EBCA6B)
    x = x ^ (x >> xp.uint32(13))
    x = x * xp.uint32(0xC2B2AE35)
    x = x ^ (x >> xp.uint32(16))
    return x ^ xp.arange(words.shape[-1], dtype=xp.uint32) * xp.uint32(0x9E3779B9)


def derive_key(key: jax.Array, salt: int) -> jax.Array:
    """A new key of the same kind from ``key`` and an integer ``salt`` (e.g. a name's crc32).

    Plays the role of ``jax.random.fold_in`` without compiling anything for concrete keys.
    """
    typed = jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
    words = key_words(key)
    if _is_traced(words):
        import jax.numpy as jnp

        new = _mix(words, salt, jnp)
    else:
        with np.errstate(over="ignore"):
            new = _mix(words, salt, np)
    if not typed:
        return new
    return jax.random.wrap_key_data(new, impl=jax.random.key_impl(key))


def to_array(value: Any, dtype: Any = None) -> jax.Array:
    """``jnp.asarray(value, dtype)`` without a compile: jax 0.10's ``jnp.asarray`` of a numpy
    array compiles an identity program per shape (~5–10 ms each, seconds over a large model's
    parameters); ``device_put`` of the host array does not. Always from a fresh host copy: on CPU
    ``device_put`` aliases aligned numpy memory (``may_alias=False`` did not stop it in jax 0.10),
    and a state dict from ``tensor.numpy()`` shares torch's storage — an in-place torch update
    would change the loaded parameters. Tracers and JAX arrays pass through."""
    if isinstance(value, (np.ndarray, np.generic, int, float)):
        return jax.device_put(np.array(value, dtype))  # np.array copies
    import jax.numpy as jnp

    return jnp.asarray(value, dtype)


def _draw(kind: str, shape: tuple[int, ...], a: float, b: float,
          then: Callable[[np.ndarray], np.ndarray] | None) -> Callable[[np.ndarray], np.ndarray]:
    a32, b32 = np.float32(a), np.float32(b)

    def draw(words: np.ndarray) -> np.ndarray:
        words = np.asarray(words, np.uint32)
        if words.ndim > 1:  # a batch of keys (vmap): one draw each
            return np.stack([draw(w) for w in words])
        generator = np.random.default_rng([int(w) for w in words])
        # The affine step (and ``then``) happen here too, so eager and traced draws round identically.
        if kind == "uniform":
            x = a32 + (b32 - a32) * generator.random(shape, dtype=np.float32)
        else:
            x = a32 + b32 * generator.standard_normal(shape, dtype=np.float32)
        return x if then is None else np.asarray(then(x), np.float32)

    return draw


def sample(kind: str, key: jax.Array, shape: tuple[int, ...], a: float, b: float,
           then: Callable[[np.ndarray], np.ndarray] | None = None) -> jax.Array | np.ndarray:
    """float32 samples of ``shape``: U[a, b) for ``kind="uniform"``, N(a, b²) for ``"normal"``,
    passed through the numpy function ``then`` (same shape, e.g. an inverse CDF) when given.

    Host numpy for a concrete key; ``pure_callback`` to the same function when traced.
    """
    words = key_words(key)
    draw = _draw(kind, tuple(shape), a, b, then)
    if not _is_traced(words):
        return draw(words)
    out = jax.ShapeDtypeStruct(tuple(shape), np.float32)
    return jax.pure_callback(draw, out, words, vmap_method="expand_dims")
