"""Does a funcnet port compute what the torch module computes? Outputs and gradients, side by side.

``assert_module_matches_torch`` loads the torch module's ``state_dict`` into the funcnet module,
runs both on the same inputs, and compares the outputs, the gradients of one random scalar of the
output (``sum(output * cotangent)``, a fixed random cotangent, so every output element matters)
with respect to every parameter and every float input, and in training mode the updated buffers
(BatchNorm's running statistics). ``assert_function_matches_torch`` does the same for two plain
functions. torch is imported only when these are called.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from funcnet.testing._compare import _is_torch_tensor, assert_close

__all__ = ["assert_function_matches_torch", "assert_module_matches_torch"]


def _float_dtype(x: Any) -> bool:
    return np.issubdtype(np.asarray(x).dtype, np.floating) if not _is_torch_tensor(x) else x.is_floating_point()


def _to_torch(x: Any, requires_grad: bool) -> Any:
    from funcnet.interop.torch import numpy_to_tensor

    t = x.detach().clone() if _is_torch_tensor(x) else numpy_to_tensor(np.asarray(x))
    return t.requires_grad_(requires_grad)


def _to_jax(x: Any) -> jax.Array:
    if _is_torch_tensor(x):
        from funcnet.interop.torch import tensor_to_numpy

        x = tensor_to_numpy(x)
    return jnp.asarray(x)


def _cotangents(out_t: Any, seed: int) -> list:
    """One fixed random array per floating output leaf (torch side), in flattening order."""
    import torch

    leaves = [t for t in jax.tree.leaves(out_t) if _is_torch_tensor(t) and t.is_floating_point()]
    rng = np.random.default_rng(seed)
    return [torch.tensor(rng.standard_normal(tuple(t.shape)), dtype=t.dtype) for t in leaves]


def _torch_scalar(out_t: Any, cots: list) -> Any:
    leaves = [t for t in jax.tree.leaves(out_t) if _is_torch_tensor(t) and t.is_floating_point()]
    return sum((t * c).sum() for t, c in zip(leaves, cots, strict=True))


def _jax_scalar(out: Any, cots: list) -> jax.Array:
    leaves = [a for a in jax.tree.leaves(out) if jnp.issubdtype(jnp.asarray(a).dtype, jnp.floating)]
    if len(leaves) != len(cots):
        raise AssertionError(f"the outputs have {len(leaves)} floating leaves in funcnet, {len(cots)} in torch")
    return sum(jnp.sum(a * jnp.asarray(c.numpy(), a.dtype)) for a, c in zip(leaves, cots))


def _torch_outputs_as_tree(out_t: Any) -> Any:
    """torch's output with tensors detached (its tuples and lists stay, for the pytree comparison)."""
    return jax.tree.map(lambda t: t.detach() if _is_torch_tensor(t) else t, out_t)


def assert_function_matches_torch(
    fn: Callable,
    torch_fn: Callable,
    *inputs: Any,
    grads: bool = True,
    rtol: float = 1e-5,
    atol: float = 1e-6,
    grad_rtol: float | None = None,
    grad_atol: float | None = None,
    seed: int = 0,
    jit: bool = True,
) -> Any:
    """``fn(*inputs)`` (JAX) against ``torch_fn(*inputs)`` (torch): outputs and input gradients.

    Inputs may be numpy/JAX arrays or torch tensors; each side gets its own copy. With ``grads``, the
    gradient of ``sum(output * cotangent)`` with respect to every floating input is compared too.
    ``jit=False`` runs ``fn`` eagerly (cheaper when many calls share shapes but close over different
    Python constants). Returns funcnet's output.
    """
    grad_rtol = rtol if grad_rtol is None else grad_rtol
    grad_atol = atol if grad_atol is None else grad_atol
    float_idx = [i for i, x in enumerate(inputs) if grads and _float_dtype(x)]
    t_inputs = [_to_torch(x, i in float_idx) for i, x in enumerate(inputs)]
    out_t = torch_fn(*t_inputs)
    cots = _cotangents(out_t, seed)
    if float_idx:
        _torch_scalar(out_t, cots).backward()

    def loss(floats: list, others: list) -> tuple:
        full = list(others)
        for i, a in zip(float_idx, floats, strict=True):
            full[i] = a
        out = fn(*full)
        return _jax_scalar(out, cots), out

    j_inputs = [_to_jax(x) for x in inputs]
    run = jax.value_and_grad(loss, has_aux=True)
    (_, out), g = (jax.jit(run) if jit else run)([j_inputs[i] for i in float_idx], j_inputs)
    assert_close(out, _torch_outputs_as_tree(out_t), rtol=rtol, atol=atol, check_dtype=False,
                 msg=lambda m: f"outputs differ from torch's:\n{m}")
    for gj, i in zip(g, float_idx, strict=True):
        assert_close(gj, t_inputs[i].grad, rtol=grad_rtol, atol=grad_atol, check_dtype=False,
                     msg=lambda m, i=i: f"gradient with respect to input {i} differs from torch's:\n{m}")
    return out


