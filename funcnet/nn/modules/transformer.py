"""Transformer layers and stacks with torch's arguments, ``state_dict`` keys and numbers.

``TransformerEncoderLayer``, ``TransformerDecoderLayer``, ``TransformerEncoder``,
``TransformerDecoder`` and ``Transformer`` follow torch 2.13 (post-norm by default,
``norm_first=True`` for pre-norm; relu, gelu or any callable activation).

Scan over layers: ``TransformerEncoder``/``TransformerDecoder`` (and ``Transformer``)
take ``scan_layers=True`` (the default). The identical layers then run as one
``lax.scan`` over their parameters stacked on a new leading axis, so compile time
does not grow with depth (a 12-layer encoder compiles about as fast as a 2-layer
one, see ``benchmarks/compile_time.py``). The parameter tree and ``state_dict``
keys stay torch's (``layers.0.self_attn.in_proj_weight``, …): the stacking happens
inside ``apply``. ``scan_layers=False`` runs a Python loop instead; both paths give
the same numbers and, in train mode, the same dropout masks for the same key
(layer ``i`` uses ``fold_in(key of the stack, i)``). If the layers are not identical
(someone replaced one) the loop is used.

LayerNorm is the shared ``funcnet.nn.LayerNorm``; relu/gelu are ``funcnet.nn.functional``'s.

Differences from torch, all deliberate:

* torch's inference "fast path" (nested tensors, ``enable_nested_tensor``) returns
  zeros at padded positions of ``src_key_padding_mask``; funcnet never does, the
  padded positions hold whatever the math gives (compare only the valid positions).
  ``enable_nested_tensor`` and ``mask_check`` are accepted and ignored.
* ``is_causal=None`` is not detected from the mask's values (that would need the
  mask on the host); it is treated as False, which gives the same numbers because
  ``is_causal`` is only a hint that the given mask is causal.
* inside a stack each layer runs in its own nested ``apply``, so an error raised in
  a layer names ``TransformerEncoderLayer.self_attn`` rather than ``layers.3.self_attn``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from funcnet.nn import _context, init
from funcnet.nn import functional as F
from funcnet.nn.module import Module
from funcnet.nn.modules.attention import MultiheadAttention
from funcnet.nn.modules.container import ModuleList
from funcnet.nn.modules.dropout import Dropout
from funcnet.nn.modules.linear import Linear
from funcnet.nn.modules.normalization import LayerNorm


def _activation(activation: str | Callable) -> Callable:
    if callable(activation):
        return activation
    if activation == "relu":
        return F.relu
    if activation == "gelu":
        return F.gelu  # torch's default: the exact erf form
    raise RuntimeError(f"activation should be relu/gelu, not {activation}")


def generate_square_subsequent_mask(sz: int, dtype: Any = jnp.float32) -> jax.Array:
    """``[sz, sz]`` float mask: 0 on and below the diagonal, -inf above (torch's)."""
    return jnp.triu(jnp.full((sz, sz), -jnp.inf, dtype), k=1)


def _canonical(mask: jax.Array | None, dtype: Any) -> jax.Array | None:
    if mask is None or mask.dtype != jnp.bool_:
        return mask
    return jnp.where(mask, jnp.array(-jnp.inf, dtype), jnp.zeros((), dtype))


# -- layers ----------------------------------------------------------------------------------------
class TransformerEncoderLayer(Module):
    """``torch.nn.TransformerEncoderLayer(d_model, nhead, dim_feedforward=2048, dropout=0.1,
    activation=relu, layer_norm_eps=1e-5, batch_first=False, norm_first=False, bias=True)``.

    ``forward(src, src_mask=None, src_key_padding_mask=None, is_causal=False)``: src
    ``[S, N, E]`` (``[N, S, E]`` if batch_first, or unbatched ``[S, E]``) → same shape.
    ``activation`` is ``"relu"``, ``"gelu"`` or a JAX callable.
    """

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int = 2048, dropout: float = 0.1,
                 activation: str | Callable = "relu", layer_norm_eps: float = 1e-5,
                 batch_first: bool = False, norm_first: bool = False, bias: bool = True,
                 dtype: Any = None) -> None:
        super().__init__()
        self.self_attn = MultiheadAttention(d_model, nhead, dropout=dropout, bias=bias,
                                            batch_first=batch_first, dtype=dtype)
        self.linear1 = Linear(d_model, dim_feedforward, bias=bias, dtype=dtype)
        self.dropout = Dropout(dropout)
        self.linear2 = Linear(dim_feedforward, d_model, bias=bias, dtype=dtype)
        self.norm_first = norm_first
        self.norm1 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, dtype=dtype)
        self.norm2 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, dtype=dtype)
        self.dropout1 = Dropout(dropout)
        self.dropout2 = Dropout(dropout)
        self.activation = _activation(activation)
        self.batch_first = batch_first

    def forward(self, src: jax.Array, src_mask: jax.Array | None = None,
                src_key_padding_mask: jax.Array | None = None, is_causal: bool = False) -> jax.Array:
        src_key_padding_mask = _canonical(src_key_padding_mask, src.dtype)
        src_mask = _canonical(src_mask, src.dtype)
        x = src
        if self.norm_first:
            x = x + self._sa_block(self.norm1(x), src_mask, src_key_padding_mask, is_causal)
            x = x + self._ff_block(self.norm2(x))
        else:
            x = self.norm1(x + self._sa_block(x, src_mask, src_key_padding_mask, is_causal))
            x = self.norm2(x + self._ff_block(x))
        return x

    def _sa_block(self, x, attn_mask, key_padding_mask, is_causal):
        x = self.self_attn(x, x, x, attn_mask=attn_mask, key_padding_mask=key_padding_mask,
                           need_weights=False, is_causal=is_causal)[0]
        return self.dropout1(x)

    def _ff_block(self, x):
        x = self.linear2(self.dropout(self.activation(self.linear1(x))))
        return self.dropout2(x)


