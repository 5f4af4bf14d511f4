"""``linear``: torch.nn.functional.linear."""

from __future__ import annotations

import jax

from funcnet.nn.functional.column_sums import broadcast_rows
from funcnet.nn.functional.matmul import matmul

# False: the batched matmul on the [*, in] input, for an in-process A/B (benchmarks/variant_ab.py).
_FLATTEN_LEADING = True
# False: ``y + bias`` (XLA's reduction for the bias gradient), for an in-process A/B.
_BIAS_GRAD_AS_COLUMN_SUMS = True


def linear(input: jax.Array, weight: jax.Array, bias: jax.Array | None = None) -> jax.Array:
    """y = input @ weightᵀ + bias; ``input`` ``[*, in]``, ``weight`` ``[out, in]`` (torch layout),
    ``bias`` ``[out]`` → ``[*, out]``.

    Leading dims are flattened into one before the matmul: autodiff then gives the weight gradient
    as one plain ``[T, out]ᵀ·[T, in]`` product. On a ``[N, L, in]`` input the batched form made
    XLA:CPU transpose the incoming gradient in a copy into which it fused (and recomputed) the
    residual stream's backward across layers: a small ViT's train step took 1.2× as long.
    """
    if input.ndim > 2 and _FLATTEN_LEADING:
        lead = input.shape[:-1]
        y = matmul(input.reshape(-1, input.shape[-1]), weight, transpose_b=True).reshape(*lead, weight.shape[0])
    else:
        y = matmul(input, weight, transpose_b=True) if input.ndim == 2 else input @ weight.T
    if bias is None:
        return y
    if _BIAS_GRAD_AS_COLUMN_SUMS and bias.ndim == 1 and y.ndim >= 1 and bias.shape[0] == y.shape[-1]:
        return y + broadcast_rows(bias, y.shape)  # the bias gradient: funcnet's column sums
    return y + bias
