"""torch's tensor methods as functions of the receiver, for code converted by ``funcnet.port``.

A ``jax.Array`` cannot carry torch's methods (``x.view(...)``, ``x.size(1)``, ``x.permute(...)``),
and some of its own methods share a name but not the meaning (``x.flatten(1)``, ``x.transpose(1, 2)``,
``x.repeat(2, 1)``, ``x.max(1)``, ``x.std()``). The converter rewrites ``x.view(a, b)`` into
``tm.view(x, a, b)`` (``tm`` is this module). Each function follows the torch method of the same
name for a ``jax.Array`` receiver; any other receiver (a list, a string, a numpy array, a module)
gets its own method called unchanged, so a rewritten call is never wrong for a non-tensor.

torch's in-place methods (``x.add_(y)``, ``x[i] = v``) become functional updates that the
converter rebinds to the same name: ``x = tm.add_(x, y)``, ``x = tm.at(x)[i].set(v)``.
"""

from __future__ import annotations

import builtins
import functools
import importlib
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from funcnet.port._args import canonical_dtype as _dtype
from funcnet.port._args import dims as _dims
from funcnet.tensor import flatten as _flatten

_builtin_float, _builtin_int, _builtin_bool = float, int, bool


def _is_tensor(x: Any) -> _builtin_bool:
    return isinstance(x, jax.Array)


def _method(fn: Callable) -> Callable:
    """Torch semantics for a ``jax.Array`` receiver; any other receiver's own method otherwise."""
    name = fn.__name__

    @functools.wraps(fn)
    def call(x: Any, *args: Any, **kwargs: Any) -> Any:
        if _is_tensor(x):
            return fn(x, *args, **kwargs)
        if _is_declaration(x):
            fallback = _DECLARATION_FALLBACK.get(name)
            if fallback is None:
                raise AttributeError(f"{x!r} is a declaration, not an array: {name}() works on arrays, "
                                     "inside apply (funcnet.port.ops)")
            return fallback(x, *args, **kwargs)
        try:
            own = getattr(x, name)
        except AttributeError:
            own = None
        if callable(own):  # a list, str, numpy array, module...: its own method, unchanged
            return own(*args, **kwargs)
        if isinstance(x, (_builtin_int, _builtin_float, np.ndarray, np.generic)):
            return fn(jnp.asarray(x), *args, **kwargs)  # e.g. numpy's x.size is not a method
        raise AttributeError(f"'{type(x).__name__}' object has no attribute '{name}' (funcnet.port.ops.{name})")

    return call


def _is_declaration(x: Any) -> _builtin_bool:
    from funcnet.nn.parameter import Parameter

    return isinstance(x, Parameter)


def _as_dim(dim: Any) -> Any:
    return tuple(dim) if isinstance(dim, list) else dim


# ---- shapes and views -------------------------------------------------------------------------

@_method
def size(x: jax.Array, dim: int | None = None) -> Any:
    """``x.size()`` → the shape tuple (torch.Size); ``x.size(d)`` → ``x.shape[d]``."""
    return tuple(x.shape) if dim is None else x.shape[dim]


@_method
def dim(x: jax.Array) -> int:
    """``x.dim()``: the number of dimensions."""
    return x.ndim


ndimension = dim


@_method
def numel(x: jax.Array) -> int:
    """``x.numel()``: the number of elements."""
    return math.prod(x.shape)


nelement = numel


@_method
def view(x: jax.Array, *shape: Any) -> jax.Array:
    """``x.view(*shape)`` (a reshape: arrays have no strides; ``-1`` infers one dim)."""
    if len(shape) == 1 and not isinstance(shape[0], (tuple, list, _builtin_int)) and not hasattr(shape[0], "__index__"):
        raise NotImplementedError(f"view(dtype) (a bit reinterpretation) is not supported: got {shape[0]!r}")
    return jnp.reshape(x, _dims(shape))


@_method
def view_as(x: jax.Array, other: jax.Array) -> jax.Array:
    """``x.view_as(other)``."""
    return jnp.reshape(x, other.shape)


@_method
def expand(x: jax.Array, *sizes: Any) -> jax.Array:
    """``x.expand(*sizes)``: broadcast; ``-1`` keeps a dim, new dims go in front."""
    sizes = _dims(sizes)
    lead = len(sizes) - x.ndim
    if lead < 0:
        raise ValueError(f"expand: {len(sizes)} sizes given for a {x.ndim}-d tensor of shape {x.shape}")
    shape = tuple(x.shape[i - lead] if s == -1 and i >= lead else s for i, s in enumerate(sizes))
    return jnp.broadcast_to(x, shape)


@_method
def expand_as(x: jax.Array, other: jax.Array) -> jax.Array:
    """``x.expand_as(other)``."""
    return jnp.broadcast_to(x, other.shape)


