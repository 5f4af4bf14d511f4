"""funcnet's column sums and the broadcast whose transpose they are (the gradients of biases and of
LayerNorm's affine parameters): the shim's kernel against float64 sums, the pair under grad, jvp,
second derivatives, vmap and jit, and ``linear``/``layer_norm`` gradients against torch 2.13."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from conftest import assert_close_to_scale

import funcnet.nn.functional as F
from funcnet import onednn
from funcnet.nn.functional import column_sums as column_sums_module
from funcnet.nn.functional.column_sums import broadcast_rows, column_sums

TF = torch.nn.functional


def _ffi_calls(fn, *args) -> int:
    return jax.jit(fn).lower(*args).as_text().count("funcnet_column_sums")


@pytest.fixture(autouse=True)
def kernel_for_every_size(monkeypatch):
    """The shim's kernel also for the small arrays of these tests (it starts at 64K elements)."""
    monkeypatch.setattr(column_sums_module, "_CPU_KERNEL_FROM_ELEMENTS", 1)


def test_small_sums_stay_with_xla(monkeypatch):
    monkeypatch.setattr(column_sums_module, "_CPU_KERNEL_FROM_ELEMENTS", 1 << 16)
    small, large = jnp.ones((64, 128)), jnp.ones((512, 128))
    assert _ffi_calls(column_sums, small) == 0
    assert _ffi_calls(column_sums, large) == (1 if onednn.available() else 0)
    np.testing.assert_array_equal(jax.jit(column_sums)(small), np.full(128, 64.0))


# rows x cols: one block; many rows; wide enough to split over the pool's threads; a ragged tail
@pytest.mark.parametrize("shape", [(1040, 192), (9, 3), (16384, 64), (700, 3001), (1, 5), (13, 1)])
def test_kernel_matches_float64_sums(shape):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(shape) * 10 + 3).astype(np.float32)
    expected = x.astype(np.float64).sum(0)
    got = np.asarray(jax.jit(column_sums)(jnp.asarray(x)))
    # float32 rounding of sums of |x| (not a float32 chain over all rows)
    np.testing.assert_allclose(got, expected, rtol=0, atol=4e-7 * np.abs(x).sum(0).max() + 1e-6)
    if onednn.available():
        assert _ffi_calls(column_sums, jnp.asarray(x)) == 1


def test_several_trailing_axes_and_other_dtypes_fall_back_to_xla():
    x = jnp.asarray(np.random.default_rng(1).standard_normal((4, 3, 5, 2)), jnp.float32)
    np.testing.assert_allclose(column_sums(x, 2), x.sum((0, 1)), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(jax.jit(lambda x: column_sums(x, 3))(x), x.sum(0), rtol=1e-6, atol=1e-6)
    assert column_sums(x, 0).shape == () and np.isclose(column_sums(x, 0), x.sum(), rtol=1e-5)
    for dtype in (jnp.bfloat16, jnp.float16):
        y = x.astype(dtype)
        assert jax.jit(column_sums)(y).dtype == dtype
        assert _ffi_calls(column_sums, y) == 0
    with pytest.raises(ValueError, match="trailing part"):
        broadcast_rows(jnp.ones(3), (4, 5))
    with pytest.raises(ValueError, match="trailing=5"):
        column_sums(x, 5)


def _bias_model(x, w, b):
    return jnp.sum(jnp.tanh(F.linear(x, w, b)) ** 2)


def _plain_model(x, w, b):
    return jnp.sum(jnp.tanh(x @ w.T + b) ** 2)


@pytest.fixture
def operands():
    rng = np.random.default_rng(2)
    return tuple(jnp.asarray(rng.standard_normal(shape), jnp.float32) for shape in ((3, 7, 6), (5, 6), (5,)))


def test_linear_bias_gradient_is_column_sums_and_equals_plain_broadcasting(operands):
    if onednn.available():
        assert _ffi_calls(jax.grad(_bias_model, 2), *operands) == 1
    for transform in (jax.grad, lambda f, argnums: jax.jit(jax.grad(f, argnums))):
        got = transform(_bias_model, (0, 1, 2))(*operands)
        want = jax.grad(_plain_model, (0, 1, 2))(*operands)
        for g, w in zip(got, want, strict=True):
            np.testing.assert_allclose(g, w, rtol=2e-6, atol=2e-6)


def test_second_derivatives_forward_mode_and_vmap(operands):
    x, w, b = operands
    for fn in (jax.hessian, jax.jacfwd, jax.jacrev):
        got, want = jax.jit(fn(_bias_model, 2))(x, w, b), fn(_plain_model, 2)(x, w, b)
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5)
    tangents = tuple(jnp.ones_like(a) for a in operands)
    _, got = jax.jvp(jax.jit(_bias_model), operands, tangents)
    _, want = jax.jvp(_plain_model, operands, tangents)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    xs, bs = jnp.stack([x, -2 * x]), jnp.stack([b, b + 1])
    got = jax.jit(jax.vmap(jax.grad(_bias_model, (0, 2)), (0, None, 0)))(xs, w, bs)
    want = jax.vmap(jax.grad(_plain_model, (0, 2)), (0, None, 0))(xs, w, bs)
    for g, v in zip(got, want, strict=True):
        np.testing.assert_allclose(g, v, rtol=2e-6, atol=2e-6)
    # the pair transposes into each other: the gradient of column_sums is broadcast_rows
    m = jnp.arange(12.0).reshape(4, 3)
    grad = jax.grad(lambda m: jnp.sum(column_sums(m) ** 2))(m)
    np.testing.assert_allclose(grad, jnp.broadcast_to(2 * m.sum(0), (4, 3)))
    np.testing.assert_allclose(jax.vmap(column_sums)(jnp.stack([m, 2 * m])), jnp.stack([m.sum(0), 2 * m.sum(0)]))


def test_linear_and_layer_norm_gradients_match_torch():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 33, 48)).astype(np.float32)
    w, b = rng.standard_normal((40, 48)).astype(np.float32), rng.standard_normal(40).astype(np.float32)
    g, beta = (1 + rng.standard_normal(40)).astype(np.float32), rng.standard_normal(40).astype(np.float32)
    ct = rng.standard_normal((4, 33, 40)).astype(np.float32)

    def fn(x, w, b, g, beta):
        return F.layer_norm(F.linear(x, w, b), 40, g, beta)

    out, vjp = jax.vjp(jax.jit(fn), *map(jnp.asarray, (x, w, b, g, beta)))
    grads = vjp(jnp.asarray(ct))
    tensors = [torch.tensor(a, requires_grad=True) for a in (x, w, b, g, beta)]
    t_out = TF.layer_norm(TF.linear(*tensors[:3]), (40,), *tensors[3:])
    t_out.backward(torch.tensor(ct))
    assert_close_to_scale(out, t_out)
    for got, t in zip(grads, tensors, strict=True):
        assert_close_to_scale(got, t.grad)
    if onednn.available():  # the linear bias and LayerNorm's weight and bias
        assert jax.jit(lambda *a: jax.vjp(fn, *a)[1](jnp.asarray(ct))).lower(
            *map(jnp.asarray, (x, w, b, g, beta))).as_text().count("funcnet_column_sums") == 3
