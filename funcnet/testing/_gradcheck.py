"""``gradcheck`` / ``gradgradcheck``: ``torch.autograd.gradcheck``'s test for JAX functions.

The whole Jacobian of every floating output leaf with respect to every floating input leaf is
computed twice in float64 — by central finite differences (``eps``), all perturbations in one
``vmap``, and by JAX's autodiff (``jax.jacrev``, i.e. the VJP rules; ``jax.jacfwd`` too with
``check_forward_ad``) — and compared with torch's criterion
``|analytical - numerical| <= atol + rtol * |numerical|``. The failure names the input leaf and
element, the output leaf and element, and both values. ``fast_mode=True`` checks one random
direction instead (``jax.test_util.check_grads``), as torch's ``fast_mode`` does.

float64 is switched on for the duration of the check only (``jax.enable_x64``); float inputs are
cast to float64, as torch's gradcheck expects double inputs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["GradcheckError", "gradcheck", "gradgradcheck"]


class GradcheckError(AssertionError):
    """An analytical gradient disagrees with finite differences (torch: ``GradcheckError``)."""


def _is_float(x: Any) -> bool:
    return hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jnp.floating)


def _is_complex(x: Any) -> bool:
    return hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jnp.complexfloating)


def _to_float64(tree: Any) -> Any:
    def cast(x: Any) -> Any:
        if _is_complex(x):
            raise NotImplementedError("gradcheck: complex inputs are not supported")
        if isinstance(x, float) or _is_float(x):  # through numpy: no per-shape convert kernel to compile
            return jnp.asarray(np.asarray(x, np.float64))
        return x

    return jax.tree.map(cast, tree)


def _normalize_argnums(argnums: int | Sequence[int] | None, nargs: int) -> tuple[int, ...]:
    if argnums is None:
        return tuple(range(nargs))
    argnums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    for i in argnums:
        if not -nargs <= i < nargs:
            raise ValueError(f"gradcheck: argnums {argnums} out of range for {nargs} inputs")
    return tuple(i % nargs for i in argnums)


def _float_leaves(tree: Any) -> list[tuple[Any, Any]]:
    return [(path, leaf) for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0] if _is_float(leaf)]


class _Flat:
    """``fn`` as a function of one float64 vector (every float leaf of the checked inputs,
    concatenated) to one vector (every float leaf of the output, concatenated)."""

    def __init__(self, fn: Callable, args: tuple, argnums: tuple[int, ...]):
        self.fn, self.args, self.argnums = fn, args, argnums
        leaves, self.treedef = jax.tree_util.tree_flatten_with_path(args)
        self.leaves = [leaf for _, leaf in leaves]
        self.slots = [i for i, (path, leaf) in enumerate(leaves)
                      if _is_float(leaf) and path[0].idx in argnums]
        self.in_paths = [leaves[i][0] for i in self.slots]
        self.in_shapes = [jnp.shape(self.leaves[i]) for i in self.slots]
        self.sizes = [int(np.prod(s)) for s in self.in_shapes]
        self.x0 = (jnp.concatenate([jnp.ravel(self.leaves[i]) for i in self.slots])
                   if self.slots else jnp.zeros((0,), jnp.float64))
        out = jax.eval_shape(fn, *args)  # the output's structure, without running fn
        out_leaves = _float_leaves(out)
        if not out_leaves:
            raise ValueError(f"gradcheck: the function returns no floating-point output (got {type(out).__name__})")
        self.out_paths = [p for p, _ in out_leaves]
        self.out_shapes = [tuple(leaf.shape) for _, leaf in out_leaves]

    def __call__(self, x: jax.Array) -> jax.Array:
        leaves = list(self.leaves)
        offset = 0
        for slot, shape, size in zip(self.slots, self.in_shapes, self.sizes):
            leaves[slot] = x[offset:offset + size].reshape(shape)
            offset += size
        out = self.fn(*jax.tree_util.tree_unflatten(self.treedef, leaves))
        return jnp.concatenate([jnp.ravel(leaf) for _, leaf in _float_leaves(out)])

    def locate_input(self, j: int) -> tuple[str, tuple]:
        return self._locate(j, self.in_paths, self.in_shapes, "inputs")

    def locate_output(self, i: int) -> tuple[str, tuple]:
        return self._locate(i, self.out_paths, self.out_shapes, "output")

    @staticmethod
    def _locate(flat: int, paths: list, shapes: list, root: str) -> tuple[str, tuple]:
        for path, shape in zip(paths, shapes):
            size = int(np.prod(shape))
            if flat < size:
                index = tuple(int(k) for k in np.unravel_index(flat, shape))
                return root + jax.tree_util.keystr(tuple(path)), index
            flat -= size
        raise IndexError(flat)


def _jacobians(f: _Flat, eps: float, modes: list) -> tuple[np.ndarray, list[np.ndarray]]:
    """The numerical Jacobian ``[m, n]`` (central differences ``(f(x + eps e_j) - f(x - eps e_j)) / 2 eps``,
    all ``j`` in one vmap) and the analytical ones, from one compiled function."""

    def all_jacobians(x0: jax.Array) -> tuple:
        steps = eps * jnp.eye(x0.size, dtype=x0.dtype)
        evaluate = jax.vmap(f)
        numerical = ((evaluate(x0 + steps) - evaluate(x0 - steps)) / (2 * eps)).T
        return numerical, [jacobian(f)(x0) for jacobian in modes]

    numerical, analytical = jax.jit(all_jacobians)(f.x0)
    return np.asarray(numerical), [np.asarray(a) for a in analytical]


def _first_mismatch(f: _Flat, analytical: np.ndarray, numerical: np.ndarray, atol: float, rtol: float,
                    how: str) -> str | None:
    allowed = atol + rtol * np.abs(numerical)
    error = np.abs(analytical - numerical)
    bad = ~(error <= allowed)
    if not bad.any():
        return None
    i, j = np.unravel_index(int(np.argmax(np.where(bad, error - allowed, -np.inf))), bad.shape)
    if not np.isfinite(error[i, j]):
        i, j = np.argwhere(bad)[0]
    out_name, out_idx = f.locate_output(int(i))
    in_name, in_idx = f.locate_input(int(j))
    return (f"Jacobian mismatch ({how}) for {out_name} element {out_idx} with respect to {in_name} element "
            f"{in_idx}: {float(analytical[i, j])!r} analytically, {float(numerical[i, j])!r} by finite differences "
            f"(|difference| {error[i, j]:.3g} > atol + rtol * |numerical| = {allowed[i, j]:.3g}); "
            f"{int(bad.sum())} of {bad.size} Jacobian entries mismatch.")


def gradcheck(
    fn: Callable,
    inputs: Any,
    *,
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-3,
    raise_exception: bool = True,
    check_backward_ad: bool = True,
    check_forward_ad: bool = False,
    fast_mode: bool = False,
    argnums: int | Sequence[int] | None = None,
) -> bool:
    """Check ``fn``'s gradients against finite differences in float64 (``torch.autograd.gradcheck``).

    Args:
        fn: a function of ``*inputs`` returning an array or a pytree (its floating leaves are checked,
            others ignored), e.g. ``model.apply``.
        inputs: the positional arguments: a tuple (``(params, x)``) or one array. Every floating leaf
            of every argument (or of the ``argnums`` arguments) is differentiated; ints are constants.
        eps: finite-difference step. atol, rtol: torch's tolerances.
        raise_exception: raise :class:`GradcheckError` on failure (else return False).
        check_backward_ad: check reverse mode (``jax.jacrev``: ``jax.grad``/VJP and ``custom_vjp`` rules).
        check_forward_ad: also check forward mode (``jax.jacfwd``: JVP and ``custom_jvp`` rules).
        fast_mode: check one random direction only (``jax.test_util.check_grads``), for large inputs.
        argnums: only these arguments are differentiated (JAX's name for torch's ``requires_grad``).

    Returns:
        True when the gradients agree (False on failure when ``raise_exception=False``).

    Example: ``gradcheck(model.apply, (params, x))``. The failure names the leaf, e.g.
    ``... for output element (1, 0) with respect to inputs[0]['weight'] element (0, 2): ...``.
    """
    args = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    with jax.enable_x64(True):
        args = _to_float64(args)
        argnums = _normalize_argnums(argnums, len(args))
        try:
            if fast_mode:
                _check_fast(fn, args, argnums, eps, atol, rtol, check_backward_ad, check_forward_ad)
            else:
                _check_full(fn, args, argnums, eps, atol, rtol, check_backward_ad, check_forward_ad)
        except GradcheckError:
            if raise_exception:
                raise
            return False
    return True


def _check_full(fn, args, argnums, eps, atol, rtol, check_backward_ad, check_forward_ad) -> None:
    f = _Flat(fn, args, argnums)
    if f.x0.size == 0:
        raise ValueError("gradcheck: no floating-point input to differentiate")
    checks = [("reverse mode", jax.jacrev)] if check_backward_ad else []
    checks += [("forward mode", jax.jacfwd)] if check_forward_ad else []
    numerical, analyticals = _jacobians(f, eps, [jacobian for _, jacobian in checks])
    for (how, _), analytical in zip(checks, analyticals):
        problem = _first_mismatch(f, analytical, numerical, atol, rtol, how)
        if problem:
            raise GradcheckError(problem)


def _check_fast(fn, args, argnums, eps, atol, rtol, check_backward_ad, check_forward_ad) -> None:
    from jax.test_util import check_grads

    def of_checked(*checked: Any) -> Any:
        full = list(args)
        for i, a in zip(argnums, checked):
            full[i] = a
        out = fn(*full)
        return [leaf for _, leaf in _float_leaves(out)]

    modes = (("rev",) if check_backward_ad else ()) + (("fwd",) if check_forward_ad else ())
    try:
        # check_grads' tolerance is atol + rtol * |expected| on a random projection, as torch's fast mode.
        check_grads(of_checked, tuple(args[i] for i in argnums), order=1, modes=modes, eps=eps, atol=atol, rtol=rtol)
    except AssertionError as error:
        raise GradcheckError(f"gradcheck (fast mode, one random direction) failed: {error}") from None


def gradgradcheck(
    fn: Callable,
    inputs: Any,
    grad_outputs: Any = None,
    *,
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-3,
    raise_exception: bool = True,
    fast_mode: bool = False,
    argnums: int | Sequence[int] | None = None,
    seed: int = 0,
) -> bool:
    """Check second derivatives (``torch.autograd.gradgradcheck``).

    Runs :func:`gradcheck` on ``(inputs, grad_outputs) -> VJP of fn at inputs applied to
    grad_outputs``, so the derivatives of the backward pass are checked against finite differences
    of it. ``grad_outputs`` (one array per floating output leaf, in flattening order) defaults to
    random normal values drawn from ``seed``.
    """
    args = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    with jax.enable_x64(True):
        args = _to_float64(args)
        nums = _normalize_argnums(argnums, len(args))

        def float_outputs(*a: Any) -> list:
            return [leaf for _, leaf in _float_leaves(fn(*a))]

        if grad_outputs is None:
            rng = np.random.default_rng(seed)
            grad_outputs = [jnp.asarray(rng.standard_normal(jnp.shape(o))) for o in float_outputs(*args)]
        grad_outputs = _to_float64(list(grad_outputs))

        def backward(*a_and_cot: Any) -> Any:
            a, cot = a_and_cot[:-1], a_and_cot[-1]

            def of_checked(*checked: Any) -> list:
                full = list(a)
                for i, c in zip(nums, checked):
                    full[i] = c
                return float_outputs(*full)

            _, vjp = jax.vjp(of_checked, *(a[i] for i in nums))
            return vjp(list(cot))

        return gradcheck(backward, (*args, grad_outputs), eps=eps, atol=atol, rtol=rtol,
                         raise_exception=raise_exception, fast_mode=fast_mode, argnums=(*nums, len(args)))