class TransformerDecoderLayer(Module):
    """``torch.nn.TransformerDecoderLayer(d_model, nhead, dim_feedforward=2048, dropout=0.1,
    activation=relu, layer_norm_eps=1e-5, batch_first=False, norm_first=False, bias=True)``.

    ``forward(tgt, memory, tgt_mask=None, memory_mask=None, tgt_key_padding_mask=None,
    memory_key_padding_mask=None, tgt_is_causal=False, memory_is_causal=False)``: tgt
    ``[T, N, E]``, memory ``[S, N, E]`` (batch first if ``batch_first``) → ``[T, N, E]``.
    """

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int = 2048, dropout: float = 0.1,
                 activation: str | Callable = "relu", layer_norm_eps: float = 1e-5,
                 batch_first: bool = False, norm_first: bool = False, bias: bool = True,
                 dtype: Any = None) -> None:
        super().__init__()
        self.self_attn = MultiheadAttention(d_model, nhead, dropout=dropout, bias=bias,
                                            batch_first=batch_first, dtype=dtype)
        self.multihead_attn = MultiheadAttention(d_model, nhead, dropout=dropout, bias=bias,
                                                 batch_first=batch_first, dtype=dtype)
        self.linear1 = Linear(d_model, dim_feedforward, bias=bias, dtype=dtype)
        self.dropout = Dropout(dropout)
        self.linear2 = Linear(dim_feedforward, d_model, bias=bias, dtype=dtype)
        self.norm_first = norm_first
        self.norm1 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, dtype=dtype)
        self.norm2 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, dtype=dtype)
        self.norm3 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, dtype=dtype)
        self.dropout1 = Dropout(dropout)
        self.dropout2 = Dropout(dropout)
        self.dropout3 = Dropout(dropout)
        self.activation = _activation(activation)
        self.batch_first = batch_first

    def forward(self, tgt: jax.Array, memory: jax.Array, tgt_mask: jax.Array | None = None,
                memory_mask: jax.Array | None = None, tgt_key_padding_mask: jax.Array | None = None,
                memory_key_padding_mask: jax.Array | None = None, tgt_is_causal: bool = False,
                memory_is_causal: bool = False) -> jax.Array:
        x = tgt
        if self.norm_first:
            x = x + self._sa_block(self.norm1(x), tgt_mask, tgt_key_padding_mask, tgt_is_causal)
            x = x + self._mha_block(self.norm2(x), memory, memory_mask, memory_key_padding_mask,
                                    memory_is_causal)
            x = x + self._ff_block(self.norm3(x))
        else:
            x = self.norm1(x + self._sa_block(x, tgt_mask, tgt_key_padding_mask, tgt_is_causal))
            x = self.norm2(x + self._mha_block(x, memory, memory_mask, memory_key_padding_mask,
                                               memory_is_causal))
            x = self.norm3(x + self._ff_block(x))
        return x

    def _sa_block(self, x, attn_mask, key_padding_mask, is_causal):
        x = self.self_attn(x, x, x, attn_mask=attn_mask, key_padding_mask=key_padding_mask,
                           is_causal=is_causal, need_weights=False)[0]
        return self.dropout1(x)

    def _mha_block(self, x, mem, attn_mask, key_padding_mask, is_causal):
        x = self.multihead_attn(x, mem, mem, attn_mask=attn_mask, key_padding_mask=key_padding_mask,
                                is_causal=is_causal, need_weights=False)[0]
        return self.dropout2(x)

    def _ff_block(self, x):
        x = self.linear2(self.dropout(self.activation(self.linear1(x))))
        return self.dropout3(x)


