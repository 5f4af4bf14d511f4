"""``Embedding``: a lookup table ``weight [num_embeddings, embedding_dim]`` (torch layout and key)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from funcnet.nn import functional as F
from funcnet.nn import init
from funcnet.nn.module import Module
from funcnet.nn.parameter import Parameter


def _normal_with_zero_row(row: int | None) -> Any:
    def initializer(key: jax.Array, shape: tuple[int, ...], dtype: Any) -> jax.Array:
        weight = init.normal(0.0, 1.0)(key, shape, dtype)
        return weight if row is None else weight.at[row].set(0)

    return initializer


class Embedding(Module):
    """``torch.nn.Embedding(num_embeddings, embedding_dim, padding_idx=None, dtype=None)``.

    Integer input ``[*]`` → ``[*, embedding_dim]``. ``weight`` ~ N(0, 1) with the
    ``padding_idx`` row zero; positions equal to ``padding_idx`` pass no gradient
    to that row, as in torch. A negative ``padding_idx`` counts from the end and
    is stored normalised (as torch). ``max_norm``, ``scale_grad_by_freq`` and
    ``sparse=True`` are not supported (they raise).
    """

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        padding_idx: int | None = None,
        max_norm: float | None = None,
        norm_type: float = 2.0,
        scale_grad_by_freq: bool = False,
        sparse: bool = False,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        if max_norm is not None or scale_grad_by_freq or sparse:
            raise NotImplementedError(
                "Embedding: max_norm, scale_grad_by_freq and sparse=True are not supported in funcnet"
            )
        if padding_idx is not None:
            if not -num_embeddings <= padding_idx < num_embeddings:
                raise ValueError("Padding_idx must be within num_embeddings")
            if padding_idx < 0:
                padding_idx += num_embeddings
        self.num_embeddings = num_embeddings
        self.embedding_dim = embedding_dim
        self.padding_idx = padding_idx
        self.weight = Parameter((num_embeddings, embedding_dim), _normal_with_zero_row(padding_idx), dtype)

    def forward(self, input: jax.Array) -> jax.Array:
        dtype = jnp.asarray(input).dtype
        if not jnp.issubdtype(dtype, jnp.integer):
            raise TypeError(
                f"{self.path} (Embedding): expected integer indices (int32/int64) of any shape, "
                f"got dtype {dtype} with shape {tuple(jnp.shape(input))}; cast with x.astype(jnp.int32)"
            )
        return F.embedding(input, self.weight, self.padding_idx)

    def extra_repr(self) -> str:
        s = f"{self.num_embeddings}, {self.embedding_dim}"
        if self.padding_idx is not None:
            s += f", padding_idx={self.padding_idx}"
        return s
