"""Declarations of parameters and buffers: shape, dtype and initialiser, never an array.

``torch.nn.Parameter(tensor)`` holds data; ``funcnet.nn.Parameter(shape, init)``
holds only the recipe. ``Module.init(key)`` turns recipes into arrays.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

#: ``init(key, shape, dtype) -> jax.Array``
Initializer = Callable[[jax.Array, tuple[int, ...], Any], jax.Array]


def _as_shape(shape: Any) -> tuple[int, ...]:
    if isinstance(shape, int):
        return (shape,)
    return tuple(int(s) for s in shape)


def _resolve_init(init: Any) -> Initializer:
    if callable(init):
        return init
    constant = jnp.asarray(init)
    return lambda key, shape, dtype: jnp.broadcast_to(constant, shape).astype(dtype)


class Parameter:
    """A trainable array declared on a module: ``self.weight = Parameter((out, in), init)``.

    Args:
        shape: the array's shape (torch layout).
        init: ``init(key, shape, dtype) -> array``, or a constant (number or array).
        dtype: the parameter dtype (torch's ``dtype=`` argument); float32 by default.
    """

    __slots__ = ("shape", "init", "dtype")

    def __init__(self, shape: Any, init: Any = 0.0, dtype: Any = None):
        self.shape = _as_shape(shape)
        self.init = _resolve_init(init)
        self.dtype = jnp.dtype(dtype if dtype is not None else jnp.float32)

    def create(self, key: jax.Array) -> jax.Array:
        value = jnp.asarray(self.init(key, self.shape, self.dtype), dtype=self.dtype)
        if value.shape != self.shape:
            raise ValueError(f"initialiser returned shape {value.shape}, expected {self.shape}")
        return value

    @property
    def size(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    def __repr__(self) -> str:
        return f"{type(self).__name__}(shape={self.shape}, dtype={self.dtype.name})"


class Buffer(Parameter):
    """A non-trainable array declared on a module (torch's ``register_buffer``).

    Buffers are returned apart from the parameters by ``Module.init`` and are
    updated functionally: in train mode ``apply`` returns the new buffers.
    ``persistent=False`` keeps the buffer out of ``state_dict`` as in torch.
    """

    __slots__ = ("persistent",)

    def __init__(self, shape: Any, init: Any = 0.0, dtype: Any = None, persistent: bool = True):
        super().__init__(shape, init, dtype)
        self.persistent = persistent
