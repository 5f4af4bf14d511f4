"""Torch-named tensor helpers for porting scripts. ``jax.numpy`` is the tensor library;
these exist only where torch's name or signature differs from numpy's."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp


def flatten(input: jax.Array, start_dim: int = 0, end_dim: int = -1) -> jax.Array:
    """``torch.flatten``: merge dims ``start_dim..end_dim`` (inclusive) into one."""
    if input.ndim == 0:
        return input.reshape(1)
    start = start_dim % input.ndim
    end = end_dim % input.ndim
    if start > end:
        raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim} for {input.ndim}-d input")
    shape = input.shape[:start] + (-1,) + input.shape[end + 1 :]
    if 0 in input.shape:
        merged = 1
        for s in input.shape[start : end + 1]:
            merged *= s
        shape = input.shape[:start] + (merged,) + input.shape[end + 1 :]
    return input.reshape(shape)


def cat(tensors: Sequence[jax.Array], dim: int = 0) -> jax.Array:
    """``torch.cat``."""
    return jnp.concatenate(list(tensors), axis=dim)


def stack(tensors: Sequence[jax.Array], dim: int = 0) -> jax.Array:
    """``torch.stack``."""
    return jnp.stack(list(tensors), axis=dim)


def tensor(data: Any, dtype: Any = None) -> jax.Array:
    """``torch.tensor``: a new array from data (Python floats become float32, as torch)."""
    return jnp.asarray(data, dtype=dtype)


def _shape(size: tuple) -> tuple[int, ...]:
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        return tuple(size[0])
    return tuple(size)


def zeros(*size: Any, dtype: Any = jnp.float32) -> jax.Array:
    """``torch.zeros(*size)``; float32 by default."""
    return jnp.zeros(_shape(size), dtype=dtype)


def ones(*size: Any, dtype: Any = jnp.float32) -> jax.Array:
    """``torch.ones(*size)``; float32 by default."""
    return jnp.ones(_shape(size), dtype=dtype)


def arange(start: Any, end: Any = None, step: Any = 1, dtype: Any = None) -> jax.Array:
    """``torch.arange``."""
    return jnp.arange(start, end, step, dtype=dtype)


def argmax(input: jax.Array, dim: int | None = None, keepdim: bool = False) -> jax.Array:
    """``torch.argmax`` (``dim=None`` flattens)."""
    return jnp.argmax(input, axis=dim, keepdims=keepdim)


def manual_seed(seed: int) -> jax.Array:
    """torch's ``manual_seed(n)``, the JAX way: returns a key instead of seeding global state."""
    return jax.random.key(seed)