# -- stacks ----------------------------------------------------------------------------------------
def _same_layers(layers: ModuleList, per_layer: list[dict]) -> bool:
    first = layers[0]
    if any(type(m) is not type(first) or repr(m) != repr(first)
           or getattr(m, "activation", None) is not getattr(first, "activation", None) for m in layers):
        return False
    shapes = [jax.tree.map(lambda a: (a.shape, a.dtype), p) for p in per_layer]
    return all(s == shapes[0] for s in shapes)


def run_layer_stack(owner: Module, layers: ModuleList, x: jax.Array, scan: bool, **layer_kwargs: Any
                    ) -> jax.Array:
    """Run ``x`` through ``layers`` in order, as a ``lax.scan`` over stacked parameters when ``scan``.

    Each layer runs in a nested ``apply`` with its own parameter subtree, the
    ``train``/``compute_dtype`` of the running apply and the PRNG key
    ``fold_in(owner.make_rng(), i)``, so the scan and the loop agree exactly.
    ``layer_kwargs`` (masks, memory) are the same for every layer.
    """
    ctx = _context.current()
    tree = _context._lookup(ctx.params, ctx.path_of(layers))
    per_layer = [tree.get(str(i), {}) for i in range(len(layers))]
    base_key = owner.make_rng() if ctx.train and ctx.key is not None else None

    def run(layer: Module, index: Any, params: dict, h: jax.Array, name: str | None = None) -> jax.Array:
        key = None if base_key is None else jax.random.fold_in(base_key, index)
        out = layer.apply(params, h, key=key, train=ctx.train, compute_dtype=ctx.compute_dtype,
                          _root_name=name, **layer_kwargs)
        return out[0] if ctx.train else out

    if scan and len(layers) > 1 and _same_layers(layers, per_layer):
        stacked = jax.tree.map(lambda *a: jnp.stack(a), *per_layer)
        template = layers[0]

        # One traced body stands for every layer: errors inside it name "layers.*".
        name = ctx.display_path((*ctx.path_of(layers), "*"))

        def body(h, inputs):
            index, params = inputs
            return run(template, index, params, h, name), None

        x, _ = lax.scan(body, x, (jnp.arange(len(layers), dtype=jnp.uint32), stacked))
        return x
    for i, layer in enumerate(layers):
        x = run(layer, jnp.uint32(i), per_layer[i], x)
    return x


