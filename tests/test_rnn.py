"""RNN / LSTM / GRU and cells against torch 2.13: forward, gradients, masks (lengths), init, dropout."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from conftest import assert_close
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import funcnet.nn as nn
from funcnet.nn.module import ShapeError


def matrix(names, combos, fast):
    """Every combination; those outside ``fast`` are marked slow (the full matrix runs with -m slow)."""
    return pytest.mark.parametrize(names, [
        pytest.param(*c, marks=() if c in fast else pytest.mark.slow) for c in combos
    ])


KINDS = {
    "rnn_tanh": (nn.RNN, torch.nn.RNN, {}),
    "rnn_relu": (nn.RNN, torch.nn.RNN, {"nonlinearity": "relu"}),
    "lstm": (nn.LSTM, torch.nn.LSTM, {}),
    "gru": (nn.GRU, torch.nn.GRU, {}),
}


def pair(kind, *args, **kwargs):
    """A torch module and the funcnet twin with torch's weights loaded through state_dict."""
    ours_cls, torch_cls, extra = KINDS[kind]
    kwargs = {**extra, **kwargs}
    torch.manual_seed(0)
    tm = torch_cls(*args, **kwargs).eval()
    fm = ours_cls(*args, **kwargs)
    variables, incompatible = fm.load_state_dict(tm.state_dict())
    assert incompatible == ([], [])
    return fm, tm, variables.params


def to_torch(a, grad=False):
    return torch.tensor(np.asarray(a), requires_grad=grad)


def torch_grads(tm):
    return {k: p.grad for k, p in tm.named_parameters()}


def check_grads(fm, grads, tm, rtol=1e-5, atol=1e-6):
    ours = fm.state_dict(grads)
    theirs = torch_grads(tm)
    assert list(ours) == list(theirs)
    for k in ours:
        assert_close(ours[k], theirs[k], rtol=rtol, atol=atol)


def run_both(fm, tm, params, x, hx=None, lengths=None, rtol=1e-5, atol=1e-6):
    """Forward and gradients (params, input, initial states) against torch."""
    rng = np.random.default_rng(1)
    lstm = isinstance(fm, nn.LSTM)

    def loss_fn(params, x, hx):
        out, h = fm.apply(params, x, hx, lengths=lengths)
        hs = h if lstm else (h,)
        w = [jnp.asarray(rng_w[0])] + [jnp.asarray(r) for r in rng_w[1:]]
        return jnp.sum(out * w[0]) + sum(jnp.sum(a * b) for a, b in zip(hs, w[1:], strict=True)), (out, h)

    out, h = fm.apply(params, x, hx, lengths=lengths)
    hs = h if lstm else (h,)
    rng_w = [rng.standard_normal(out.shape).astype(np.float32)] + [
        rng.standard_normal(a.shape).astype(np.float32) for a in hs
    ]
    grad_fn = jax.jit(jax.value_and_grad(loss_fn, argnums=(0, 1, 2), has_aux=True))
    (_, (out, h)), (g_params, g_x, g_hx) = grad_fn(params, x, hx)

    tx = to_torch(x, grad=True)
    thx = None
    if hx is not None:
        thx = tuple(to_torch(a, grad=True) for a in hx) if lstm else to_torch(hx, grad=True)
    if lengths is None:
        t_out, t_h = tm(tx, thx)
    else:
        packed = pack_padded_sequence(tx, torch.tensor(np.asarray(lengths)), batch_first=tm.batch_first,
                                      enforce_sorted=False)
        t_out, t_h = tm(packed, thx)
        t_out, _ = pad_packed_sequence(t_out, batch_first=tm.batch_first, total_length=x.shape[1 if
                                       tm.batch_first else 0])
    t_hs = t_h if lstm else (t_h,)
    loss = (t_out * torch.tensor(rng_w[0])).sum() + sum(
        (a * torch.tensor(b)).sum() for a, b in zip(t_hs, rng_w[1:], strict=True)
    )
    loss.backward()
    assert_close(out, t_out, rtol, atol)
    for a, b in zip(hs, t_hs, strict=True):
        assert_close(a, b, rtol, atol)
    check_grads(fm, g_params, tm, rtol, atol)
    assert_close(g_x, tx.grad, rtol, atol)
    if hx is not None:
        if lstm:
            for a, b in zip(g_hx, thx, strict=True):
                assert_close(a, b.grad, rtol, atol)
        else:
            assert_close(g_hx, thx.grad, rtol, atol)


