"""Helpers for torch-parity tests of layers: same inputs and weights on both sides,
compare outputs and the gradients of a random linear functional of the output."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import torch
from conftest import assert_close


def _is_float(a) -> bool:
    return np.issubdtype(np.asarray(a).dtype, np.floating)


def check_function(jfn, tfn, args, rtol=1e-5, atol=1e-6, seed=0, grads=True, jit=True):
    """``jfn(*jax_args)`` vs ``tfn(*torch_args)``: outputs, and gradients w.r.t. every float arg.

    The gradient is that of ``sum(out * cot)`` for a random cotangent ``cot``. Output and
    gradients come from one compiled function (``jit=True``, fast for one-off shapes);
    ``jit=False`` runs eagerly (fast when many calls share shapes but close over
    different Python constants).
    """
    maybe_jit = jax.jit if jit else (lambda f: f)
    args = [np.asarray(a) for a in args]
    float_idx = [i for i, a in enumerate(args) if grads and _is_float(a)]
    t_args = [torch.tensor(a, requires_grad=i in float_idx) for i, a in enumerate(args)]
    out_t = tfn(*t_args)
    cot = np.random.default_rng(seed).standard_normal(out_t.shape).astype(np.float32)
    if float_idx:
        (out_t * torch.tensor(cot)).sum().backward()

    def loss(float_args, other_args):
        full = list(other_args)
        for i, a in zip(float_idx, float_args, strict=True):
            full[i] = a
        out = jfn(*full)
        return jnp.sum(out * cot) if out.shape == cot.shape else jnp.sum(out), out

    jax_args = [jnp.asarray(a) for a in args]
    floats = [jax_args[i] for i in float_idx]
    (_, out_j), g_j = maybe_jit(jax.value_and_grad(loss, has_aux=True))(floats, jax_args)
    assert tuple(out_j.shape) == tuple(out_t.shape), (out_j.shape, out_t.shape)
    assert_close(out_j, out_t, rtol=rtol, atol=atol)
    for gj, i in zip(g_j, float_idx, strict=True):
        assert_close(gj, t_args[i].grad, rtol=rtol, atol=max(atol, 1e-5))
    return out_j


def randomize(tree, seed=0, scale=0.5):
    """Perturb every float leaf (e.g. LayerNorm's ones/zeros) so the test can catch layout errors."""
    rng = np.random.default_rng(seed)
    return jax.tree.map(
        lambda a: a + scale * jnp.asarray(rng.standard_normal(a.shape), a.dtype)
        if jnp.issubdtype(a.dtype, jnp.floating)
        else a,
        tree,
    )


def load_into_torch(tmodule, fmodule, params, buffers=None):
    """Load funcnet arrays into a torch module (strict)."""
    sd = fmodule.state_dict(params, buffers or {})
    tmodule.load_state_dict({k: torch.tensor(np.asarray(v)) for k, v in sd.items()}, strict=True)
    return tmodule


def check_module(fmodule, tmodule, x, seed=0, rtol=1e-5, atol=1e-6, randomize_params=True):
    """Eval-mode forward and gradients (input and parameters) of ``fmodule`` vs ``tmodule``."""
    params, buffers = fmodule.init(jax.random.key(seed))
    if randomize_params:
        params = randomize(params, seed)
    load_into_torch(tmodule, fmodule, params, buffers)
    tmodule.eval()
    x = np.asarray(x)
    tx = torch.tensor(x, requires_grad=_is_float(x))
    out_t = tmodule(tx.clone() if tx.requires_grad else tx)  # clone: torch inplace=True on a leaf
    cot = np.random.default_rng(seed + 1).standard_normal(out_t.shape).astype(np.float32)
    (out_t * torch.tensor(cot)).sum().backward()

    def loss(p, xx):
        out = fmodule.apply(p, xx, buffers=buffers)
        return (jnp.sum(out * cot) if out.shape == cot.shape else jnp.sum(out)), out

    argnums = (0, 1) if _is_float(x) else 0
    (_, out_j), grads = jax.jit(jax.value_and_grad(loss, argnums=argnums, has_aux=True))(
        params, jnp.asarray(x)
    )  # output and gradients from one compiled function
    gp, gx = grads if _is_float(x) else (grads, None)
    assert tuple(out_j.shape) == tuple(out_t.shape), (out_j.shape, out_t.shape)
    assert_close(out_j, out_t, rtol=rtol, atol=atol)
    if gx is not None:
        assert_close(gx, tx.grad, rtol=rtol, atol=max(atol, 1e-5))
    named = dict(tmodule.named_parameters())
    flat = fmodule.state_dict(gp, {})
    assert set(flat) == set(named), (set(flat), set(named))
    for k, g in flat.items():
        assert_close(g, named[k].grad, rtol=rtol, atol=max(atol, 1e-5))
    return params, buffers
