"""Base class of funcnet's torch-named lr schedules (optax schedules ``count -> lr``)."""

from __future__ import annotations

import copy
import functools
import types
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp


def _float(x) -> jax.Array:
    return jnp.asarray(x, jnp.result_type(float))


def _check_spe(steps_per_epoch: int) -> int:
    if not isinstance(steps_per_epoch, int) or steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch must be a positive int, got {steps_per_epoch!r}")
    return steps_per_epoch


class LRSchedule:
    """A torch scheduler as an optax schedule: ``schedule(count) -> lr`` (jittable).

    How an optax count maps to torch: torch's scheduler constructor steps once (``last_epoch=0``)
    and each ``scheduler.step()`` advances ``last_epoch``; the ``optimizer.step()`` made after
    ``e`` scheduler steps uses ``f(e)``. optax evaluates the schedule with ``count`` = number of
    updates already made, so

    - scheduler stepped once per batch (``steps_per_epoch=1``, the default): ``lr(count) = f(count)``;
    - scheduler stepped once per epoch of ``S`` batches (``steps_per_epoch=S``):
      ``lr(count) = f(count // S)``, so the schedule can be evaluated per batch inside a compiled step.

    (Calling ``scheduler.step()`` *before* ``optimizer.step()`` in torch — which torch warns about —
    would give ``f(count + 1)``; funcnet follows the documented order.)

    Subclasses implement ``lr_at(epoch)`` (``epoch`` = torch's ``last_epoch``, an int32 array).
    ``momentum`` is a schedule for torch's cycled momentum / β1 (``OneCycleLR``) or None.
    """

    lr: float
    steps_per_epoch: int = 1
    momentum: Callable[[jax.Array], jax.Array] | None = None

    def lr_at(self, epoch: jax.Array) -> jax.Array:
        raise NotImplementedError

    @property
    def horizon(self) -> int | None:
        """How many optimizer updates the schedule is defined for, or None (no end).

        torch raises when a fixed-horizon scheduler (``OneCycleLR``) is stepped past its
        ``total_steps``; a compiled schedule cannot raise, so past the horizon it returns an
        extrapolation of its last phase. ``funcnet.train`` (``fit`` and ``make_train_step``)
        therefore checks the update count on the host against ``horizon`` and raises torch's
        error before the first update past it (see :func:`check_horizon`).
        """
        return None

    def _epoch(self, count) -> jax.Array:
        count = jnp.asarray(count, jnp.int32)
        return count // self.steps_per_epoch if self.steps_per_epoch != 1 else count

    def __call__(self, count) -> jax.Array:
        return _float(self.lr_at(self._epoch(count)))

    def with_lr(self, lr: float) -> LRSchedule:
        """The same schedule for another base lr (torch applies one scheduler to every param group,
        each with its own ``initial_lr``; ``funcnet.optim.param_groups`` uses this)."""
        new = copy.copy(self)
        new.lr = float(lr)
        return new

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


class _PerEpoch:
    def __init__(self, schedule: Callable, steps_per_epoch: int) -> None:
        self.schedule = schedule
        self.steps_per_epoch = _check_spe(steps_per_epoch)
        inner = getattr(schedule, "momentum", None)
        self.momentum = None if inner is None else _PerEpoch(inner, steps_per_epoch)

    def __call__(self, count) -> jax.Array:
        return self.schedule(jnp.asarray(count, jnp.int32) // self.steps_per_epoch)

    @property
    def horizon(self) -> int | None:
        inner = getattr(self.schedule, "horizon", None)
        return None if inner is None else inner * self.steps_per_epoch


def horizon_error(schedule: Any, updates: int, context: str = "") -> ValueError | None:
    """torch's error if ``updates`` optimizer updates run past ``schedule``'s horizon, else None.

    It names the first step past the end, counted in scheduler steps as torch counts them:
    ``Tried to step 70 times. The specified number of total steps is 69`` for a 69-step
    ``OneCycleLR`` (70 updates or more asked for).
    """
    horizon = getattr(schedule, "horizon", None)
    if horizon is None or updates <= horizon:
        return None
    per = getattr(schedule, "steps_per_epoch", 1)
    return ValueError(
        f"Tried to step {horizon // per + 1} times. The specified number of total steps is "
        f"{horizon // per} ({type(schedule).__name__} is defined for {horizon} optimizer updates{context}; "
        f"past them its lr would be extrapolated, so funcnet refuses the update, as torch's "
        f"scheduler.step() does)"
    )


def schedules_in(transform: Any) -> list:
    """The funcnet lr schedules used inside an optax transformation (found through the closures of
    its functions, so optimizers wrapped by ``optax.chain``, ``param_groups``, ``freeze`` count)."""
    found: list = []
    seen: set[int] = set()

    def visit(x: Any, depth: int) -> None:
        if depth > 16 or id(x) in seen:
            return
        seen.add(id(x))
        if isinstance(x, (LRSchedule, _PerEpoch)):
            found.append(x)
        elif isinstance(x, (tuple, list)):
            for v in x:
                visit(v, depth + 1)
        elif isinstance(x, dict):
            for v in x.values():
                visit(v, depth + 1)
        elif isinstance(x, types.FunctionType):
            for cell in x.__closure__ or ():
                try:
                    visit(cell.cell_contents, depth + 1)
                except ValueError:  # an empty cell
                    pass
        elif isinstance(x, functools.partial):
            visit((x.func, x.args, x.keywords), depth + 1)

    visit(transform, 0)
    return found


def check_horizon(optimizer: Any, updates: int, context: str = "") -> None:
    """Raise torch's "Tried to step N times" error if ``updates`` optimizer updates in total
    would run past the horizon of a schedule inside ``optimizer`` (see ``LRSchedule.horizon``)."""
    for schedule in schedules_in(optimizer):
        error = horizon_error(schedule, updates, context)
        if error is not None:
            raise error


def optimizer_horizon(optimizer: Any) -> int | None:
    """The fewest updates any schedule inside ``optimizer`` is defined for, or None."""
    horizons = [h for h in (getattr(s, "horizon", None) for s in schedules_in(optimizer)) if h is not None]
    return min(horizons) if horizons else None


def per_epoch(schedule: Callable, steps_per_epoch: int) -> Callable:
    """Evaluate any schedule (funcnet or plain optax) once per epoch: ``lr(c) = schedule(c // S)``.

    For schedules without a ``steps_per_epoch`` argument (``OneCycleLR`` keeps torch's meaning of
    that name, and plain optax schedules), e.g. torch's ``OneCycleLR(opt, max_lr, total_steps=E)``
    stepped per epoch becomes ``per_epoch(OneCycleLR(max_lr, total_steps=E), S)``.
    """
    return _PerEpoch(schedule, steps_per_epoch)
