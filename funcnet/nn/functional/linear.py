"""``linear``: torch.nn.functional.linear."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def linear(input: jax.Array, weight: jax.Array, bias: jax.Array | None = None) -> jax.Array:
    """y = input @ weightᵀ + bias; ``weight`` is ``[out, in]`` (torch layout)."""
    y = jnp.matmul(input, weight.T)
    return y if bias is None else y + bias
