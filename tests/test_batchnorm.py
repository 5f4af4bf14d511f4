"""BatchNorm1d/2d/3d against torch: train outputs and gradients, running buffers over steps, eval."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn as tnn
from conftest import assert_close
from layer_parity import load_into_torch, randomize

import funcnet.nn as nn

CASES = [
    (nn.BatchNorm1d, tnn.BatchNorm1d, (8, 4)),
    (nn.BatchNorm1d, tnn.BatchNorm1d, (5, 4, 6)),
    (nn.BatchNorm2d, tnn.BatchNorm2d, (3, 4, 5, 5)),
]


def _pair(ours_cls, theirs_cls, momentum, affine, track, seed=0):
    ours = ours_cls(4, momentum=momentum, affine=affine, track_running_stats=track)
    theirs = theirs_cls(4, momentum=momentum, affine=affine, track_running_stats=track)
    params, buffers = ours.init(jax.random.key(seed))
    params = randomize(params, seed)
    load_into_torch(theirs, ours, params, buffers)
    return ours, theirs, params, buffers


@pytest.mark.parametrize("ours_cls,theirs_cls,x_shape", CASES, ids=lambda v: getattr(v, "__name__", str(v)))
# momentum only matters when running statistics are tracked.
@pytest.mark.parametrize("momentum,track", [(0.1, True), (None, True), (0.1, False)])
@pytest.mark.parametrize("affine", [True, False])
def test_batchnorm_train_steps_buffers_and_eval_match_torch(
    ours_cls, theirs_cls, x_shape, momentum, affine, track, rng
):
    ours, theirs, params, buffers = _pair(ours_cls, theirs_cls, momentum, affine, track)
    assert repr(ours) == repr(theirs)
    assert list(ours.state_dict(params, buffers)) == list(theirs.state_dict())
    theirs.train()

    def loss(p, b, x, cot):
        out, new_b = ours.apply(p, x, buffers=b, train=True)
        return jnp.sum(out * cot), (out, new_b)

    step = jax.jit(jax.value_and_grad(loss, argnums=(0, 2), has_aux=True))
    for i in range(4):
        x = ((1 + i) * rng.standard_normal(x_shape) + i).astype(np.float32)
        cot = rng.standard_normal(x_shape).astype(np.float32)
        (_, (out, buffers)), (gp, gx) = step(params, buffers, jnp.asarray(x), jnp.asarray(cot))
        tx = torch.tensor(x, requires_grad=True)
        theirs.zero_grad()
        t_out = theirs(tx)
        (t_out * torch.tensor(cot)).sum().backward()
        assert_close(out, t_out)
        # Gradients at the forward's tolerance: measured max |ours - torch| - 1e-5·|torch| is
        # 1.1e-7 (9× under atol 1e-6) over every case here.
        assert_close(gx, tx.grad, rtol=1e-5, atol=1e-6)
        for name, g in ours.state_dict(gp, {}).items():
            assert_close(g, getattr(theirs, name).grad, rtol=1e-5, atol=1e-6)
        for name, value in ours.state_dict({}, buffers).items():
            assert_close(value, getattr(theirs, name), rtol=1e-5, atol=1e-6)
        assert set(ours.state_dict(params, buffers)) == set(theirs.state_dict())

    theirs.eval()
    x = (2 * rng.standard_normal(x_shape) + 1).astype(np.float32)
    evaluate = jax.jit(lambda p, b, xx: ours.apply(p, xx, buffers=b))
    assert_close(evaluate(params, buffers, jnp.asarray(x)), theirs(torch.tensor(x)))


def test_batchnorm3d_matches_torch(rng):
    test_batchnorm_train_steps_buffers_and_eval_match_torch(
        nn.BatchNorm3d, tnn.BatchNorm3d, (2, 4, 3, 2, 3), 0.1, True, True, rng
    )


def test_running_var_is_unbiased_and_count_increments(rng):
    # A hand check, independent of torch: one step from the initial buffers.
    x = rng.standard_normal((6, 3, 2)).astype(np.float32)
    m = nn.BatchNorm1d(3)
    v = m.init(jax.random.key(0))
    _, b = m.apply(v, jnp.asarray(x), train=True)
    flat = x.transpose(1, 0, 2).reshape(3, -1)
    np.testing.assert_allclose(b["running_mean"], 0.1 * flat.mean(1), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(b["running_var"], 0.9 + 0.1 * flat.var(1, ddof=1), rtol=1e-5)
    assert int(b["num_batches_tracked"]) == 1 and b["num_batches_tracked"].dtype == jnp.int32


def test_bias_false_matches_torch(rng):
    ours, theirs = nn.BatchNorm2d(3, bias=False), tnn.BatchNorm2d(3, bias=False)
    assert repr(ours) == repr(theirs)
    v = ours.init(jax.random.key(0))
    params = randomize(v.params)
    load_into_torch(theirs, ours, params, v.buffers)
    x = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    out, b = ours.apply(params, jnp.asarray(x), buffers=v.buffers, train=True)
    assert_close(out, theirs(torch.tensor(x)))
    assert_close(b["running_var"], theirs.running_var)


def test_eval_uses_running_stats_and_does_not_return_buffers(rng):
    m = nn.BatchNorm1d(2)
    v = m.init(jax.random.key(0))
    buffers = {**v.buffers, "running_mean": jnp.array([1.0, -1.0]), "running_var": jnp.array([4.0, 0.25])}
    x = rng.standard_normal((5, 2)).astype(np.float32)
    out = m.apply(v.params, jnp.asarray(x), buffers=buffers)
    np.testing.assert_allclose(out, (x - [1.0, -1.0]) / np.sqrt(np.array([4.0, 0.25]) + 1e-5), rtol=1e-5)


def test_errors_name_the_module_path():
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(5))
    v = net.init(jax.random.key(0))
    expected = r"Sequential\.1 \(BatchNorm1d\).*\[N, 5\] or \[N, 5, L\].*\(2, 4\)"
    with pytest.raises(nn.ShapeError, match=expected):
        net.apply(v, jnp.ones((2, 3)))
    bn = nn.Sequential(nn.BatchNorm1d(3))
    v = bn.init(jax.random.key(0))
    with pytest.raises(nn.ShapeError, match="more than 1 value per channel"):
        bn.apply(v, jnp.ones((1, 3)), train=True)
    assert bn.apply(v, jnp.ones((1, 3))).shape == (1, 3)  # eval with running stats: fine, as torch


def test_train_mode_forward_mode_and_second_order_derivatives_match_plain_autodiff(monkeypatch, rng):
    """Train-mode normalisation has a hand-written JVP (its transpose is the two-reduction
    backward): jvp, vjp and a Hessian-vector product equal autodiff of the plain formula."""
    from funcnet.nn.functional import normalization

    model = nn.BatchNorm2d(3)
    params, buffers = model.init(jax.random.key(0))
    params = randomize(params, 0)
    x = jnp.asarray(rng.standard_normal((4, 3, 5, 5)).astype(np.float32) * 2 + 1)
    t = jnp.asarray(rng.standard_normal(x.shape).astype(np.float32))
    c = jnp.asarray(rng.standard_normal(x.shape).astype(np.float32))

    def loss(x):
        out, _ = model.apply(params, x, buffers=buffers, train=True)
        return jnp.sum(jnp.tanh(out) * c)

    def derivatives():
        _, tangent = jax.jvp(loss, (x,), (t,))
        grad = jax.grad(loss)(x)
        hvp = jax.jvp(jax.grad(loss), (x,), (t,))[1]
        return tangent, grad, hvp

    custom = derivatives()
    monkeypatch.setattr(normalization, "_BN_CUSTOM_JVP", False)
    plain = derivatives()
    for ours, ref in zip(custom, plain, strict=True):
        np.testing.assert_allclose(np.asarray(ours), np.asarray(ref), rtol=1e-4, atol=1e-5)
    assert float(jnp.abs(custom[2]).max()) > 0  # the second-order term is exercised
