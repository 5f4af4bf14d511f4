"""Torch-named tensor functions (``torch.X``) for model code: ``jax.numpy`` is the tensor library;
these carry torch's names, argument names (``dim``, ``keepdim``, ``dim0``/``dim1``) and defaults,
so ``torch.sum(x, dim=1, keepdim=True)`` ports as ``funcnet.sum(x, dim=1, keepdim=True)``."""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


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


def where(condition: jax.Array, input: Any, other: Any) -> jax.Array:
    """``torch.where(condition, input, other)``."""
    return jnp.where(condition, input, other)


def meshgrid(*tensors: Any, indexing: str = "ij") -> tuple[jax.Array, ...]:
    """``torch.meshgrid``: ``indexing='ij'`` by default (numpy's is ``'xy'``)."""
    if len(tensors) == 1 and isinstance(tensors[0], (list, tuple)):
        tensors = tuple(tensors[0])
    return tuple(jnp.meshgrid(*tensors, indexing=indexing))


def _assert(condition: Any, message: str) -> None:
    """``torch._assert``: raises ``AssertionError(message)`` when a concrete condition is False.

    A traced condition (a value that depends on the inputs under ``jax.jit``) cannot be checked
    at trace time and is skipped, as torch skips it under symbolic tracing."""
    if isinstance(condition, jax.core.Tracer):
        return
    if not bool(condition):
        raise AssertionError(message)


def _axis(dim: Any) -> Any:
    return tuple(dim) if isinstance(dim, (list, tuple)) else dim


def _dims(dims: tuple) -> tuple[int, ...]:
    """torch's ``f(*dims)`` or ``f(dims)``."""
    if len(dims) == 1 and isinstance(dims[0], (list, tuple)):
        return tuple(dims[0])
    return tuple(dims)


def sum(input: jax.Array, dim: Any = None, keepdim: bool = False, *, dtype: Any = None) -> jax.Array:
    """``torch.sum(input, dim=None, keepdim=False)``."""
    return jnp.sum(input, axis=_axis(dim), keepdims=keepdim, dtype=dtype)


def mean(input: jax.Array, dim: Any = None, keepdim: bool = False, *, dtype: Any = None) -> jax.Array:
    """``torch.mean(input, dim=None, keepdim=False)``."""
    return jnp.mean(input, axis=_axis(dim), keepdims=keepdim, dtype=dtype)


def _correction(unbiased: Any, correction: Any) -> float:
    if correction is not None:
        return correction
    return 1 if unbiased is None or unbiased else 0


def std(input: jax.Array, dim: Any = None, unbiased: Any = None, keepdim: bool = False, *,
        correction: Any = None) -> jax.Array:
    """``torch.std``: Bessel-corrected by default (numpy's default is not)."""
    return jnp.std(input, axis=_axis(dim), ddof=_correction(unbiased, correction), keepdims=keepdim)


def var(input: jax.Array, dim: Any = None, unbiased: Any = None, keepdim: bool = False, *,
        correction: Any = None) -> jax.Array:
    """``torch.var``: Bessel-corrected by default."""
    return jnp.var(input, axis=_axis(dim), ddof=_correction(unbiased, correction), keepdims=keepdim)


def amax(input: jax.Array, dim: Any = (), keepdim: bool = False) -> jax.Array:
    """``torch.amax`` (``dim=()`` reduces all dims)."""
    return jnp.max(input, axis=_axis(dim) if dim != () else None, keepdims=keepdim)


def amin(input: jax.Array, dim: Any = (), keepdim: bool = False) -> jax.Array:
    """``torch.amin``."""
    return jnp.min(input, axis=_axis(dim) if dim != () else None, keepdims=keepdim)


def transpose(input: jax.Array, dim0: int, dim1: int) -> jax.Array:
    """``torch.transpose``: swap two dims."""
    return jnp.swapaxes(input, dim0, dim1)


def permute(input: jax.Array, *dims: Any, **kwargs: Any) -> jax.Array:
    """``torch.permute(input, dims)``."""
    if "dims" in kwargs:
        dims = (kwargs.pop("dims"),)
    if kwargs:
        raise TypeError(f"permute() got unexpected keyword arguments {sorted(kwargs)}")
    return jnp.transpose(input, _dims(dims))


def unsqueeze(input: jax.Array, dim: int) -> jax.Array:
    """``torch.unsqueeze``: a new size-1 dim at ``dim`` (negative counts from the result's end)."""
    return jnp.expand_dims(input, dim if dim >= 0 else dim + input.ndim + 1)


