"""Adadelta with torch's defaults (lr=1.0, rho=0.9, eps=1e-6)."""

from __future__ import annotations

from typing import Any

import optax

from funcnet.optim._build import check_lr, check_nonneg, torch_chain


def Adadelta(
    lr: Any = 1.0,
    rho: float = 0.9,
    eps: float = 1e-6,
    weight_decay: float = 0.0,
    *,
    maximize: bool = False,
) -> optax.GradientTransformation:
    """``torch.optim.Adadelta(params, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0)``.

    ``v = ρv + (1−ρ)g²``; ``δ = sqrt(u+eps)/sqrt(v+eps)·g``; ``u = ρu + (1−ρ)δ²``; ``p −= lr·δ``.
    This is exactly ``optax.scale_by_adadelta(rho, eps)`` (reused); ``optax.adadelta`` itself
    defaults to ``eps=1e-6``, ``rho=0.9`` but has no torch-style L2 ``weight_decay``/``maximize``.
    No ``params`` argument (see ``SGD``).
    """
    check_lr("Adadelta", lr)
    check_nonneg("Adadelta", "epsilon", eps)
    check_nonneg("Adadelta", "weight_decay", weight_decay)
    if not 0.0 <= rho <= 1.0:
        raise ValueError(f"funcnet.optim.Adadelta: Invalid rho value: {rho}")
    return torch_chain(
        optax.scale_by_adadelta(rho=rho, eps=eps), lr=lr, weight_decay=weight_decay, maximize=maximize
    )
