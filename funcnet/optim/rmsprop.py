"""RMSprop with torch's alpha=0.99, eps outside the sqrt, centered and momentum variants."""

from __future__ import annotations

from typing import Any

import optax

from funcnet.optim._build import check_lr, check_nonneg, cycled_momentum, torch_chain
from funcnet.optim.transforms import scale_by_momentum


def RMSprop(
    lr: Any = 1e-2,
    alpha: float = 0.99,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    momentum: Any = 0.0,
    centered: bool = False,
    *,
    maximize: bool = False,
) -> optax.GradientTransformation:
    """``torch.optim.RMSprop(params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0,
    centered=False)``.

    ``v = α·v + (1−α)·g²``; ``avg = sqrt(v) + eps`` (centered: ``sqrt(v − ḡ²) + eps``);
    momentum: ``b = μ·b + g/avg``, ``p −= lr·b``; else ``p −= lr·g/avg``.
    Built from ``optax.scale_by_rms`` / ``scale_by_stddev`` with ``decay=alpha``,
    ``eps_in_sqrt=False``, ``initial_scale=0`` and ``optax.trace`` *before* the lr — whereas
    ``optax.rmsprop`` defaults to decay 0.9, eps inside the sqrt, and scales by lr before the
    momentum trace (wrong for a scheduled lr). No ``params`` argument (see ``SGD``).
    """
    check_lr("RMSprop", lr)
    check_nonneg("RMSprop", "epsilon", eps)
    check_nonneg("RMSprop", "momentum", momentum)
    check_nonneg("RMSprop", "weight_decay", weight_decay)
    check_nonneg("RMSprop", "alpha", alpha)
    cyc = cycled_momentum(lr)
    if cyc is not None:
        momentum = cyc
    scale = optax.scale_by_stddev if centered else optax.scale_by_rms
    parts = [scale(decay=alpha, eps=eps, initial_scale=0.0, eps_in_sqrt=False)]
    if callable(momentum) or momentum > 0:
        parts.append(scale_by_momentum(momentum))
    return torch_chain(optax.chain(*parts), lr=lr, weight_decay=weight_decay, maximize=maximize)
