"""Trajectory harness shared by the optimizer tests: the same problem in torch and in JAX.

Two problems with identical initial parameters and the same gradient function on both sides:
a small tanh MLP on fixed data (MSE) and a separable quadratic. Parameters are nested dicts
whose dotted names are the torch names; torch runs the optimizer's single-tensor path
(``foreach=False``), JAX runs ``optimizer.update`` inside one jitted ``lax.scan``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch

from funcnet.testing import assert_close

torch.set_num_threads(1)  # tiny tensors: threads only add contention

STEPS = 100


def _init(seed: int, shapes: dict) -> dict:
    rng = np.random.default_rng(seed)
    return {k: rng.normal(0.0, 0.5, s).astype(np.float32) for k, s in shapes.items()}


MLP_SHAPES = {"fc1.weight": (8, 4), "fc1.bias": (8,), "fc2.weight": (3, 8), "fc2.bias": (3,)}
QUAD_SHAPES = {"w": (5,), "b": (3,)}
_rng = np.random.default_rng(123)
_X = _rng.normal(size=(16, 4)).astype(np.float32)
_Y = _rng.normal(size=(16, 3)).astype(np.float32)
_CURV = {"w": np.linspace(0.5, 2.0, 5).astype(np.float32), "b": np.array([0.3, 1.0, 1.7], np.float32)}
_CENTER = {"w": np.linspace(-1.0, 1.0, 5).astype(np.float32), "b": np.array([0.5, -0.5, 2.0], np.float32)}


def nest(flat: dict) -> dict:
    out: dict = {}
    for name, v in flat.items():
        d = out
        *head, last = name.split(".")
        for h in head:
            d = d.setdefault(h, {})
        d[last] = v
    return out


def flatten(tree: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _loss(problem: str, f: dict, lib):
    if problem == "mlp":
        dt = f["fc1.weight"].dtype
        X, Y = (
            (jnp.asarray(_X, dt), jnp.asarray(_Y, dt))
            if lib is jnp
            else (torch.tensor(_X, dtype=dt), torch.tensor(_Y, dtype=dt))
        )
        h = lib.tanh(X @ f["fc1.weight"].T + f["fc1.bias"])
        out = h @ f["fc2.weight"].T + f["fc2.bias"]
        return ((out - Y) ** 2).mean()
    total = 0.0
    for k in ("w", "b"):
        dt = f[k].dtype
        c = jnp.asarray(_CURV[k], dt) if lib is jnp else torch.tensor(_CURV[k], dtype=dt)
        m = jnp.asarray(_CENTER[k], dt) if lib is jnp else torch.tensor(_CENTER[k], dtype=dt)
        total = total + 0.5 * (c * (f[k] - m) ** 2).sum()
    return total


def initial(problem: str) -> dict:
    return _init(0, MLP_SHAPES if problem == "mlp" else QUAD_SHAPES)


def run_torch(
    problem: str, make_opt, *, scheduler=None, frozen=(), clip=None, steps: int = STEPS, x64: bool = False
) -> list[dict]:
    """``make_opt(named_params: dict[str, Tensor]) -> torch optimizer``; returns params after each step."""
    dtype = torch.float64 if x64 else torch.float32
    named = {
        k: torch.tensor(v, dtype=dtype, requires_grad=k not in frozen) for k, v in initial(problem).items()
    }
    opt = make_opt(named)
    sched = scheduler(opt) if scheduler else None
    traj = []
    for _ in range(steps):
        opt.zero_grad()
        _loss(problem, named, torch).backward()
        if clip is not None:
            clip([p for p in named.values() if p.requires_grad])
        opt.step()
        if sched is not None:
            sched.step()
        traj.append({k: v.detach().numpy().copy() for k, v in named.items()})
    return traj


_GRAD_FNS: dict = {}


def _grad_fn(problem: str):
    if problem not in _GRAD_FNS:
        _GRAD_FNS[problem] = jax.grad(lambda p: _loss(problem, flatten(p), jnp))
    return _GRAD_FNS[problem]


def run_jax(problem: str, optimizer: optax.GradientTransformation, steps: int = STEPS, x64: bool = False):
    """Jitted ``update`` applied ``steps`` times; returns params after each step.

    ``x64=True`` runs in float64 (``jax.enable_x64``), to be compared with torch in float64.
    """
    with jax.enable_x64(x64):
        return _run_jax(problem, optimizer, steps, np.float64 if x64 else np.float32)


def _run_jax(problem, optimizer, steps, dtype):
    params = nest({k: jnp.asarray(v, dtype) for k, v in initial(problem).items()})
    grad = _grad_fn(problem)

    @jax.jit
    def step(p, s):
        u, s = optimizer.update(grad(p), s, p)
        return optax.apply_updates(p, u), s

    state = optimizer.init(params)
    traj = []
    for _ in range(steps):
        params, state = step(params, state)
        traj.append(params)
    return [{k: np.asarray(v) for k, v in flatten(p).items()} for p in jax.device_get(traj)]


def assert_same_trajectory(jax_traj, torch_traj, rtol=1e-5, atol=1e-6) -> None:
    """Parameters after every step; a failure names the step (0-based) and parameter, e.g. ``[41]['fc1.bias']``."""
    assert_close(jax_traj, torch_traj, rtol=rtol, atol=atol)
