"""SGD with torch's momentum, dampening, nesterov, L2 weight decay and maximize."""

from __future__ import annotations

from typing import Any

import optax

from funcnet.optim._build import check_lr, check_nonneg, cycled_momentum, torch_chain
from funcnet.optim.transforms import scale_by_momentum


def SGD(
    lr: Any = 1e-3,
    momentum: Any = 0.0,
    dampening: float = 0.0,
    weight_decay: float = 0.0,
    nesterov: bool = False,
    *,
    maximize: bool = False,
) -> optax.GradientTransformation:
    """``torch.optim.SGD(params, lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False,
    maximize=False)``.

    ``g ← −g`` (maximize); ``g ← g + wd·p``; momentum buffer ``b = g`` on the first step, then
    ``b = μ·b + (1−τ)·g``; ``g ← g + μ·b`` (nesterov) or ``b``; ``p ← p − lr·g``.
    optax's ``sgd`` has neither dampening nor weight decay; with ``τ = 0`` funcnet reuses
    ``optax.trace``.

    Difference from torch: no ``params`` argument (JAX optimizers are pure)::

        optimizer = funcnet.optim.SGD(lr=0.01, momentum=0.9, weight_decay=5e-4)
        opt_state = optimizer.init(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)

    ``params`` must be passed to ``update`` when ``weight_decay`` ≠ 0. ``lr`` is a float or a
    schedule; with ``lr=OneCycleLR(...)`` (``cycle_momentum=True``) the momentum follows the
    scheduler's cycled momentum, as torch's scheduler overwrites ``group['momentum']``.
    """
    check_lr("SGD", lr)
    check_nonneg("SGD", "momentum", momentum)
    check_nonneg("SGD", "weight_decay", weight_decay)
    cyc = cycled_momentum(lr)
    if cyc is not None:
        momentum = cyc
    if nesterov and (dampening != 0 or (not callable(momentum) and momentum <= 0)):
        raise ValueError("funcnet.optim.SGD: Nesterov momentum requires a momentum and zero dampening")
    core = None
    if callable(momentum) or momentum != 0:
        core = scale_by_momentum(momentum, dampening=dampening, nesterov=nesterov)
    return torch_chain(core, lr=lr, weight_decay=weight_decay, maximize=maximize)
