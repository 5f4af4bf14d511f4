"""Transformer layers and stacks against torch 2.13; scan over layers against the Python loop."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from conftest import assert_close

import funcnet.nn as nn
from funcnet.nn import LayerNorm
from funcnet.nn.modules.transformer import generate_square_subsequent_mask, run_layer_stack

E, H, FF = 8, 2, 16


def randn(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def load(fm, tm):
    variables, incompatible = fm.load_state_dict(tm.state_dict())
    assert incompatible == ([], [])
    return variables.params


def compare(fm, tm, params, inputs, kwargs, weight, atol=2e-6):
    """Forward and gradients (params and float inputs) of fm.apply vs tm (torch in eval mode)."""

    def loss(params, *xs):
        out = fm.apply(params, *xs, **{k: (jnp.asarray(v) if v is not None and not isinstance(v, bool) else v)
                                       for k, v in kwargs.items()})
        return jnp.sum(out * weight), out

    argnums = tuple(range(len(inputs) + 1))
    (_, out), grads = jax.jit(jax.value_and_grad(loss, argnums, has_aux=True))(
        params, *map(jnp.asarray, inputs))
    t_inputs = [torch.tensor(x, requires_grad=True) for x in inputs]
    t_kwargs = {k: (torch.tensor(v) if v is not None and not isinstance(v, bool) else v)
                for k, v in kwargs.items()}
    t_out = tm(*t_inputs, **t_kwargs)
    (t_out * torch.tensor(weight)).sum().backward()
    assert_close(out, t_out, atol=atol)
    named = dict(tm.named_parameters())
    ours = fm.state_dict(grads[0])
    assert list(ours) == list(named)
    # Gradients at the forward's rtol: measured (fast matrix) max |ours - torch| - 1e-5·|torch| is
    # 1.5e-6 for parameter and 3e-7 for input gradients; atol 2·atol (default 4e-6, 2.7× margin)
    # since each parameter gradient sums over every position.
    for k, g in ours.items():
        assert_close(g, named[k].grad, rtol=1e-5, atol=2 * atol)
    for g, t in zip(grads[1:], t_inputs, strict=True):
        assert_close(g, t.grad, rtol=1e-5, atol=2 * atol)
    return out


ACTIVATIONS = {"relu": ("relu", "relu"), "gelu": ("gelu", "gelu"),
               "callable": (jax.nn.silu, torch.nn.functional.silu)}


def matrix(names, combos, fast):
    """Every combination; those outside ``fast`` are marked slow (the full matrix runs with -m slow)."""
    return pytest.mark.parametrize(names, [
        pytest.param(*c, marks=() if c in fast else pytest.mark.slow) for c in combos
    ])


@matrix("norm_first,act,masks",
        [(nf, a, m) for nf in (False, True) for a in ACTIVATIONS
         for m in ("none", "bool", "float_causal_hint")],
        fast={(False, "relu", "bool"), (True, "gelu", "float_causal_hint")})
def test_encoder_layer_matches_torch(norm_first, act, masks):
    ours_act, torch_act = ACTIVATIONS[act]
    batch_first = masks == "bool"
    torch.manual_seed(0)
    tm = torch.nn.TransformerEncoderLayer(E, H, FF, activation=torch_act, norm_first=norm_first,
                                          batch_first=batch_first, bias=act != "callable").eval()
    fm = nn.TransformerEncoderLayer(E, H, FF, activation=ours_act, norm_first=norm_first,
                                    batch_first=batch_first, bias=act != "callable")
    if act != "callable":
        assert repr(fm) == repr(tm)
    params = load(fm, tm)
    rng = np.random.default_rng(0)
    S, N = 5, 3
    x = randn(rng, N, S, E) if batch_first else randn(rng, S, N, E)
    kwargs = {}
    if masks == "bool":
        kpm = np.zeros((N, S), bool)
        kpm[0, 3:] = True
        mask = rng.random((S, S)) > 0.7
        np.fill_diagonal(mask, False)
        kwargs = dict(src_mask=mask, src_key_padding_mask=kpm)
    elif masks == "float_causal_hint":
        kwargs = dict(src_mask=np.asarray(generate_square_subsequent_mask(S)), is_causal=True)
    compare(fm, tm, params, [x], kwargs, randn(rng, *x.shape))


@matrix("norm_first,batch_first", [(a, b) for a in (False, True) for b in (False, True)],
        fast={(True, True)})
def test_decoder_layer_matches_torch(norm_first, batch_first):
    torch.manual_seed(0)
    tm = torch.nn.TransformerDecoderLayer(E, H, FF, activation="gelu", norm_first=norm_first,
                                          batch_first=batch_first).eval()
    fm = nn.TransformerDecoderLayer(E, H, FF, activation="gelu", norm_first=norm_first,
                                    batch_first=batch_first)
    assert repr(fm) == repr(tm)
    params = load(fm, tm)
    rng = np.random.default_rng(1)
    T, S, N = 4, 6, 3
    tgt = randn(rng, N, T, E) if batch_first else randn(rng, T, N, E)
    mem = randn(rng, N, S, E) if batch_first else randn(rng, S, N, E)
    mkpm = np.zeros((N, S), bool)
    mkpm[1, 4:] = True
    tkpm = np.zeros((N, T), bool)
    tkpm[2, 3:] = True
    kwargs = dict(tgt_mask=np.triu(np.ones((T, T), bool), 1), memory_mask=randn(rng, T, S),
                  tgt_key_padding_mask=tkpm, memory_key_padding_mask=mkpm, tgt_is_causal=True)
    compare(fm, tm, params, [tgt, mem], kwargs, randn(rng, *tgt.shape))


@matrix("scan,norm_first", [(a, b) for a in (True, False) for b in (False, True)],
        fast={(True, False), (False, True)})
def test_encoder_stack_matches_torch(scan, norm_first):
    torch.manual_seed(0)
    tl = torch.nn.TransformerEncoderLayer(E, H, FF, norm_first=norm_first, batch_first=True)
    tm = torch.nn.TransformerEncoder(tl, 3, norm=torch.nn.LayerNorm(E), enable_nested_tensor=False).eval()
    fm = nn.TransformerEncoder(nn.TransformerEncoderLayer(E, H, FF, norm_first=norm_first, batch_first=True),
                               3, norm=LayerNorm(E), scan_layers=scan)
    params = load(fm, tm)
    assert set(params["layers"]) == {"0", "1", "2"}
    rng = np.random.default_rng(2)
    x = randn(rng, 3, 5, E)
    kpm = np.zeros((3, 5), bool)
    kpm[1, 2:] = True
    compare(fm, tm, params, [x], dict(mask=np.triu(np.ones((5, 5), bool), 1), src_key_padding_mask=kpm),
            randn(rng, *x.shape))


@matrix("scan", [(True,), (False,)], fast=set())
def test_decoder_stack_matches_torch(scan):
    torch.manual_seed(0)
    tl = torch.nn.TransformerDecoderLayer(E, H, FF)
    tm = torch.nn.TransformerDecoder(tl, 2, norm=torch.nn.LayerNorm(E)).eval()
    fm = nn.TransformerDecoder(nn.TransformerDecoderLayer(E, H, FF), 2, norm=LayerNorm(E), scan_layers=scan)
    params = load(fm, tm)
    rng = np.random.default_rng(3)
    tgt, mem = randn(rng, 4, 2, E), randn(rng, 6, 2, E)
    mkpm = np.zeros((2, 6), bool)
    mkpm[0, 5:] = True
    compare(fm, tm, params, [tgt, mem], dict(tgt_mask=np.asarray(generate_square_subsequent_mask(4)),
                                             memory_key_padding_mask=mkpm), randn(rng, *tgt.shape))


@matrix("batch_first", [(False,), (True,)], fast={(True,)})
def test_transformer_matches_torch(batch_first):
    torch.manual_seed(0)
    tm = torch.nn.Transformer(E, H, 2, 2, FF, batch_first=batch_first).eval()
    fm = nn.Transformer(E, H, 2, 2, FF, batch_first=batch_first)
    params = load(fm, tm)
    rng = np.random.default_rng(4)
    src = randn(rng, 2, 6, E) if batch_first else randn(rng, 6, 2, E)
    tgt = randn(rng, 2, 4, E) if batch_first else randn(rng, 4, 2, E)
    skpm = np.zeros((2, 6), bool)
    skpm[1, 4:] = True
    tgt_mask = np.asarray(nn.Transformer.generate_square_subsequent_mask(4))
    np.testing.assert_array_equal(tgt_mask, torch.nn.Transformer.generate_square_subsequent_mask(4).numpy())
    compare(fm, tm, params, [src, tgt], dict(tgt_mask=tgt_mask, src_key_padding_mask=skpm,
                                             memory_key_padding_mask=skpm), randn(rng, *tgt.shape))


def test_transformer_init_and_keys_like_torch():
    fm = nn.Transformer(32, 4, 2, 1, 64)
    tm = torch.nn.Transformer(32, 4, 2, 1, 64)
    sd = fm.state_dict(fm.init(jax.random.key(0)))
    assert [(k, tuple(v.shape)) for k, v in sd.items()] == [
        (k, tuple(v.shape)) for k, v in tm.state_dict().items()
    ]
    # torch's _reset_parameters: xavier_uniform for every matrix, e.g. linear1 [64, 32]
    w = np.asarray(sd["encoder.layers.0.linear1.weight"])
    bound = np.sqrt(6 / (32 + 64))
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.95 * bound
    ow = np.asarray(sd["decoder.layers.0.multihead_attn.out_proj.weight"])
    assert np.abs(ow).max() > 1 / np.sqrt(32)  # xavier bound √(6/64) > the Linear default 1/√32
    assert np.all(np.asarray(sd["encoder.norm.weight"]) == 1)
    # layers are initialised independently
    assert not np.array_equal(sd["encoder.layers.0.linear1.weight"], sd["encoder.layers.1.linear1.weight"])


def test_scan_and_loop_agree_in_train_mode_with_dropout():
    layer = nn.TransformerEncoderLayer(E, H, FF, dropout=0.3)
    scan = nn.TransformerEncoder(layer, 3, scan_layers=True)
    loop = nn.TransformerEncoder(layer, 3, scan_layers=False)
    params = scan.init(jax.random.key(0)).params
    rng = np.random.default_rng(5)
    x = jnp.asarray(randn(rng, 5, 2, E))
    w = jnp.asarray(randn(rng, 5, 2, E))  # not sum(out**2): after a post-norm LayerNorm that is constant

    def grad_fn(model):
        def loss(p, key):
            out, _ = model.apply(p, x, key=key, train=True)
            return jnp.sum(out * w), out
        return jax.jit(jax.value_and_grad(loss, has_aux=True))

    run_scan, run_loop = grad_fn(scan), grad_fn(loop)
    (_, out_s), g_s = run_scan(params, jax.random.key(1))
    (_, out_l), g_l = run_loop(params, jax.random.key(1))
    (_, out_s2), _ = run_scan(params, jax.random.key(1))
    (_, out_other), _ = run_scan(params, jax.random.key(2))
    np.testing.assert_allclose(out_s, out_l, rtol=1e-5, atol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), g_s, g_l)
    np.testing.assert_array_equal(out_s, out_s2)
    assert not np.allclose(out_s, out_other)
    eval_scan, eval_loop = scan.apply(params, x), loop.apply(params, x)
    assert not np.allclose(out_s, eval_scan)  # train mode differs from eval
    np.testing.assert_allclose(eval_scan, eval_loop, rtol=1e-5, atol=1e-6)


class _Shift(nn.Module):
    """A test layer: shifts rows up and appends a dropout mask of ones (a record of its mask)."""

    def __init__(self):
        super().__init__()
        self.drop = nn.Dropout(0.5)
        self.scale = nn.Parameter((), 1.0)

    def forward(self, h):
        return jnp.concatenate([h[1:], self.scale * self.drop(jnp.ones_like(h[:1]))])


class _Stack(nn.Module):
    def __init__(self, scan):
        super().__init__()
        self.layers = nn.ModuleList([_Shift() for _ in range(3)])
        self.scan = scan

    def forward(self, h):
        return run_layer_stack(self, self.layers, h, self.scan)


def test_each_layer_gets_its_own_dropout_key():
    h = jnp.zeros((3, 400))
    outs = []
    for scan in (True, False):
        model = _Stack(scan)
        out, _ = model.apply(model.init(jax.random.key(0)).params, h, key=jax.random.key(7), train=True)
        outs.append(np.asarray(out))
    np.testing.assert_array_equal(outs[0], outs[1])  # scan and loop: identical masks
    rows = outs[0]
    assert set(np.unique(rows)) == {0.0, 2.0}
    assert not np.array_equal(rows[0], rows[1]) and not np.array_equal(rows[1], rows[2])


def test_unbatched_and_jit():
    torch.manual_seed(0)
    tl = torch.nn.TransformerEncoderLayer(E, H, FF).eval()
    fm = nn.TransformerEncoder(nn.TransformerEncoderLayer(E, H, FF), 2)
    tm = torch.nn.TransformerEncoder(tl, 2, enable_nested_tensor=False).eval()
    params = load(fm, tm)
    x = randn(np.random.default_rng(6), 5, E)
    out = jax.jit(fm.apply)(params, jnp.asarray(x))
    with torch.no_grad():
        assert_close(out, tm(torch.tensor(x)), atol=2e-6)


def test_missing_key_in_train_mode_is_reported():
    model = nn.TransformerEncoder(nn.TransformerEncoderLayer(E, H, FF), 2)
    params = model.init(jax.random.key(0)).params
    with pytest.raises(ValueError, match="key="):
        model.apply(params, jnp.zeros((3, 1, E)), train=True)
    with pytest.raises(RuntimeError, match="relu/gelu"):
        nn.TransformerEncoderLayer(E, H, activation="tanh")


class _Encoder(nn.Module):
    def __init__(self, scan: bool):
        super().__init__()
        self.encoder = nn.TransformerEncoder(nn.TransformerEncoderLayer(16, 4, 32, batch_first=True), 2,
                                             scan_layers=scan)

    def forward(self, x):
        return self.encoder(x)


@pytest.mark.parametrize("scan, where", [(False, r"layers\.0"), (True, r"layers\.\*")])
def test_errors_inside_a_layer_stack_name_the_full_path(scan, where):
    # Each layer runs in a nested apply; its errors still name the path from the outer model.
    model = _Encoder(scan)
    with pytest.raises(nn.ShapeError, match=rf"^_Encoder\.encoder\.{where}\.self_attn \(MultiheadAttention\): "
                                            r"expected input of shape \[N, S, 16\] for query, got \(2, 5, 12\)"):
        model.apply(model.init(jax.random.key(0)), jnp.ones((2, 5, 12)))
