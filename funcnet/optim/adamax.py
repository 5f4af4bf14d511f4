"""Adamax (Adam with the infinity norm), torch's eps placement."""

from __future__ import annotations

from typing import Any

import optax

from funcnet.optim._build import check_lr, check_nonneg, torch_chain
from funcnet.optim.adam import _betas
from funcnet.optim.transforms import scale_by_torch_adamax


def Adamax(
    lr: Any = 2e-3,
    betas: tuple[Any, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    *,
    maximize: bool = False,
) -> optax.GradientTransformation:
    """``torch.optim.Adamax(params, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0)``.

    ``u = max(β2·u, |g| + eps)``; ``p −= lr/(1−β1^t) · m/u``. ``optax.adamax`` adds eps outside
    the max (``m̂/(max(β2·u, |g|) + eps)``), which differs. No ``params`` argument (see ``SGD``).
    """
    check_lr("Adamax", lr)
    check_nonneg("Adamax", "epsilon", eps)
    check_nonneg("Adamax", "weight_decay", weight_decay)
    b1, b2 = _betas("Adamax", lr, betas)
    return torch_chain(
        scale_by_torch_adamax(b1, b2, eps), lr=lr, weight_decay=weight_decay, maximize=maximize
    )