def squeeze(input: jax.Array, dim: Any = None) -> jax.Array:
    """``torch.squeeze``: drops size-1 dims (only those of ``dim`` that have size 1, as torch)."""
    if dim is None:
        return jnp.squeeze(input)
    dims = dim if isinstance(dim, (list, tuple)) else (dim,)
    return jnp.squeeze(input, tuple(d for d in dims if input.shape[d] == 1))


def matmul(input: jax.Array, other: jax.Array) -> jax.Array:
    """``torch.matmul``."""
    return jnp.matmul(input, other)


def softmax(input: jax.Array, dim: int, dtype: Any = None) -> jax.Array:
    """``torch.softmax(input, dim)``."""
    return jax.nn.softmax(input if dtype is None else input.astype(dtype), axis=dim)


def log_softmax(input: jax.Array, dim: int, dtype: Any = None) -> jax.Array:
    """``torch.log_softmax(input, dim)``."""
    return jax.nn.log_softmax(input if dtype is None else input.astype(dtype), axis=dim)


def clamp(input: jax.Array, min: Any = None, max: Any = None) -> jax.Array:
    """``torch.clamp`` (``min`` then ``max``, as torch when min > max)."""
    if min is None and max is None:
        raise ValueError("torch.clamp: at least one of 'min' or 'max' must not be None")
    out = input if min is None else jnp.maximum(input, min)
    return out if max is None else jnp.minimum(out, max)


clip = clamp


def roll(input: jax.Array, shifts: Any, dims: Any = None) -> jax.Array:
    """``torch.roll``."""
    return jnp.roll(input, shifts, axis=_axis(dims))


def chunk(input: jax.Array, chunks: int, dim: int = 0) -> tuple[jax.Array, ...]:
    """``torch.chunk``: pieces of size ceil(n/chunks) (the last may be smaller, and fewer pieces may result)."""
    n = input.shape[dim]
    size = -(-n // chunks)
    return split(input, size, dim)


def split(input: jax.Array, split_size_or_sections: Any, dim: int = 0) -> tuple[jax.Array, ...]:
    """``torch.split``: pieces of one size (an int) or of the given sizes (a list)."""
    n = input.shape[dim]
    if isinstance(split_size_or_sections, int):
        sizes = [split_size_or_sections] * (n // split_size_or_sections)
        if n % split_size_or_sections:
            sizes.append(n % split_size_or_sections)
    else:
        sizes = list(split_size_or_sections)
        if builtins.sum(sizes) != n:
            raise ValueError(f"split_with_sizes expects split_sizes to sum exactly to {n}, got {sizes}")
    bounds = np.cumsum(sizes)[:-1].tolist()
    return tuple(jnp.split(input, bounds, axis=dim))


def pow(input: Any, exponent: Any) -> jax.Array:
    """``torch.pow``."""
    return jnp.power(input, exponent)


def round(input: jax.Array, *, decimals: int = 0) -> jax.Array:
    """``torch.round``: half to even, as torch."""
    return jnp.round(input, decimals)


def empty(*size: Any, dtype: Any = jnp.float32, **_device: Any) -> jax.Array:
    """``torch.empty``: zeros (a JAX array has no uninitialised state)."""
    return jnp.zeros(_shape(size), dtype=dtype)


def full(size: Any, fill_value: Any, dtype: Any = None, **_device: Any) -> jax.Array:
    """``torch.full``."""
    return jnp.full(tuple(size) if isinstance(size, (list, tuple)) else (size,), fill_value, dtype=dtype)


def zeros_like(input: jax.Array, dtype: Any = None, **_device: Any) -> jax.Array:
    return jnp.zeros_like(input, dtype=dtype)


def ones_like(input: jax.Array, dtype: Any = None, **_device: Any) -> jax.Array:
    return jnp.ones_like(input, dtype=dtype)


def _elementwise(name: str, fn: Any) -> Any:
    def op(input: Any) -> jax.Array:
        return fn(input)

    op.__name__ = op.__qualname__ = name
    op.__doc__ = f"``torch.{name}``."
    return op


exp = _elementwise("exp", jnp.exp)
log = _elementwise("log", jnp.log)
log2 = _elementwise("log2", jnp.log2)
sqrt = _elementwise("sqrt", jnp.sqrt)
rsqrt = _elementwise("rsqrt", jax.lax.rsqrt)
abs = _elementwise("abs", jnp.abs)
sign = _elementwise("sign", jnp.sign)
floor = _elementwise("floor", jnp.floor)
ceil = _elementwise("ceil", jnp.ceil)
sin = _elementwise("sin", jnp.sin)
cos = _elementwise("cos", jnp.cos)
tanh = _elementwise("tanh", jnp.tanh)
sigmoid = _elementwise("sigmoid", jax.nn.sigmoid)
relu = _elementwise("relu", jax.nn.relu)
