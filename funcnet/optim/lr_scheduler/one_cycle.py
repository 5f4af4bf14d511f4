"""OneCycleLR with torch's breakpoints and its momentum / β1 cycling."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from funcnet.optim.lr_scheduler._base import LRSchedule, _float


def _phases(total_steps: int, pct_start: float, three_phase: bool) -> list[tuple[float, str, str, str, str]]:
    """torch's ``_schedule_phases``: (end_step, start_lr, end_lr, start_momentum, end_momentum)."""
    if three_phase:
        return [
            (float(pct_start * total_steps) - 1, "initial_lr", "max_lr", "max_momentum", "base_momentum"),
            (float(2 * pct_start * total_steps) - 2, "max_lr", "initial_lr", "base_momentum", "max_momentum"),
            (total_steps - 1, "initial_lr", "min_lr", "max_momentum", "max_momentum"),
        ]
    return [
        (float(pct_start * total_steps) - 1, "initial_lr", "max_lr", "max_momentum", "base_momentum"),
        (total_steps - 1, "max_lr", "min_lr", "base_momentum", "max_momentum"),
    ]


class _Cycled:
    """A piecewise annealed curve over torch's OneCycle phases (used for lr and momentum)."""

    def __init__(self, owner: OneCycleLR, which: str) -> None:
        self.owner, self.which = owner, which

    def __call__(self, count) -> jax.Array:
        o = self.owner
        step = jnp.asarray(count, jnp.int32).astype(jnp.result_type(float))
        values = o._values()
        phases = _phases(o.total_steps, o.pct_start, o.three_phase)
        pieces, start_step = [], 0.0
        for end_step, slr, elr, smom, emom in phases:
            a, b = (values[slr], values[elr]) if self.which == "lr" else (values[smom], values[emom])
            span = end_step - start_step
            # Anneal a → b over the phase, evaluated around the nearer end point so that values
            # close to either end keep full float32 relative precision (torch works in float64):
            # cos: b + (a − b)·(1 + cos πp)/2 = a + (b − a)·sin²(πp/2) = b + (a − b)·sin²(π(1−p)/2).
            p = (step - start_step) / span
            q = (end_step - step) / span  # 1 − p, formed directly
            if o.anneal_strategy == "cos":
                from_start = a + (b - a) * jnp.sin(math.pi / 2 * p) ** 2
                from_end = b + (a - b) * jnp.sin(math.pi / 2 * q) ** 2
            else:
                from_start = a + (b - a) * p
                from_end = b + (a - b) * q
            v = jnp.where(p <= 0.5, from_start, from_end)
            pieces.append((end_step, v))
            start_step = end_step
        # torch picks the first phase with step <= end_step, else the last one.
        out = pieces[-1][1]
        for end_step, v in reversed(pieces[:-1]):
            out = jnp.where(step <= end_step, v, out)
        return _float(out)


class OneCycleLR(LRSchedule):
    """``torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr, total_steps=None, epochs=None,
    steps_per_epoch=None, pct_start=0.3, anneal_strategy='cos', cycle_momentum=True,
    base_momentum=0.85, max_momentum=0.95, div_factor=25.0, final_div_factor=1e4, three_phase=False)``.

    torch's breakpoints: phase 1 ends at ``pct_start·total_steps − 1`` (a float), the last at
    ``total_steps − 1``; ``initial_lr = max_lr/div_factor``, ``min_lr = initial_lr/final_div_factor``.
    ``optax.cosine_onecycle_schedule`` puts the peak at ``int(pct_start·total_steps)`` instead.
    ``steps_per_epoch`` keeps torch's meaning (``total_steps = epochs·steps_per_epoch``, stepped
    per batch); to step it per epoch use ``per_epoch(OneCycleLR(...), S)``.

    Momentum: with ``cycle_momentum=True`` torch overwrites the optimizer's ``momentum`` (SGD,
    RMSprop) or ``betas[0]`` (Adam family) every step, between ``max_momentum`` and
    ``base_momentum``. ``self.momentum`` is that schedule, and funcnet's optimizers pick it up
    automatically when given ``lr=OneCycleLR(...)`` (as torch, this overrides the momentum/β1
    passed to the optimizer, and turns SGD momentum on even if it was 0).

    Past the end: torch raises when stepped past ``total_steps``; a compiled schedule cannot, so
    evaluated at ``count >= total_steps`` it extrapolates the last phase's formula (the lr
    rises again). ``horizon`` is ``total_steps``, and ``funcnet.train.fit`` / ``make_train_step``
    check it on the host: the update after the last one raises torch's ``ValueError("Tried to
    step 70 times. The specified number of total steps is 69")`` before it runs.
    """

    def __init__(
        self,
        max_lr: float,
        total_steps: int | None = None,
        epochs: int | None = None,
        steps_per_epoch: int | None = None,
        pct_start: float = 0.3,
        anneal_strategy: str = "cos",
        cycle_momentum: bool = True,
        base_momentum: float = 0.85,
        max_momentum: float = 0.95,
        div_factor: float = 25.0,
        final_div_factor: float = 1e4,
        three_phase: bool = False,
    ) -> None:
        if total_steps is not None:
            if not isinstance(total_steps, int) or total_steps <= 0:
                raise ValueError(f"Expected positive integer total_steps, but got {total_steps}")
        elif epochs is not None and steps_per_epoch is not None:
            if not isinstance(epochs, int) or epochs <= 0:
                raise ValueError(f"Expected positive integer epochs, but got {epochs}")
            if not isinstance(steps_per_epoch, int) or steps_per_epoch <= 0:
                raise ValueError(f"Expected positive integer steps_per_epoch, but got {steps_per_epoch}")
            total_steps = epochs * steps_per_epoch
        else:
            raise ValueError("You must define either total_steps OR (epochs AND steps_per_epoch)")
        if pct_start < 0 or pct_start > 1 or not isinstance(pct_start, float):
            raise ValueError(f"Expected float between 0 and 1 pct_start, but got {pct_start}")
        if anneal_strategy not in ("cos", "linear"):
            raise ValueError(
                f"anneal_strategy must be one of 'cos' or 'linear', instead got {anneal_strategy}"
            )
        self.lr = float(max_lr)
        self.total_steps = total_steps
        self.pct_start = pct_start
        self.anneal_strategy = anneal_strategy
        self.cycle_momentum = bool(cycle_momentum)
        self.base_momentum, self.max_momentum = float(base_momentum), float(max_momentum)
        self.div_factor, self.final_div_factor = float(div_factor), float(final_div_factor)
        self.three_phase = bool(three_phase)
        self.steps_per_epoch = 1
        self.momentum = _Cycled(self, "momentum") if self.cycle_momentum else None

    @property
    def horizon(self) -> int:
        """``total_steps``: the number of optimizer updates the cycle is defined for."""
        return self.total_steps * self.steps_per_epoch

    @property
    def max_lr(self) -> float:
        return self.lr

    def _values(self) -> dict[str, float]:
        initial = self.lr / self.div_factor
        return {
            "initial_lr": initial,
            "max_lr": self.lr,
            "min_lr": initial / self.final_div_factor,
            "max_momentum": self.max_momentum,
            "base_momentum": self.base_momentum,
        }

    def lr_at(self, epoch: jax.Array) -> jax.Array:
        return _Cycled(self, "lr")(epoch)

    def with_lr(self, lr: float) -> OneCycleLR:
        new = super().with_lr(lr)
        if new.cycle_momentum:
            new.momentum = _Cycled(new, "momentum")
        return new
