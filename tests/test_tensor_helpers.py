"""The top-level tensor helpers (funcnet.cat, stack, tensor, zeros, ones, arange, argmax) against torch.

Values and shapes equal torch's; integer results are int32 where torch gives int64 (JAX's default
without x64), so integer dtypes are compared by kind."""

import jax.numpy as jnp
import numpy as np
import pytest
import torch

import funcnet


def assert_like_torch(ours, theirs):
    theirs = theirs.numpy()
    ours = np.asarray(ours)
    assert ours.shape == theirs.shape
    if theirs.dtype.kind in "iu":
        assert ours.dtype.kind in "iu", ours.dtype
    else:
        assert ours.dtype == theirs.dtype, (ours.dtype, theirs.dtype)
    np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("dim", [0, 1, -1])
def test_cat_and_stack(rng, dim):
    parts = [rng.standard_normal((2, 3)).astype(np.float32) for _ in range(3)]
    tparts = [torch.tensor(p) for p in parts]
    assert_like_torch(funcnet.cat(parts, dim), torch.cat(tparts, dim))
    assert_like_torch(funcnet.cat(tuple(map(jnp.asarray, parts)), dim=dim), torch.cat(tparts, dim))
    assert_like_torch(funcnet.stack(parts, dim), torch.stack(tparts, dim))
    assert_like_torch(funcnet.stack((p for p in parts), dim=dim), torch.stack(tparts, dim))


def test_tensor_zeros_ones():
    for data in ([1.5, 2.0], [[1, 2], [3, 4]], 3.25, [True, False]):
        assert_like_torch(funcnet.tensor(data), torch.tensor(data))
    assert_like_torch(funcnet.tensor([1, 2], dtype=jnp.float32), torch.tensor([1, 2], dtype=torch.float32))
    for size in [(2, 3), ((2, 3),), ([4],), (5,), ((),)]:
        assert_like_torch(funcnet.zeros(*size), torch.zeros(*size))
        assert_like_torch(funcnet.ones(*size), torch.ones(*size))
    assert funcnet.zeros(2, dtype=jnp.bfloat16).dtype == jnp.bfloat16
    assert_like_torch(funcnet.ones(2, 2, dtype=jnp.int32), torch.ones(2, 2, dtype=torch.int32))


@pytest.mark.parametrize("args,kwargs", [((5,), {}), ((2, 9), {}), ((2, 9, 3), {}), ((0.0, 1.0, 0.25), {}),
                                         ((10, 0, -3), {}), ((4,), {"dtype": jnp.float32})])
def test_arange(args, kwargs):
    tkw = {"dtype": torch.float32} if kwargs else {}
    assert_like_torch(funcnet.arange(*args, **kwargs), torch.arange(*args, **tkw))


def test_argmax(rng):
    x = rng.standard_normal((3, 4, 5)).astype(np.float32)
    x[1, 2, :] = 7.0  # ties: the first index, as torch
    t = torch.tensor(x)
    assert_like_torch(funcnet.argmax(x), torch.argmax(t))
    for dim in (0, 1, 2, -1):
        for keepdim in (False, True):
            assert_like_torch(funcnet.argmax(jnp.asarray(x), dim, keepdim), torch.argmax(t, dim, keepdim))
