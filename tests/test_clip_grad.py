"""clip_grad_norm_ / clip_grad_value_ against torch.nn.utils on random gradient trees."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
from conftest import assert_close

import funcnet.optim as O
from funcnet.nn.utils import clip_grad_norm_, clip_grad_value_, get_total_norm


def _grads(rng, scale):
    return {
        "fc1": {
            "weight": rng.normal(size=(4, 3)).astype(np.float32) * scale,
            "bias": rng.normal(size=(4,)).astype(np.float32) * scale,
        },
        "out": {"weight": rng.normal(size=(2, 4)).astype(np.float32) * scale},
    }


def _torch_clip(grads, fn, *args):
    leaves = jax.tree_util.tree_leaves(grads)
    params = [torch.zeros(g.shape, requires_grad=True) for g in leaves]
    for p, g in zip(params, leaves, strict=True):
        p.grad = torch.tensor(np.asarray(g))
    ret = fn(params, *args)
    return [p.grad for p in params], ret


@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.5, float("inf")])
@pytest.mark.parametrize("max_norm", [0.05, 1.0, 1e3])
@pytest.mark.parametrize("scale", [1e-3, 1.0])
def test_clip_grad_norm_matches_torch(rng, norm_type, max_norm, scale):
    grads = _grads(rng, scale)
    clipped, total = jax.jit(clip_grad_norm_, static_argnums=(1, 2))(grads, max_norm, norm_type)
    t_grads, t_total = _torch_clip(grads, torch.nn.utils.clip_grad_norm_, max_norm, norm_type)
    assert_close(total, t_total)
    for ours, theirs in zip(jax.tree_util.tree_leaves(clipped), t_grads, strict=True):
        assert_close(ours, theirs, rtol=1e-6, atol=1e-9)


def test_clip_grad_norm_uses_torch_epsilon():
    # norm == max_norm: torch still scales by max_norm/(norm+1e-6); optax.clip_by_global_norm does not.
    g = {"w": jnp.array([3e-3, 4e-3])}
    clipped, total = clip_grad_norm_(g, 5e-3)
    t_grads, _ = _torch_clip(g, torch.nn.utils.clip_grad_norm_, 5e-3)
    assert_close(clipped["w"], t_grads[0], rtol=1e-7, atol=0)
    assert not np.allclose(np.asarray(clipped["w"]), np.asarray(g["w"]), rtol=1e-5, atol=0)


def test_clip_grad_norm_error_if_nonfinite():
    with pytest.raises(RuntimeError, match="non-finite"):
        clip_grad_norm_({"w": jnp.array([jnp.inf, 1.0])}, 1.0, error_if_nonfinite=True)
    with pytest.raises(ValueError, match="norm_type"):
        get_total_norm({"w": jnp.ones(2)}, 0.0)


def test_clip_grad_value_matches_torch(rng):
    grads = _grads(rng, 1.0)
    clipped = clip_grad_value_(grads, 0.5)
    t_grads, _ = _torch_clip(grads, torch.nn.utils.clip_grad_value_, 0.5)
    for ours, theirs in zip(jax.tree_util.tree_leaves(clipped), t_grads, strict=True):
        assert_close(ours, theirs, rtol=0, atol=0)


def test_clip_transforms_in_a_chain(rng):
    grads = _grads(rng, 1.0)
    params = jax.tree_util.tree_map(jnp.zeros_like, grads)
    chain = optax.chain(O.clip_grad_norm(0.3, norm_type=1.0), O.clip_grad_value(0.01))
    upd, _ = chain.update(grads, chain.init(params), params)
    expected = clip_grad_value_(clip_grad_norm_(grads, 0.3, 1.0)[0], 0.01)
    for a, b in zip(jax.tree_util.tree_leaves(upd), jax.tree_util.tree_leaves(expected), strict=True):
        np.testing.assert_array_equal(a, b)
