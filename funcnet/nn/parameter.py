"""Declarations of parameters and buffers: shape, dtype and initialiser, never an array.

``torch.nn.Parameter(tensor)`` holds data; ``funcnet.nn.Parameter(shape, init)``
holds only the recipe. ``Module.init(key)`` turns recipes into arrays.

For torch model code, a declaration also answers what ``__init__`` code asks of a
tensor: ``shape``, ``size(dim)``, ``dim()``, ``numel()``, ``dtype``, ``data``, and the
in-place initialisers ``normal_``, ``uniform_``, ``zero_``, ``fill_`` (each replaces the
recipe; nothing is drawn until ``init``). ``Parameter(value)`` with an array declares a
parameter whose initial value is that array (torch's ``nn.Parameter(torch.ones(3) * s)``).
Arithmetic on a declaration raises: it has no value outside ``apply``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from funcnet.nn import _rng

#: ``init(key, shape, dtype) -> jax.Array``
Initializer = Callable[[jax.Array, tuple[int, ...], Any], jax.Array]


def _as_shape(shape: Any) -> tuple[int, ...]:
    if isinstance(shape, int):
        return (shape,)
    return tuple(int(s) for s in shape)


def _resolve_init(init: Any) -> Initializer:
    if callable(init):
        return init
    constant = np.asarray(init)  # numpy: no device work until init
    return lambda key, shape, dtype: np.broadcast_to(constant, shape).astype(dtype)


def _is_array_value(value: Any) -> bool:
    """An array (jax, numpy, torch) given where torch passes a tensor: ``nn.Parameter(tensor)``."""
    return hasattr(value, "shape") and hasattr(value, "dtype") and not isinstance(value, Parameter)


def _host_value(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor; torch stays an optional import
        value = value.detach().cpu().numpy()
    if isinstance(value, jax.core.Tracer):
        raise TypeError(
            "Parameter(value): the initial value is a traced array; declare parameters in __init__ "
            "from concrete values (or a shape and an initialiser), not inside apply"
        )
    return np.array(value)  # a copy: later changes to the source do not change the declaration


def _constant_init(value: np.ndarray) -> Initializer:
    return lambda key, shape, dtype: np.asarray(value, dtype)


class DeclarationError(TypeError, AttributeError):
    """An array operation on a declaration outside ``apply`` (also an ``AttributeError``, so
    ``hasattr(decl, "reshape")`` is simply False)."""


def _array_ops_error(decl: Parameter, what: str) -> DeclarationError:
    where = f" ({decl.where})" if decl.where else ""
    return DeclarationError(
        f"{what} on a parameter declaration{where}: {decl!r} is the recipe for an array (shape, dtype, "
        f"initialiser), not an array. funcnet modules hold no arrays; the array exists only inside "
        f"apply, where `self.<name>` reads it from the params. Write the computation in forward (e.g. "
        f"`w = self.fc.weight * 2` there), or, to change how the parameter starts, give it an "
        f"initialiser: nn.init.normal_(decl, std=...), nn.init.constant_(decl, v), or "
        f"nn.Parameter(initial_array) for a concrete starting value."
    )


class Parameter:
    """A trainable array declared on a module: ``self.weight = Parameter((out, in), init)``.

    Args:
        shape: the array's shape (torch layout) — or an array (jax, numpy or torch): then the
            declaration's shape and dtype are the array's and ``init`` returns a copy of it,
            as torch's ``nn.Parameter(tensor)``; or another declaration, whose recipe is copied.
        init: ``init(key, shape, dtype) -> array``, or a constant (number or array).
        dtype: the parameter dtype (torch's ``dtype=`` argument); float32 by default.
        requires_grad: torch's flag; only ``True`` is supported (freeze with
            ``funcnet.nn.utils`` trainable masks instead).
    """

    __slots__ = ("shape", "init", "dtype", "where")

    def __init__(self, shape: Any, init: Any = 0.0, dtype: Any = None, requires_grad: bool = True):
        if requires_grad is not True:
            raise NotImplementedError(
                "Parameter(requires_grad=False): funcnet trains what the optimizer is given; "
                "freeze it with a trainable mask (funcnet.nn.utils) or declare it as a Buffer"
            )
        self.where = ""  # "Linear.weight" once assigned to a module (for error messages)
        if isinstance(shape, Parameter):
            self.shape, self.init = shape.shape, shape.init
            self.dtype = jnp.dtype(dtype) if dtype is not None else shape.dtype
            return
        if _is_array_value(shape):
            value = _host_value(shape)
            self.shape = tuple(value.shape)
            self.dtype = jnp.dtype(dtype if dtype is not None else _default_dtype(value.dtype))
            self.init = _constant_init(value)
            return
        self.shape = _as_shape(shape)
        self.init = _resolve_init(init)
        self.dtype = jnp.dtype(dtype if dtype is not None else jnp.float32)

    def create(self, key: jax.Array) -> jax.Array:
        value = _rng.to_array(self.init(key, self.shape, self.dtype), self.dtype)
        if value.shape != self.shape:
            raise ValueError(f"initialiser returned shape {value.shape}, expected {self.shape}")
        return value

    # -- tensor metadata, as torch code reads it in __init__ ---------------------------
    def size(self, dim: int | None = None) -> Any:
        """torch's ``Tensor.size()``: the shape, or ``size(dim)`` one of its entries."""
        return self.shape if dim is None else self.shape[dim]

    def numel(self) -> int:
        """Number of elements (torch's ``numel()``)."""
        n = 1
        for s in self.shape:
            n *= s
        return n

    def dim(self) -> int:
        return len(self.shape)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def nbytes(self) -> int:
        return self.numel() * self.dtype.itemsize

    @property
    def requires_grad(self) -> bool:
        return not isinstance(self, Buffer)

    @property
    def data(self) -> Parameter:
        """torch's ``.data``: the declaration itself (``m.weight.data.normal_(0, 0.01)``)."""
        return self

    # -- torch's in-place initialisers: each replaces the recipe ----------------------------
    def _set_init(self, init: Initializer) -> Parameter:
        self.init = init
        return self

    def normal_(self, mean: float = 0.0, std: float = 1.0, *, generator: Any = None) -> Parameter:
        """``Tensor.normal_``: the declaration starts as N(mean, std²)."""
        from funcnet.nn import init

        return self._set_init(init.normal(mean, std))

    def uniform_(self, a: float = 0.0, b: float = 1.0, *, generator: Any = None, **kwargs: Any) -> Parameter:
        """``Tensor.uniform_(from=0, to=1)``: the declaration starts as U(a, b)."""
        from funcnet.nn import init

        a, b = kwargs.pop("from", a), kwargs.pop("to", b)
        if kwargs:
            raise TypeError(f"uniform_() got unexpected keyword arguments {sorted(kwargs)}")
        return self._set_init(init.uniform(a, b))

    def fill_(self, value: float) -> Parameter:
        from funcnet.nn import init

        return self._set_init(init.constant(float(value)))

    def zero_(self) -> Parameter:
        from funcnet.nn import init

        return self._set_init(init.zeros)

    def __getitem__(self, index: Any) -> _DeclarationSlice:
        """A slice of the declaration, for torch's ``self.qkv.bias[a:b].data.zero_()``."""
        return _DeclarationSlice(self, index)

    # -- what a declaration is not -------------------------------------------------
    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        raise _array_ops_error(self, f"`.{name}`")

    def __array__(self, *args: Any, **kwargs: Any) -> Any:
        raise _array_ops_error(self, "converting to an array")

    def __jax_array__(self) -> Any:
        raise _array_ops_error(self, "converting to an array")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(shape={self.shape}, dtype={self.dtype.name})"


