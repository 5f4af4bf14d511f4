"""CosineAnnealingLR (periodic, as torch) and CosineAnnealingWarmRestarts.

The half-cosine ``(1 + cos(π·t/T))/2`` is evaluated as ``sin²(π·(T − t)/(2T))`` with the
integer ``T − t`` formed exactly, so small learning rates near ``eta_min`` keep full float32
relative precision (the direct formula loses it to cancellation when T is large).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from funcnet.optim.lr_scheduler._base import LRSchedule, _check_spe


def _half_cos_int(t: jax.Array, period: jax.Array | int) -> jax.Array:
    """``(1 + cos(π t / T)) / 2`` for integers 0 ≤ t ≤ T, accurately."""
    f = jnp.result_type(float)
    return jnp.sin(jnp.pi * (period - t).astype(f) / (2.0 * jnp.asarray(period, f))) ** 2


class CosineAnnealingLR(LRSchedule):
    """``torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max, eta_min=0.0)``.

    ``η_min + (lr − η_min)·(1 + cos(π e / T_max))/2`` for every ``e``, i.e. **periodic** past
    ``T_max`` (it rises back to ``lr`` at ``2·T_max``) exactly like torch's recursive formula —
    unlike ``optax.cosine_decay_schedule``, which stays at ``η_min``. Integer ``T_max`` uses the
    exact periodic reduction; a float ``T_max`` uses the plain formula.
    """

    def __init__(self, lr: float, T_max: int, eta_min: float = 0.0, *, steps_per_epoch: int = 1) -> None:
        self.lr, self.T_max, self.eta_min = float(lr), T_max, float(eta_min)
        self.steps_per_epoch = _check_spe(steps_per_epoch)

    def lr_at(self, epoch: jax.Array) -> jax.Array:
        if isinstance(self.T_max, int) or float(self.T_max).is_integer():
            T = int(self.T_max)
            d = epoch % (2 * T)
            d = jnp.where(d > T, 2 * T - d, d)
            h = _half_cos_int(d, T)
        else:
            h = (1 + jnp.cos(math.pi * epoch.astype(jnp.result_type(float)) / self.T_max)) / 2
        return self.eta_min + (self.lr - self.eta_min) * h


class CosineAnnealingWarmRestarts(LRSchedule):
    """``torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(optimizer, T_0, T_mult=1, eta_min=0.0)``.

    ``η_min + (lr − η_min)·(1 + cos(π T_cur / T_i))/2``, restarting after ``T_i`` steps with
    ``T_i ← T_i·T_mult``; ``T_cur`` and ``T_i`` are computed exactly from the integer step.
    torch's fractional ``scheduler.step(epoch + i/iters)`` calls are not modelled: step it per
    batch (``steps_per_epoch=1``, T in batches) or per epoch (``steps_per_epoch=S``).
    """

    def __init__(
        self, lr: float, T_0: int, T_mult: int = 1, eta_min: float = 0.0, *, steps_per_epoch: int = 1
    ) -> None:
        if T_0 <= 0 or not isinstance(T_0, int):
            raise ValueError(f"Expected positive integer T_0, but got {T_0}")
        if T_mult < 1 or not isinstance(T_mult, int):
            raise ValueError(f"Expected integer T_mult >= 1, but got {T_mult}")
        self.lr, self.T_0, self.T_mult, self.eta_min = float(lr), T_0, T_mult, float(eta_min)
        self.steps_per_epoch = _check_spe(steps_per_epoch)
        starts, lengths, s, t = [], [], 0, T_0
        while s < 2**31 - 1:
            starts.append(s)
            lengths.append(min(t, 2**31 - 1))
            if T_mult == 1:
                break
            s, t = s + t, t * T_mult
        self._starts, self._lengths = starts, lengths

    def lr_at(self, epoch: jax.Array) -> jax.Array:
        if self.T_mult == 1:
            t_cur, t_i = epoch % self.T_0, jnp.asarray(self.T_0, jnp.int32)
        else:
            starts = jnp.asarray(self._starts, epoch.dtype)
            idx = jnp.searchsorted(starts, epoch, side="right") - 1
            t_cur = epoch - starts[idx]
            t_i = jnp.asarray(self._lengths, epoch.dtype)[idx]
        return self.eta_min + (self.lr - self.eta_min) * _half_cos_int(t_cur, t_i)


__all__ = ["CosineAnnealingLR", "CosineAnnealingWarmRestarts"]
