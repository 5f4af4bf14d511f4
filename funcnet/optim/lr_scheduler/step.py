"""Piecewise and multiplicative schedules: StepLR, MultiStepLR, ExponentialLR, ConstantLR, LinearLR, LambdaLR.

Each is the closed form of torch's recursive ``get_lr`` (torch multiplies ``group['lr']`` in
float64 step by step; the values agree to float32 rounding).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

from funcnet.optim.lr_scheduler._base import LRSchedule, _check_spe, _float


class StepLR(LRSchedule):
    """``torch.optim.lr_scheduler.StepLR(optimizer, step_size, gamma=0.1)``: ``lr·γ^⌊e/step_size⌋``.

    ``lr`` replaces the optimizer argument (the group's initial lr). ``steps_per_epoch``: see ``LRSchedule``.
    """

    def __init__(self, lr: float, step_size: int, gamma: float = 0.1, *, steps_per_epoch: int = 1) -> None:
        self.lr, self.step_size, self.gamma = float(lr), int(step_size), float(gamma)
        self.steps_per_epoch = _check_spe(steps_per_epoch)

    def lr_at(self, epoch: jax.Array) -> jax.Array:
        return self.lr * jnp.power(
            _float(self.gamma), (epoch // self.step_size).astype(jnp.result_type(float))
        )


class MultiStepLR(LRSchedule):
    """``torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, gamma=0.1)``.

    ``lr·γ^k`` with ``k`` = number of milestones ≤ e (a repeated milestone counts repeatedly, as
    torch's Counter).
    """

    def __init__(
        self, lr: float, milestones: Sequence[int], gamma: float = 0.1, *, steps_per_epoch: int = 1
    ) -> None:
        self.lr, self.milestones, self.gamma = float(lr), sorted(int(m) for m in milestones), float(gamma)
        self.steps_per_epoch = _check_spe(steps_per_epoch)

    def lr_at(self, epoch: jax.Array) -> jax.Array:
        if not self.milestones:
            return _float(self.lr) + 0 * epoch
        k = jnp.searchsorted(jnp.asarray(self.milestones, jnp.int32), epoch, side="right")
        return self.lr * jnp.power(_float(self.gamma), k.astype(jnp.result_type(float)))


class ExponentialLR(LRSchedule):
    """``torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma)``: ``lr·γ^e``."""

    def __init__(self, lr: float, gamma: float, *, steps_per_epoch: int = 1) -> None:
        self.lr, self.gamma = float(lr), float(gamma)
        self.steps_per_epoch = _check_spe(steps_per_epoch)

    def lr_at(self, epoch: jax.Array) -> jax.Array:
        return self.lr * jnp.power(_float(self.gamma), epoch.astype(jnp.result_type(float)))


class ConstantLR(LRSchedule):
    """``torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1/3, total_iters=5)``:
    ``lr·factor`` for ``e < total_iters``, then ``lr``."""

    def __init__(
        self, lr: float, factor: float = 1.0 / 3, total_iters: int = 5, *, steps_per_epoch: int = 1
    ) -> None:
        if factor > 1.0 or factor < 0:
            raise ValueError("Constant multiplicative factor expected to be between 0 and 1.")
        self.lr, self.factor, self.total_iters = float(lr), float(factor), int(total_iters)
        self.steps_per_epoch = _check_spe(steps_per_epoch)

    def lr_at(self, epoch: jax.Array) -> jax.Array:
        return jnp.where(epoch < self.total_iters, self.lr * self.factor, self.lr)


class LinearLR(LRSchedule):
    """``torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=1/3, end_factor=1.0, total_iters=5)``:
    ``lr·(s + (e_f − s)·min(e, T)/T)``."""

    def __init__(
        self,
        lr: float,
        start_factor: float = 1.0 / 3,
        end_factor: float = 1.0,
        total_iters: int = 5,
        *,
        steps_per_epoch: int = 1,
    ) -> None:
        if start_factor > 1.0 or start_factor <= 0:
            raise ValueError(
                "Starting multiplicative factor expected to be greater than 0 and less or equal to 1."
            )
        if end_factor > 1.0 or end_factor < 0:
            raise ValueError("Ending multiplicative factor expected to be between 0 and 1.")
        self.lr, self.start_factor, self.end_factor = float(lr), float(start_factor), float(end_factor)
        self.total_iters = int(total_iters)
        self.steps_per_epoch = _check_spe(steps_per_epoch)

    def lr_at(self, epoch: jax.Array) -> jax.Array:
        t = jnp.minimum(epoch, self.total_iters).astype(jnp.result_type(float))
        frac = t / self.total_iters
        return self.lr * (self.start_factor + (self.end_factor - self.start_factor) * frac)


class LambdaLR(LRSchedule):
    """``torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda)``: ``lr·lr_lambda(e)``.

    Difference: ``lr_lambda`` receives ``e`` as an int32 JAX array and must be written with
    ``jnp`` operations (it is traced under ``jax.jit``); ``lambda e: 0.95 ** e`` works as is.
    """

    def __init__(
        self, lr: float, lr_lambda: Callable[[jax.Array], jax.Array], *, steps_per_epoch: int = 1
    ) -> None:
        if not callable(lr_lambda):
            raise TypeError(f"LambdaLR: lr_lambda must be callable, got {type(lr_lambda).__name__}")
        self.lr, self.lr_lambda = float(lr), lr_lambda
        self.steps_per_epoch = _check_spe(steps_per_epoch)

    def lr_at(self, epoch: jax.Array) -> jax.Array:
        return self.lr * _float(self.lr_lambda(epoch))


__all__ = ["ConstantLR", "ExponentialLR", "LambdaLR", "LinearLR", "MultiStepLR", "StepLR"]
