"""``MultiheadAttention``: torch's arguments, parameter names, masks and numbers.

Parameters (torch's ``state_dict`` keys and order):

* ``in_proj_weight [3E, E]`` (rows q, k, v) when ``kdim == vdim == embed_dim``, otherwise
  ``q_proj_weight [E, E]``, ``k_proj_weight [E, kdim]``, ``v_proj_weight [E, vdim]``;
* ``in_proj_bias [3E]`` and ``out_proj.bias [E]`` when ``bias``;
* ``bias_k``, ``bias_v [1, 1, E]`` when ``add_bias_kv``;
* ``out_proj.weight [E, E]`` (a Linear child, torch's ``NonDynamicallyQuantizableLinear``).

Initialisation as torch's ``_reset_parameters``: xavier_uniform over the whole
``[3E, E]`` in_proj (or each separate projection), zero biases, out_proj.weight the
Linear default U(±1/√E), bias_k/v xavier_normal.

Masks follow torch: in ``attn_mask`` and ``key_padding_mask`` a bool True means
*not allowed to attend* (float masks are added to the scores). As in torch, with
``need_weights=True`` a query whose keys are all masked gives NaN (plain softmax);
with ``need_weights=False`` (torch's scaled_dot_product_attention path) it gives
zeros before the output projection.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

from funcnet.nn import functional as F
from funcnet.nn import init
from funcnet.nn.functional.attention import scaled_dot_product_attention
from funcnet.nn.functional.matmul import matmul
from funcnet.nn.module import Module
from funcnet.nn.modules.linear import Linear
from funcnet.nn.parameter import Parameter

# False: three separate in-projections for self-attention too, for an in-process A/B.
_PACKED_IN_PROJECTION = True


class NonDynamicallyQuantizableLinear(Linear):
    """torch's name for MultiheadAttention's ``out_proj``: a plain ``Linear``."""


def canonical_mask(mask: jax.Array | None, dtype: Any) -> jax.Array | None:
    """torch's ``_canonical_mask``: a bool mask becomes a float mask with -inf where True."""
    if mask is None:
        return None
    if mask.dtype == jnp.bool_:
        return jnp.where(mask, jnp.array(-jnp.inf, dtype), jnp.zeros((), dtype))
    if not jnp.issubdtype(mask.dtype, jnp.floating):
        raise TypeError(f"only bool and floating types of masks are supported, got {mask.dtype}")
    return mask.astype(dtype)


def _pad_last(mask: jax.Array | None) -> jax.Array | None:
    """Append one zero column (the extra key from add_bias_kv / add_zero_attn)."""
    if mask is None:
        return None
    return jnp.pad(mask, [(0, 0)] * (mask.ndim - 1) + [(0, 1)])