CONFIGS = {
    "2layer-bidir-batchfirst": dict(num_layers=2, bidirectional=True, batch_first=True),
    "nobias-2layer": dict(bias=False, num_layers=2),
    "default": dict(),
    "bidir": dict(bidirectional=True),
    "3layer-bidir-dropout": dict(num_layers=3, bidirectional=True, dropout=0.5),  # inactive in eval
}


@matrix("kind,config", [(k, c) for k in KINDS for c in CONFIGS],
        fast={(k, "2layer-bidir-batchfirst") for k in KINDS})
def test_forward_and_grads_match_torch(kind, config):
    config = CONFIGS[config]
    fm, tm, params = pair(kind, 5, 7, **config)
    x = np.random.default_rng(0).standard_normal((6, 3, 5) if not config.get("batch_first") else (3, 6, 5))
    run_both(fm, tm, params, jnp.asarray(x, jnp.float32))


@matrix("kind", [(k,) for k in KINDS], fast={("lstm",)})
def test_initial_states_match_torch(kind):
    fm, tm, params = pair(kind, 4, 6, num_layers=2, bidirectional=True)
    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.standard_normal((5, 3, 4)), jnp.float32)
    h0 = jnp.asarray(rng.standard_normal((4, 3, 6)), jnp.float32)
    hx = (h0, jnp.asarray(rng.standard_normal((4, 3, 6)), jnp.float32)) if kind == "lstm" else h0
    run_both(fm, tm, params, x, hx)


@pytest.mark.parametrize("config", [pytest.param(dict(), marks=pytest.mark.slow),
                                    dict(num_layers=2, bidirectional=True, batch_first=True)])
def test_lstm_proj_size_matches_torch(config):
    fm, tm, params = pair("lstm", 5, 8, proj_size=3, **config)
    assert params["weight_hr_l0"].shape == (3, 8)
    assert params["weight_hh_l0"].shape == (32, 3)
    rng = np.random.default_rng(3)
    n = config.get("num_layers", 1) * (2 if config.get("bidirectional") else 1)
    x = jnp.asarray(rng.standard_normal((4, 6, 5) if config.get("batch_first") else (6, 4, 5)), jnp.float32)
    hx = (jnp.asarray(rng.standard_normal((n, 4, 3)), jnp.float32),
          jnp.asarray(rng.standard_normal((n, 4, 8)), jnp.float32))
    run_both(fm, tm, params, x, hx)


@matrix("kind,batch_first", [(k, b) for k in KINDS for b in (False, True)],
        fast={("lstm", False), ("gru", True)})
def test_lengths_match_pack_padded_sequence(kind, batch_first):
    fm, tm, params = pair(kind, 3, 5, num_layers=2, bidirectional=True, batch_first=batch_first)
    rng = np.random.default_rng(4)
    lengths = np.array([3, 7, 1, 5], np.int32)  # unsorted, one full length, one of length 1
    x = rng.standard_normal((4, 7, 3) if batch_first else (7, 4, 3)).astype(np.float32)
    h0 = jnp.asarray(rng.standard_normal((4, 4, 5)), jnp.float32)
    hx = (h0, jnp.asarray(rng.standard_normal((4, 4, 5)), jnp.float32)) if kind == "lstm" else h0
    run_both(fm, tm, params, jnp.asarray(x), hx, lengths=jnp.asarray(lengths))
    # outputs past each length are exactly zero, and garbage in the padding changes nothing
    out, _ = fm.apply(params, jnp.asarray(x), lengths=lengths)
    out = np.asarray(out if batch_first else jnp.swapaxes(out, 0, 1))
    x_noisy = x.copy()
    for b, n in enumerate(lengths):
        assert np.all(out[b, n:] == 0)
        if batch_first:
            x_noisy[b, n:] = 100.0
        else:
            x_noisy[n:, b] = 100.0
    out2, _ = fm.apply(params, jnp.asarray(x_noisy), lengths=lengths)
    np.testing.assert_array_equal(np.asarray(out2 if batch_first else jnp.swapaxes(out2, 0, 1)), out)


