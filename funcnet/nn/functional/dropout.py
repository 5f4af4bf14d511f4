"""``dropout``, ``dropout2d``: torch's functions with an explicit PRNG ``key``."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp

# torch 2.13's warnings, word for word (torch.nn.functional.dropout2d).
_NOT_3D_OR_4D = (
    "dropout2d: Received a {}-D input to dropout2d, which is deprecated and will result in an error in a "
    "future release. To retain the behavior and silence this warning, please use dropout instead. Note that "
    "dropout2d exists to provide channel-wise dropout on inputs with 2 spatial dimensions, a channel dimension, "
    "and an optional batch dimension (i.e. 3D or 4D inputs)."
)
_3D_IS_N_C_L = (
    "dropout2d: Received a 3D input to dropout2d and assuming that channel-wise 1D dropout behavior is desired - "
    "input is interpreted as shape (N, C, L), where C is the channel dim. This behavior will change in a future "
    "release to interpret the input as one without a batch dimension, i.e. shape (C, H, W). To maintain the 1D "
    "channel-wise dropout behavior, please switch to using dropout1d instead."
)


def _dropout_with_mask_shape(x: jax.Array, p: float, key: jax.Array, mask_shape: tuple[int, ...]) -> jax.Array:
    if p == 1.0:
        return jnp.zeros_like(x)
    keep = jax.random.bernoulli(key, 1.0 - p, mask_shape)
    return jnp.where(keep, x / (1.0 - p), jnp.zeros((), x.dtype)).astype(x.dtype)


def dropout(input: jax.Array, p: float = 0.5, training: bool = True, *, key: jax.Array | None = None) -> jax.Array:
    """``F.dropout``; ``key`` is required when ``training`` and ``p > 0``."""
    if not training or p == 0.0:
        return input
    if key is None:
        raise ValueError("dropout in training mode needs key=jax.random.key(...)")
    return _dropout_with_mask_shape(input, p, key, input.shape)


def warn_dropout2d_rank(ndim: int) -> None:
    """torch's warnings for a ``dropout2d`` input that is not 4-D (also in eval mode, as torch)."""
    if ndim not in (3, 4):
        warnings.warn(_NOT_3D_OR_4D.format(ndim), UserWarning, stacklevel=3)
    if ndim == 3:
        warnings.warn(_3D_IS_N_C_L, UserWarning, stacklevel=3)


def dropout2d(input: jax.Array, p: float = 0.5, training: bool = True, *, key: jax.Array | None = None) -> jax.Array:
    """``F.dropout2d``: one Bernoulli draw per (sample, channel), i.e. per ``input[n, c]``.

    As torch 2.13 (aten ``feature_dropout``): a 4-D input is ``[N, C, H, W]``; a 3-D input is read
    as ``[N, C, L]`` (channel-wise 1-D dropout, *not* an unbatched ``[C, H, W]``), with torch's
    warning that this will change; other ranks >= 2 warn and drop ``input[n, c]`` slices; a 1-D
    input raises.
    """
    warn_dropout2d_rank(jnp.ndim(input))
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    if jnp.ndim(input) < 2:
        raise ValueError(
            f"dropout2d: feature dropout requires at least 2 dimensions in the input, got shape {jnp.shape(input)}"
        )
    if not training or p == 0.0:
        return input
    if key is None:
        raise ValueError("dropout2d in training mode needs key=jax.random.key(...)")
    mask_shape = input.shape[:2] + (1,) * (input.ndim - 2)
    return _dropout_with_mask_shape(input, p, key, mask_shape)
