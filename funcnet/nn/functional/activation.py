"""Activation functions with torch.nn.functional's names, arguments, defaults and gradients.

Every function is a pure ``jax.Array -> jax.Array`` map of any shape. The
``inplace`` arguments of torch are accepted for source compatibility and
ignored: JAX arrays are immutable, so the result is always a new array.

Gradients follow torch at the kinks: ``relu``/``leaky_relu`` use the
negative-side slope at exactly 0, ``hardtanh``/``relu6`` have zero gradient at
the clip boundaries, ``elu`` has gradient ``alpha`` at 0. Branches that are not
taken are computed on clamped inputs so that ``jnp.where`` never multiplies a
zero cotangent by ``inf``.
"""

from __future__ import annotations

import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def relu(input: jax.Array, inplace: bool = False) -> jax.Array:
    """``F.relu``: max(x, 0); gradient 0 at x = 0 as in torch."""
    return jax.nn.relu(input)  # custom JVP: gradient 0 at x = 0, as torch


def hardtanh(
    input: jax.Array, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False
) -> jax.Array:
    """``F.hardtanh``: clip to [min_val, max_val]; gradient 1 strictly inside, 0 elsewhere (torch)."""
    if min_val > max_val:
        raise ValueError("min_val cannot be greater than max_val")
    lo = jnp.asarray(min_val, input.dtype)
    hi = jnp.asarray(max_val, input.dtype)
    inside = (input > lo) & (input < hi)
    return jnp.where(inside, input, jnp.where(input <= lo, lo, hi))


def relu6(input: jax.Array, inplace: bool = False) -> jax.Array:
    """``F.relu6``: min(max(x, 0), 6) = ``hardtanh(x, 0, 6)``."""
    return hardtanh(input, 0.0, 6.0)


def leaky_relu(input: jax.Array, negative_slope: float = 0.01, inplace: bool = False) -> jax.Array:
    """``F.leaky_relu``: x if x > 0 else negative_slope·x."""
    return jnp.where(input > 0, input, input * jnp.asarray(negative_slope, input.dtype))


def elu(input: jax.Array, alpha: float = 1.0, inplace: bool = False) -> jax.Array:
    """``F.elu``: x if x > 0 else alpha·(eˣ − 1)."""
    # where, not minimum: jnp.minimum splits the gradient 50/50 at a tie (x = 0).
    clamped = jnp.where(input > 0, jnp.zeros((), input.dtype), input)
    negative = jnp.asarray(alpha, input.dtype) * jnp.expm1(clamped)
    return jnp.where(input > 0, input, negative)


def gelu(input: jax.Array, approximate: str = "none") -> jax.Array:
    """``F.gelu``: x·Φ(x) (``approximate='none'``, erf form) or torch's tanh approximation."""
    if approximate == "none":
        return _gelu_erf(input) if _GELU_ERF else jax.nn.gelu(input, approximate=False)
    if approximate == "tanh":
        return jax.nn.gelu(input, approximate=True)
    raise ValueError(f"approximate argument must be either none or tanh, got {approximate!r}")


# False: jax.nn.gelu's erfc form with autodiff, for an in-process A/B (benchmarks/variant_ab.py).
# The erf form with a JVP that reuses Φ: ViT train step 0.955-0.975x the time (XLA had duplicated
# erfc's piecewise polynomial into several fusions of the backward).
_GELU_ERF = True


@jax.custom_jvp
def _gelu_erf(x: jax.Array) -> jax.Array:
    """torch's CPU formula ``x·½(1 + erf(x/√2))``; its derivative ``Φ(x) + x·φ(x)`` reuses Φ."""
    return x * _normal_cdf(x)


def _normal_cdf(x: jax.Array) -> jax.Array:
    return 0.5 * (1.0 + jax.lax.erf(x * np.asarray(1 / np.sqrt(2), x.dtype)))


@_gelu_erf.defjvp
def _gelu_erf_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    cdf = _normal_cdf(x)
    pdf = jnp.exp(-0.5 * x * x) * np.asarray(1 / np.sqrt(2 * np.pi), x.dtype)
    return x * cdf, t * (cdf + x * pdf)


def silu(input: jax.Array, inplace: bool = False) -> jax.Array:
    """``F.silu``: x·σ(x) (swish)."""
    return input * jax.nn.sigmoid(input)


def mish(input: jax.Array, inplace: bool = False) -> jax.Array:
    """``F.mish``: x·tanh(softplus(x))."""
    return input * jnp.tanh(jax.nn.softplus(input))


def hardswish(input: jax.Array, inplace: bool = False) -> jax.Array:
    """``F.hardswish``: x·relu6(x + 3)/6 (MobileNetV3)."""
    return input * jnp.clip(input + 3.0, 0.0, 6.0) / 6.0


def hardsigmoid(input: jax.Array, inplace: bool = False) -> jax.Array:
    """``F.hardsigmoid``: relu6(x + 3)/6."""
    return jnp.clip(input + 3.0, 0.0, 6.0) / 6.0


def sigmoid(input: jax.Array) -> jax.Array:
    """``F.sigmoid``: 1 / (1 + e⁻ˣ)."""
    return jax.nn.sigmoid(input)


def tanh(input: jax.Array) -> jax.Array:
    """``F.tanh``."""
    return jnp.tanh(input)


def softplus(input: jax.Array, beta: float = 1.0, threshold: float = 20.0) -> jax.Array:
    """``F.softplus``: log(1 + e^(βx))/β, and x itself where βx > threshold (torch's linear region)."""
    scaled = input * jnp.asarray(beta, input.dtype)
    linear = scaled > threshold
    clamped = jnp.where(linear, jnp.asarray(threshold, input.dtype), scaled)
    smooth = jnp.log1p(jnp.exp(clamped)) / jnp.asarray(beta, input.dtype)
    return jnp.where(linear, input, smooth)


def _softmax_dim(name: str, ndim: int, dim: int | None) -> int:
    if dim is not None:
        return dim
    # torch's legacy rule (_get_softmax_dim), with its deprecation warning.
    warnings.warn(
        f"Implicit dimension choice for {name} has been deprecated. "
        "Change the call to include dim=X as an argument.",
        stacklevel=3,
    )
    return 0 if ndim in (0, 1, 3) else 1


def softmax(
    input: jax.Array, dim: int | None = None, _stacklevel: int = 3, dtype: Any = None
) -> jax.Array:
    """``F.softmax`` along ``dim``; ``dtype`` casts the input first (as torch).

    ``dim=None`` follows torch's deprecated implicit rule (dim 0 for 0-, 1- and
    3-D inputs, else dim 1) and warns; always pass ``dim``.
    """
    if dtype is not None:
        input = input.astype(dtype)
    return jax.nn.softmax(input, axis=_softmax_dim("softmax", input.ndim, dim))


def log_softmax(
    input: jax.Array, dim: int | None = None, _stacklevel: int = 3, dtype: Any = None
) -> jax.Array:
    """``F.log_softmax`` along ``dim`` (numerically stable); ``dim=None`` as in :func:`softmax`."""
    if dtype is not None:
        input = input.astype(dtype)
    return jax.nn.log_softmax(input, axis=_softmax_dim("log_softmax", input.ndim, dim))
