"""Tests that kill mutants which survived the scripted mutation pass (tests/mutation/, see
tests/README.md): behaviours no other test pinned."""

import jax
import jax.numpy as jnp
import numpy as np
import torch

import funcnet.nn as nn
from funcnet.utils.data import DataLoader, IterableDataset, TensorDataset


class _Stream(IterableDataset):
    def __iter__(self):
        return iter(np.arange(10, dtype=np.float32))

    def __len__(self):
        return 10


class _TorchStream(torch.utils.data.IterableDataset):
    def __iter__(self):
        return iter(range(10))

    def __len__(self):
        return 10


def test_len_of_a_sized_stream_follows_drop_last_like_torch():
    """dl-len-drop-last: ``n // bs`` with drop_last, ``ceil(n / bs)`` without."""
    for drop_last in (False, True):
        expected = len(torch.utils.data.DataLoader(_TorchStream(), batch_size=3, drop_last=drop_last))
        loader = DataLoader(_Stream(), batch_size=3, drop_last=drop_last)
        assert len(loader) == expected == len(list(loader))


def test_epoch_indices_drop_the_partial_batch_with_drop_last():
    """dl-plan-drop-last: the compiled-epoch index plan has as many batches as iteration."""
    data = TensorDataset(np.arange(10, dtype=np.float32))
    loader = DataLoader(data, batch_size=3, shuffle=True, seed=1, drop_last=True)
    idx = np.asarray(loader.epoch_indices(0))
    assert idx.shape == (3, 3)
    np.testing.assert_array_equal(np.concatenate([np.asarray(b[0]) for b in loader]), idx.ravel())


def test_layernorm_module_passes_its_eps(rng):
    """norm-ln-eps: nn.LayerNorm(eps=1e-3) on inputs of variance ~1e-6, where eps dominates."""
    x = (1e-3 * rng.standard_normal((3, 5))).astype(np.float32)
    m = nn.LayerNorm(5, eps=1e-3)
    out = m.apply(m.init(jax.random.key(0)), jnp.asarray(x))
    expected = torch.nn.LayerNorm(5, eps=1e-3)(torch.tensor(x)).detach().numpy()
    np.testing.assert_allclose(np.asarray(out), expected, rtol=1e-5, atol=1e-6)


def test_momentum_schedule_with_nesterov_matches_optax_trace(rng):
    """opt-nesterov: the scheduled-momentum path (OneCycleLR's cycling momentum) with nesterov.
    With a constant schedule it must equal optax.trace(μ, nesterov=True), which is torch's rule
    (b = g first, then μ·b + g; direction g + μ·b)."""
    import optax

    from funcnet.optim.transforms import scale_by_momentum

    ours, reference = scale_by_momentum(lambda count: 0.9, nesterov=True), optax.trace(decay=0.9, nesterov=True)
    params = {"w": jnp.zeros(4)}
    s_ours, s_ref = ours.init(params), reference.init(params)
    for _ in range(3):
        g = {"w": jnp.asarray(rng.standard_normal(4), jnp.float32)}
        u_ours, s_ours = ours.update(g, s_ours, params)
        u_ref, s_ref = reference.update(g, s_ref, params)
        np.testing.assert_allclose(u_ours["w"], u_ref["w"], rtol=1e-6)


def test_maximize_negates_the_gradient():
    """opt-maximize: funcnet.optim.maximize() (public; the built-in optimizers inline the same
    optax.scale(-1)) is torch's maximize=True: ascend, i.e. negate the gradient."""
    from funcnet.optim import maximize

    g = {"w": jnp.asarray([1.5, -2.0])}
    updates, _ = maximize().update(g, maximize().init(g))
    np.testing.assert_array_equal(updates["w"], [-1.5, 2.0])


def test_adamax_eps_keeps_zero_gradients_finite_like_torch():
    """opt-adamax-eps: u = max(β2·u, |g| + eps); a zero gradient gives 0/eps = 0, not 0/0."""
    from funcnet.optim.transforms import scale_by_torch_adamax

    tx = scale_by_torch_adamax()
    g = {"w": jnp.asarray([0.0, 0.5], jnp.float32)}
    updates, _ = tx.update(g, tx.init(g))
    p = torch.zeros(2, requires_grad=True)
    opt = torch.optim.Adamax([p], lr=1.0)
    p.grad = torch.tensor([0.0, 0.5])
    opt.step()
    np.testing.assert_allclose(-np.asarray(updates["w"]), p.detach().numpy(), rtol=1e-6)


def test_set_epoch_rejects_a_negative_epoch():
    """dl-set-epoch-check."""
    import pytest

    loader = DataLoader(TensorDataset(np.arange(4, dtype=np.float32)), batch_size=2)
    with pytest.raises(ValueError, match="non-negative integer"):
        loader.set_epoch(-1)
