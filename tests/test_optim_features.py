"""Parameter groups, freezing, clipping, attached schedules, optax interop, jit + donation, get_lr —
each as a 100-step trajectory against torch where torch has the feature."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
from optim_harness import (
    STEPS,
    _loss,
    assert_same_trajectory,
    flatten,
    initial,
    nest,
    run_jax,
    run_torch,
)

import funcnet.optim as O
from funcnet.nn.utils import merge, named_leaves, split_trainable
from funcnet.optim import lr_scheduler as L

T, TL = torch.optim, torch.optim.lr_scheduler


class Every:
    """Step a torch scheduler once every ``n`` optimizer steps (per-epoch stepping)."""

    def __init__(self, sched, n):
        self.sched, self.n, self.k = sched, n, 0

    def step(self):
        self.k += 1
        if self.k % self.n == 0:
            self.sched.step()


def _groups(named, spec):
    """torch param groups from [(predicate, overrides), ...] plus a default group."""
    used, groups = set(), []
    for pred, over in spec:
        names = [n for n in named if pred(n) and n not in used]
        used.update(names)
        groups.append({"params": [named[n] for n in names], **over})
    groups.append({"params": [p for n, p in named.items() if n not in used]})
    return groups


is_bias = lambda n: n.endswith("bias")

CASES = {
    "groups-no-decay-on-bias-small-lr-layer": (
        O.param_groups(
            O.SGD,
            [{"params": is_bias, "weight_decay": 0.0}, {"params": ["fc1.weight"], "lr": 0.01}],
            lr=0.05,
            momentum=0.9,
            weight_decay=5e-3,
        ),
        dict(
            make_opt=lambda n: T.SGD(
                _groups(n, [(is_bias, {"weight_decay": 0.0}), (lambda k: k == "fc1.weight", {"lr": 0.01})]),
                lr=0.05,
                momentum=0.9,
                weight_decay=5e-3,
                foreach=False,
            )
        ),
    ),
    "groups-schedule-rebased-per-group": (
        O.param_groups(O.Adam, [{"params": "fc2", "lr": 1e-3, "amsgrad": True}], lr=L.StepLR(1e-2, 20, 0.5)),
        dict(
            make_opt=lambda n: T.Adam(
                _groups(n, [(lambda k: k.startswith("fc2."), {"lr": 1e-3, "amsgrad": True})]),
                lr=1e-2,
                foreach=False,
            ),
            scheduler=lambda o: TL.StepLR(o, 20, 0.5),
        ),
    ),
    "groups-by-label-tree": (
        O.param_groups(
            O.RMSprop,
            {"body": {"lr": 1e-3}, "head": {"momentum": 0.5}},
            labels={"fc1": {"weight": "body", "bias": "body"}, "fc2": {"weight": "head", "bias": "head"}},
            lr=2e-3,
        ),
        dict(
            make_opt=lambda n: T.RMSprop(
                [
                    {"params": [n["fc1.weight"], n["fc1.bias"]], "lr": 1e-3},
                    {"params": [n["fc2.weight"], n["fc2.bias"]], "momentum": 0.5},
                ],
                lr=2e-3,
                foreach=False,
            )
        ),
    ),
    "frozen-layer": (
        O.freeze(O.AdamW(lr=1e-2), "fc1"),
        dict(
            make_opt=lambda n: T.AdamW(list(n.values()), lr=1e-2, foreach=False),
            frozen=("fc1.weight", "fc1.bias"),
        ),
    ),
    "frozen-group": (
        O.param_groups(
            O.SGD, [{"params": is_bias, "frozen": True}], lr=0.05, momentum=0.9, weight_decay=1e-2
        ),
        dict(
            make_opt=lambda n: T.SGD(
                list(n.values()), lr=0.05, momentum=0.9, weight_decay=1e-2, foreach=False
            ),
            frozen=("fc1.bias", "fc2.bias"),
        ),
    ),
    "clip-norm-then-sgd-wd": (
        optax.chain(O.clip_grad_norm(0.2), O.SGD(lr=0.05, momentum=0.9, weight_decay=1e-2)),
        dict(
            make_opt=lambda n: T.SGD(
                list(n.values()), lr=0.05, momentum=0.9, weight_decay=1e-2, foreach=False
            ),
            clip=lambda ps: torch.nn.utils.clip_grad_norm_(ps, 0.2),
        ),
    ),
    "clip-inf-norm-then-adam": (
        optax.chain(O.clip_grad_norm(0.05, norm_type=float("inf")), O.Adam(lr=1e-2)),
        dict(
            make_opt=lambda n: T.Adam(list(n.values()), lr=1e-2, foreach=False),
            clip=lambda ps: torch.nn.utils.clip_grad_norm_(ps, 0.05, norm_type=float("inf")),
        ),
    ),
    "optax-clip-value-then-rmsprop": (
        optax.chain(optax.clip(0.05), O.RMSprop(lr=1e-3, momentum=0.9)),
        dict(
            make_opt=lambda n: T.RMSprop(list(n.values()), lr=1e-3, momentum=0.9, foreach=False),
            clip=lambda ps: torch.nn.utils.clip_grad_value_(ps, 0.05),
        ),
    ),
    "steplr-per-epoch-sgd": (
        O.SGD(lr=L.StepLR(0.05, step_size=3, gamma=0.5, steps_per_epoch=10), momentum=0.9, dampening=0.1),
        dict(
            make_opt=lambda n: T.SGD(list(n.values()), lr=0.05, momentum=0.9, dampening=0.1, foreach=False),
            scheduler=lambda o: Every(TL.StepLR(o, step_size=3, gamma=0.5), 10),
        ),
    ),
    "cosine-warm-restarts-per-batch-adagrad": (
        O.Adagrad(lr=L.CosineAnnealingWarmRestarts(0.1, T_0=15, T_mult=2), lr_decay=0.01),
        dict(
            make_opt=lambda n: T.Adagrad(list(n.values()), lr=0.1, lr_decay=0.01, foreach=False),
            scheduler=lambda o: TL.CosineAnnealingWarmRestarts(o, T_0=15, T_mult=2),
        ),
    ),
    "warmup-cosine-adamw": (
        O.AdamW(
            lr=L.SequentialLR([L.LinearLR(1e-2, 0.1, total_iters=10), L.CosineAnnealingLR(1e-2, 40)], [10])
        ),
        dict(
            make_opt=lambda n: T.AdamW(list(n.values()), lr=1e-2, foreach=False),
            scheduler=lambda o: TL.SequentialLR(
                o, [TL.LinearLR(o, 0.1, total_iters=10), TL.CosineAnnealingLR(o, 40)], [10]
            ),
        ),
    ),
    "onecycle-sgd-cycles-momentum": (
        O.SGD(lr=L.OneCycleLR(0.1, total_steps=STEPS)),
        dict(
            make_opt=lambda n: T.SGD(list(n.values()), lr=0.1, foreach=False),
            scheduler=lambda o: TL.OneCycleLR(o, 0.1, total_steps=STEPS),
        ),
    ),
    "onecycle-adam-cycles-beta1": (
        O.Adam(lr=L.OneCycleLR(0.02, total_steps=STEPS, three_phase=True)),
        dict(
            make_opt=lambda n: T.Adam(list(n.values()), lr=0.02, foreach=False),
            scheduler=lambda o: TL.OneCycleLR(o, 0.02, total_steps=STEPS, three_phase=True),
        ),
    ),
    "onecycle-nadam-cycles-beta1": (
        O.NAdam(lr=L.OneCycleLR(0.02, total_steps=STEPS, anneal_strategy="linear")),
        dict(
            make_opt=lambda n: T.NAdam(list(n.values()), lr=0.02, foreach=False),
            scheduler=lambda o: TL.OneCycleLR(o, 0.02, total_steps=STEPS, anneal_strategy="linear"),
        ),
    ),
}


# Cases that name MLP parameters run on the MLP only; the others on both problems.
PARAMS = [(c, "mlp") for c in sorted(CASES)] + [
    (c, "quad") for c in sorted(CASES) if not c.startswith(("groups", "frozen"))
]


@pytest.mark.parametrize("case,problem", PARAMS)
def test_feature_trajectory_matches_torch(case, problem):
    ours, torch_kw = CASES[case]
    assert_same_trajectory(run_jax(problem, ours), run_torch(problem, **torch_kw))


def test_split_trainable_trajectory_matches_requires_grad_false():
    """Gradients only for the trainable part, optimizer state only for it; torch freezes fc1."""
    params = nest({k: jnp.asarray(v) for k, v in initial("mlp").items()})
    trainable, frozen = split_trainable(params, lambda n: not n.startswith("fc1."))
    assert [n for n, _ in named_leaves(trainable)] == ["fc2.bias", "fc2.weight"]
    assert [n for n, _ in named_leaves(frozen)] == ["fc1.bias", "fc1.weight"]
    opt = O.SGD(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-2)
    state = opt.init(trainable)
    assert all(x.shape != (8, 4) for x in jax.tree_util.tree_leaves(state))  # no state for fc1.weight

    @jax.jit
    def step(trainable, state):
        grads = jax.grad(lambda t: _loss("mlp", flatten(merge(t, frozen)), jnp))(trainable)
        updates, state = opt.update(grads, state, trainable)
        return optax.apply_updates(trainable, updates), state

    traj = []
    for _ in range(STEPS):
        trainable, state = step(trainable, state)
        traj.append({k: np.asarray(v) for k, v in flatten(merge(trainable, frozen)).items()})
    expected = run_torch(
        "mlp",
        lambda n: T.SGD(
            list(n.values()), lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-2, foreach=False
        ),
        frozen=("fc1.weight", "fc1.bias"),
    )
    assert_same_trajectory(traj, expected)


def test_freeze_keeps_no_state_for_frozen_params():
    params = nest({k: jnp.asarray(v) for k, v in initial("mlp").items()})
    state = O.freeze(O.Adam(), ["fc1.weight", "fc2"]).init(params)
    shapes = sorted(x.shape for x in jax.tree_util.tree_leaves(state) if x.ndim)
    assert shapes == [(8,), (8,)]  # mu and nu of fc1.bias only


def test_reduce_on_plateau_in_the_optimizer_matches_torch():
    """SGD(lr=plateau); every 10 steps plateau.step(opt_state, metric) — torch's scheduler.step(metric)."""
    kw = dict(mode="min", factor=0.5, patience=0, threshold=0.02, cooldown=1)
    metrics = [1.0, 0.9, 0.95, 0.93, 0.92, 0.8, 0.81, 0.85, 0.79, 0.9]  # fed to both sides
    named = {k: torch.tensor(v, requires_grad=True) for k, v in initial("mlp").items()}
    topt = T.SGD(list(named.values()), lr=0.1, momentum=0.9, foreach=False)
    tsched = TL.ReduceLROnPlateau(topt, **kw)
    plateau = L.ReduceLROnPlateau(0.1, **kw)
    opt = O.SGD(lr=plateau, momentum=0.9)
    params = nest({k: jnp.asarray(v) for k, v in initial("mlp").items()})
    state = opt.init(params)
    grad = jax.grad(lambda p: _loss("mlp", flatten(p), jnp))

    @jax.jit
    def step(params, state):
        updates, state = opt.update(grad(params), state, params)
        return optax.apply_updates(params, updates), state

    plateau_step = jax.jit(plateau.step, donate_argnums=0)
    lrs = []
    for k in range(STEPS):
        topt.zero_grad()
        _loss("mlp", named, torch).backward()
        topt.step()
        params, state = step(params, state)
        if (k + 1) % 10 == 0:
            tsched.step(metrics[k // 10])
            state = plateau_step(state, metrics[k // 10])
            assert float(O.get_lr(state)) == pytest.approx(topt.param_groups[0]["lr"], rel=1e-6)
            lrs.append(topt.param_groups[0]["lr"])
    assert len(set(lrs)) >= 3  # reduced at least twice
    for name, value in flatten(params).items():
        np.testing.assert_allclose(value, named[name].detach().numpy(), rtol=1e-5, atol=1e-6)


def test_get_lrs_follow_torch_param_groups():
    opt = O.param_groups(O.SGD, [{"params": "fc1", "lr": 0.01}], lr=L.MultiStepLR(0.1, [3, 5]), momentum=0.9)
    params = nest({k: jnp.asarray(v) for k, v in initial("mlp").items()})
    named = {k: torch.tensor(v, requires_grad=True) for k, v in initial("mlp").items()}
    topt = T.SGD(_groups(named, [(lambda k: k.startswith("fc1."), {"lr": 0.01})]), lr=0.1, momentum=0.9)
    tsched = TL.MultiStepLR(topt, [3, 5])
    state = opt.init(params)
    grads = jax.tree_util.tree_map(jnp.ones_like, params)
    update = jax.jit(opt.update)
    for _ in range(7):
        np.testing.assert_allclose(O.get_lrs(state), [g["lr"] for g in topt.param_groups], rtol=1e-6)
        assert O.get_lr(state) == O.get_lrs(state)
        _, state = update(grads, state, params)
        for p in named.values():
            p.grad = torch.ones_like(p)
        topt.step()
        tsched.step()


def test_a_constant_lr_adds_no_arrays_to_the_state(tmp_path):
    # optax.sgd(0.01) carries no arrays; neither does funcnet's SGD(lr=0.01): nothing to copy per step.
    import funcnet

    params = {"w": jnp.ones((3,))}
    state = O.SGD(lr=0.01).init(params)
    assert jax.tree_util.tree_leaves(state) == []
    assert float(O.get_lr(state)) == pytest.approx(0.01)
    funcnet.save(state, tmp_path / "s.fnc")
    assert float(O.get_lr(funcnet.load(tmp_path / "s.fnc"))) == pytest.approx(0.01)
    # Adam keeps its own step count; the lr part stays constant data.
    assert [x.shape for x in jax.tree_util.tree_leaves(O.Adam(lr=0.1).init(params))] == [(), (3,), (3,)]
    # An array lr is traced like a schedule: it stays a state entry.
    assert len(jax.tree_util.tree_leaves(O.SGD(lr=jnp.asarray(0.01)).init(params))) == 2


ALL_OPTIMIZERS = [
    O.SGD(lr=0.1, momentum=0.9, dampening=0.1),
    O.Adam(amsgrad=True),
    O.AdamW(lr=L.OneCycleLR(0.1, total_steps=10)),
    O.RMSprop(centered=True, momentum=0.9),
    O.Adagrad(lr_decay=0.1),
    O.Adamax(),
    O.NAdam(),
    O.RAdam(),
    O.Adadelta(weight_decay=0.1),
    O.SGD(lr=L.ReduceLROnPlateau(0.1)),
    O.freeze(O.Adam(), "fc1"),
    O.param_groups(O.SGD, [{"params": is_bias, "weight_decay": 0.0}], lr=0.1),
    optax.chain(O.clip_grad_norm(1.0), O.SGD(lr=0.1), optax.add_noise(0.0, 0.5, 0)),
    optax.MultiSteps(O.Adam(lr=1e-2), every_k_schedule=2),
]


@pytest.mark.parametrize("i", range(len(ALL_OPTIMIZERS)))
def test_jit_with_donated_state_and_optax_composition(i):
    opt = ALL_OPTIMIZERS[i]
    params = nest({k: jnp.asarray(v) for k, v in initial("mlp").items()})
    grad = jax.grad(lambda p: _loss("mlp", flatten(p), jnp))

    def step(params, state):
        updates, state = opt.update(grad(params), state, params)
        return optax.apply_updates(params, updates), state

    donated = jax.jit(step, donate_argnums=(0, 1))
    plain = jax.jit(step)
    p1, s1 = params, opt.init(params)
    p2, s2 = jax.tree_util.tree_map(jnp.copy, params), opt.init(params)
    for _ in range(3):
        p1, s1 = donated(p1, s1)
        p2, s2 = plain(p2, s2)
    for a, b in zip(jax.tree_util.tree_leaves(p1), jax.tree_util.tree_leaves(p2), strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.allclose(flatten(p1)["fc2.weight"], initial("mlp")["fc2.weight"])


def test_validation_errors_name_the_optimizer():
    with pytest.raises(ValueError, match="SGD.*Nesterov"):
        O.SGD(lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="Adam.*learning rate"):
        O.Adam(lr=-1.0)
    with pytest.raises(ValueError, match="beta parameter at index 1"):
        O.AdamW(betas=(0.9, 1.0))
    opt = O.param_groups(O.SGD, [{"params": "fc1"}, {"params": is_bias}], lr=0.1)
    params = nest({k: jnp.asarray(v) for k, v in initial("mlp").items()})
    with pytest.raises(ValueError, match="fc1.bias.*more than one parameter group"):
        opt.init(params)
    with pytest.raises(ValueError, match="get_lr"):
        O.get_lr(optax.sgd(0.1).init(params))


def test_defaults_are_torch_defaults():
    import inspect

    for ours, theirs in [
        (O.SGD, T.SGD),
        (O.Adam, T.Adam),
        (O.AdamW, T.AdamW),
        (O.RMSprop, T.RMSprop),
        (O.Adagrad, T.Adagrad),
        (O.Adamax, T.Adamax),
        (O.NAdam, T.NAdam),
        (O.RAdam, T.RAdam),
        (O.Adadelta, T.Adadelta),
    ]:
        tsig = inspect.signature(theirs.__init__).parameters
        for name, p in inspect.signature(ours).parameters.items():
            assert name in tsig, (ours.__name__, name)
            assert p.default == tsig[name].default, (ours.__name__, name, p.default, tsig[name].default)
