"""Embedding and F.embedding / F.one_hot against torch."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn as tnn
import torch.nn.functional as TF
from conftest import assert_close
from layer_parity import check_module

import funcnet.nn as nn
import funcnet.nn.functional as F


@pytest.mark.parametrize("padding_idx", [None, 0, 3, -1])
@pytest.mark.parametrize("idx_shape", [(5,), (3, 4), (2, 3, 2)])
def test_embedding_matches_torch_forward_and_gradients(padding_idx, idx_shape, rng):
    ours = nn.Embedding(7, 4, padding_idx=padding_idx)
    theirs = tnn.Embedding(7, 4, padding_idx=padding_idx)
    assert repr(ours) == repr(theirs)
    idx = rng.integers(0, 7, idx_shape)
    idx.flat[0] = ours.padding_idx if padding_idx is not None else 2  # make sure the padding row is used
    # randomize: the padding row becomes non-zero too, and must still get zero gradient.
    params, _ = check_module(ours, theirs, idx.astype(np.int64))
    assert params["weight"].shape == (7, 4)


def test_padding_row_gets_zero_gradient_even_when_non_zero():
    m = nn.Embedding(5, 3, padding_idx=1)
    params = {"weight": jnp.arange(1.0, 16.0).reshape(5, 3)}
    idx = jnp.array([[1, 2, 1], [0, 1, 4]])
    out = m.apply(params, idx)
    np.testing.assert_array_equal(out[0, 0], [4.0, 5.0, 6.0])  # the row is read as it is
    grad = np.asarray(jax.grad(lambda p: jnp.sum(m.apply(p, idx) ** 2))(params)["weight"])
    np.testing.assert_array_equal(grad[1], np.zeros(3))
    np.testing.assert_array_equal(grad[3], np.zeros(3))  # unused row
    assert np.all(grad[[0, 2, 4]] != 0)


def test_embedding_init_is_standard_normal_with_zero_padding_row():
    m = nn.Embedding(20000, 16, padding_idx=5)
    w = np.asarray(m.init(jax.random.key(0)).params["weight"])
    np.testing.assert_array_equal(w[5], np.zeros(16))
    rest = np.delete(w, 5, axis=0)
    assert abs(rest.mean()) < 0.01  # N(0,1) over 320k samples: std of the mean ≈ 0.0018
    assert abs(rest.std() - 1.0) < 0.01
    assert 0.99 < np.mean(np.abs(rest) < 1.96) / 0.95 < 1.01  # shape: 95% within ±1.96σ
    bf16 = nn.Embedding(3, 2, dtype=jnp.bfloat16).init(jax.random.key(0)).params["weight"]
    assert bf16.dtype == jnp.bfloat16
    assert list(m.state_dict(m.init(jax.random.key(0)))) == ["weight"]


def test_embedding_errors_name_the_module():
    net = nn.Sequential(nn.Embedding(5, 3))
    v = net.init(jax.random.key(0))
    with pytest.raises(TypeError, match=r"Sequential\.0 \(Embedding\).*integer indices.*float32"):
        net.apply(v, jnp.ones((2, 3)))
    with pytest.raises(IndexError, match="out of range"):
        net.apply(v, jnp.array([0, 5]))
    with pytest.raises(IndexError, match="out of range"):
        net.apply(v, jnp.array([-1, 2]))
    with pytest.raises(ValueError, match="Padding_idx must be within num_embeddings"):
        nn.Embedding(5, 3, padding_idx=5)
    with pytest.raises(NotImplementedError, match="max_norm"):
        nn.Embedding(5, 3, max_norm=1.0)


def test_embedding_under_jit_fills_out_of_range_with_nan():
    weight = jnp.ones((4, 2))
    out = jax.jit(F.embedding)(jnp.array([0, 7]), weight)
    np.testing.assert_array_equal(out[0], [1.0, 1.0])
    assert np.all(np.isnan(np.asarray(out[1])))


def test_functional_embedding_matches_torch(rng):
    w = rng.standard_normal((6, 3)).astype(np.float32)
    idx = rng.integers(0, 6, (4, 2))
    tw = torch.tensor(w, requires_grad=True)
    expected = TF.embedding(torch.tensor(idx), tw, padding_idx=2)
    cot = rng.standard_normal(expected.shape).astype(np.float32)
    (expected * torch.tensor(cot)).sum().backward()
    assert_close(F.embedding(jnp.asarray(idx), jnp.asarray(w), padding_idx=2), expected)
    g = jax.grad(lambda ww: jnp.sum(F.embedding(jnp.asarray(idx), ww, padding_idx=2) * cot))(jnp.asarray(w))
    assert_close(g, tw.grad)


@pytest.mark.parametrize("num_classes", [-1, 5, 9])
@pytest.mark.parametrize("shape", [(6,), (2, 3)])
def test_one_hot_matches_torch(num_classes, shape, rng):
    x = rng.integers(0, 5, shape)
    x.flat[0] = 4
    ours = F.one_hot(jnp.asarray(x), num_classes)
    theirs = TF.one_hot(torch.tensor(x), num_classes)
    assert ours.dtype == jnp.int32  # torch: int64 (JAX's default integer is int32)
    np.testing.assert_array_equal(np.asarray(ours), theirs.numpy())


def test_one_hot_errors():
    with pytest.raises(ValueError, match="non-negative"):
        F.one_hot(jnp.array([0, -1]), 3)
    with pytest.raises(ValueError, match="smaller than num_classes"):
        F.one_hot(jnp.array([0, 3]), 3)
    with pytest.raises(ValueError, match="under jit"):
        jax.jit(lambda t: F.one_hot(t))(jnp.array([0, 1]))
    with pytest.raises(TypeError, match="integer"):
        F.one_hot(jnp.array([0.0, 1.0]), 3)
    jitted = jax.jit(lambda t: F.one_hot(t, 3))(jnp.array([2, 0]))
    np.testing.assert_array_equal(jitted, [[0, 0, 1], [1, 0, 0]])
