"""Small ``optax.GradientTransformation``s for the places where optax's maths differs from torch.

Each reproduces one torch ``_single_tensor_*`` update rule (the path torch uses on CPU) up to,
but excluding, the final ``-lr`` scaling (``funcnet.optim.scale_by_lr``). Scalar hyperparameters
that torch's schedulers may change every step (``momentum``, ``β1``) accept a schedule.

Bias corrections ``1 − β^t``: torch computes them in Python float64. optax's float32
``1 − β**t`` is off by 1.3e-5 relative at t=1 for β=0.999 (``0.999`` is not a float32);
here they are computed as ``−expm1(t·log β)`` with ``log β`` taken in float64, which is
accurate to float32 rounding.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from funcnet.optim.learning_rate import ScalarOrSchedule, value_at

_tmap = jax.tree_util.tree_map


def _zeros(params: Any) -> Any:
    return _tmap(jnp.zeros_like, params)


def _step_f(count: jax.Array) -> jax.Array:
    """torch's step number ``t`` (1 for the first update) as a float."""
    return (count + 1).astype(jnp.result_type(float))


def _log(beta: Any) -> jax.Array | float:
    if isinstance(beta, (int, float)):
        return math.log(beta) if beta > 0 else -math.inf
    return jnp.log(beta)


def pow_beta(beta: Any, t: jax.Array) -> jax.Array:
    """``β^t`` via ``exp(t·log β)``, with ``log β`` taken in float64 when β is a Python float."""
    return jnp.exp(t * _log(beta))


def one_minus_pow(beta: Any, t: jax.Array) -> jax.Array:
    """``1 − β^t`` accurately (``−expm1(t·log β)``); torch's bias correction."""
    return -jnp.expm1(t * _log(beta))


def _c(x: Any, like: jax.Array) -> jax.Array:
    return jnp.asarray(x).astype(like.dtype)


# ----------------------------------------------------------------------------- momentum (SGD, RMSprop)


class MomentumState(NamedTuple):
    count: jax.Array
    trace: Any


def scale_by_momentum(
    momentum: ScalarOrSchedule, dampening: float = 0.0, nesterov: bool = False
) -> optax.GradientTransformation:
    """torch's momentum buffer: ``b = g`` on the first step, then ``b = μ·b + (1−τ)·g``;
    output ``g + μ·b`` (nesterov) or ``b``.

    With a constant ``μ`` and ``τ = 0`` this is exactly ``optax.trace(μ, nesterov)`` and that is
    what is returned. optax has no dampening and cannot take a momentum schedule (``OneCycleLR``).
    RMSprop's buffer starts at zeros, which gives the same first value ``g`` when ``τ = 0``.
    """
    if not callable(momentum) and dampening == 0.0:
        return optax.trace(decay=momentum, nesterov=nesterov)

    def init_fn(params):
        return MomentumState(count=jnp.zeros((), jnp.int32), trace=_zeros(params))

    def update_fn(updates, state, params=None):
        del params
        mu = value_at(momentum, state.count)
        first = state.count == 0

        def buf(g, b):
            new = _c(mu, g) * b + _c(1.0 - dampening, g) * g
            return jnp.where(first, g, new)

        trace = _tmap(buf, updates, state.trace)
        if nesterov:
            out = _tmap(lambda g, b: g + _c(mu, g) * b, updates, trace)
        else:
            out = trace
        return out, MomentumState(count=optax.safe_increment(state.count), trace=trace)

    return optax.GradientTransformation(init_fn, update_fn)


# ----------------------------------------------------------------------------- Adam / AdamW / AMSGrad


class TorchAdamState(NamedTuple):
    count: jax.Array
    mu: Any
    nu: Any
    nu_max: Any  # AMSGrad's running max of the raw second moment (empty tuple without amsgrad)


