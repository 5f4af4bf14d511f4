"""``dropout``, ``dropout2d``: torch's functions with an explicit PRNG ``key``."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _dropout_with_mask_shape(x: jax.Array, p: float, key: jax.Array, mask_shape: tuple[int, ...]) -> jax.Array:
    if p == 1.0:
        return jnp.zeros_like(x)
    keep = jax.random.bernoulli(key, 1.0 - p, mask_shape)
    return jnp.where(keep, x / (1.0 - p), jnp.zeros((), x.dtype)).astype(x.dtype)


def dropout(input: jax.Array, p: float = 0.5, training: bool = True, *, key: jax.Array | None = None) -> jax.Array:
    """``F.dropout``; ``key`` is required when ``training`` and ``p > 0``."""
    if not training or p == 0.0:
        return input
    if key is None:
        raise ValueError("dropout in training mode needs key=jax.random.key(...)")
    return _dropout_with_mask_shape(input, p, key, input.shape)


def dropout2d(input: jax.Array, p: float = 0.5, training: bool = True, *, key: jax.Array | None = None) -> jax.Array:
    """``F.dropout2d``: one Bernoulli draw per channel of ``[N, C, H, W]`` or ``[C, H, W]``."""
    if not training or p == 0.0:
        return input
    if key is None:
        raise ValueError("dropout2d in training mode needs key=jax.random.key(...)")
    mask_shape = input.shape[:-2] + (1, 1)
    return _dropout_with_mask_shape(input, p, key, mask_shape)