def _clones(module: Module, n: int) -> ModuleList:
    return ModuleList([copy.deepcopy(module) for _ in range(n)])


class TransformerEncoder(Module):
    """``torch.nn.TransformerEncoder(encoder_layer, num_layers, norm=None, enable_nested_tensor=True,
    mask_check=True)`` plus ``scan_layers=True`` (see the module docstring).

    ``forward(src, mask=None, src_key_padding_mask=None, is_causal=None)``; ``layers`` are
    deep copies of ``encoder_layer`` (keys ``layers.0.…``), ``norm`` is applied at the end.
    """

    def __init__(self, encoder_layer: TransformerEncoderLayer, num_layers: int, norm: Module | None = None,
                 enable_nested_tensor: bool = True, mask_check: bool = True,
                 scan_layers: bool = True) -> None:
        super().__init__()
        self.layers = _clones(encoder_layer, num_layers)
        self.num_layers = num_layers
        if norm is not None:
            self.norm = norm
        self.scan_layers = scan_layers

    def forward(self, src: jax.Array, mask: jax.Array | None = None,
                src_key_padding_mask: jax.Array | None = None, is_causal: bool | None = None) -> jax.Array:
        x = run_layer_stack(self, self.layers, src, self.scan_layers, src_mask=_canonical(mask, src.dtype),
                            src_key_padding_mask=_canonical(src_key_padding_mask, src.dtype),
                            is_causal=bool(is_causal))
        if "norm" in self._modules:
            x = self.norm(x)
        return x


class TransformerDecoder(Module):
    """``torch.nn.TransformerDecoder(decoder_layer, num_layers, norm=None)`` plus ``scan_layers=True``.

    ``forward(tgt, memory, tgt_mask=None, memory_mask=None, tgt_key_padding_mask=None,
    memory_key_padding_mask=None, tgt_is_causal=None, memory_is_causal=False)``.
    """

    def __init__(self, decoder_layer: TransformerDecoderLayer, num_layers: int, norm: Module | None = None,
                 scan_layers: bool = True) -> None:
        super().__init__()
        self.layers = _clones(decoder_layer, num_layers)
        self.num_layers = num_layers
        if norm is not None:
            self.norm = norm
        self.scan_layers = scan_layers

    def forward(self, tgt: jax.Array, memory: jax.Array, tgt_mask: jax.Array | None = None,
                memory_mask: jax.Array | None = None, tgt_key_padding_mask: jax.Array | None = None,
                memory_key_padding_mask: jax.Array | None = None, tgt_is_causal: bool | None = None,
                memory_is_causal: bool = False) -> jax.Array:
        x = run_layer_stack(self, self.layers, tgt, self.scan_layers, memory=memory, tgt_mask=tgt_mask,
                            memory_mask=memory_mask, tgt_key_padding_mask=tgt_key_padding_mask,
                            memory_key_padding_mask=memory_key_padding_mask,
                            tgt_is_causal=bool(tgt_is_causal), memory_is_causal=memory_is_causal)
        if "norm" in self._modules:
            x = self.norm(x)
        return x


def _xavier_matrices(module: Module) -> None:
    """torch's ``Transformer._reset_parameters``: xavier_uniform for every parameter with ndim > 1."""
    for _, spec in module.named_parameter_specs():
        if len(spec.shape) > 1:
            spec.init = init.xavier_uniform()


