"""``scaled_dot_product_attention``: torch.nn.functional's, as a pure function.

The arithmetic is torch's reference ("math") formula::

    scores  = query @ keyᵀ * scale            # scale = 1/√E unless given
    scores  = scores + bias                    # from attn_mask / is_causal
    weights = softmax(scores, -1)              # a row with every key masked gives 0, as torch
    weights = dropout(weights, dropout_p)
    out     = weights @ value

Difference from torch: the tensor argument ``key`` keeps its torch name, so the
PRNG key for attention dropout is the keyword ``dropout_key`` (required when
``dropout_p > 0``; torch's function has no training flag either, it always drops).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from funcnet.nn.functional.dropout import dropout
from funcnet.nn.functional.matmul import matmul
from funcnet.nn.functional.row_sums import row_sums


def safe_softmax(scores: jax.Array, axis: int = -1) -> jax.Array:
    """Softmax where a row of only ``-inf`` gives zeros, not NaN (torch's ``_safe_softmax``).

    The masked rows are replaced before the softmax as well, so gradients stay finite.
    """
    all_masked = jnp.all(scores == -jnp.inf, axis=axis, keepdims=True)
    scores = jnp.where(all_masked, jnp.zeros((), scores.dtype), scores)
    last = axis in (-1, scores.ndim - 1)
    weights = _softmax_last_axis(scores) if last and _ROW_SUMS_BACKWARD else jax.nn.softmax(scores, axis=axis)
    return jnp.where(all_masked, jnp.zeros((), weights.dtype), weights)


# False: jax.nn.softmax's own backward, for an in-process A/B (benchmarks/variant_ab.py).
_ROW_SUMS_BACKWARD = True


@jax.custom_jvp
def _softmax_last_axis(x: jax.Array) -> jax.Array:
    """``jax.nn.softmax(x, axis=-1)`` whose derivative ``y·(ẋ − Σ y·ẋ)`` sums rows with ``row_sums``
    (a GEMV on CPU): the attention softmax's backward over [64, 1, 65, 65] was XLA:CPU's slowest
    fusion in the benchmark ViT (1.3-1.5 ms a layer)."""
    return jax.nn.softmax(x, axis=-1)


@_softmax_last_axis.defjvp
def _softmax_last_axis_jvp(primals, tangents):
    (x,), (x_dot,) = primals, tangents
    y = _softmax_last_axis(x)
    return y, y * (x_dot - row_sums(y * x_dot))


def causal_mask(target_len: int, source_len: int) -> jax.Array:
    """``[L, S]`` bool, True where attention is allowed (lower triangle, torch's ``tril``)."""
    return jnp.tril(jnp.ones((target_len, source_len), dtype=bool))


def scaled_dot_product_attention(
    query: jax.Array,
    key: jax.Array,
    value: jax.Array,
    attn_mask: jax.Array | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    enable_gqa: bool = False,
    *,
    dropout_key: jax.Array | None = None,
) -> jax.Array:
    """torch's ``F.scaled_dot_product_attention``.

    Args:
        query: ``[..., L, E]``; key: ``[..., S, E]``; value: ``[..., S, Ev]`` (leading
            dims broadcast, e.g. ``[N, heads, ·, ·]``).
        attn_mask: broadcastable to ``[..., L, S]``; bool: True means *take part in
            attention* (the opposite of ``nn.MultiheadAttention``'s bool masks); float: added
            to the scores.
        dropout_p: dropout probability on the attention weights (always applied when > 0).
        is_causal: a lower-triangular mask (top-left aligned); ``attn_mask`` must then be None.
        scale: defaults to ``1/√E``.
        enable_gqa: grouped-query attention: key/value heads (dim -3) are repeated to
            match the query heads.
        dropout_key: PRNG key for the dropout (funcnet's addition).

    Returns:
        ``[..., L, Ev]``.
    """
    target_len, source_len = query.shape[-2], key.shape[-2]
    scale_factor = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale
    if enable_gqa:
        groups = query.shape[-3] // key.shape[-3]
        key = jnp.repeat(key, groups, axis=-3)
        value = jnp.repeat(value, groups, axis=-3)
    scores = matmul(query, key, transpose_b=True) * scale_factor
    neg_inf = jnp.array(-jnp.inf, scores.dtype)
    if is_causal:
        if attn_mask is not None:
            raise ValueError("scaled_dot_product_attention: attn_mask must be None when is_causal=True")
        scores = jnp.where(causal_mask(target_len, source_len), scores, neg_inf)
    if attn_mask is not None:
        if attn_mask.dtype == jnp.bool_:
            scores = jnp.where(attn_mask, scores, neg_inf)
        else:
            scores = scores + attn_mask.astype(scores.dtype)
    weights = safe_softmax(scores, axis=-1)
    if dropout_p > 0.0:
        if dropout_key is None:
            raise ValueError(
                "scaled_dot_product_attention with dropout_p > 0 needs dropout_key=jax.random.key(...)"
            )
        weights = dropout(weights, dropout_p, training=True, key=dropout_key)
    return matmul(weights, value)
