"""Gradient clipping with torch's exact formulas (``torch/nn/utils/clip_grad.py``).

torch modifies ``p.grad`` in place and returns the total norm; funcnet is pure, so the functions
take a gradient pytree and return ``(clipped_grads, total_norm)`` (``clip_grad_value_`` returns
the clipped grads only). The trailing underscore is kept so that ported code reads the same.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp


def _check_norm_type(norm_type: float) -> float:
    norm_type = float(norm_type)
    if not (norm_type > 0 or math.isinf(norm_type)):
        raise ValueError(f"funcnet.nn.utils.clip_grad_norm_: norm_type must be > 0 or inf, got {norm_type}")
    return norm_type


def _tensor_norm(g: jax.Array, p: float) -> jax.Array:
    g = jnp.abs(jnp.ravel(g))
    if math.isinf(p):
        return jnp.max(g, initial=0.0) if p > 0 else jnp.min(g)
    if p == 2.0:
        return jnp.sqrt(jnp.sum(g * g))
    if p == 1.0:
        return jnp.sum(g)
    return jnp.sum(g**p) ** (1.0 / p)


def get_total_norm(grads: Any, norm_type: float = 2.0) -> jax.Array:
    """``torch.nn.utils.get_total_norm``: the ``norm_type``-norm of the per-tensor norms.

    ``norm_type`` may be any float > 0 or ``inf`` (max |g|). Returns a 0-d array (0 for an empty tree).
    """
    p = _check_norm_type(norm_type)
    leaves = [g for g in jax.tree_util.tree_leaves(grads) if g is not None]
    if not leaves:
        return jnp.zeros((), jnp.result_type(float))
    norms = jnp.stack([_tensor_norm(g, p).astype(jnp.result_type(*leaves)) for g in leaves])
    return _tensor_norm(norms, p)


def clip_grad_norm_(
    grads: Any,
    max_norm: float,
    norm_type: float = 2.0,
    error_if_nonfinite: bool = False,
) -> tuple[Any, jax.Array]:
    """``torch.nn.utils.clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False)``.

    ``total = ‖(‖g_i‖_p)_i‖_p``; every gradient is multiplied by
    ``min(max_norm / (total + 1e-6), 1)`` exactly as torch (optax's ``clip_by_global_norm`` has no
    ``1e-6`` and leaves unclipped grads untouched, so it differs slightly).

    Returns ``(clipped_grads, total_norm)`` where ``total_norm`` is the norm *before* clipping.
    Difference from torch: pure (no in-place ``.grad`` update); ``error_if_nonfinite`` can only be
    checked when the norm is concrete (outside ``jax.jit``) — under jit it is ignored and NaN/inf
    propagate, as torch does with the default ``False``.
    """
    total = get_total_norm(grads, norm_type)
    if error_if_nonfinite and not isinstance(total, jax.core.Tracer) and not bool(jnp.isfinite(total)):
        raise RuntimeError(
            f"The total norm of order {float(norm_type)} for gradients from `parameters` is non-finite, "
            "so it cannot be clipped. To disable this error and scale the gradients by the non-finite "
            "norm anyway, set `error_if_nonfinite=False`"
        )
    coef = jnp.minimum(max_norm / (total + 1e-6), 1.0)
    clipped = jax.tree_util.tree_map(lambda g: g * coef.astype(g.dtype), grads)
    return clipped, total


def clip_grad_value_(grads: Any, clip_value: float) -> Any:
    """``torch.nn.utils.clip_grad_value_(parameters, clip_value)``: clamp to ``[-clip_value, clip_value]``.

    Pure: returns the clipped gradient tree (torch clamps ``.grad`` in place and returns None).
    """
    v = float(clip_value)
    return jax.tree_util.tree_map(lambda g: jnp.clip(g, -v, v), grads)