class MultiheadAttention(Module):
    """``torch.nn.MultiheadAttention(embed_dim, num_heads, dropout=0.0, bias=True,
    add_bias_kv=False, add_zero_attn=False, kdim=None, vdim=None, batch_first=False)``.

    ``forward(query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
    average_attn_weights=True, is_causal=False) -> (attn_output, attn_weights or None)``

    Shapes (``batch_first=False``; with ``batch_first`` the first two axes of query/key/value
    and output are swapped; unbatched inputs drop the ``N`` axis):

    * query ``[L, N, E]``, key ``[S, N, kdim]``, value ``[S, N, vdim]``;
    * key_padding_mask ``[N, S]`` (True = ignore that key); attn_mask ``[L, S]`` or
      ``[N*num_heads, L, S]``;
    * attn_output ``[L, N, E]``; attn_weights ``[N, L, S]`` averaged over heads, or
      ``[N, num_heads, L, S]`` with ``average_attn_weights=False`` (after dropout, as torch).

    ``is_causal`` is a hint as in torch: it needs ``attn_mask`` (the causal mask), and
    without a key_padding_mask and with ``need_weights=False`` the causal mask is built
    in place of ``attn_mask``. Dropout on the attention weights uses ``key=`` of apply.
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 add_bias_kv: bool = False, add_zero_attn: bool = False, kdim: int | None = None,
                 vdim: int | None = None, batch_first: bool = False, dtype: Any = None) -> None:
        super().__init__()
        if embed_dim <= 0 or num_heads <= 0:
            raise ValueError(
                f"embed_dim and num_heads must be greater than 0, got embed_dim={embed_dim} and "
                f"num_heads={num_heads} instead"
            )
        self.embed_dim = embed_dim
        self.kdim = kdim if kdim is not None else embed_dim
        self.vdim = vdim if vdim is not None else embed_dim
        self._qkv_same_embed_dim = self.kdim == embed_dim and self.vdim == embed_dim
        self.num_heads = num_heads
        self.dropout = float(dropout)
        self.batch_first = batch_first
        self.head_dim = embed_dim // num_heads
        if self.head_dim * num_heads != embed_dim:
            raise ValueError("embed_dim must be divisible by num_heads")
        self.add_zero_attn = add_zero_attn
        xavier = init.xavier_uniform()
        if self._qkv_same_embed_dim:
            self.in_proj_weight = Parameter((3 * embed_dim, embed_dim), xavier, dtype)
        else:
            self.q_proj_weight = Parameter((embed_dim, embed_dim), xavier, dtype)
            self.k_proj_weight = Parameter((embed_dim, self.kdim), xavier, dtype)
            self.v_proj_weight = Parameter((embed_dim, self.vdim), xavier, dtype)
        if bias:
            self.in_proj_bias = Parameter((3 * embed_dim,), init.zeros, dtype)
        self.out_proj = NonDynamicallyQuantizableLinear(embed_dim, embed_dim, bias=bias, dtype=dtype)
        if bias:
            self.out_proj.bias = Parameter((embed_dim,), init.zeros, dtype)
        self.add_bias_kv = add_bias_kv
        if add_bias_kv:
            self.bias_k = Parameter((1, 1, embed_dim), init.xavier_normal(), dtype)
            self.bias_v = Parameter((1, 1, embed_dim), init.xavier_normal(), dtype)

    def _check(self, name: str, x: jax.Array, dim: int, batched: bool) -> None:
        if x.ndim != (3 if batched else 2) or x.shape[-1] != dim:
            layout = ("[N, S, {d}]" if self.batch_first else "[S, N, {d}]") if batched else "[S, {d}]"
            raise self.shape_error(f"{layout.format(d=dim)} for {name}", x.shape)

    def forward(self, query: jax.Array, key: jax.Array, value: jax.Array,
                key_padding_mask: jax.Array | None = None, need_weights: bool = True,
                attn_mask: jax.Array | None = None, average_attn_weights: bool = True,
                is_causal: bool = False) -> tuple[jax.Array, jax.Array | None]:
        batched = query.ndim == 3
        self_attention = query is key and key is value  # torch's test for its packed in-projection
        self._check("query", query, self.embed_dim, batched)
        self._check("key", key, self.kdim, batched)
        self._check("value", value, self.vdim, batched)
        # Batch-major [N, T, E] inside (torch works in [T, N, E]; the products per row are the same):
        # batch_first inputs, the ViT's, then need no transposes around the projections.
        if batched and not self.batch_first:
            query, key, value = (jnp.swapaxes(t, 0, 1) for t in (query, key, value))
            if self_attention:
                key = value = query
        if not batched:
            query, key, value = query[None], key[None], value[None]
            if key_padding_mask is not None:
                key_padding_mask = key_padding_mask[None]
        bsz, tgt_len, embed_dim = query.shape
        src_len = key.shape[1]
        if key.shape[:2] != value.shape[:2]:
            layout = "[N, S]" if self.batch_first or not batched else "[S, N]"
            raise self.shape_error(f"key and value with equal {layout} = {tuple(key.shape[:2])}", value.shape)
        dtype = query.dtype
        key_padding_mask = canonical_mask(key_padding_mask, dtype)
        if key_padding_mask is not None and key_padding_mask.shape != (bsz, src_len):
            raise self.shape_error(f"[{bsz}, {src_len}] for key_padding_mask", key_padding_mask.shape)
        if is_causal and attn_mask is None:
            raise RuntimeError(
                "Need attn_mask if specifying the is_causal hint. You may use the Transformer module "
                "method `generate_square_subsequent_mask` to create this mask."
            )
        use_causal = False
        if is_causal and key_padding_mask is None and not need_weights:
            attn_mask, use_causal = None, True
        else:
            attn_mask = canonical_mask(attn_mask, dtype)
        heads = self.num_heads

        # input projections
        bias = self.in_proj_bias if "in_proj_bias" in self._parameters else None
        if self._qkv_same_embed_dim and self_attention and _PACKED_IN_PROJECTION:
            # one [T·N, E]·[E, 3E] product, as torch's _in_projection_packed: on CPU one large product
            # (oneDNN's) instead of three: the benchmark ViT's train step 0.98x the time
            q, k, v = jnp.split(F.linear(query, self.in_proj_weight, bias), 3, axis=-1)
        else:
            b_q, b_k, b_v = (None, None, None) if bias is None else jnp.split(bias, 3)
            if self._qkv_same_embed_dim:
                w_q, w_k, w_v = jnp.split(self.in_proj_weight, 3)
            else:
                w_q, w_k, w_v = self.q_proj_weight, self.k_proj_weight, self.v_proj_weight
            q = F.linear(query, w_q, b_q)
            k = F.linear(key, w_k, b_k)
            v = F.linear(value, w_v, b_v)

        if attn_mask is not None:
            if attn_mask.ndim == 2:
                if attn_mask.shape != (tgt_len, src_len):
                    raise self.shape_error(f"[{tgt_len}, {src_len}] for a 2-D attn_mask", attn_mask.shape)
                attn_mask = attn_mask[None]
            elif attn_mask.ndim == 3:
                if attn_mask.shape != (bsz * heads, tgt_len, src_len):
                    raise self.shape_error(
                        f"[{bsz * heads}, {tgt_len}, {src_len}] for a 3-D attn_mask", attn_mask.shape
                    )
            else:
                raise self.shape_error("a 2-D or 3-D attn_mask", attn_mask.shape)

        if self.add_bias_kv:
            k = jnp.concatenate([k, jnp.broadcast_to(self.bias_k, (bsz, 1, embed_dim))], axis=1)
            v = jnp.concatenate([v, jnp.broadcast_to(self.bias_v, (bsz, 1, embed_dim))], axis=1)
            attn_mask = _pad_last(attn_mask)
            key_padding_mask = _pad_last(key_padding_mask)

        # [N, T, E] -> [N*heads, T, head_dim]
        def split_heads(t: jax.Array) -> jax.Array:
            t = jnp.swapaxes(t.reshape(bsz, t.shape[1], heads, self.head_dim), 1, 2)
            return t.reshape(bsz * heads, t.shape[2], self.head_dim)

        q, k, v = split_heads(q), split_heads(k), split_heads(v)
        if self.add_zero_attn:
            zeros = jnp.zeros((bsz * heads, 1, self.head_dim), k.dtype)
            k = jnp.concatenate([k, zeros], axis=1)
            v = jnp.concatenate([v, zeros], axis=1)
            attn_mask = _pad_last(attn_mask)
            key_padding_mask = _pad_last(key_padding_mask)
        src_len = k.shape[1]
        if key_padding_mask is not None:
            kpm = jnp.broadcast_to(key_padding_mask[:, None, None, :], (bsz, heads, 1, src_len))
            kpm = kpm.reshape(bsz * heads, 1, src_len)
            attn_mask = kpm if attn_mask is None else attn_mask + kpm

        dropout_p = self.dropout if self.training else 0.0
        dropout_key = self.make_rng() if dropout_p > 0.0 else None
        if need_weights:
            q_scaled = q * math.sqrt(1.0 / float(self.head_dim))
            scores = matmul(q_scaled, k, transpose_b=True)
            if attn_mask is not None:
                scores = scores + attn_mask
            weights = jax.nn.softmax(scores, axis=-1)
            if dropout_p > 0.0:
                weights = F.dropout(weights, dropout_p, training=True, key=dropout_key)
            out = matmul(weights, v)  # [N*heads, L, head_dim]
            weights = weights.reshape(bsz, heads, tgt_len, src_len)
            if average_attn_weights:
                weights = weights.mean(axis=1)
        else:
            if attn_mask is not None:
                attn_mask = attn_mask[:, None]  # [N*heads or 1, 1, L or 1, S], broadcasts like q
            out = scaled_dot_product_attention(
                q[:, None], k[:, None], v[:, None], attn_mask, dropout_p, use_causal,
                dropout_key=dropout_key,
            )[:, 0]
            weights = None
        out = jnp.swapaxes(out.reshape(bsz, heads, tgt_len, self.head_dim), 1, 2).reshape(bsz, tgt_len, embed_dim)
        out = self.out_proj(out)
        if not batched:
            out = out[0]
            weights = weights[0] if weights is not None else None
        elif not self.batch_first:
            out = jnp.swapaxes(out, 0, 1)
        return out, weights