def scale_by_torch_adam(
    b1: ScalarOrSchedule = 0.9, b2: float = 0.999, eps: float = 1e-8, amsgrad: bool = False
) -> optax.GradientTransformation:
    """torch's Adam direction ``(m/(1−β1^t)) / (sqrt(v̂)/sqrt(1−β2^t) + eps)``.

    ``m = lerp(m, g, 1−β1)``, ``v = β2·v + (1−β2)·g²``; with ``amsgrad`` ``v̂ = max(v̂, v)`` over the
    *raw* (uncorrected) v, as torch's code (optax's ``scale_by_amsgrad`` takes the max over the
    bias-corrected v, which differs). ``b1`` may be a schedule (OneCycle's β1 cycling); the bias
    correction then uses the current β1, as torch does.
    """

    def init_fn(params):
        return TorchAdamState(
            count=jnp.zeros((), jnp.int32),
            mu=_zeros(params),
            nu=_zeros(params),
            nu_max=_zeros(params) if amsgrad else (),
        )

    def update_fn(updates, state, params=None):
        del params
        beta1 = value_at(b1, state.count) if callable(b1) else b1
        t = _step_f(state.count)
        bc1 = one_minus_pow(beta1, t)
        bc2_sqrt = jnp.sqrt(one_minus_pow(b2, t))
        mu = _tmap(lambda g, m: m + _c(1.0 - beta1, g) * (g - m), updates, state.mu)
        nu = _tmap(lambda g, v: _c(b2, g) * v + _c(1.0 - b2, g) * (g * g), updates, state.nu)
        if amsgrad:
            nu_max = _tmap(jnp.maximum, state.nu_max, nu)
            second = nu_max
        else:
            nu_max, second = (), nu
        out = _tmap(lambda m, v: (m / (jnp.sqrt(v) / _c(bc2_sqrt, v) + _c(eps, v))) / _c(bc1, m), mu, second)
        return out, TorchAdamState(count=optax.safe_increment(state.count), mu=mu, nu=nu, nu_max=nu_max)

    return optax.GradientTransformation(init_fn, update_fn)


# ----------------------------------------------------------------------------- Adamax


class TorchAdamaxState(NamedTuple):
    count: jax.Array
    mu: Any
    inf_norm: Any


def scale_by_torch_adamax(
    b1: ScalarOrSchedule = 0.9, b2: float = 0.999, eps: float = 1e-8
) -> optax.GradientTransformation:
    """torch's Adamax direction ``m / u / (1 − β1^t)`` with ``u = max(β2·u, |g| + eps)``.

    optax's ``scale_by_adamax`` computes ``m̂/(max(β2·u, |g|) + eps)``: eps is added outside the max.
    """

    def init_fn(params):
        return TorchAdamaxState(count=jnp.zeros((), jnp.int32), mu=_zeros(params), inf_norm=_zeros(params))

    def update_fn(updates, state, params=None):
        del params
        beta1 = value_at(b1, state.count) if callable(b1) else b1
        bc1 = one_minus_pow(beta1, _step_f(state.count))
        mu = _tmap(lambda g, m: m + _c(1.0 - beta1, g) * (g - m), updates, state.mu)
        inf_norm = _tmap(
            lambda g, u: jnp.maximum(_c(b2, u) * u, jnp.abs(g) + _c(eps, g)), updates, state.inf_norm
        )
        out = _tmap(lambda m, u: (m / u) / _c(bc1, m), mu, inf_norm)
        return out, TorchAdamaxState(count=optax.safe_increment(state.count), mu=mu, inf_norm=inf_norm)

    return optax.GradientTransformation(init_fn, update_fn)


# ----------------------------------------------------------------------------- NAdam


class TorchNAdamState(NamedTuple):
    count: jax.Array
    mu_product: jax.Array
    mu: Any
    nu: Any


def scale_by_torch_nadam(
    b1: ScalarOrSchedule = 0.9, b2: float = 0.999, eps: float = 1e-8, momentum_decay: float = 4e-3
) -> optax.GradientTransformation:
    """torch's NAdam direction (Dozat's momentum schedule ``μ_t = β1(1 − ½·0.96^{tψ})``).

    ``g·(1−μ_t)/(1−Πμ) / d + m·μ_{t+1}/(1−Πμ·μ_{t+1}) / d`` with ``d = sqrt(v/(1−β2^t)) + eps``.
    optax's ``nadam`` uses a constant β1 and no ``momentum_decay`` schedule, so it differs.
    """

    def init_fn(params):
        return TorchNAdamState(
            count=jnp.zeros((), jnp.int32),
            mu_product=jnp.ones((), jnp.result_type(float)),
            mu=_zeros(params),
            nu=_zeros(params),
        )

    def update_fn(updates, state, params=None):
        del params
        beta1 = value_at(b1, state.count) if callable(b1) else b1
        t = _step_f(state.count)
        bc2 = one_minus_pow(b2, t)
        mu_t = beta1 * (1.0 - 0.5 * pow_beta(0.96, t * momentum_decay))
        mu_next = beta1 * (1.0 - 0.5 * pow_beta(0.96, (t + 1.0) * momentum_decay))
        mu_product = state.mu_product * mu_t
        coef_g = (1.0 - mu_t) / (1.0 - mu_product)
        coef_m = mu_next / (1.0 - mu_product * mu_next)
        mu = _tmap(lambda g, m: m + _c(1.0 - beta1, g) * (g - m), updates, state.mu)
        nu = _tmap(lambda g, v: _c(b2, g) * v + _c(1.0 - b2, g) * (g * g), updates, state.nu)

        def direction(g, m, v):
            d = jnp.sqrt(v / _c(bc2, v)) + _c(eps, v)
            return _c(coef_g, g) * g / d + _c(coef_m, m) * m / d

        out = _tmap(direction, updates, mu, nu)
        return out, TorchNAdamState(
            count=optax.safe_increment(state.count), mu_product=mu_product, mu=mu, nu=nu
        )

    return optax.GradientTransformation(init_fn, update_fn)


