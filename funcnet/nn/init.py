"""Initialisers with torch's formulas (``torch.nn.init``), as pure ``(key, shape, dtype)`` functions.

``normal(std=...)`` etc. return a function that creates the array, for use in a
:class:`~funcnet.nn.Parameter`. torch's in-place forms (``kaiming_normal_(m.weight, ...)``,
``zeros_(m.bias)``) work on a declaration — what ``m.weight`` reads outside ``apply`` — and
replace its initialiser: still pure, nothing is drawn until ``Module.init(key)``. Only the
distributions match torch, not the values: torch's CPU random stream is not reproducible in JAX.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import numpy as np
import scipy.special

from funcnet.nn import _rng
from funcnet.nn.parameter import Initializer, Parameter


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
    return lambda key, shape, dtype: _rng.to_array(np.full(shape, value, dtype))


zeros: Initializer = lambda key, shape, dtype: _rng.to_array(np.zeros(shape, dtype))  # noqa: E731
ones: Initializer = lambda key, shape, dtype: _rng.to_array(np.ones(shape, dtype))  # noqa: E731


def uniform(low: float = 0.0, high: float = 1.0) -> Initializer:
    """U(low, high) (``torch.nn.init.uniform_``).

    Drawn on the host (see ``funcnet.nn._rng``): no compilation, same values under ``jit``.
    """

    def init(key: jax.Array, shape: tuple[int, ...], dtype: Any) -> jax.Array:
        return _rng.to_array(_rng.sample("uniform", key, shape, low, high), dtype)

    return init


def normal(mean: float = 0.0, std: float = 1.0) -> Initializer:
    """N(mean, std²) (``torch.nn.init.normal_``); drawn on the host like :func:`uniform`."""

    def init(key: jax.Array, shape: tuple[int, ...], dtype: Any) -> jax.Array:
        return _rng.to_array(_rng.sample("normal", key, shape, mean, std), dtype)

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


def trunc_normal(mean: float = 0.0, std: float = 1.0, a: float = -2.0, b: float = 2.0) -> Initializer:
    """N(mean, std²) truncated to [a, b] (absolute bounds), by torch's inverse-CDF method.

    The whole transform runs on the host with the draw (scipy's ``erfinv``): JAX ops here would
    compile once per parameter shape, ~0.15 s each (seconds for a GoogLeNet)."""

    def cdf(x: float) -> float:
        return (1.0 + math.erf(x / math.sqrt(2.0))) / 2.0

    low, high = cdf((a - mean) / std), cdf((b - mean) / std)
    # A float32 uniform draw can be exactly -1 (p = 2^-24), where erfinv is -inf: the value would
    # land on the bound a. Keep u inside the open interval, as the continuous distribution does.
    edge = np.float32(1) - np.float32(2.0**-24)

    def inverse_cdf(u: np.ndarray) -> np.ndarray:
        x = scipy.special.erfinv(np.clip(u, -edge, edge)) * np.float32(std * math.sqrt(2.0)) + np.float32(mean)
        return np.clip(x, np.float32(a), np.float32(b))

    def init(key: jax.Array, shape: tuple[int, ...], dtype: Any) -> jax.Array:
        return _rng.to_array(_rng.sample("uniform", key, shape, 2 * low - 1, 2 * high - 1, then=inverse_cdf), dtype)

    return init


def orthogonal(gain: float = 1.0) -> Initializer:
    """``orthogonal_``: a (semi-)orthogonal matrix from the QR of a normal draw (dims ≥ 2 flattened);
    the QR runs on the host with the draw (numpy), like :func:`trunc_normal`."""

    def init(key: jax.Array, shape: tuple[int, ...], dtype: Any) -> jax.Array:
        if len(shape) < 2:
            raise ValueError("Only tensors with 2 or more dimensions are supported")
        rows, cols = shape[0], math.prod(shape[1:])

        def orthogonalize(flat: np.ndarray) -> np.ndarray:
            if rows < cols:
                flat = flat.T
            q, r = np.linalg.qr(flat)
            q = q * np.sign(np.diag(r))
            return gain * (q.T if rows < cols else q)

        flat = _rng.sample("normal", key, (rows, cols), 0.0, 1.0, then=orthogonalize)
        return _rng.to_array(flat.reshape(shape), dtype)

    return init


# -- torch's in-place forms: they replace a declaration's initialiser ------------------------
def _declaration(tensor: Any, name: str) -> Parameter:
    if isinstance(tensor, Parameter):
        return tensor
    raise TypeError(
        f"nn.init.{name}: expected a parameter declaration (what `module.weight` reads outside apply), "
        f"got {type(tensor).__name__}. torch fills tensors in place; a JAX array cannot change. To start "
        f"a parameter this way, call it on the declaration in __init__ (nn.init.{name}(self.weight, ...)), "
        f"or pass the initialiser function nn.init.{name.rstrip('_')}(...) to Parameter(shape, init)."
    )


def uniform_(tensor: Parameter, a: float = 0.0, b: float = 1.0, generator: Any = None) -> Parameter:
    """``torch.nn.init.uniform_``: the declaration starts as U(a, b)."""
    return _declaration(tensor, "uniform_")._set_init(uniform(a, b))


def normal_(tensor: Parameter, mean: float = 0.0, std: float = 1.0, generator: Any = None) -> Parameter:
    """``torch.nn.init.normal_``: the declaration starts as N(mean, std²)."""
    return _declaration(tensor, "normal_")._set_init(normal(mean, std))


def trunc_normal_(tensor: Parameter, mean: float = 0.0, std: float = 1.0, a: float = -2.0, b: float = 2.0,
                  generator: Any = None) -> Parameter:
    """``torch.nn.init.trunc_normal_``: N(mean, std²) truncated to [a, b]."""
    return _declaration(tensor, "trunc_normal_")._set_init(trunc_normal(mean, std, a, b))


def constant_(tensor: Parameter, val: float) -> Parameter:
    """``torch.nn.init.constant_``."""
    return _declaration(tensor, "constant_")._set_init(constant(float(val)))


def ones_(tensor: Parameter) -> Parameter:
    return _declaration(tensor, "ones_")._set_init(ones)


def zeros_(tensor: Parameter) -> Parameter:
    return _declaration(tensor, "zeros_")._set_init(zeros)


def xavier_uniform_(tensor: Parameter, gain: float = 1.0, generator: Any = None) -> Parameter:
    """``torch.nn.init.xavier_uniform_``: U(±gain·√(6/(fan_in+fan_out)))."""
    return _declaration(tensor, "xavier_uniform_")._set_init(xavier_uniform(gain))


def xavier_normal_(tensor: Parameter, gain: float = 1.0, generator: Any = None) -> Parameter:
    """``torch.nn.init.xavier_normal_``: N(0, gain²·2/(fan_in+fan_out))."""
    return _declaration(tensor, "xavier_normal_")._set_init(xavier_normal(gain))


def kaiming_uniform_(tensor: Parameter, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu",
                     generator: Any = None) -> Parameter:
    """``torch.nn.init.kaiming_uniform_``: U(±gain·√(3/fan))."""
    _check_mode(mode)
    return _declaration(tensor, "kaiming_uniform_")._set_init(kaiming_uniform(a, mode, nonlinearity))


def kaiming_normal_(tensor: Parameter, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu",
                    generator: Any = None) -> Parameter:
    """``torch.nn.init.kaiming_normal_``: N(0, gain²/fan)."""
    _check_mode(mode)
    return _declaration(tensor, "kaiming_normal_")._set_init(kaiming_normal(a, mode, nonlinearity))


def orthogonal_(tensor: Parameter, gain: float = 1.0, generator: Any = None) -> Parameter:
    """``torch.nn.init.orthogonal_``."""
    return _declaration(tensor, "orthogonal_")._set_init(orthogonal(gain))


def _check_mode(mode: str) -> None:
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"Mode {mode} not supported, please use one of fan_in, fan_out")
