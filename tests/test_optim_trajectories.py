"""100-step trajectories of every funcnet optimizer against torch (float32, single-tensor path).

Each case is (funcnet optimizer, torch optimizer factory) on the same problem, same initial
parameters, same gradient function; parameters after every step must agree to 1e-5 relative.
All but one run in float32 (see ``X64``):
funcnet computes the bias corrections ``1 − β^t`` as ``−expm1(t·log β)``
with ``log β`` in float64, accurate enough that float64 is not needed to match torch.
"""

import pytest
import torch
from optim_harness import assert_same_trajectory, run_jax, run_torch

import funcnet.optim as O

T = torch.optim
# Run in float64 on both sides: centered RMSprop under maximize drives v − ḡ² into catastrophic
# cancellation, where float32 rounding (not the maths) decides the trajectory. In float64 the two
# agree to ~1e-13.
X64 = {"x64": True}


def _p(named):
    return list(named.values())


CASES = {
    # SGD: every option that changes the maths
    "sgd": (O.SGD(lr=0.05), lambda n: T.SGD(_p(n), lr=0.05, foreach=False)),
    "sgd-momentum": (
        O.SGD(lr=0.05, momentum=0.9),
        lambda n: T.SGD(_p(n), lr=0.05, momentum=0.9, foreach=False),
    ),
    "sgd-dampening": (
        O.SGD(lr=0.05, momentum=0.9, dampening=0.3),
        lambda n: T.SGD(_p(n), lr=0.05, momentum=0.9, dampening=0.3, foreach=False),
    ),
    "sgd-nesterov-wd": (
        O.SGD(lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4),
        lambda n: T.SGD(_p(n), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4, foreach=False),
    ),
    "sgd-wd-maximize": (
        O.SGD(lr=1e-3, momentum=0.5, weight_decay=1e-2, maximize=True),
        lambda n: T.SGD(_p(n), lr=1e-3, momentum=0.5, weight_decay=1e-2, maximize=True, foreach=False),
    ),
    # Adam family
    "adam": (O.Adam(lr=1e-2), lambda n: T.Adam(_p(n), lr=1e-2, foreach=False)),
    "adam-amsgrad-wd": (
        O.Adam(lr=1e-2, amsgrad=True, weight_decay=1e-2),
        lambda n: T.Adam(_p(n), lr=1e-2, amsgrad=True, weight_decay=1e-2, foreach=False),
    ),
    "adam-maximize-betas": (
        O.Adam(lr=1e-3, betas=(0.8, 0.99), eps=1e-6, maximize=True),
        lambda n: T.Adam(_p(n), lr=1e-3, betas=(0.8, 0.99), eps=1e-6, maximize=True, foreach=False),
    ),
    "adamw-default-wd": (O.AdamW(lr=1e-2), lambda n: T.AdamW(_p(n), lr=1e-2, foreach=False)),
    "adamw-amsgrad": (
        O.AdamW(lr=1e-2, weight_decay=0.1, amsgrad=True),
        lambda n: T.AdamW(_p(n), lr=1e-2, weight_decay=0.1, amsgrad=True, foreach=False),
    ),
    # RMSprop
    "rmsprop": (O.RMSprop(lr=1e-3), lambda n: T.RMSprop(_p(n), lr=1e-3, foreach=False)),
    "rmsprop-centered": (
        O.RMSprop(lr=1e-3, centered=True),
        lambda n: T.RMSprop(_p(n), lr=1e-3, centered=True, foreach=False),
    ),
    "rmsprop-momentum-wd": (
        O.RMSprop(lr=1e-3, momentum=0.9, weight_decay=1e-2),
        lambda n: T.RMSprop(_p(n), lr=1e-3, momentum=0.9, weight_decay=1e-2, foreach=False),
    ),
    "rmsprop-centered-momentum-maximize": (
        O.RMSprop(lr=1e-3, alpha=0.9, centered=True, momentum=0.5, maximize=True),
        lambda n: T.RMSprop(
            _p(n), lr=1e-3, alpha=0.9, centered=True, momentum=0.5, maximize=True, foreach=False
        ),
        X64,
    ),
    # Adagrad
    "adagrad": (O.Adagrad(lr=0.1), lambda n: T.Adagrad(_p(n), lr=0.1, foreach=False)),
    "adagrad-lr_decay": (
        O.Adagrad(lr=0.1, lr_decay=0.05),
        lambda n: T.Adagrad(_p(n), lr=0.1, lr_decay=0.05, foreach=False),
    ),
    "adagrad-init-acc-wd": (
        O.Adagrad(lr=0.1, initial_accumulator_value=0.2, weight_decay=1e-2, eps=1e-6),
        lambda n: T.Adagrad(
            _p(n), lr=0.1, initial_accumulator_value=0.2, weight_decay=1e-2, eps=1e-6, foreach=False
        ),
    ),
    # Adamax, NAdam, RAdam, Adadelta
    "adamax": (O.Adamax(lr=1e-2), lambda n: T.Adamax(_p(n), lr=1e-2, foreach=False)),
    "adamax-wd-maximize": (
        O.Adamax(lr=1e-3, weight_decay=1e-2, maximize=True),
        lambda n: T.Adamax(_p(n), lr=1e-3, weight_decay=1e-2, maximize=True, foreach=False),
    ),
    "nadam": (O.NAdam(lr=1e-2), lambda n: T.NAdam(_p(n), lr=1e-2, foreach=False)),
    "nadam-wd": (
        O.NAdam(lr=1e-2, weight_decay=1e-2, momentum_decay=1e-2),
        lambda n: T.NAdam(_p(n), lr=1e-2, weight_decay=1e-2, momentum_decay=1e-2, foreach=False),
    ),
    "nadamw": (
        O.NAdam(lr=1e-2, weight_decay=0.1, decoupled_weight_decay=True),
        lambda n: T.NAdam(_p(n), lr=1e-2, weight_decay=0.1, decoupled_weight_decay=True, foreach=False),
    ),
    "radam": (O.RAdam(lr=1e-2), lambda n: T.RAdam(_p(n), lr=1e-2, foreach=False)),
    "radam-wd": (
        O.RAdam(lr=1e-2, weight_decay=1e-2),
        lambda n: T.RAdam(_p(n), lr=1e-2, weight_decay=1e-2, foreach=False),
    ),
    "radamw": (
        O.RAdam(lr=1e-2, weight_decay=0.1, decoupled_weight_decay=True),
        lambda n: T.RAdam(_p(n), lr=1e-2, weight_decay=0.1, decoupled_weight_decay=True, foreach=False),
    ),
    "adadelta": (O.Adadelta(), lambda n: T.Adadelta(_p(n), foreach=False)),
    "adadelta-wd-maximize": (
        O.Adadelta(lr=0.5, rho=0.95, weight_decay=1e-2, maximize=True),
        lambda n: T.Adadelta(_p(n), lr=0.5, rho=0.95, weight_decay=1e-2, maximize=True, foreach=False),
    ),
}


@pytest.mark.parametrize("problem", ["mlp", "quad"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_trajectory_matches_torch(case, problem):
    ours, theirs, *opts = CASES[case]
    x64 = bool(opts and opts[0].get("x64"))
    assert_same_trajectory(run_jax(problem, ours, x64=x64), run_torch(problem, theirs, x64=x64))
