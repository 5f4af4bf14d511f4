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

    ``jit=True`` compiles once per call (fast for one-off shapes); ``jit=False`` runs eagerly
    (fast when many calls share shapes but close over different Python constants).
    """
    maybe_jit = jax.jit if jit else (lambda f: f)
    args = [np.asarray(a) for a in args]
    out_j = maybe_jit(jfn)(*[jnp.asarray(a) for a in args])  # one compile, not one per eager op
    t_args = [torch.tensor(a, requires_grad=grads and _is_float(a)) for a in args]
    out_t = tfn(*t_args)
    assert tuple(out_j.shape) == tuple(out_t.shape), (out_j.shape, out_t.shape)
    assert_close(out_j, out_t, rtol=rtol, atol=atol)
    if not grads:
        return out_j
    float_idx = [i for i, a in enumerate(args) if _is_float(a)]
    cot = np.random.default_rng(seed).standard_normal(out_t.shape).astype(np.float32)

    def loss(*float_args):
        full = [jnp.asarray(a) for a in args]
        for i, a in zip(float_idx, float_args, strict=True):
            full[i] = a
        return jnp.sum(jfn(*full) * cot)

    grad_fn = maybe_jit(jax.grad(loss, argnums=tuple(range(len(float_idx)))))
    g_j = grad_fn(*[jnp.asarray(args[i]) for i in float_idx])
    (out_t * torch.tensor(cot)).sum().backward()
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
    out_j = jax.jit(lambda p, xx: fmodule.apply(p, xx, buffers=buffers))(params, jnp.asarray(x))
    tx = torch.tensor(x, requires_grad=_is_float(x))
    out_t = tmodule(tx.clone() if tx.requires_grad else tx)  # clone: torch inplace=True on a leaf
    assert tuple(out_j.shape) == tuple(out_t.shape), (out_j.shape, out_t.shape)
    assert_close(out_j, out_t, rtol=rtol, atol=atol)
    cot = np.random.default_rng(seed + 1).standard_normal(out_t.shape).astype(np.float32)

    def loss(p, xx):
        return jnp.sum(fmodule.apply(p, xx, buffers=buffers) * cot)

    if _is_float(x):
        gp, gx = jax.jit(jax.grad(loss, argnums=(0, 1)))(params, jnp.asarray(x))
    else:
        gp, gx = jax.jit(jax.grad(loss))(params, jnp.asarray(x)), None
    (out_t * torch.tensor(cot)).sum().backward()
    if gx is not None:
        assert_close(gx, tx.grad, rtol=rtol, atol=max(atol, 1e-5))
    named = dict(tmodule.named_parameters())
    flat = fmodule.state_dict(gp, {})
    assert set(flat) == set(named), (set(flat), set(named))
    for k, g in flat.items():
        assert_close(g, named[k].grad, rtol=rtol, atol=max(atol, 1e-5))
    return params, buffers