# ----------------------------------------------------------------------------- RAdam


class TorchRAdamState(NamedTuple):
    count: jax.Array
    mu: Any
    nu: Any


def scale_by_torch_radam(
    b1: ScalarOrSchedule = 0.9, b2: float = 0.999, eps: float = 1e-8
) -> optax.GradientTransformation:
    """torch's RAdam direction: ``m̂·r_t·sqrt(1−β2^t)/(sqrt(v)+eps)`` when ``ρ_t > 5``, else ``m̂``.

    optax's ``scale_by_radam`` uses ``threshold=5`` too but puts eps on the bias-corrected
    ``sqrt(v̂)+eps`` (torch: ``sqrt(v)+eps`` then times ``sqrt(1−β2^t)``), so it differs.
    """
    rho_inf = 2.0 / (1.0 - b2) - 1.0

    def init_fn(params):
        return TorchRAdamState(count=jnp.zeros((), jnp.int32), mu=_zeros(params), nu=_zeros(params))

    def update_fn(updates, state, params=None):
        del params
        beta1 = value_at(b1, state.count) if callable(b1) else b1
        t = _step_f(state.count)
        bc1 = one_minus_pow(beta1, t)
        bc2 = one_minus_pow(b2, t)
        rho_t = rho_inf - 2.0 * t * pow_beta(b2, t) / bc2
        use_rect = rho_t > 5.0
        rho_safe = jnp.where(use_rect, rho_t, 6.0)
        rect = jnp.sqrt(
            (rho_safe - 4) * (rho_safe - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_safe)
        )
        mu = _tmap(lambda g, m: m + _c(1.0 - beta1, g) * (g - m), updates, state.mu)
        nu = _tmap(lambda g, v: _c(b2, g) * v + _c(1.0 - b2, g) * (g * g), updates, state.nu)

        def direction(m, v):
            m_hat = m / _c(bc1, m)
            adaptive = _c(jnp.sqrt(bc2), v) / (jnp.sqrt(v) + _c(eps, v))
            return jnp.where(use_rect, m_hat * adaptive * _c(rect, m), m_hat)

        out = _tmap(direction, mu, nu)
        return out, TorchRAdamState(count=optax.safe_increment(state.count), mu=mu, nu=nu)

    return optax.GradientTransformation(init_fn, update_fn)


# ----------------------------------------------------------------------------- Adagrad


class TorchAdagradState(NamedTuple):
    count: jax.Array
    sum_of_squares: Any


def scale_by_torch_adagrad(
    lr_decay: float = 0.0, initial_accumulator_value: float = 0.0, eps: float = 1e-10
) -> optax.GradientTransformation:
    """torch's Adagrad direction ``g / (sqrt(S) + eps) / (1 + (t−1)·lr_decay)`` with ``S += g²``.

    optax's ``scale_by_rss`` uses ``rsqrt(S + eps)`` (eps inside, 0 where S = 0) and
    ``optax.adagrad`` defaults to ``initial_accumulator_value=0.1``, ``eps=1e-7``.
    """

    def init_fn(params):
        return TorchAdagradState(
            count=jnp.zeros((), jnp.int32),
            sum_of_squares=_tmap(lambda p: jnp.full_like(p, initial_accumulator_value), params),
        )

    def update_fn(updates, state, params=None):
        del params
        decay = 1.0 / (1.0 + state.count.astype(jnp.result_type(float)) * lr_decay)
        sos = _tmap(lambda g, s: s + g * g, updates, state.sum_of_squares)
        out = _tmap(lambda g, s: (g / (jnp.sqrt(s) + _c(eps, s))) * _c(decay, g), updates, sos)
        return out, TorchAdagradState(count=optax.safe_increment(state.count), sum_of_squares=sos)

    return optax.GradientTransformation(init_fn, update_fn)


def maximize() -> optax.GradientTransformation:
    """torch's ``maximize=True``: negate the gradient first (``optax.scale(-1)``)."""
    return optax.scale(-1.0)
