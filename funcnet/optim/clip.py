"""Gradient clipping as the first transform of an optax chain (torch clips ``.grad`` before ``step()``)."""

from __future__ import annotations

import optax

from funcnet.nn.utils.clip_grad import _check_norm_type, clip_grad_norm_, clip_grad_value_


def clip_grad_norm(max_norm: float, norm_type: float = 2.0) -> optax.GradientTransformation:
    """``torch.nn.utils.clip_grad_norm_`` as a stateless transformation.

    Every gradient is multiplied by ``min(max_norm/(total+1e-6), 1)``.

    Put it first: ``optax.chain(funcnet.optim.clip_grad_norm(1.0), funcnet.optim.SGD(...))`` —
    torch clips ``.grad`` before ``optimizer.step()`` adds weight decay. Differs from
    ``optax.clip_by_global_norm`` by torch's ``+1e-6`` and the always-applied coefficient.
    """
    _check_norm_type(norm_type)

    def update_fn(updates, state, params=None):
        del params
        clipped, _ = clip_grad_norm_(updates, max_norm, norm_type)
        return clipped, state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update_fn)


def clip_grad_value(clip_value: float) -> optax.GradientTransformation:
    """``torch.nn.utils.clip_grad_value_`` as a stateless transformation (same as ``optax.clip``)."""

    def update_fn(updates, state, params=None):
        del params
        return clip_grad_value_(updates, clip_value), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update_fn)