@_method
def permute(x: jax.Array, *dims: Any) -> jax.Array:
    """``x.permute(*dims)`` / ``torch.permute(x, dims)``."""
    return jnp.transpose(x, _dims(dims))


@_method
def transpose(x: jax.Array, dim0: int, dim1: int) -> jax.Array:
    """``x.transpose(d0, d1)``: swap two dims (jax's own ``transpose`` takes a full permutation)."""
    return jnp.swapaxes(x, dim0, dim1)


swapaxes = transpose


@_method
def unsqueeze(x: jax.Array, dim: int) -> jax.Array:
    """``x.unsqueeze(d)``."""
    return jnp.expand_dims(x, dim)


@_method
def squeeze(x: jax.Array, dim: Any = None) -> jax.Array:
    """``x.squeeze(d)``: drops the given dims of size 1, leaves other dims (jax raises on them)."""
    if dim is None:
        return jnp.squeeze(x)
    dims = dim if isinstance(dim, (tuple, list)) else (dim,)
    drop = tuple(d % x.ndim for d in dims if x.ndim and x.shape[d] == 1)
    return jnp.squeeze(x, drop) if drop else x


@_method
def flatten(x: jax.Array, start_dim: int = 0, end_dim: int = -1) -> jax.Array:
    """``x.flatten(start_dim, end_dim)`` (jax's ``flatten`` takes an order instead)."""
    return _flatten(x, start_dim, end_dim)


def _split_sizes(total: int, size: int) -> list[int]:
    return [builtins.min(size, total - start) for start in range(0, total, size)] if total else [0]


def _split_at(x: jax.Array, sizes: Sequence[int], dim: int) -> tuple[jax.Array, ...]:
    out, start = [], 0
    for s in sizes:
        out.append(jax.lax.slice_in_dim(x, start, start + s, axis=dim % x.ndim))
        start += s
    return tuple(out)