def test_lengths_under_jit_with_traced_lengths():
    fm, tm, params = pair("gru", 3, 4, bidirectional=True)
    x = jnp.asarray(np.random.default_rng(5).standard_normal((6, 2, 3)), jnp.float32)
    f = jax.jit(lambda p, x, n: fm.apply(p, x, lengths=n))
    out, h = f(params, x, jnp.array([2, 6]))
    packed = pack_padded_sequence(to_torch(x), torch.tensor([2, 6]), enforce_sorted=False)
    t_out, t_h = tm(packed)
    t_out, _ = pad_packed_sequence(t_out, total_length=6)
    assert_close(out, t_out)
    assert_close(h, t_h)


@matrix("kind", [(k,) for k in KINDS], fast=set())
def test_unbatched_input(kind):
    fm, tm, params = pair(kind, 3, 4, num_layers=2, bidirectional=True)
    rng = np.random.default_rng(6)
    x = rng.standard_normal((5, 3)).astype(np.float32)
    h0 = rng.standard_normal((4, 4)).astype(np.float32)
    hx = (h0, rng.standard_normal((4, 4)).astype(np.float32)) if kind == "lstm" else h0
    out, h = fm.apply(params, jnp.asarray(x), jax.tree.map(jnp.asarray, hx))
    t_hx = tuple(torch.tensor(a) for a in hx) if kind == "lstm" else torch.tensor(hx)
    t_out, t_h = tm(torch.tensor(x), t_hx)
    assert out.shape == (5, 8)
    assert_close(out, t_out)
    for a, b in zip(jax.tree.leaves(h), (t_h if kind == "lstm" else (t_h,)), strict=True):
        assert_close(a, b)


@pytest.mark.slow
def test_long_sequence_lstm():
    # 300 steps: float32 rounding accumulates through the recurrence on both sides
    # (different matmul orders), so the tolerance is looser than for short sequences.
    fm, tm, params = pair("lstm", 8, 16, num_layers=2)
    x = jnp.asarray(np.random.default_rng(7).standard_normal((300, 2, 8)), jnp.float32)
    run_both(fm, tm, params, x, rtol=1e-4, atol=1e-4)


def test_parameter_names_shapes_order_and_init_match_torch():
    for kind, args in [("lstm", dict(num_layers=2, bidirectional=True, proj_size=3)),
                       ("gru", dict(num_layers=2, bias=False)), ("rnn_relu", dict(bidirectional=True))]:
        ours_cls, torch_cls, extra = KINDS[kind]
        fm = ours_cls(6, 40, **{**extra, **args})
        tm = torch_cls(6, 40, **{**extra, **args})
        sd = fm.state_dict(fm.init(jax.random.key(0)))
        assert [(k, tuple(v.shape)) for k, v in sd.items()] == [
            (k, tuple(v.shape)) for k, v in tm.state_dict().items()
        ]
        assert repr(fm) == repr(tm)
        bound = 1 / np.sqrt(40)
        for _k, v in sd.items():
            v = np.asarray(v)
            assert v.dtype == np.float32
            assert np.abs(v).max() <= bound
            assert np.abs(v).max() > 0.9 * bound  # U(±1/√H), not a narrower distribution
            if v.size > 500:
                assert abs(v.std() - bound / np.sqrt(3)) < 0.1 * bound


def test_dropout_between_layers_train_mode():
    fm = nn.LSTM(4, 6, num_layers=2, dropout=0.5)
    params = fm.init(jax.random.key(0)).params
    x = jnp.asarray(np.random.default_rng(8).standard_normal((5, 2, 4)), jnp.float32)
    eval_out, _ = fm.apply(params, x)
    (a, _), _ = fm.apply(params, x, key=jax.random.key(1), train=True)
    (b, _), _ = fm.apply(params, x, key=jax.random.key(1), train=True)
    (c, _), _ = fm.apply(params, x, key=jax.random.key(2), train=True)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    assert not np.allclose(a, eval_out)
    # the last layer's output is not dropped: no exact zeros appear
    assert np.all(np.asarray(a) != 0)
    with pytest.raises(ValueError, match="key"):
        fm.apply(params, x, train=True)


