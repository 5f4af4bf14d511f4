"""Initialisers with torch's formulas (``torch.nn.init``), as pure ``(key, shape, dtype)`` functions.

torch initialises in place (``kaiming_uniform_(w)``); funcnet returns a function
that creates the array, for use in a :class:`~funcnet.nn.Parameter`. Only the
distributions match torch, not the values: torch's CPU random stream is not
reproducible in JAX.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from funcnet.nn import _rng
from funcnet.nn.parameter import Initializer


def calculate_fan_in_and_fan_out(shape: tuple[int, ...]) -> tuple[int, int]:
    """torch's ``_calculate_fan_in_and_fan_out``: dim 1 is fan-in, dim 0 fan-out, times the receptive field."""
    if len(shape) < 2:
        raise ValueError("fan in and fan out can not be computed for tensor with fewer than 2 dimensions")
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """torch's ``calculate_gain``."""
    if nonlinearity in ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d",
                        "conv_transpose2d", "conv_transpose3d", "sigmoid"):
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else param
        return math.sqrt(2.0 / (1 + slope**2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"Unsupported nonlinearity {nonlinearity}")


# Constants are built with numpy: no compilation at init time (and valid under jit).
def constant(value: float) -> Initializer:
    return lambda key, shape, dtype: jnp.asarray(np.full(shape, value, dtype))


zeros: Initializer = lambda key, shape, dtype: jnp.asarray(np.zeros(shape, dtype))  # noqa: E731
ones: Initializer = lambda key, shape, dtype: jnp.asarray(np.ones(shape, dtype))  # noqa: E731


def uniform(low: float = 0.0, high: float = 1.0) -> Initializer:
    """U(low, high) (``torch.nn.init.uniform_``).

    Drawn on the host (see ``funcnet.nn._rng``): no compilation, same values under ``jit``.
    """

    def init(key: jax.Array, shape: tuple[int, ...], dtype: Any) -> jax.Array:
        return jnp.asarray(_rng.sample("uniform", key, shape, low, high).astype(dtype))

    return init


def normal(mean: float = 0.0, std: float = 1.0) -> Initializer:
    """N(mean, std²) (``torch.nn.init.normal_``); drawn on the host like :func:`uniform`."""

    def init(key: jax.Array, shape: tuple[int, ...], dtype: Any) -> jax.Array:
        return jnp.asarray(_rng.sample("normal", key, shape, mean, std).astype(dtype))

    return init


def bounded_uniform(bound: float) -> Initializer:
    """U(-bound, bound); the building block of torch's Linear/Conv defaults."""
    return uniform(-bound, bound)


def kaiming_uniform(a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu") -> Initializer:
    """``kaiming_uniform_``: bound = gain·√3/√fan. With a=√5 (torch's default for Linear/Conv) bound = 1/√fan_in."""

    def init(key: jax.Array, shape: tuple[int, ...], dtype: Any) -> jax.Array:
        fan_in, fan_out = calculate_fan_in_and_fan_out(shape)
        fan = fan_in if mode == "fan_in" else fan_out
        gain = calculate_gain(nonlinearity, a)
        bound = math.sqrt(3.0) * gain / math.sqrt(fan) if fan > 0 else 0.0
        return uniform(-bound, bound)(key, shape, dtype)

    return init


def kaiming_normal(a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu") -> Initializer:
    def init(key: jax.Array, shape: tuple[int, ...], dtype: Any) -> jax.Array:
        fan_in, fan_out = calculate_fan_in_and_fan_out(shape)
        fan = fan_in if mode == "fan_in" else fan_out
        std = calculate_gain(nonlinearity, a) / math.sqrt(fan)
        return normal(0.0, std)(key, shape, dtype)

    return init


def xavier_uniform(gain: float = 1.0) -> Initializer:
    """``xavier_uniform_``: bound = gain·√(6/(fan_in+fan_out))."""

    def init(key: jax.Array, shape: tuple[int, ...], dtype: Any) -> jax.Array:
        fan_in, fan_out = calculate_fan_in_and_fan_out(shape)
        bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
        return uniform(-bound, bound)(key, shape, dtype)

    return init


def xavier_normal(gain: float = 1.0) -> Initializer:
    """``xavier_normal_``: std = gain·√(2/(fan_in+fan_out))."""

    def init(key: jax.Array, shape: tuple[int, ...], dtype: Any) -> jax.Array:
        fan_in, fan_out = calculate_fan_in_and_fan_out(shape)
        return normal(0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)))(key, shape, dtype)

    return init


def torch_default_weight(key: jax.Array, shape: tuple[int, ...], dtype: Any) -> jax.Array:
    """Linear/Conv weight default: ``kaiming_uniform_(w, a=√5)`` = U(±1/√fan_in)."""
    return kaiming_uniform(a=math.sqrt(5))(key, shape, dtype)


def torch_default_bias(fan_in: int) -> Initializer:
    """Linear/Conv bias default: U(±1/√fan_in), zero when fan_in is 0."""
    return bounded_uniform(1 / math.sqrt(fan_in) if fan_in > 0 else 0.0)
