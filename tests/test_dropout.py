"""Dropout2d / F.dropout2d: torch 2.13's reading of each input rank, and its warnings word for word.

torch's masks come from its own generator, so the tests compare the *structure* of the masks
(which slices share one draw), the kept values' scale, and the warnings, against torch's."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import funcnet.nn as nn
import funcnet.nn.functional as F

# torch's own rank warnings, from the reference calls (ours are checked explicitly)
pytestmark = pytest.mark.filterwarnings("ignore:dropout2d. Received:UserWarning")


def torch_warnings(fn, *args, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fn(*args, **kwargs)
    return [str(w.message) for w in caught if issubclass(w.category, UserWarning)]


def our_warnings(fn, *args, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = fn(*args, **kwargs)
    return out, [str(w.message) for w in caught if issubclass(w.category, UserWarning)]


def assert_channel_masks(out, p):
    """Each ``out[n, c]`` slice is all 0 or all 1/(1-p) (one draw per sample and channel); the
    samples do not share one channel mask, nor is a whole sample kept or dropped at once."""
    out = np.asarray(out)
    slices = out.reshape(out.shape[0] * out.shape[1], -1)
    assert np.all((slices == slices[:, :1]).all(axis=1)), "a (sample, channel) slice mixes kept and dropped"
    np.testing.assert_allclose(np.unique(slices), [0.0, 1 / (1 - p)], rtol=1e-6)
    per_sample = (slices[:, 0] != 0).reshape(out.shape[:2])
    assert (per_sample != per_sample[:1]).any(), "every sample got the same channel mask"
    assert (per_sample != per_sample[:, :1]).any(), "whole samples dropped, not channels"
    assert abs(1 - per_sample.mean() - p) < 0.1, per_sample.mean()


@pytest.mark.parametrize("shape", [(16, 12, 5), (16, 12, 3, 4)])
def test_dropout2d_drops_whole_channels_per_sample_like_torch(shape):
    """3-D is (N, C, L) in torch 2.13 (the old funcnet read it as (C, H, W) and dropped whole
    first-dimension slices); 4-D is (N, C, H, W)."""
    p, x = 0.4, np.ones(shape, np.float32)
    torch.manual_seed(0)  # torch's masks below go through the same statistical checks: no flaky draws
    expected_warnings = torch_warnings(TF.dropout2d, torch.tensor(x), p)
    assert len(expected_warnings) == (1 if len(shape) == 3 else 0)
    out, got = our_warnings(F.dropout2d, jnp.asarray(x), p, key=jax.random.key(0))
    assert got == expected_warnings
    assert_channel_masks(out, p)
    assert_channel_masks(TF.dropout2d(torch.tensor(x), p).numpy(), p)  # the same structure on torch's side
    # the module: the same draws for its key, the same warning, in train and eval mode
    m = nn.Dropout2d(p)
    (out_m, _), got_m = our_warnings(m.apply, {}, jnp.asarray(x), key=jax.random.key(0), train=True)
    assert got_m == expected_warnings
    assert_channel_masks(out_m, p)
    eval_expected = torch_warnings(torch.nn.Dropout2d(p).eval(), torch.tensor(x))
    out_e, got_e = our_warnings(m.apply, {}, jnp.asarray(x))
    assert got_e == eval_expected and np.array_equal(out_e, x)


def test_dropout2d_other_ranks_warn_like_torch():
    x = np.ones((6, 8), np.float32)
    expected = torch_warnings(TF.dropout2d, torch.tensor(x), 0.5)
    out, got = our_warnings(F.dropout2d, jnp.asarray(x), 0.5, key=jax.random.key(1))
    assert got == expected and len(expected) == 1
    assert set(np.unique(np.asarray(out))) == {0.0, 2.0}  # (N, C): one draw per element, as torch
    x5 = np.ones((4, 6, 2, 2, 2), np.float32)
    expected = torch_warnings(TF.dropout2d, torch.tensor(x5), 0.5)
    out, got = our_warnings(F.dropout2d, jnp.asarray(x5), 0.5, key=jax.random.key(2))
    assert got == expected
    assert_channel_masks(out, 0.5)
    with pytest.raises(RuntimeError, match="at least 2 dimensions"):
        TF.dropout2d(torch.ones(4), 0.5)
    with pytest.raises(ValueError, match="at least 2 dimensions"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        F.dropout2d(jnp.ones(4), 0.5, key=jax.random.key(0))
    with pytest.raises(ValueError, match="Dropout2d.*\\[N, C, H, W\\] or \\[N, C, L\\], got \\(2, 3\\)"):
        nn.Dropout2d().apply({}, jnp.ones((2, 3)), key=jax.random.key(0), train=True)