def _arithmetic(symbol: str) -> Callable:
    def method(self: Parameter, *args: Any) -> Any:
        raise _array_ops_error(self, f"arithmetic ({symbol})")

    return method


for _name, _symbol in [
    ("add", "+"), ("radd", "+"), ("sub", "-"), ("rsub", "-"), ("mul", "*"), ("rmul", "*"),
    ("truediv", "/"), ("rtruediv", "/"), ("floordiv", "//"), ("rfloordiv", "//"), ("mod", "%"),
    ("pow", "**"), ("rpow", "**"), ("matmul", "@"), ("rmatmul", "@"), ("neg", "unary -"),
    ("pos", "unary +"), ("abs", "abs()"), ("lt", "<"), ("le", "<="), ("gt", ">"), ("ge", ">="),
    ("float", "float()"), ("int", "int()"), ("iadd", "+="), ("isub", "-="), ("imul", "*="),
    ("itruediv", "/="),
]:
    setattr(Parameter, f"__{_name}__", _arithmetic(_symbol))


def _default_dtype(dtype: Any) -> Any:
    """float64 values (numpy's default) become float32, as JAX's default precision."""
    return jnp.float32 if np.dtype(dtype) == np.float64 else dtype


class _DeclarationSlice:
    """``decl[index]`` outside apply: in-place initialisers on it rewrite that part of the recipe."""

    __slots__ = ("parent", "index")

    def __init__(self, parent: Parameter, index: Any):
        self.parent, self.index = parent, index

    @property
    def data(self) -> _DeclarationSlice:
        return self

    @property
    def shape(self) -> tuple[int, ...]:
        return np.empty(self.parent.shape, np.bool_)[self.index].shape

    def _set(self, make: Callable[[jax.Array, tuple[int, ...], Any], Any]) -> _DeclarationSlice:
        old, index, shape = self.parent.init, self.index, self.shape

        def init(key: jax.Array, full_shape: tuple[int, ...], dtype: Any) -> jax.Array:
            value = old(key, full_shape, dtype)
            part = make(_rng.derive_key(key, 0x5EC7), shape, dtype)
            if isinstance(value, jax.core.Tracer) or isinstance(part, jax.core.Tracer):
                return jnp.asarray(value, dtype).at[index].set(jnp.asarray(part, dtype))
            value = np.array(value, dtype)  # a host copy: eager .at[].set would compile per shape
            value[index] = np.asarray(part, dtype)
            return _rng.to_array(value)

        self.parent.init = init
        return self

    def zero_(self) -> _DeclarationSlice:
        return self._set(lambda key, shape, dtype: np.zeros(shape, dtype))

    def fill_(self, value: float) -> _DeclarationSlice:
        return self._set(lambda key, shape, dtype: np.full(shape, value, dtype))

    def normal_(self, mean: float = 0.0, std: float = 1.0) -> _DeclarationSlice:
        from funcnet.nn import init

        return self._set(init.normal(mean, std))

    def uniform_(self, a: float = 0.0, b: float = 1.0) -> _DeclarationSlice:
        from funcnet.nn import init

        return self._set(init.uniform(a, b))


class Buffer(Parameter):
    """A non-trainable array declared on a module (torch's ``register_buffer``).

    Buffers are returned apart from the parameters by ``Module.init`` and are
    updated functionally: in train mode ``apply`` returns the new buffers.
    ``persistent=False`` keeps the buffer out of ``state_dict`` as in torch.
    ``Buffer(array)`` declares a buffer holding that array (torch's ``register_buffer(name, tensor)``).
    """

    __slots__ = ("persistent",)

    def __init__(self, shape: Any, init: Any = 0.0, dtype: Any = None, persistent: bool = True):
        if _is_array_value(shape):  # buffers keep integer dtypes (index tables) as given
            value = _host_value(shape)
            super().__init__(value, dtype=dtype if dtype is not None else _default_buffer_dtype(value.dtype))
        else:
            super().__init__(shape, init, dtype)
        self.persistent = persistent


def _default_buffer_dtype(dtype: Any) -> Any:
    """float64 → float32, int64 → int32 (JAX's defaults without x64), others as given."""
    dtype = np.dtype(dtype)
    if dtype == np.float64:
        return jnp.float32
    if dtype == np.int64:
        return jnp.int32
    return dtype