class Transformer(Module):
    """``torch.nn.Transformer(d_model=512, nhead=8, num_encoder_layers=6, num_decoder_layers=6,
    dim_feedforward=2048, dropout=0.1, activation=relu, custom_encoder=None, custom_decoder=None,
    layer_norm_eps=1e-5, batch_first=False, norm_first=False, bias=True)`` plus ``scan_layers=True``.

    ``forward(src, tgt, src_mask=None, tgt_mask=None, memory_mask=None, src_key_padding_mask=None,
    tgt_key_padding_mask=None, memory_key_padding_mask=None, src_is_causal=None, tgt_is_causal=None,
    memory_is_causal=False)``: src ``[S, N, E]``, tgt ``[T, N, E]`` → ``[T, N, E]``.
    As torch, every weight matrix is xavier_uniform initialised (biases keep their defaults).
    """

    def __init__(self, d_model: int = 512, nhead: int = 8, num_encoder_layers: int = 6,
                 num_decoder_layers: int = 6, dim_feedforward: int = 2048, dropout: float = 0.1,
                 activation: str | Callable = "relu", custom_encoder: Module | None = None,
                 custom_decoder: Module | None = None, layer_norm_eps: float = 1e-5,
                 batch_first: bool = False, norm_first: bool = False, bias: bool = True,
                 dtype: Any = None, scan_layers: bool = True) -> None:
        super().__init__()
        layer_args = dict(dim_feedforward=dim_feedforward, dropout=dropout, activation=activation,
                          layer_norm_eps=layer_norm_eps, batch_first=batch_first, norm_first=norm_first,
                          bias=bias, dtype=dtype)
        if custom_encoder is not None:
            self.encoder = custom_encoder
        else:
            self.encoder = TransformerEncoder(
                TransformerEncoderLayer(d_model, nhead, **layer_args), num_encoder_layers,
                LayerNorm(d_model, eps=layer_norm_eps, bias=bias, dtype=dtype), scan_layers=scan_layers,
            )
        if custom_decoder is not None:
            self.decoder = custom_decoder
        else:
            self.decoder = TransformerDecoder(
                TransformerDecoderLayer(d_model, nhead, **layer_args), num_decoder_layers,
                LayerNorm(d_model, eps=layer_norm_eps, bias=bias, dtype=dtype), scan_layers=scan_layers,
            )
        _xavier_matrices(self)
        self.d_model = d_model
        self.nhead = nhead
        self.batch_first = batch_first

    def forward(self, src: jax.Array, tgt: jax.Array, src_mask: jax.Array | None = None,
                tgt_mask: jax.Array | None = None, memory_mask: jax.Array | None = None,
                src_key_padding_mask: jax.Array | None = None, tgt_key_padding_mask: jax.Array | None = None,
                memory_key_padding_mask: jax.Array | None = None, src_is_causal: bool | None = None,
                tgt_is_causal: bool | None = None, memory_is_causal: bool = False) -> jax.Array:
        is_batched = src.ndim == 3
        batch_axis = 0 if self.batch_first else 1
        if is_batched and src.shape[batch_axis] != tgt.shape[batch_axis]:
            raise RuntimeError(f"{self.path}: the batch number of src and tgt must be equal, got "
                               f"{src.shape} and {tgt.shape}")
        if src.shape[-1] != self.d_model or tgt.shape[-1] != self.d_model:
            raise RuntimeError(f"{self.path}: the feature number of src and tgt must be equal to d_model "
                               f"({self.d_model}), got {src.shape} and {tgt.shape}")
        memory = self.encoder(src, mask=src_mask, src_key_padding_mask=src_key_padding_mask,
                              is_causal=src_is_causal)
        return self.decoder(tgt, memory, tgt_mask=tgt_mask, memory_mask=memory_mask,
                            tgt_key_padding_mask=tgt_key_padding_mask,
                            memory_key_padding_mask=memory_key_padding_mask,
                            tgt_is_causal=tgt_is_causal, memory_is_causal=memory_is_causal)

    @staticmethod
    def generate_square_subsequent_mask(sz: int, dtype: Any = jnp.float32) -> jax.Array:
        """torch's ``Transformer.generate_square_subsequent_mask``: -inf above the diagonal."""
        return generate_square_subsequent_mask(sz, dtype)
