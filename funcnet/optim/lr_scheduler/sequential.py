"""SequentialLR: run schedules one after another at milestones (warm-up then decay)."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from funcnet.optim.lr_scheduler._base import LRSchedule, _check_spe


class SequentialLR(LRSchedule):
    """``torch.optim.lr_scheduler.SequentialLR(optimizer, schedulers, milestones)``.

    torch's semantics: at scheduler step ``e`` the active scheduler is ``i = bisect_right(milestones, e)``
    and it is evaluated at ``e − milestones[i−1]`` (torch restarts it with ``step(0)`` at its
    milestone), i.e. ``optax.join_schedules`` in scheduler steps. Example (5 warm-up epochs)::

        SequentialLR([LinearLR(0.1, start_factor=0.01, total_iters=5),
                      CosineAnnealingLR(0.1, T_max=95)], milestones=[5], steps_per_epoch=S)

    The children are funcnet ``LRSchedule`` objects evaluated per scheduler step (their own
    ``steps_per_epoch`` must be 1; the conversion happens here). ``with_lr`` rebases every child.
    """

    def __init__(
        self, schedulers: Sequence[LRSchedule], milestones: Sequence[int], *, steps_per_epoch: int = 1
    ) -> None:
        schedulers = list(schedulers)
        if len(schedulers) < 1:
            raise ValueError("SequentialLR expects at least one scheduler, but got no scheduler.")
        if len(milestones) != len(schedulers) - 1:
            raise ValueError(
                "Sequential Schedulers expects number of schedulers provided to be one more than the number "
                f"of milestone points, but got number of schedulers {len(schedulers)} and the number of "
                f"milestones to be equal to {len(milestones)}"
            )
        for i, s in enumerate(schedulers):
            if not isinstance(s, LRSchedule):
                raise TypeError(
                    f"SequentialLR: scheduler {i} must be a funcnet LRSchedule, got {type(s).__name__}"
                )
            if s.steps_per_epoch != 1:
                raise ValueError(
                    f"SequentialLR: scheduler {i} ({type(s).__name__}) has steps_per_epoch="
                    f"{s.steps_per_epoch}; give steps_per_epoch to SequentialLR instead"
                )
        self.schedulers = schedulers
        self.milestones = [int(m) for m in milestones]
        self.lr = schedulers[0].lr
        self.steps_per_epoch = _check_spe(steps_per_epoch)

    def lr_at(self, epoch: jax.Array) -> jax.Array:
        out = self.schedulers[0].lr_at(epoch)
        for m, s in zip(self.milestones, self.schedulers[1:], strict=True):
            out = jnp.where(epoch >= m, s.lr_at(jnp.maximum(epoch - m, 0)), out)
        return out

    @property
    def horizon(self) -> int | None:
        """The last scheduler's horizon after the last milestone (None: no end)."""
        last = self.schedulers[-1].horizon
        start = self.milestones[-1] if self.milestones else 0
        return None if last is None else (start + last) * self.steps_per_epoch

    def with_lr(self, lr: float) -> SequentialLR:
        new = super().with_lr(lr)
        new.schedulers = [s.with_lr(lr) for s in self.schedulers]
        return new
