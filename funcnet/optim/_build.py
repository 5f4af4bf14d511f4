"""Assemble a torch optimizer from optax pieces in torch's order of operations."""

from __future__ import annotations

from typing import Any

import optax

from funcnet.optim.learning_rate import scale_by_lr


def check_lr(name: str, lr: Any) -> None:
    if isinstance(lr, (int, float)) and lr < 0.0:
        raise ValueError(f"funcnet.optim.{name}: Invalid learning rate: {lr}")


def check_nonneg(name: str, what: str, value: Any) -> None:
    if isinstance(value, (int, float)) and value < 0.0:
        raise ValueError(f"funcnet.optim.{name}: Invalid {what} value: {value}")


def cycled_momentum(lr: Any) -> Any:
    """The momentum/β1 schedule torch's OneCycleLR would write into the param group, or None."""
    return getattr(lr, "momentum", None)


def torch_chain(
    core: optax.GradientTransformation | None,
    *,
    lr: Any,
    weight_decay: float = 0.0,
    decoupled: bool = False,
    maximize: bool = False,
) -> optax.GradientTransformation:
    """``[maximize] → [g += wd·p] → core → [+ wd·p (decoupled)] → −lr``.

    The decoupled form ``−lr·(core + wd·p)`` equals torch's ``p *= 1 − lr·wd`` followed by the
    step (both use the current, possibly scheduled, lr).
    """
    parts: list[optax.GradientTransformation] = []
    if maximize:
        parts.append(optax.scale(-1.0))
    if weight_decay and not decoupled:
        parts.append(optax.add_decayed_weights(weight_decay))
    if core is not None:
        parts.append(core)
    if weight_decay and decoupled:
        parts.append(optax.add_decayed_weights(weight_decay))
    parts.append(scale_by_lr(lr))
    return optax.chain(*parts)