def assert_module_matches_torch(
    module: Any,
    torch_module: Any,
    *inputs: Any,
    train: bool = False,
    grads: bool = True,
    rtol: float = 1e-5,
    atol: float = 1e-6,
    grad_rtol: float | None = None,
    grad_atol: float | None = None,
    key: jax.Array | None = None,
    seed: int = 0,
) -> Any:
    """Assert that funcnet ``module`` computes what ``torch_module`` computes, with torch's weights.

    1. ``torch_module.state_dict()`` is loaded into ``module`` (``funcnet.interop.from_torch``,
       strict: every key and shape must match);
    2. both run on ``inputs`` (numpy/JAX arrays or torch tensors) in eval mode, or training mode
       with ``train=True`` (then the updated buffers, e.g. BatchNorm's running statistics, are
       compared too; dropout draws differ between frameworks, so set p=0 or use eval mode);
    3. outputs are compared (pytrees: LSTM's ``(out, (h, c))`` too);
    4. with ``grads``, the gradient of ``sum(output * cotangent)`` (a fixed random cotangent) with
       respect to every parameter, in ``state_dict`` order, and every float input is compared;
       the first parameter that disagrees is named.

    Tolerances: ``rtol``/``atol`` for outputs, ``grad_rtol``/``grad_atol`` (default: ``rtol``,
    ``max(atol, 1e-5)``) for gradients; float32 kernels of two libraries differ by ~1e-6 relative.
    The torch module's mode is set (``train(train)``); its parameters' ``.grad`` are overwritten.
    Returns ``(output, variables)``, funcnet's output and the loaded ``Variables``.
    """
    from funcnet.interop.torch import from_torch

    grad_rtol = rtol if grad_rtol is None else grad_rtol
    grad_atol = max(atol, 1e-5) if grad_atol is None else grad_atol
    variables = from_torch(module, torch_module.state_dict())
    params, buffers = variables
    torch_module.train(train)
    torch_module.zero_grad(set_to_none=True)
    float_idx = [i for i, x in enumerate(inputs) if grads and _float_dtype(x)]
    # clone: a torch layer with inplace=True must not write into the leaf we read .grad from
    t_leaves = [_to_torch(x, i in float_idx) for i, x in enumerate(inputs)]
    out_t = torch_module(*[t.clone() if t.requires_grad else t for t in t_leaves])
    cots = _cotangents(out_t, seed)
    if grads:
        _torch_scalar(out_t, cots).backward()

    def loss(p: Any, floats: list, others: list) -> tuple:
        full = list(others)
        for i, a in zip(float_idx, floats, strict=True):
            full[i] = a
        result = module.apply(p, *full, buffers=buffers, train=train, key=key)
        out = result[0] if train else result
        return _jax_scalar(out, cots), result

    j_inputs = [_to_jax(x) for x in inputs]
    (_, result), (g_params, g_inputs) = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))(
        params, [j_inputs[i] for i in float_idx], j_inputs)
    out, new_buffers = result if train else (result, None)
    assert_close(out, _torch_outputs_as_tree(out_t), rtol=rtol, atol=atol, check_dtype=False,
                 msg=lambda m: f"{type(module).__name__}: output differs from torch's:\n{m}")
    if train and new_buffers:
        torch_buffers = dict(torch_module.named_buffers())
        for name, value in module.state_dict({}, new_buffers).items():
            assert_close(value, torch_buffers[name].detach(), rtol=rtol, atol=atol, check_dtype=False,
                         msg=lambda m, name=name: f"{type(module).__name__}: buffer '{name}' after the "
                         f"training-mode call differs from torch's:\n{m}")
    if not grads:
        return out, variables
    named = dict(torch_module.named_parameters())
    flat = module.state_dict(g_params, {})
    if set(flat) != set(named):
        raise AssertionError(f"{type(module).__name__}: parameters differ from torch's: only in funcnet "
                             f"{sorted(set(flat) - set(named))}, only in torch {sorted(set(named) - set(flat))}")
    for name, g in flat.items():
        expected = named[name].grad
        if expected is None:  # torch leaves unused parameters without .grad: the gradient is zero
            expected = np.zeros(named[name].shape, np.asarray(g).dtype)
        assert_close(g, expected, rtol=grad_rtol, atol=grad_atol, check_dtype=False,
                     msg=lambda m, name=name: f"{type(module).__name__}: gradient of parameter '{name}' "
                     f"differs from torch's:\n{m}")
    for gj, i in zip(g_inputs, float_idx, strict=True):
        assert_close(gj, t_leaves[i].grad, rtol=grad_rtol, atol=grad_atol, check_dtype=False,
                     msg=lambda m, i=i: f"{type(module).__name__}: gradient with respect to input {i} "
                     f"differs from torch's:\n{m}")
    return out, variables
