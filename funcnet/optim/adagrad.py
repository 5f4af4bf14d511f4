"""Adagrad with torch's accumulator, eps placement and lr_decay."""

from __future__ import annotations

from typing import Any

import optax

from funcnet.optim._build import check_lr, check_nonneg, torch_chain
from funcnet.optim.transforms import scale_by_torch_adagrad


def Adagrad(
    lr: Any = 1e-2,
    lr_decay: float = 0.0,
    weight_decay: float = 0.0,
    initial_accumulator_value: float = 0.0,
    eps: float = 1e-10,
    *,
    maximize: bool = False,
) -> optax.GradientTransformation:
    """``torch.optim.Adagrad(params, lr=1e-2, lr_decay=0, weight_decay=0, initial_accumulator_value=0,
    eps=1e-10)``.

    ``g += wd·p``; ``S += g²``; ``p −= lr/(1 + (t−1)·lr_decay) · g/(sqrt(S) + eps)``.
    ``optax.adagrad`` defaults to ``initial_accumulator_value=0.1``, ``eps=1e-7`` and puts eps
    inside the sqrt. ``get_lr`` reports ``lr`` before the ``lr_decay`` factor, as torch's
    ``param_groups[i]['lr']``. No ``params`` argument (see ``SGD``).
    """
    check_lr("Adagrad", lr)
    check_nonneg("Adagrad", "lr_decay", lr_decay)
    check_nonneg("Adagrad", "weight_decay", weight_decay)
    check_nonneg("Adagrad", "initial_accumulator_value", initial_accumulator_value)
    check_nonneg("Adagrad", "epsilon", eps)
    return torch_chain(
        scale_by_torch_adagrad(lr_decay, initial_accumulator_value, eps),
        lr=lr,
        weight_decay=weight_decay,
        maximize=maximize,
    )
