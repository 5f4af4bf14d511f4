"""NAdam with torch's momentum-decay schedule."""

from __future__ import annotations

from typing import Any

import optax

from funcnet.optim._build import check_lr, check_nonneg, torch_chain
from funcnet.optim.adam import _betas
from funcnet.optim.transforms import scale_by_torch_nadam


def NAdam(
    lr: Any = 2e-3,
    betas: tuple[Any, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    momentum_decay: float = 4e-3,
    decoupled_weight_decay: bool = False,
    *,
    maximize: bool = False,
) -> optax.GradientTransformation:
    """``torch.optim.NAdam(params, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
    momentum_decay=4e-3, decoupled_weight_decay=False)``.

    Dozat's NAdam with torch's ``μ_t = β1·(1 − ½·0.96^{t·momentum_decay})`` (see
    ``scale_by_torch_nadam``); ``optax.nadam`` has no momentum-decay schedule and differs.
    ``decoupled_weight_decay=True`` gives NAdamW (``p *= 1 − lr·wd``). No ``params`` argument.
    """
    check_lr("NAdam", lr)
    check_nonneg("NAdam", "epsilon", eps)
    check_nonneg("NAdam", "weight_decay", weight_decay)
    check_nonneg("NAdam", "momentum_decay", momentum_decay)
    b1, b2 = _betas("NAdam", lr, betas)
    return torch_chain(
        scale_by_torch_nadam(b1, b2, eps, momentum_decay),
        lr=lr,
        weight_decay=weight_decay,
        decoupled=decoupled_weight_decay,
        maximize=maximize,
    )