def test_dropout_one_feeds_zeros_to_next_layer():
    # p=1 drops every element: layer 1 then sees a zero input. Compare with torch running
    # layer 1 alone on zeros (torch's dropout with p=1 also zeroes everything).
    fm, tm, params = pair("gru", 3, 4, num_layers=2, dropout=1.0)
    x = jnp.asarray(np.random.default_rng(9).standard_normal((5, 2, 3)), jnp.float32)
    (out, h), _ = fm.apply(params, x, key=jax.random.key(0), train=True)
    tm.train()
    t_out, t_h = tm(to_torch(x))
    assert_close(out, t_out)
    assert_close(h, t_h)


CELLS = {
    "rnn_tanh": (nn.RNNCell, torch.nn.RNNCell, {}),
    "rnn_relu": (nn.RNNCell, torch.nn.RNNCell, {"nonlinearity": "relu"}),
    "lstm": (nn.LSTMCell, torch.nn.LSTMCell, {}),
    "gru": (nn.GRUCell, torch.nn.GRUCell, {}),
}


@matrix("kind,bias,given_state", [(k, b, g) for k in CELLS for b in (True, False) for g in (True, False)],
        fast={("lstm", True, True), ("gru", False, False)})
def test_cells_match_torch(kind, bias, given_state):
    ours_cls, torch_cls, extra = CELLS[kind]
    torch.manual_seed(0)
    tm = torch_cls(5, 7, bias=bias, **extra)
    fm = ours_cls(5, 7, bias=bias, **extra)
    params = fm.load_state_dict(tm.state_dict())[0].params
    assert repr(fm) == repr(tm)
    rng = np.random.default_rng(10)
    x = rng.standard_normal((3, 5)).astype(np.float32)
    states = [rng.standard_normal((3, 7)).astype(np.float32) for _ in range(2 if kind == "lstm" else 1)]
    w = [rng.standard_normal((3, 7)).astype(np.float32) for _ in states]

    def loss_fn(params, x, states):
        hx = (tuple(states) if kind == "lstm" else states[0]) if given_state else None
        out = fm.apply(params, x, hx)
        outs = out if kind == "lstm" else (out,)
        return sum(jnp.sum(o * wi) for o, wi in zip(outs, w, strict=True)), outs

    (_, outs), (gp, gx, gs) = jax.value_and_grad(loss_fn, (0, 1, 2), has_aux=True)(
        params, jnp.asarray(x), [jnp.asarray(s) for s in states]
    )
    tx = torch.tensor(x, requires_grad=True)
    ts = [torch.tensor(s, requires_grad=True) for s in states]
    t_hx = (tuple(ts) if kind == "lstm" else ts[0]) if given_state else None
    t_out = tm(tx, t_hx)
    t_outs = t_out if kind == "lstm" else (t_out,)
    sum((o * torch.tensor(wi)).sum() for o, wi in zip(t_outs, w, strict=True)).backward()
    for a, b in zip(outs, t_outs, strict=True):
        assert_close(a, b)
    for k, g in fm.state_dict(gp).items():
        assert_close(g, dict(tm.named_parameters())[k].grad)
    assert_close(gx, tx.grad)
    if given_state:
        for a, b in zip(gs, ts, strict=True):
            assert_close(a, b.grad)
    # unbatched
    single = fm.apply(params, jnp.asarray(x[0]))
    t_single = tm(torch.tensor(x[0]))
    for a, b in zip(jax.tree.leaves(single), t_single if kind == "lstm" else (t_single,), strict=True):
        assert_close(a, b)


def test_errors_name_the_module_and_shapes():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.enc = nn.LSTM(3, 4)

        def forward(self, x, hx=None):
            return self.enc(x, hx)

    net = Net()
    params = net.init(jax.random.key(0)).params
    with pytest.raises(ShapeError, match=r"Net\.enc \(LSTM\).*H_in=3.*\(5, 2, 7\)"):
        net.apply(params, jnp.zeros((5, 2, 7)))
    with pytest.raises(ShapeError, match=r"Net\.enc.*h_0.*\(2, 2, 4\)"):
        net.apply(params, jnp.zeros((5, 2, 3)), (jnp.zeros((2, 2, 4)), jnp.zeros((1, 2, 4))))
    with pytest.raises(ValueError, match="proj_size"):
        nn.RNNBase("GRU", 3, 4, proj_size=2)
    with pytest.raises(ValueError, match="nonlinearity"):
        nn.RNN(3, 4, nonlinearity="sigmoid")
