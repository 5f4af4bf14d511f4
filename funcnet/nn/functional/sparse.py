"""``embedding`` and ``one_hot``: torch.nn.functional's lookup functions.

Differences from torch:
  * integer outputs (``one_hot``) are int32, JAX's default integer (torch: int64);
  * out-of-range indices raise ``IndexError`` when the indices are concrete; under
    ``jit`` they cannot be checked and ``embedding`` returns NaN rows for them;
  * ``embedding``'s ``max_norm`` (an in-place renormalisation of the weight) and
    ``scale_grad_by_freq``/``sparse`` are not supported and raise.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def _concrete(x: jax.Array) -> np.ndarray | None:
    """The values of ``x`` when they are known now (not traced), else None."""
    if isinstance(x, jax.core.Tracer):
        return None
    return np.asarray(x)


def _check_integer(x: jax.Array, what: str) -> None:
    if not jnp.issubdtype(jnp.asarray(x).dtype, jnp.integer):
        raise TypeError(
            f"{what}: expected integer indices (int32/int64), got dtype {jnp.asarray(x).dtype}; "
            f"cast with x.astype(jnp.int32)"
        )


def embedding(
    input: jax.Array,
    weight: jax.Array,
    padding_idx: int | None = None,
    max_norm: float | None = None,
    norm_type: float = 2.0,
    scale_grad_by_freq: bool = False,
    sparse: bool = False,
) -> jax.Array:
    """``F.embedding``: rows of ``weight [num_embeddings, dim]`` at integer ``input [*]`` → ``[*, dim]``.

    Positions equal to ``padding_idx`` (negative values count from the end) read
    the padding row but pass no gradient to it, as in torch.
    """
    if max_norm is not None or scale_grad_by_freq or sparse:
        raise NotImplementedError(
            "embedding: max_norm, scale_grad_by_freq and sparse are not supported in funcnet"
        )
    input = jnp.asarray(input)
    _check_integer(input, "embedding")
    num = weight.shape[0]
    values = _concrete(input)
    if values is not None and values.size and (values.min() < 0 or values.max() >= num):
        bad = values[(values < 0) | (values >= num)].flat[0]
        raise IndexError(
            f"embedding: index {bad} out of range for {num} embeddings (index out of range in self)"
        )
    rows = jnp.take(weight, input, axis=0, mode="fill", fill_value=jnp.nan)
    if padding_idx is None:
        return rows
    if not -num <= padding_idx < num:
        raise ValueError(f"embedding: padding_idx {padding_idx} must be within num_embeddings ({num})")
    if padding_idx < 0:
        padding_idx += num
    is_pad = (input == padding_idx)[..., None]
    return jnp.where(is_pad, jax.lax.stop_gradient(rows), rows)


def one_hot(tensor: jax.Array, num_classes: int = -1) -> jax.Array:
    """``F.one_hot``: integer ``[*]`` → int32 ``[*, num_classes]``.

    ``num_classes=-1`` takes max(tensor) + 1, which needs concrete values: under
    ``jit`` pass ``num_classes`` explicitly.
    """
    tensor = jnp.asarray(tensor)
    _check_integer(tensor, "one_hot")
    values = _concrete(tensor)
    if values is not None and values.size:
        if values.min() < 0:
            raise ValueError("one_hot: Class values must be non-negative.")
        if num_classes != -1 and values.max() >= num_classes:
            raise ValueError(f"one_hot: Class values must be smaller than num_classes ({num_classes}).")
    if num_classes == -1:
        if values is None:
            raise ValueError(
                "one_hot: num_classes=-1 infers the class count from the values, which are not known "
                "under jit; pass num_classes explicitly"
            )
        if not values.size:
            raise ValueError("one_hot: Can not infer total number of classes from empty tensor.")
        num_classes = int(values.max()) + 1
    return (tensor[..., None] == jnp.arange(num_classes, dtype=tensor.dtype)).astype(jnp.int32)
