"""scaled_dot_product_attention and MultiheadAttention against torch 2.13: forward, gradients, masks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from conftest import assert_close

import funcnet.nn as nn
import funcnet.nn.functional as F
from funcnet.nn.module import ShapeError


def randn(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


# -- scaled_dot_product_attention -----------------------------------------------------------------
SDPA_CASES = {
    "plain": dict(),
    "bool_mask": dict(mask="bool"),
    "float_mask": dict(mask="float"),
    "causal": dict(is_causal=True),
    "causal_rectangular": dict(is_causal=True, S=7),
    "scale": dict(scale=0.3, mask="bool"),
    "gqa": dict(enable_gqa=True, kv_heads=1),
    "fully_masked_rows": dict(mask="bool_rows"),
}


@pytest.mark.parametrize("case", list(SDPA_CASES))
def test_sdpa_matches_torch(case):
    c = SDPA_CASES[case]
    rng = np.random.default_rng(0)
    L, S, heads = 5, c.get("S", 6), 2
    q = randn(rng, 2, heads, L, 4)
    k = randn(rng, 2, c.get("kv_heads", heads), S, 4)
    v = randn(rng, 2, c.get("kv_heads", heads), S, 3)
    mask = None
    if c.get("mask") == "bool":
        mask = rng.random((L, S)) > 0.3
        mask[:, 0] = True
    elif c.get("mask") == "bool_rows":
        mask = rng.random((2, 1, L, S)) > 0.3
        mask[0, 0, 1] = False  # one query sees no key at all
    elif c.get("mask") == "float":
        mask = randn(rng, 2, heads, L, S)
    kwargs = dict(is_causal=c.get("is_causal", False), scale=c.get("scale"),
                  enable_gqa=c.get("enable_gqa", False))
    w = randn(rng, 2, heads, L, 3)

    def loss(q, k, v):
        out = F.scaled_dot_product_attention(q, k, v, None if mask is None else jnp.asarray(mask), **kwargs)
        return jnp.sum(out * w), out

    (_, out), grads = jax.value_and_grad(loss, (0, 1, 2), has_aux=True)(*map(jnp.asarray, (q, k, v)))
    tq, tk, tv = (torch.tensor(a, requires_grad=True) for a in (q, k, v))
    t_mask = None if mask is None else torch.tensor(mask)
    t_out = TF.scaled_dot_product_attention(tq, tk, tv, t_mask, **kwargs)
    (t_out * torch.tensor(w)).sum().backward()
    assert_close(out, t_out)
    for g, t in zip(grads, (tq, tk, tv), strict=True):
        assert np.all(np.isfinite(np.asarray(g)))
        assert_close(g, t.grad)
    if case == "fully_masked_rows":
        assert np.all(np.asarray(out)[0, :, 1] == 0)


def test_sdpa_dropout_statistics_and_determinism():
    # q = k = 0: uniform weights 1/S; value = identity: the output *is* the dropped weight matrix
    S, p = 50, 0.3
    q = jnp.zeros((4, 40, 8))
    k = jnp.zeros((4, S, 8))
    v = jnp.broadcast_to(jnp.eye(S), (4, S, S))
    out = F.scaled_dot_product_attention(q, k, v, dropout_p=p, dropout_key=jax.random.key(0))
    again = F.scaled_dot_product_attention(q, k, v, dropout_p=p, dropout_key=jax.random.key(0))
    other = F.scaled_dot_product_attention(q, k, v, dropout_p=p, dropout_key=jax.random.key(1))
    np.testing.assert_array_equal(out, again)
    assert not np.array_equal(out, other)
    out = np.asarray(out)
    assert abs((out == 0).mean() - p) < 0.02
    np.testing.assert_allclose(out[out != 0], 1 / (S * (1 - p)), rtol=1e-5)
    with pytest.raises(ValueError, match="dropout_key"):
        F.scaled_dot_product_attention(q, k, v, dropout_p=p)


# -- MultiheadAttention ---------------------------------------------------------------------------
MHA_CASES = {
    "default": (dict(), dict()),
    "batch_first_kpm_bool": (dict(batch_first=True), dict(kpm="bool")),
    "attn_mask_bool_2d": (dict(), dict(attn_mask="bool2d")),
    "attn_mask_float_3d_and_kpm": (dict(), dict(attn_mask="float3d", kpm="bool")),
    "kpm_float": (dict(), dict(kpm="float")),
    "kdim_vdim": (dict(kdim=3, vdim=5), dict(kpm="bool")),
    "no_bias": (dict(bias=False), dict(attn_mask="bool2d")),
    "add_bias_kv": (dict(add_bias_kv=True), dict(attn_mask="bool2d", kpm="bool")),
    "add_zero_attn": (dict(add_zero_attn=True), dict(attn_mask="float3d", kpm="bool")),
    "bias_kv_zero_attn_kdim": (dict(add_bias_kv=True, add_zero_attn=True, kdim=3, vdim=5, batch_first=True),
                               dict(kpm="bool")),
    "causal_hint": (dict(), dict(attn_mask="causal", is_causal=True)),
}


def make_mha(**kwargs):
    torch.manual_seed(0)
    tm = torch.nn.MultiheadAttention(8, 2, **kwargs).eval()
    fm = nn.MultiheadAttention(8, 2, **kwargs)
    variables, incompatible = fm.load_state_dict(tm.state_dict())
    assert incompatible == ([], [])
    return fm, tm, variables.params


MHA_FAST = {("batch_first_kpm_bool", False, True), ("attn_mask_bool_2d", True, False),
            ("attn_mask_float_3d_and_kpm", False, True), ("kpm_float", True, True),
            ("bias_kv_zero_attn_kdim", False, True), ("bias_kv_zero_attn_kdim", True, True),
            ("causal_hint", False, True)}


@pytest.mark.parametrize("case,need_weights,average", [
    pytest.param(c, nw, av, marks=() if (c, nw, av) in MHA_FAST else pytest.mark.slow)
    for c in MHA_CASES for nw, av in [(True, True), (True, False), (False, True)]
])
def test_mha_matches_torch(case, need_weights, average):
    ctor, fwd = MHA_CASES[case]
    fm, tm, params = make_mha(**ctor)
    rng = np.random.default_rng(1)
    N, L, S = 3, 4, 5
    kdim, vdim = ctor.get("kdim", 8), ctor.get("vdim", 8)
    bf = ctor.get("batch_first", False)

    def lay(T, d):
        return randn(rng, N, T, d) if bf else randn(rng, T, N, d)

    q, k, v = lay(L, 8), lay(S, kdim), lay(S, vdim)
    if fwd.get("attn_mask") == "causal":
        q, k, v = q, lay(L, kdim), lay(L, vdim)
        S = L
    kpm = attn_mask = None
    if fwd.get("kpm") == "bool":
        kpm = np.zeros((N, S), bool)
        kpm[0, -2:] = True
        kpm[2, 0] = True
    elif fwd.get("kpm") == "float":
        kpm = randn(rng, N, S)
    if fwd.get("attn_mask") == "bool2d":
        attn_mask = rng.random((L, S)) > 0.7
        attn_mask[:, 0] = False  # every query keeps one key (torch gives NaN otherwise)
    elif fwd.get("attn_mask") == "float3d":
        attn_mask = randn(rng, N * 2, L, S)
    elif fwd.get("attn_mask") == "causal":
        attn_mask = np.triu(np.ones((L, L), bool), 1)
    opts = dict(need_weights=need_weights, average_attn_weights=average,
                is_causal=fwd.get("is_causal", False))
    rw = randn(rng, *((N, L, 8) if bf else (L, N, 8)))
    ww = randn(rng, *((N, L, S + ctor.get("add_bias_kv", 0) + ctor.get("add_zero_attn", 0)) if average else
                     (N, 2, L, S + ctor.get("add_bias_kv", 0) + ctor.get("add_zero_attn", 0))))

    def loss(params, q, k, v):
        out, w = fm.apply(params, q, k, v, key_padding_mask=None if kpm is None else jnp.asarray(kpm),
                          attn_mask=None if attn_mask is None else jnp.asarray(attn_mask), **opts)
        total = jnp.sum(out * rw) + (jnp.sum(w * ww) if w is not None else 0.0)
        return total, (out, w)

    (_, (out, w)), (gp, gq, gk, gv) = jax.value_and_grad(loss, (0, 1, 2, 3), has_aux=True)(
        params, *map(jnp.asarray, (q, k, v))
    )
    tq, tk, tv = (torch.tensor(a, requires_grad=True) for a in (q, k, v))
    t_out, t_w = tm(tq, tk, tv, key_padding_mask=None if kpm is None else torch.tensor(kpm),
                    attn_mask=None if attn_mask is None else torch.tensor(attn_mask), **opts)
    total = (t_out * torch.tensor(rw)).sum() + ((t_w * torch.tensor(ww)).sum() if t_w is not None else 0.0)
    total.backward()
    assert_close(out, t_out)
    if need_weights:
        assert w.shape == tuple(t_w.shape)
        assert_close(w, t_w)
    else:
        assert w is None and t_w is None
    grads = fm.state_dict(gp)
    assert list(grads) == [n for n, _ in tm.named_parameters()]
    for name, param in tm.named_parameters():
        assert_close(grads[name], param.grad, atol=2e-6)
    for g, t in zip((gq, gk, gv), (tq, tk, tv), strict=True):
        assert_close(g, t.grad, atol=2e-6)


def test_mha_unbatched_matches_torch():
    fm, tm, params = make_mha(add_bias_kv=True)
    rng = np.random.default_rng(2)
    q, k = randn(rng, 4, 8), randn(rng, 6, 8)
    kpm = np.array([False, False, True, False, False, True])
    attn_mask = randn(rng, 2, 4, 6)
    for need_weights in (True, False):
        out, w = fm.apply(params, jnp.asarray(q), jnp.asarray(k), jnp.asarray(k),
                          key_padding_mask=jnp.asarray(kpm), attn_mask=jnp.asarray(attn_mask),
                          need_weights=need_weights)
        t_out, t_w = tm(torch.tensor(q), torch.tensor(k), torch.tensor(k), key_padding_mask=torch.tensor(kpm),
                        attn_mask=torch.tensor(attn_mask), need_weights=need_weights)
        assert out.shape == (4, 8)
        assert_close(out, t_out)
        if need_weights:
            assert w.shape == (4, 7)
            assert_close(w, t_w)


def test_mha_fully_masked_query_follows_torch():
    fm, tm, params = make_mha()
    rng = np.random.default_rng(3)
    x = randn(rng, 3, 2, 8)
    kpm = np.zeros((2, 3), bool)
    kpm[1] = True  # batch item 1 has no key at all
    for need_weights in (True, False):
        out, _ = fm.apply(params, *(jnp.asarray(x),) * 3, key_padding_mask=jnp.asarray(kpm),
                          need_weights=need_weights)
        t_out, _ = tm(*(torch.tensor(x),) * 3, key_padding_mask=torch.tensor(kpm), need_weights=need_weights)
        t_out = t_out.detach().numpy()
        # torch: NaN with need_weights (plain softmax), zeros through SDPA without
        assert np.isnan(t_out[:, 1]).all() == need_weights
        np.testing.assert_allclose(np.asarray(out), t_out, rtol=1e-5, atol=1e-6, equal_nan=True)


def test_mha_init_and_keys_match_torch():
    E = 64
    for kwargs in (dict(), dict(kdim=32, vdim=16, add_bias_kv=True), dict(bias=False)):
        fm = nn.MultiheadAttention(E, 4, **kwargs)
        tm = torch.nn.MultiheadAttention(E, 4, **kwargs)
        sd = fm.state_dict(fm.init(jax.random.key(0)))
        assert [(k, tuple(v.shape)) for k, v in sd.items()] == [
            (k, tuple(v.shape)) for k, v in tm.state_dict().items()
        ]
        assert repr(fm) == repr(tm)
    sd = nn.MultiheadAttention(E, 4, add_bias_kv=True).init(jax.random.key(1)).params
    w = np.asarray(sd["in_proj_weight"])
    bound = np.sqrt(6 / (4 * E))  # xavier over the whole [3E, E] matrix
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.95 * bound
    assert np.all(np.asarray(sd["in_proj_bias"]) == 0) and np.all(np.asarray(sd["out_proj"]["bias"]) == 0)
    ow = np.asarray(sd["out_proj"]["weight"])
    assert np.abs(ow).max() <= 1 / np.sqrt(E) and np.abs(ow).max() > 0.95 / np.sqrt(E)
    bk = np.concatenate([np.asarray(sd["bias_k"]).ravel(), np.asarray(sd["bias_v"]).ravel()])
    assert 0.6 / np.sqrt(E) < bk.std() < 1.4 / np.sqrt(E)  # xavier_normal on [1, 1, E]: std 1/√E


def test_mha_dropout_train_mode():
    fm = nn.MultiheadAttention(8, 2, dropout=0.5)
    params = fm.init(jax.random.key(0)).params
    x = jnp.asarray(randn(np.random.default_rng(4), 30, 2, 8))
    (out_a, w_a), _ = fm.apply(params, x, x, x, key=jax.random.key(1), train=True, average_attn_weights=False)
    (out_b, w_b), _ = fm.apply(params, x, x, x, key=jax.random.key(1), train=True, average_attn_weights=False)
    (out_c, _), _ = fm.apply(params, x, x, x, key=jax.random.key(2), train=True)
    out_eval, w_eval = fm.apply(params, x, x, x, average_attn_weights=False)
    np.testing.assert_array_equal(out_a, out_b)
    assert not np.allclose(out_a, out_c)
    w_a, w_eval = np.asarray(w_a), np.asarray(w_eval)
    assert abs((w_a == 0).mean() - 0.5) < 0.03
    np.testing.assert_allclose(w_a[w_a != 0], 2 * w_eval[w_a != 0], rtol=1e-5)
    (out_nw, _), _ = fm.apply(params, x, x, x, key=jax.random.key(1), train=True, need_weights=False)
    assert np.all(np.isfinite(np.asarray(out_nw))) and not np.allclose(out_nw, out_eval)


def test_mha_errors():
    fm = nn.MultiheadAttention(8, 2)
    params = fm.init(jax.random.key(0)).params
    x = jnp.zeros((3, 2, 8))
    with pytest.raises(ShapeError, match=r"MultiheadAttention.*\[3, 3\] for a 2-D attn_mask.*\(3, 4\)"):
        fm.apply(params, x, x, x, attn_mask=jnp.zeros((3, 4)))
    with pytest.raises(ShapeError, match=r"query.*\(3, 2, 6\)"):
        fm.apply(params, jnp.zeros((3, 2, 6)), x, x)
    with pytest.raises(RuntimeError, match="Need attn_mask"):
        fm.apply(params, x, x, x, is_causal=True)
    with pytest.raises(ValueError, match="divisible"):
        nn.MultiheadAttention(6, 4)


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("need_weights", [False, True])
def test_self_attention_packed_in_projection_matches_torch(batch_first, need_weights):
    """query is key is value: one [T·N, E]·[E, 3E] in-projection, as torch's _in_projection_packed;
    forward and gradients (parameters and the shared input) equal torch's and funcnet's three
    separate projections."""
    import funcnet.nn.modules.attention as attention_module

    fm, tm, params = make_mha(batch_first=batch_first)
    rng = np.random.default_rng(4)
    x = randn(rng, *((3, 5, 8) if batch_first else (5, 3, 8)))
    rw = randn(rng, *x.shape)

    def loss(params, x):
        out, w = fm.apply(params, x, x, x, need_weights=need_weights)
        return jnp.sum(out * rw) + (jnp.sum(w ** 2) if w is not None else 0.0)

    results = {}
    for packed in (True, False):
        attention_module._PACKED_IN_PROJECTION = packed
        try:
            results[packed] = jax.jit(jax.value_and_grad(loss, (0, 1)))(params, jnp.asarray(x))
        finally:
            attention_module._PACKED_IN_PROJECTION = True
    tx = torch.tensor(x, requires_grad=True)
    t_out, t_w = tm(tx, tx, tx, need_weights=need_weights)
    total = (t_out * torch.tensor(rw)).sum() + ((t_w ** 2).sum() if t_w is not None else 0.0)
    total.backward()
    value, (gp, gx) = results[True]
    assert_close(value, total)
    assert_close(gx, tx.grad, atol=2e-6)
    grads = fm.state_dict(gp)
    for name, param in tm.named_parameters():
        assert_close(grads[name], param.grad, atol=2e-6)
    for a, b in zip(jax.tree.leaves(results[True]), jax.tree.leaves(results[False]), strict=True):
        assert_close(a, b, atol=2e-6)


def test_sdpa_second_derivatives_and_jvp_match_torch():
    """The softmax's own derivative rule (row sums as a product with ones on CPU): gradients of
    gradients and a JVP through scaled_dot_product_attention, against torch's double backward and
    torch.func.jvp; masked rows included."""
    rng = np.random.default_rng(5)
    q, k, v = (randn(rng, 2, 2, 4, 6) for _ in range(3))
    mask = rng.random((4, 4)) > 0.3
    mask[1] = False  # a fully masked query row: zeros, finite gradients

    def f(q, k, v):
        return F.scaled_dot_product_attention(q, k, v, jnp.asarray(mask))

    def tf(q, k, v):  # torch's math kernel: its fused CPU kernel has no double backward
        with torch.nn.attention.sdpa_kernel(torch.nn.attention.SDPBackend.MATH):
            return TF.scaled_dot_product_attention(q, k, v, torch.tensor(mask))

    def grad_norm(q, k, v):
        gq, gk = jax.grad(lambda q, k: jnp.sum(jnp.sin(f(q, k, v))), (0, 1))(q, k)
        return jnp.sum(gq ** 2) + jnp.sum(gk * q)

    hq, hk = jax.jit(jax.grad(grad_norm, (0, 1)))(q, k, v)
    tq, tk, tv = (torch.tensor(a, requires_grad=True) for a in (q, k, v))
    tgq, tgk = torch.autograd.grad(torch.sin(tf(tq, tk, tv)).sum(), (tq, tk), create_graph=True)
    ((tgq ** 2).sum() + (tgk * tq).sum()).backward()
    assert_close(hq, tq.grad, atol=2e-5)
    assert_close(hk, tk.grad, atol=2e-5)
    dq, dk, dv = (randn(rng, *q.shape) for _ in range(3))
    out, tangent = jax.jvp(f, (q, k, v), (dq, dk, dv))
    t_out, t_tangent = torch.func.jvp(tf, tuple(map(torch.tensor, (q, k, v))), tuple(map(torch.tensor, (dq, dk, dv))))
    assert_close(out, t_out)
    assert_close(tangent, t_tangent, atol=2e-6)
