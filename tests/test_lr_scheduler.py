"""Every funcnet scheduler against torch's: the lr used by update k equals the lr torch's optimizer
uses at its k-th ``step()``, stepping the torch scheduler per batch (S=1) or per epoch (S=3)."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from funcnet.optim import lr_scheduler as L

TL = torch.optim.lr_scheduler
BASE = 0.1


def torch_trace(make_sched, n_updates, steps_per_epoch=1, opt="sgd"):
    """(lr, momentum-or-beta1) used by each of ``n_updates`` optimizer steps in torch."""
    p = torch.zeros(2, requires_grad=True)
    o = (
        torch.optim.SGD([p], lr=BASE, momentum=0.9)
        if opt == "sgd"
        else torch.optim.Adam([p], lr=BASE, betas=(0.9, 0.999))
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sched = make_sched(o)
        lrs, moms = [], []
        for k in range(n_updates):
            g = o.param_groups[0]
            lrs.append(g["lr"])
            moms.append(g["momentum"] if opt == "sgd" else g["betas"][0])
            p.grad = torch.ones(2)
            o.step()
            if (k + 1) % steps_per_epoch == 0:
                sched.step()
    return np.array(lrs), np.array(moms)


def ours(schedule, n):
    return np.asarray(jax.jit(jax.vmap(schedule))(jnp.arange(n)))


def check(ours_lrs, torch_lrs):
    np.testing.assert_allclose(ours_lrs, torch_lrs, rtol=2e-6, atol=1e-12)


# name -> (funcnet factory(steps_per_epoch), torch factory(optimizer), number of scheduler steps)
CASES = {
    "StepLR": (
        lambda s: L.StepLR(BASE, step_size=3, gamma=0.5, steps_per_epoch=s),
        lambda o: TL.StepLR(o, step_size=3, gamma=0.5),
        12,
    ),
    "MultiStepLR": (
        lambda s: L.MultiStepLR(BASE, milestones=[9, 2, 5, 5], gamma=0.3, steps_per_epoch=s),
        lambda o: TL.MultiStepLR(o, milestones=[9, 2, 5, 5], gamma=0.3),
        14,
    ),
    "ExponentialLR": (
        lambda s: L.ExponentialLR(BASE, gamma=0.9, steps_per_epoch=s),
        lambda o: TL.ExponentialLR(o, gamma=0.9),
        35,
    ),
    "CosineAnnealingLR": (
        lambda s: L.CosineAnnealingLR(BASE, T_max=10, eta_min=0.01, steps_per_epoch=s),
        lambda o: TL.CosineAnnealingLR(o, T_max=10, eta_min=0.01),
        45,
    ),
    "CosineAnnealingLR-eta0-long": (
        lambda s: L.CosineAnnealingLR(BASE, T_max=50, steps_per_epoch=s),
        lambda o: TL.CosineAnnealingLR(o, T_max=50),
        160,
    ),
    "CosineAnnealingWarmRestarts": (
        lambda s: L.CosineAnnealingWarmRestarts(BASE, T_0=5, eta_min=1e-3, steps_per_epoch=s),
        lambda o: TL.CosineAnnealingWarmRestarts(o, T_0=5, eta_min=1e-3),
        17,
    ),
    "CosineAnnealingWarmRestarts-Tmult": (
        lambda s: L.CosineAnnealingWarmRestarts(BASE, T_0=3, T_mult=2, steps_per_epoch=s),
        lambda o: TL.CosineAnnealingWarmRestarts(o, T_0=3, T_mult=2),
        40,
    ),
    "LinearLR": (
        lambda s: L.LinearLR(BASE, start_factor=0.25, end_factor=0.9, total_iters=6, steps_per_epoch=s),
        lambda o: TL.LinearLR(o, start_factor=0.25, end_factor=0.9, total_iters=6),
        20,
    ),
    "ConstantLR": (
        lambda s: L.ConstantLR(BASE, factor=0.5, total_iters=4, steps_per_epoch=s),
        lambda o: TL.ConstantLR(o, factor=0.5, total_iters=4),
        14,
    ),
    "LambdaLR": (
        lambda s: L.LambdaLR(BASE, lambda e: 0.95**e / (1 + e % 3), steps_per_epoch=s),
        lambda o: TL.LambdaLR(o, lambda e: 0.95**e / (1 + e % 3)),
        15,
    ),
    "SequentialLR-warmup-cosine": (
        lambda s: L.SequentialLR(
            [L.LinearLR(BASE, start_factor=0.1, total_iters=4), L.CosineAnnealingLR(BASE, T_max=10)],
            milestones=[4],
            steps_per_epoch=s,
        ),
        lambda o: TL.SequentialLR(
            o,
            [TL.LinearLR(o, start_factor=0.1, total_iters=4), TL.CosineAnnealingLR(o, T_max=10)],
            milestones=[4],
        ),
        30,
    ),
    "SequentialLR-three": (
        lambda s: L.SequentialLR(
            [L.ConstantLR(BASE, factor=0.1, total_iters=3), L.ExponentialLR(BASE, 0.8), L.StepLR(BASE, 2)],
            milestones=[3, 8],
            steps_per_epoch=s,
        ),
        lambda o: TL.SequentialLR(
            o,
            [TL.ConstantLR(o, factor=0.1, total_iters=3), TL.ExponentialLR(o, 0.8), TL.StepLR(o, 2)],
            milestones=[3, 8],
        ),
        20,
    ),
}


@pytest.mark.parametrize("steps_per_epoch", [1, 3])
@pytest.mark.parametrize("name", sorted(CASES))
def test_scheduler_matches_torch(name, steps_per_epoch):
    make, make_torch, n_sched_steps = CASES[name]
    n = n_sched_steps * steps_per_epoch
    t_lrs, _ = torch_trace(make_torch, n, steps_per_epoch)
    check(ours(make(steps_per_epoch), n), t_lrs)


ONE_CYCLE = {
    "cos": dict(max_lr=0.5, total_steps=40),
    "linear-pct": dict(max_lr=0.5, total_steps=37, pct_start=0.25, anneal_strategy="linear", div_factor=10.0),
    "three-phase": dict(max_lr=0.3, epochs=5, steps_per_epoch=7, three_phase=True, final_div_factor=100.0),
    "no-momentum": dict(max_lr=0.3, total_steps=20, cycle_momentum=False),
}


@pytest.mark.parametrize("opt", ["sgd", "adam"])
@pytest.mark.parametrize("steps_per_epoch", [1, 3])
@pytest.mark.parametrize("name", sorted(ONE_CYCLE))
def test_one_cycle_lr_and_momentum_match_torch(name, steps_per_epoch, opt):
    kw = ONE_CYCLE[name]
    sched = L.OneCycleLR(**kw)
    n = sched.total_steps * steps_per_epoch  # torch raises if stepped more than total_steps times
    t_lrs, t_moms = torch_trace(lambda o: TL.OneCycleLR(o, **kw), n, steps_per_epoch, opt)
    ours_sched = sched if steps_per_epoch == 1 else L.per_epoch(sched, steps_per_epoch)
    check(ours(ours_sched, n), t_lrs)
    if sched.cycle_momentum:
        check(ours(ours_sched.momentum, n), t_moms)
    else:
        assert ours_sched.momentum is None
        np.testing.assert_allclose(t_moms, 0.9)


def test_one_cycle_breakpoints_differ_from_optax():
    # The peak is at step pct·T − 1 = 11 in torch; optax's cosine_onecycle_schedule peaks at 12.
    s = L.OneCycleLR(max_lr=1.0, total_steps=40)
    lrs = ours(s, 40)
    assert int(np.argmax(lrs)) == 11 and lrs[11] == pytest.approx(1.0)


def test_schedules_compose_with_with_lr():
    s = L.SequentialLR([L.LinearLR(0.1, total_iters=3), L.CosineAnnealingLR(0.1, T_max=5)], milestones=[3])
    np.testing.assert_allclose(ours(s.with_lr(0.01), 12), ours(s, 12) / 10, rtol=1e-6)


def test_sequential_rejects_inner_steps_per_epoch():
    with pytest.raises(ValueError, match="steps_per_epoch"):
        L.SequentialLR([L.StepLR(0.1, 2, steps_per_epoch=3), L.StepLR(0.1, 2)], milestones=[2])


# ----------------------------------------------------------------------------- ReduceLROnPlateau


def _metrics(seed, n=60):
    """A random walk with long plateaus, on a 1/64 grid (exact in float32)."""
    rng = np.random.default_rng(seed)
    steps = rng.choice([-1.0, 0.0, 0.0, 0.0, 0.0, 0.5], size=n) * rng.integers(1, 4, size=n)
    return np.round((10.0 + np.cumsum(steps)) * 64) / 64


PLATEAU = {
    "min-rel": dict(mode="min", factor=0.5, patience=2, threshold=1e-4, threshold_mode="rel"),
    "min-abs-cooldown": dict(
        mode="min", factor=0.3, patience=1, threshold=0.6, threshold_mode="abs", cooldown=3
    ),
    "max-rel-minlr": dict(
        mode="max", factor=0.5, patience=0, threshold=0.05, threshold_mode="rel", min_lr=0.02
    ),
    "max-abs-cooldown-eps": dict(
        mode="max",
        factor=0.9,
        patience=3,
        threshold=0.25,
        threshold_mode="abs",
        cooldown=2,
        min_lr=0.0655,
        eps=1e-3,
    ),
    "defaults": dict(),
}


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("name", sorted(PLATEAU))
def test_reduce_on_plateau_matches_torch(name, seed):
    kw = PLATEAU[name]
    metrics = _metrics(seed, 80 if name == "defaults" else 60)
    if kw.get("mode") == "max":
        metrics = 20.0 - metrics
    p = torch.zeros(1, requires_grad=True)
    o = torch.optim.SGD([p], lr=BASE)
    sched = TL.ReduceLROnPlateau(o, **kw)
    plateau = L.ReduceLROnPlateau(BASE, **kw)
    step = jax.jit(plateau.step, donate_argnums=0)
    state = plateau.init()
    reductions = 0
    for m in metrics:
        sched.step(float(m))
        state = step(state, jnp.float32(m))
        assert float(state.lr) == pytest.approx(o.param_groups[0]["lr"], rel=1e-6)
        assert int(state.num_bad_epochs) == sched.num_bad_epochs
        assert int(state.cooldown_counter) == sched.cooldown_counter
        assert float(state.best) == pytest.approx(sched.best)
        reductions += o.param_groups[0]["lr"] < BASE
    assert reductions > 0  # the sequence exercises at least one reduction


def test_reduce_on_plateau_patience_is_torch_not_optax():
    plateau = L.ReduceLROnPlateau(1.0, patience=2, factor=0.5)
    s = plateau.init()
    lrs = []
    for m in [1.0, 1.0, 1.0, 1.0]:
        s = plateau.step(s, m)
        lrs.append(float(s.lr))
    assert lrs == [1.0, 1.0, 1.0, 0.5]  # reduced after patience+1 bad epochs (optax: after patience)


def test_reduce_on_plateau_validation():
    with pytest.raises(ValueError, match="Factor"):
        L.ReduceLROnPlateau(0.1, factor=1.0)
    with pytest.raises(ValueError, match="unknown"):
        L.ReduceLROnPlateau(0.1, mode="avg")
    with pytest.raises(ValueError, match="PlateauState"):
        L.ReduceLROnPlateau(0.1).step({"x": jnp.zeros(1)}, 1.0)
