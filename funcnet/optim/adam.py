"""Adam, AdamW (and AMSGrad) with torch's defaults, bias corrections and weight-decay forms."""

from __future__ import annotations

from typing import Any

import optax

from funcnet.optim._build import check_lr, check_nonneg, cycled_momentum, torch_chain
from funcnet.optim.transforms import scale_by_torch_adam


def _betas(name: str, lr: Any, betas: tuple[Any, float]) -> tuple[Any, float]:
    b1, b2 = betas
    for i, b in enumerate((b1, b2)):
        if isinstance(b, (int, float)) and not 0.0 <= b < 1.0:
            raise ValueError(f"funcnet.optim.{name}: Invalid beta parameter at index {i}: {b}")
    cyc = cycled_momentum(lr)
    return (cyc if cyc is not None else b1), b2


def Adam(
    lr: Any = 1e-3,
    betas: tuple[Any, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    amsgrad: bool = False,
    *,
    maximize: bool = False,
    decoupled_weight_decay: bool = False,
) -> optax.GradientTransformation:
    """``torch.optim.Adam(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False,
    maximize=False, decoupled_weight_decay=False)``.

    ``g += wd·p`` (L2, coupled; decoupled → AdamW); ``p −= lr·(m/(1−β1^t)) / (sqrt(v̂)/sqrt(1−β2^t) + eps)``.
    The algebra equals ``optax.adam``, but funcnet's ``scale_by_torch_adam`` computes the bias
    corrections to float32 accuracy (optax's float32 ``1 − 0.999**t`` is 1.3e-5 off at t = 1) and
    implements torch's AMSGrad (max over the raw v; optax's ``amsgrad`` differs).
    ``lr`` float or schedule; ``betas[0]`` may be a schedule, and ``lr=OneCycleLR(...)`` cycles it.
    No ``params`` argument (see ``SGD``).
    """
    check_lr("Adam", lr)
    check_nonneg("Adam", "epsilon", eps)
    check_nonneg("Adam", "weight_decay", weight_decay)
    b1, b2 = _betas("Adam", lr, betas)
    return torch_chain(
        scale_by_torch_adam(b1, b2, eps, amsgrad),
        lr=lr,
        weight_decay=weight_decay,
        decoupled=decoupled_weight_decay,
        maximize=maximize,
    )


def AdamW(
    lr: Any = 1e-3,
    betas: tuple[Any, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 1e-2,
    amsgrad: bool = False,
    *,
    maximize: bool = False,
) -> optax.GradientTransformation:
    """``torch.optim.AdamW(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False)``.

    ``p ← p·(1 − lr·wd)`` then the Adam step; written as ``−lr·(adam + wd·p)`` (identical).
    **torch's default weight_decay is 1e-2** — ``optax.adamw`` defaults to 1e-4. No ``params``
    argument (see ``SGD``).
    """
    check_lr("AdamW", lr)
    check_nonneg("AdamW", "epsilon", eps)
    check_nonneg("AdamW", "weight_decay", weight_decay)
    b1, b2 = _betas("AdamW", lr, betas)
    return torch_chain(
        scale_by_torch_adam(b1, b2, eps, amsgrad),
        lr=lr,
        weight_decay=weight_decay,
        decoupled=True,
        maximize=maximize,
    )
