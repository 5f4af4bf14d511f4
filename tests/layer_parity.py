"""The suite's names for torch-parity checks of layers, over the public ``funcnet.testing`` ones.

Same inputs and weights on both sides; outputs and the gradients of a random linear functional of
the output are compared by ``funcnet.testing.assert_function_matches_torch`` /
``assert_module_matches_torch`` (one implementation, offered to users too). What stays here is the
suite's convention: funcnet initialises the weights, perturbs them (``randomize``) and torch gets
a copy, and gradients are compared at ``max(atol, 1e-5)``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import torch

from funcnet.testing import assert_function_matches_torch, assert_module_matches_torch


def check_function(jfn, tfn, args, rtol=1e-5, atol=1e-6, seed=0, grads=True, jit=True):
    """``jfn(*jax_args)`` vs ``tfn(*torch_args)``: outputs, and gradients w.r.t. every float arg.

    ``jit=True`` compiles output and gradients as one function (fast for one-off shapes);
    ``jit=False`` runs eagerly (fast when many calls share shapes but close over different
    Python constants).
    """
    return assert_function_matches_torch(jfn, tfn, *[np.asarray(a) for a in args], grads=grads, rtol=rtol,
                                         atol=atol, grad_atol=max(atol, 1e-5), seed=seed, jit=jit)


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
    """Eval-mode forward and gradients (input and parameters) of ``fmodule`` vs ``tmodule``, with
    funcnet's (perturbed) initial weights copied into torch."""
    params, buffers = fmodule.init(jax.random.key(seed))
    if randomize_params:
        params = randomize(params, seed)
    load_into_torch(tmodule, fmodule, params, buffers)
    assert_module_matches_torch(fmodule, tmodule, np.asarray(x), rtol=rtol, atol=atol, seed=seed + 1)
    return params, buffers