@_method
def chunk(x: jax.Array, chunks: int, dim: int = 0) -> tuple[jax.Array, ...]:
    """``x.chunk(n, dim)``: pieces of ``ceil(size / n)`` (torch may return fewer than ``n``)."""
    total = x.shape[dim]
    return _split_at(x, _split_sizes(total, builtins.max(1, -(-total // chunks))), dim)


@_method
def split(x: jax.Array, split_size_or_sections: Any, dim: int = 0) -> tuple[jax.Array, ...]:
    """``x.split(size, dim)`` (pieces of ``size``, the last smaller) or ``x.split([s0, s1, ...], dim)``."""
    if isinstance(split_size_or_sections, _builtin_int):
        return _split_at(x, _split_sizes(x.shape[dim], split_size_or_sections), dim)
    sizes = list(split_size_or_sections)
    if builtins.sum(sizes) != x.shape[dim]:
        raise ValueError(f"split: sizes {sizes} do not add up to {x.shape[dim]} (dim {dim} of {x.shape})")
    return _split_at(x, sizes, dim)


@_method
def unbind(x: jax.Array, dim: int = 0) -> tuple[jax.Array, ...]:
    """``x.unbind(dim)``."""
    return tuple(jnp.moveaxis(x, dim, 0))


@_method
def narrow(x: jax.Array, dim: int, start: int, length: int) -> jax.Array:
    """``x.narrow(dim, start, length)``."""
    start = start % x.shape[dim]
    return jax.lax.slice_in_dim(x, start, start + length, axis=dim % x.ndim)


@_method
def repeat(x: jax.Array, *sizes: Any) -> jax.Array:
    """``x.repeat(*sizes)``: torch's tiling (jax's ``repeat`` repeats elements instead)."""
    sizes = _dims(sizes)
    if len(sizes) < x.ndim:
        raise ValueError(f"repeat: {len(sizes)} sizes for a {x.ndim}-d tensor")
    return jnp.tile(x, sizes)


@_method
def flip(x: jax.Array, *dims: Any) -> jax.Array:
    """``x.flip(dims)``."""
    return jnp.flip(x, _dims(dims))


@_method
def roll(x: jax.Array, shifts: Any, dims: Any = None) -> jax.Array:
    """``x.roll(shifts, dims)``."""
    return jnp.roll(x, shifts, _as_dim(dims))


@_method
def gather(x: jax.Array, dim: int, index: jax.Array) -> jax.Array:
    """``x.gather(dim, index)``."""
    return jnp.take_along_axis(x, index, axis=dim)


@_method
def t(x: jax.Array) -> jax.Array:
    """``x.t()``: transpose a matrix (a 0-d or 1-d tensor as it is)."""
    if x.ndim > 2:
        raise ValueError(f"t() expects a tensor with <= 2 dimensions, got {x.ndim}")
    return x.T


@_method
def unflatten(x: jax.Array, dim: int, sizes: Sequence[int]) -> jax.Array:
    """``x.unflatten(dim, sizes)``: split one dim into ``sizes`` (one may be -1)."""
    dim = dim % x.ndim
    sizes = list(sizes)
    if -1 in sizes:
        known = math.prod(s for s in sizes if s != -1)
        sizes[sizes.index(-1)] = x.shape[dim] // known
    return jnp.reshape(x, x.shape[:dim] + tuple(sizes) + x.shape[dim + 1 :])


@_method
def movedim(x: jax.Array, source: Any, destination: Any) -> jax.Array:
    """``x.movedim(source, destination)``."""
    return jnp.moveaxis(x, source, destination)


@_method
def index_select(x: jax.Array, dim: int, index: jax.Array) -> jax.Array:
    """``x.index_select(dim, index)``."""
    return jnp.take(x, index, axis=dim)


@_method
def topk(x: jax.Array, k: int, dim: int = -1, largest: _builtin_bool = True, sorted: _builtin_bool = True) -> MinMax:
    """``x.topk(k, dim, largest)`` → ``(values, indices)``, sorted (ties: the lower index first)."""
    moved = jnp.moveaxis(x, dim, -1)
    idx = jnp.argsort(-moved if largest else moved, axis=-1, stable=True)[..., :k]
    values = jnp.take_along_axis(moved, idx, axis=-1)
    return MinMax(jnp.moveaxis(values, -1, dim), jnp.moveaxis(idx, -1, dim))


@_method
def nonzero(x: jax.Array) -> jax.Array:
    """``x.nonzero()``: the ``[n, ndim]`` indices of the non-zero elements (numpy's is a tuple);
    its size depends on the values, so not under ``jit``."""
    return jnp.stack(jnp.nonzero(x), axis=-1)


# ---- dtype and device -------------------------------------------------------------------------

def _to_dtype(args: tuple, kwargs: dict) -> Any:
    """The dtype among ``.to(...)``'s arguments (a dtype, or a tensor's), or None: devices are ignored."""
    dtype = kwargs.get("dtype")
    for a in args:
        if a is None:  # tm.device_of(x) of a traced array
            continue
        if _is_tensor(a):
            dtype = a.dtype
        elif not isinstance(a, (str, jax.Device)) and type(a).__name__ != "device":
            try:
                dtype = jnp.dtype(a)
            except TypeError:
                raise TypeError(f"to(): cannot interpret {a!r} as a device or dtype") from None
    return dtype


def to(x: Any, *args: Any, **kwargs: Any) -> Any:
    """``x.to(device)`` / ``x.to(dtype)`` / ``x.to(other)``.

    Devices are ignored: JAX puts arrays on its default device (use ``jax.device_put`` to place
    them elsewhere). A funcnet module holds no arrays, so ``model.to(device)`` returns the model;
    ``model.to(dtype)`` raises (use ``apply(..., compute_dtype=...)``)."""
    from funcnet.nn.module import Module

    if _is_tensor(x):
        dtype = _to_dtype(args, kwargs)
        return x if dtype is None else x.astype(_dtype(dtype))
    if isinstance(x, Module):
        if _to_dtype(args, kwargs) is not None:
            raise NotImplementedError("Module.to(dtype): funcnet modules hold no arrays; cast the params "
                                      "(jax.tree.map) or use apply(..., compute_dtype=...)")
        return x
    return x.to(*args, **kwargs)


def cuda(x: Any, *args: Any, **kwargs: Any) -> Any:
    """``x.cuda()``: see :func:`to` (JAX chooses the device)."""
    return to(x) if _is_tensor(x) or not hasattr(x, "cuda") else x.cuda(*args, **kwargs)


def cpu(x: Any) -> Any:
    """``x.cpu()``: see :func:`to` (JAX chooses the device)."""
    return to(x) if _is_tensor(x) or not hasattr(x, "cpu") else x.cpu()


@_method
def type_as(x: jax.Array, other: jax.Array) -> jax.Array:
    """``x.type_as(other)``."""
    return x.astype(other.dtype)


def _cast(name: str, dtype: Any) -> Callable:
    def cast(x: jax.Array) -> jax.Array:
        return x.astype(_dtype(dtype))

    cast.__name__ = cast.__qualname__ = name
    cast.__doc__ = f"``x.{name}()``: cast to {jnp.dtype(dtype).name} (int64/float64 need jax_enable_x64)."
    return _method(cast)


float = _cast("float", jnp.float32)
double = _cast("double", jnp.float64)
half = _cast("half", jnp.float16)
long = _cast("long", jnp.int64)
int = _cast("int", jnp.int32)
bool = _cast("bool", jnp.bool_)


@_method
def clone(x: jax.Array) -> jax.Array:
    """``x.clone()``: arrays are immutable, so the array itself."""
    return x


@_method
def detach(x: jax.Array) -> jax.Array:
    """``x.detach()``: ``jax.lax.stop_gradient``."""
    return jax.lax.stop_gradient(x)


def data(x: Any) -> Any:
    """``x.data``: ``stop_gradient`` of an array; a funcnet declaration (outside ``apply``) itself."""
    if _is_tensor(x):
        return jax.lax.stop_gradient(x)
    if _is_declaration(x):
        return x
    return x.data


def device(type: str = "cpu", index: Any = None) -> str:
    """``torch.device(...)``: the name only (JAX chooses devices; see :func:`to`)."""
    return type if index is None else f"{type}:{index}"


def device_of(x: Any) -> Any:
    """``x.device``: a concrete array's device; None while tracing (JAX places traced values itself);
    any other object's own ``device`` attribute."""
    if _is_tensor(x):
        try:
            return x.device
        except (AttributeError, ValueError):
            return None
    return x.device


def requires_grad(x: Any) -> Any:
    """``x.requires_grad``: True for an array or a parameter declaration (any value may be
    differentiated: JAX differentiates what ``jax.grad`` asks for); other objects' own attribute."""
    if _is_tensor(x) or _is_declaration(x):
        return True
    return x.requires_grad


def is_tensor(x: Any) -> _builtin_bool:
    """``torch.is_tensor``: a ``jax.Array``."""
    return _is_tensor(x)


@_method
def numpy(x: jax.Array) -> np.ndarray:
    """``x.numpy()``."""
    return np.asarray(x)


# ---- new tensors ------------------------------------------------------------------------------

@_method
def new_zeros(x: jax.Array, *size: Any, dtype: Any = None, **_device: Any) -> jax.Array:
    """``x.new_zeros(size)``: zeros of ``x``'s dtype unless ``dtype`` is given."""
    return jnp.zeros(_dims(size), _dtype(dtype or x.dtype))


@_method
def new_ones(x: jax.Array, *size: Any, dtype: Any = None, **_device: Any) -> jax.Array:
    """``x.new_ones(size)``."""
    return jnp.ones(_dims(size), _dtype(dtype or x.dtype))


@_method
def new_empty(x: jax.Array, *size: Any, dtype: Any = None, **_device: Any) -> jax.Array:
    """``x.new_empty(size)``: uninitialised in torch; zeros here."""
    return jnp.zeros(_dims(size), _dtype(dtype or x.dtype))


@_method
def new_full(x: jax.Array, size: Any, fill_value: Any, dtype: Any = None, **_device: Any) -> jax.Array:
    """``x.new_full(size, value)``."""
    return jnp.full(tuple(size), fill_value, _dtype(dtype or x.dtype))


@_method
def new_tensor(x: jax.Array, data: Any, dtype: Any = None, **_device: Any) -> jax.Array:
    """``x.new_tensor(data)``."""
    return jnp.asarray(data, _dtype(dtype or x.dtype))


def _creation_dtype(dtype: Any) -> Any:
    return _dtype(dtype if dtype is not None else jnp.float32)


def empty(*size: Any, dtype: Any = None, **_device: Any) -> jax.Array:
    """``torch.empty(*size)``: uninitialised in torch; zeros here (one valid realisation)."""
    return jnp.zeros(_dims(size), _creation_dtype(dtype))


def full(size: Any, fill_value: Any, dtype: Any = None, **_device: Any) -> jax.Array:
    """``torch.full(size, value)``: float32 for a float value, as torch."""
    if dtype is None and isinstance(fill_value, _builtin_float):
        dtype = jnp.float32
    return jnp.full(tuple(size), fill_value, None if dtype is None else _dtype(dtype))


def zeros_like(x: jax.Array, dtype: Any = None, **_device: Any) -> jax.Array:
    """``torch.zeros_like``."""
    return jnp.zeros(x.shape, _dtype(dtype or x.dtype))


def ones_like(x: jax.Array, dtype: Any = None, **_device: Any) -> jax.Array:
    """``torch.ones_like``."""
    return jnp.ones(x.shape, _dtype(dtype or x.dtype))


def empty_like(x: jax.Array, dtype: Any = None, **_device: Any) -> jax.Array:
    """``torch.empty_like``: zeros here."""
    return zeros_like(x, dtype)


def full_like(x: jax.Array, fill_value: Any, dtype: Any = None, **_device: Any) -> jax.Array:
    """``torch.full_like``."""
    return jnp.full(x.shape, fill_value, _dtype(dtype or x.dtype))


# ---- reductions -------------------------------------------------------------------------------

class MinMax(NamedTuple):
    """torch's ``return_types.max`` / ``min``: ``values`` and ``indices``."""

    values: jax.Array
    indices: jax.Array


def _reduce_args(dim: Any, axis: Any) -> Any:
    return _as_dim(dim if axis is None else axis)


@_method
def sum(x: jax.Array, dim: Any = None, keepdim: _builtin_bool = False, *, dtype: Any = None) -> jax.Array:
    """``x.sum(dim, keepdim, dtype=)``."""
    return jnp.sum(x, axis=_as_dim(dim), keepdims=keepdim, dtype=None if dtype is None else _dtype(dtype))


@_method
def mean(x: jax.Array, dim: Any = None, keepdim: _builtin_bool = False, *, dtype: Any = None) -> jax.Array:
    """``x.mean(dim, keepdim, dtype=)``."""
    return jnp.mean(x, axis=_as_dim(dim), keepdims=keepdim, dtype=None if dtype is None else _dtype(dtype))


@_method
def prod(x: jax.Array, dim: Any = None, keepdim: _builtin_bool = False, *, dtype: Any = None) -> jax.Array:
    """``x.prod(dim, keepdim)``."""
    return jnp.prod(x, axis=dim, keepdims=keepdim, dtype=None if dtype is None else _dtype(dtype))


def _correction(unbiased: Any, correction: Any) -> Any:
    if correction is not None:
        return correction
    return 1 if unbiased is None or unbiased else 0


@_method
def std(x: jax.Array, dim: Any = None, unbiased: Any = None, keepdim: _builtin_bool = False, *,
        correction: Any = None) -> jax.Array:
    """``x.std(dim, unbiased=True, keepdim)``: torch's default is the unbiased estimate (jax's is not)."""
    if isinstance(dim, _builtin_bool):  # torch's x.std(False): unbiased given positionally
        dim, unbiased = None, dim
    return jnp.std(x, axis=_as_dim(dim), ddof=_correction(unbiased, correction), keepdims=keepdim)


@_method
def var(x: jax.Array, dim: Any = None, unbiased: Any = None, keepdim: _builtin_bool = False, *,
        correction: Any = None) -> jax.Array:
    """``x.var(dim, unbiased=True, keepdim)``: unbiased by default, as torch."""
    if isinstance(dim, _builtin_bool):
        dim, unbiased = None, dim
    return jnp.var(x, axis=_as_dim(dim), ddof=_correction(unbiased, correction), keepdims=keepdim)


def _min_max(reduce: Callable, arg: Callable, pair: Callable) -> Callable:
    def fn(x: jax.Array, dim: Any = None, keepdim: _builtin_bool = False) -> Any:
        if dim is None:
            return reduce(x)
        if _is_tensor(dim):  # x.max(other): elementwise
            return pair(x, dim)
        return MinMax(reduce(x, axis=dim, keepdims=keepdim), arg(x, axis=dim, keepdims=keepdim))

    return fn


def max(x: Any, dim: Any = None, keepdim: _builtin_bool = False) -> Any:
    """``x.max()`` (a scalar), ``x.max(dim, keepdim)`` → ``(values, indices)``, ``x.max(other)`` (elementwise)."""
    return _method_call(x, "max", _min_max(jnp.max, jnp.argmax, jnp.maximum), dim, keepdim)


def min(x: Any, dim: Any = None, keepdim: _builtin_bool = False) -> Any:
    """``x.min()``, ``x.min(dim, keepdim)`` → ``(values, indices)``, ``x.min(other)``."""
    return _method_call(x, "min", _min_max(jnp.min, jnp.argmin, jnp.minimum), dim, keepdim)


def _method_call(x: Any, name: str, fn: Callable, *args: Any) -> Any:
    if _is_tensor(x):
        return fn(x, *args)
    return getattr(x, name)(*[a for a in args if a is not None and a is not False])


@_method
def amax(x: jax.Array, dim: Any = (), keepdim: _builtin_bool = False) -> jax.Array:
    """``x.amax(dim, keepdim)`` (all dims by default)."""
    return jnp.max(x, axis=_as_dim(dim) if dim != () else None, keepdims=keepdim)


@_method
def amin(x: jax.Array, dim: Any = (), keepdim: _builtin_bool = False) -> jax.Array:
    """``x.amin(dim, keepdim)``."""
    return jnp.min(x, axis=_as_dim(dim) if dim != () else None, keepdims=keepdim)


@_method
def argmax(x: jax.Array, dim: Any = None, keepdim: _builtin_bool = False) -> jax.Array:
    """``x.argmax(dim, keepdim)``."""
    return jnp.argmax(x, axis=dim, keepdims=keepdim)


@_method
def argmin(x: jax.Array, dim: Any = None, keepdim: _builtin_bool = False) -> jax.Array:
    """``x.argmin(dim, keepdim)``."""
    return jnp.argmin(x, axis=dim, keepdims=keepdim)


@_method
def all(x: jax.Array, dim: Any = None, keepdim: _builtin_bool = False) -> jax.Array:
    """``x.all(dim, keepdim)``."""
    return jnp.all(x, axis=_as_dim(dim), keepdims=keepdim)


@_method
def any(x: jax.Array, dim: Any = None, keepdim: _builtin_bool = False) -> jax.Array:
    """``x.any(dim, keepdim)``."""
    return jnp.any(x, axis=_as_dim(dim), keepdims=keepdim)


@_method
def cumsum(x: jax.Array, dim: int, *, dtype: Any = None) -> jax.Array:
    """``x.cumsum(dim)``."""
    return jnp.cumsum(x, axis=dim, dtype=None if dtype is None else _dtype(dtype))


@_method
def cumprod(x: jax.Array, dim: int, *, dtype: Any = None) -> jax.Array:
    """``x.cumprod(dim)``."""
    return jnp.cumprod(x, axis=dim, dtype=None if dtype is None else _dtype(dtype))


@_method
def norm(x: jax.Array, p: Any = "fro", dim: Any = None, keepdim: _builtin_bool = False) -> jax.Array:
    """``x.norm(p, dim, keepdim)`` for ``p`` = 'fro', a number or ``inf``: the vector p-norm over ``dim``."""
    axis = _as_dim(dim)
    if p == "fro" or p == 2:
        return jnp.sqrt(jnp.sum(x * x, axis=axis, keepdims=keepdim))
    if p == math.inf:
        return jnp.max(jnp.abs(x), axis=axis, keepdims=keepdim)
    if isinstance(p, (_builtin_int, _builtin_float)) and p > 0:
        return jnp.sum(jnp.abs(x) ** p, axis=axis, keepdims=keepdim) ** (1.0 / p)
    raise NotImplementedError(f"norm(p={p!r}) is not supported")


@_method
def sort(x: jax.Array, dim: int = -1, descending: _builtin_bool = False, stable: _builtin_bool = False) -> MinMax:
    """``x.sort(dim, descending)`` → ``(values, indices)`` (jax's ``sort`` returns the values only)."""
    idx = jnp.argsort(-x if descending else x, axis=dim, stable=True)
    return MinMax(jnp.take_along_axis(x, idx, axis=dim), idx)


# ---- elementwise ------------------------------------------------------------------------------

@_method
def softmax(x: jax.Array, dim: int, dtype: Any = None) -> jax.Array:
    """``x.softmax(dim)``."""
    return jax.nn.softmax(x if dtype is None else x.astype(_dtype(dtype)), axis=dim)


@_method
def log_softmax(x: jax.Array, dim: int, dtype: Any = None) -> jax.Array:
    """``x.log_softmax(dim)``."""
    return jax.nn.log_softmax(x if dtype is None else x.astype(_dtype(dtype)), axis=dim)


@_method
def masked_fill(x: jax.Array, mask: jax.Array, value: Any) -> jax.Array:
    """``x.masked_fill(mask, value)``: ``value`` where ``mask`` is true (cast to ``x``'s dtype)."""
    return jnp.where(mask, jnp.asarray(value, x.dtype), x)


@_method
def matmul(x: jax.Array, other: jax.Array) -> jax.Array:
    """``x.matmul(y)`` / ``x @ y``."""
    return jnp.matmul(x, other)


mm = bmm = matmul


@_method
def clamp(x: jax.Array, min: Any = None, max: Any = None) -> jax.Array:
    """``x.clamp(min, max)``."""
    if min is None and max is None:
        raise ValueError("clamp: at least one of min and max must be given")
    return jnp.clip(x, min, max)


clip = clamp


@_method
def clamp_min(x: jax.Array, min: Any) -> jax.Array:
    """``x.clamp_min(v)``."""
    return jnp.maximum(x, jnp.asarray(min, x.dtype))


@_method
def clamp_max(x: jax.Array, max: Any) -> jax.Array:
    """``x.clamp_max(v)``."""
    return jnp.minimum(x, jnp.asarray(max, x.dtype))


@_method
def add(x: jax.Array, other: Any, *, alpha: Any = 1) -> jax.Array:
    """``x.add(y, alpha=1)``: ``x + alpha * y``."""
    return x + (other if alpha == 1 else alpha * other)


@_method
def sub(x: jax.Array, other: Any, *, alpha: Any = 1) -> jax.Array:
    """``x.sub(y, alpha=1)``."""
    return x - (other if alpha == 1 else alpha * other)


@_method
def mul(x: jax.Array, other: Any) -> jax.Array:
    """``x.mul(y)``."""
    return x * other


@_method
def div(x: jax.Array, other: Any, *, rounding_mode: str | None = None) -> jax.Array:
    """``x.div(y, rounding_mode=None|'trunc'|'floor')``: true division by default, as torch."""
    if rounding_mode is None:
        return jnp.true_divide(x, other)
    if rounding_mode == "floor":
        return jnp.floor_divide(x, other)
    if rounding_mode == "trunc":
        q = jnp.trunc(jnp.true_divide(x, other))
        return q.astype(jnp.result_type(x, other))
    raise ValueError(f"div: unknown rounding_mode {rounding_mode!r}")


@_method
def pow(x: jax.Array, exponent: Any) -> jax.Array:
    """``x.pow(e)``."""
    return x**exponent


def _unary(name: str, fn: Callable) -> Callable:
    def op(x: jax.Array) -> jax.Array:
        return fn(x)

    op.__name__ = op.__qualname__ = name
    op.__doc__ = f"``x.{name}()``."
    return _method(op)


# The module funcnet.tensor (``funcnet.tensor`` the attribute is torch.tensor's twin, a function).
_TENSOR_FUNCTIONS = importlib.import_module("funcnet.tensor")
# The maths is funcnet's torch-named functions (funcnet.tensor: one definition of each op);
# here they only gain the method dispatch.
exp, log, log2, sqrt, rsqrt, abs, sign, floor, ceil, sigmoid, tanh, relu = (
    _unary(name, getattr(_TENSOR_FUNCTIONS, name))
    for name in ("exp", "log", "log2", "sqrt", "rsqrt", "abs", "sign", "floor", "ceil", "sigmoid", "tanh", "relu")
)
neg = _unary("neg", jnp.negative)


@_method
def round(x: jax.Array, decimals: _builtin_int = 0) -> jax.Array:
    """``x.round()``: half to even, as torch."""
    return jnp.round(x, decimals)


def _compare(name: str, fn: Callable) -> Callable:
    def op(x: jax.Array, other: Any) -> jax.Array:
        return fn(x, other)

    op.__name__ = op.__qualname__ = name
    op.__doc__ = f"``x.{name}(y)``."
    return _method(op)


eq = _compare("eq", jnp.equal)
ne = _compare("ne", jnp.not_equal)
lt = _compare("lt", jnp.less)
le = _compare("le", jnp.less_equal)
gt = _compare("gt", jnp.greater)
ge = _compare("ge", jnp.greater_equal)


# ---- in place, functionally ------------------------------------------------------------------

def _like(x: jax.Array, value: Any) -> jax.Array:
    """torch's in-place rule: the result keeps ``x``'s shape and dtype."""
    return jnp.broadcast_to(jnp.asarray(value), x.shape).astype(x.dtype)


def _inplace(name: str, fn: Callable) -> Callable:
    def op(x: jax.Array, *args: Any, **kwargs: Any) -> jax.Array:
        return _like(x, fn(x, *args, **kwargs))

    op.__name__ = op.__qualname__ = name
    op.__doc__ = f"``x.{name}(...)`` as a new array (the converter writes ``x = tm.{name}(x, ...)``)."
    return _method(op)


add_ = _inplace("add_", lambda x, other, alpha=1: x + alpha * jnp.asarray(other))
sub_ = _inplace("sub_", lambda x, other, alpha=1: x - alpha * jnp.asarray(other))
mul_ = _inplace("mul_", lambda x, other: x * other)
div_ = _inplace("div_", lambda x, other: jnp.true_divide(x, other))
zero_ = _inplace("zero_", lambda x: 0)
fill_ = _inplace("fill_", lambda x, value: value)
copy_ = _inplace("copy_", lambda x, src, non_blocking=False: src)
clamp_ = _inplace("clamp_", lambda x, min=None, max=None: jnp.clip(x, min, max))


class _At:
    """``tm.at(x)[index].set(v)``: torch's item assignment ``x[index] = v``.

    A ``jax.Array`` gives a new array (``x.at[index].set(v)``, which the converter rebinds to ``x``);
    a list, dict or numpy array is updated in place and returned, as Python would. A funcnet
    declaration (a Parameter/Buffer outside ``apply``, as in torch's ``__init__``) gets its
    initialiser wrapped: the update is applied to the array ``init(key)`` creates.
    ``inplace=True`` (an attribute target such as ``self.w[i] = v``, which cannot be rebound)
    refuses a ``jax.Array`` rather than dropping the update."""

    __slots__ = ("target", "inplace")

    def __init__(self, target: Any, inplace: _builtin_bool):
        self.target, self.inplace = target, inplace

    def __getitem__(self, index: Any) -> _AtIndex:
        return _AtIndex(self.target, index, self.inplace)


class _AtIndex:
    __slots__ = ("target", "index", "inplace")

    def __init__(self, target: Any, index: Any, inplace: _builtin_bool):
        self.target, self.index, self.inplace = target, index, inplace

    def _update(self, combine: Callable | None, value: Any) -> Any:
        x, index = self.target, self.index
        if _is_tensor(x):
            if self.inplace:
                raise TypeError(f"in-place update x[{index!r}] of a jax.Array held in an attribute: arrays are "
                                "immutable; assign the new value (x = x.at[index].set(v)) where it is stored")
            new = value if combine is None else combine(x[index], value)
            return x.at[index].set(jnp.asarray(new).astype(x.dtype))
        if _is_declaration(x):
            previous = x.init

            def init(key: jax.Array, shape: tuple, dtype: Any) -> jax.Array:
                array = jnp.asarray(previous(key, shape, dtype), dtype)
                new = value if combine is None else combine(array[index], value)
                return array.at[index].set(jnp.asarray(new).astype(dtype))

            x.init = init
            return x
        x[index] = value if combine is None else combine(x[index], value)
        return x

    def set(self, value: Any) -> Any:
        return self._update(None, value)

    def add(self, value: Any) -> Any:
        return self._update(lambda a, b: a + b, value)

    def subtract(self, value: Any) -> Any:
        return self._update(lambda a, b: a - b, value)

    def multiply(self, value: Any) -> Any:
        return self._update(lambda a, b: a * b, value)

    def divide(self, value: Any) -> Any:
        return self._update(lambda a, b: a / b, value)

    def floor_divide(self, value: Any) -> Any:
        return self._update(lambda a, b: a // b, value)

    def power(self, value: Any) -> Any:
        return self._update(lambda a, b: a**b, value)


def at(x: Any, inplace: _builtin_bool = False) -> _At:
    """Item assignment as a value: ``x[i] = v`` → ``x = tm.at(x)[i].set(v)``; ``x[i] += v`` → ``.add(v)``.

    ``tm.at(self.w, inplace=True)[i].set(v)``: the target cannot be rebound (a declaration in
    ``__init__``, a list or dict attribute); a ``jax.Array`` there raises instead of losing the update."""
    return _At(x, inplace)


# Metadata of a funcnet declaration (Parameter/Buffer outside apply), as torch code reads it in __init__.
_DECLARATION_FALLBACK: dict[str, Callable] = {
    "size": lambda d, dim=None: d.shape if dim is None else d.shape[dim],
    "dim": lambda d: len(d.shape),
    "ndimension": lambda d: len(d.shape),
    "numel": lambda d: math.prod(d.shape),
    "nelement": lambda d: math.prod(d.shape),
}


# ---- torch functions with no funcnet counterpart (used as torch.X by model code) -------------------

def einsum(equation: str, *operands: Any) -> jax.Array:
    """``torch.einsum(eq, *operands)`` (or a single list of operands)."""
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    return jnp.einsum(equation, *operands)


def meshgrid(*tensors: Any, indexing: str = "ij") -> tuple[jax.Array, ...]:
    """``torch.meshgrid`` (torch's default indexing is ``'ij'``, numpy's ``'xy'``)."""
    return tuple(jnp.meshgrid(*_dims(tensors), indexing=indexing))


divide = div


def diff(x: jax.Array, n: int = 1, dim: int = -1) -> jax.Array:
    """``torch.diff(x, n, dim)``."""
    return jnp.diff(x, n=n, axis=dim)


def linspace(start: Any, end: Any, steps: int, dtype: Any = None, **_device: Any) -> jax.Array:
    """``torch.linspace`` (float32 by default)."""
    return jnp.linspace(start, end, steps, dtype=_creation_dtype(dtype))


def where(condition: jax.Array, input: Any, other: Any) -> jax.Array:
    """``torch.where(cond, x, y)``."""
    return jnp.where(condition, input, other)


def maximum(x: jax.Array, other: jax.Array) -> jax.Array:
    """``torch.maximum``."""
    return jnp.maximum(x, other)


def minimum(x: jax.Array, other: jax.Array) -> jax.Array:
    """``torch.minimum``."""
    return jnp.minimum(x, other)


def tril(x: jax.Array, diagonal: int = 0) -> jax.Array:
    """``torch.tril(x, diagonal)``."""
    return jnp.tril(x, diagonal)


def triu(x: jax.Array, diagonal: int = 0) -> jax.Array:
    """``torch.triu(x, diagonal)``."""
    return jnp.triu(x, diagonal)


# ---- random numbers, keyed by the call site (funcnet/port/random.py) ------------------------------
from funcnet.port import random as _random  # noqa: E402 - after _method, which wraps its in-place draws

call_site_key = _random.call_site_key
rand, randn, rand_like, randn_like = _random.rand, _random.randn, _random.rand_like, _random.randn_like
randint, randperm, bernoulli = _random.randint, _random.randperm, _random.bernoulli
bernoulli_, uniform_, normal_ = _method(_random.bernoulli_), _method(_random.uniform_), _method(_random.normal_)
