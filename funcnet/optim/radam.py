"""RAdam (rectified Adam) with torch's rectification and eps placement."""

from __future__ import annotations

from typing import Any

import optax

from funcnet.optim._build import check_lr, check_nonneg, torch_chain
from funcnet.optim.adam import _betas
from funcnet.optim.transforms import scale_by_torch_radam


def RAdam(
    lr: Any = 1e-3,
    betas: tuple[Any, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    decoupled_weight_decay: bool = False,
    *,
    maximize: bool = False,
) -> optax.GradientTransformation:
    """``torch.optim.RAdam(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
    decoupled_weight_decay=False)``.

    While ``ρ_t ≤ 5`` the step is ``lr·m̂`` (SGD with momentum), then
    ``lr·m̂·r_t·sqrt(1−β2^t)/(sqrt(v)+eps)``. ``optax.radam`` places eps differently. No ``params`` argument.
    """
    check_lr("RAdam", lr)
    check_nonneg("RAdam", "epsilon", eps)
    check_nonneg("RAdam", "weight_decay", weight_decay)
    b1, b2 = _betas("RAdam", lr, betas)
    return torch_chain(
        scale_by_torch_radam(b1, b2, eps),
        lr=lr,
        weight_decay=weight_decay,
        decoupled=decoupled_weight_decay,
        maximize=maximize,
    )
