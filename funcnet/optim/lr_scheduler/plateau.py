"""``ReduceLROnPlateau``: torch's metric-driven lr reduction as a pure, jittable state update."""

from __future__ import annotations

import copy
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp


class PlateauState(NamedTuple):
    """torch's ``ReduceLROnPlateau`` attributes as arrays.

    ``lr`` is the lr the next update uses (torch's ``group['lr']``); ``best``,
    ``num_bad_epochs``, ``cooldown_counter`` and ``last_epoch`` are torch's attributes.
    """

    lr: jax.Array
    best: jax.Array
    num_bad_epochs: jax.Array
    cooldown_counter: jax.Array
    last_epoch: jax.Array


class ReduceLROnPlateau:
    """``torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode='min', factor=0.1, patience=10,
    threshold=1e-4, threshold_mode='rel', cooldown=0, min_lr=0, eps=1e-8)``.

    Exact torch semantics: a metric is an improvement if ``a < best·(1−threshold)`` ('rel') or
    ``a < best−threshold`` ('abs') (``>`` / ``1+threshold`` / ``+threshold`` in 'max' mode);
    otherwise ``num_bad_epochs += 1``. During cooldown the counter decrements and bad epochs are
    reset. When ``num_bad_epochs > patience`` (strictly — optax's ``reduce_on_plateau`` reduces
    one evaluation earlier), ``lr ← max(lr·factor, min_lr)`` is applied if it lowers the lr by
    more than ``eps``; then cooldown starts and the bad count resets.

    Differences from torch (purity): the initial ``lr`` is given here instead of read from an
    optimizer, and the state is an explicit ``PlateauState``:

        plateau = ReduceLROnPlateau(0.1, patience=3)
        optimizer = funcnet.optim.SGD(lr=plateau, momentum=0.9)   # lr read from the state
        opt_state = optimizer.init(params)
        ...                                # train an epoch (the update leaves the state alone)
        opt_state = plateau.step(opt_state, val_loss)              # torch: scheduler.step(val_loss)

    ``step`` is pure and jittable; it advances every ``PlateauState`` found in the tree it is
    given (so one call serves all parameter groups: with ``param_groups`` give each group its own
    lr via ``plateau.with_lr(lr)``; the counters stay identical since they see the same metrics).
    It also accepts a bare ``PlateauState`` from ``plateau.init()``. ``min_lr`` is one float for
    all groups (torch also accepts a per-group list). Comparisons run in the default float dtype
    (float32 unless x64 is enabled), torch compares Python floats.
    """

    def __init__(
        self,
        lr: float,
        mode: str = "min",
        factor: float = 0.1,
        patience: int = 10,
        threshold: float = 1e-4,
        threshold_mode: str = "rel",
        cooldown: int = 0,
        min_lr: float = 0.0,
        eps: float = 1e-8,
    ) -> None:
        if factor >= 1.0:
            raise ValueError("Factor should be < 1.0.")
        if mode not in {"min", "max"}:
            raise ValueError("mode " + mode + " is unknown!")
        if threshold_mode not in {"rel", "abs"}:
            raise ValueError("threshold mode " + threshold_mode + " is unknown!")
        if isinstance(min_lr, (list, tuple)):
            raise TypeError(
                "funcnet ReduceLROnPlateau: min_lr must be one float (per-group lists are not supported)"
            )
        self.lr = float(lr)
        self.mode = mode
        self.factor = float(factor)
        self.patience = int(patience)
        self.threshold = float(threshold)
        self.threshold_mode = threshold_mode
        self.cooldown = int(cooldown)
        self.min_lr = float(min_lr)
        self.eps = float(eps)

    def with_lr(self, lr: float) -> ReduceLROnPlateau:
        """The same plateau rule starting from another lr (for another parameter group)."""
        new = copy.copy(self)
        new.lr = float(lr)
        return new

    def init(self) -> PlateauState:
        """torch's state right after construction (``best`` = ±inf, counters 0)."""
        f = jnp.result_type(float)
        worst = jnp.inf if self.mode == "min" else -jnp.inf

        def zero() -> jax.Array:  # distinct buffers, so the state can be donated to jit
            return jnp.zeros((), jnp.int32)

        return PlateauState(
            lr=jnp.asarray(self.lr, f),
            best=jnp.asarray(worst, f),
            num_bad_epochs=zero(),
            cooldown_counter=zero(),
            last_epoch=zero(),
        )

    def _is_better(self, a: jax.Array, best: jax.Array) -> jax.Array:
        if self.mode == "min" and self.threshold_mode == "rel":
            return a < best * (1.0 - self.threshold)
        if self.mode == "min":
            return a < best - self.threshold
        if self.threshold_mode == "rel":
            return a > best * (self.threshold + 1.0)
        return a > best + self.threshold

    def _step_one(self, s: PlateauState, metric: jax.Array) -> PlateauState:
        current = jnp.asarray(metric, s.best.dtype).reshape(())
        better = self._is_better(current, s.best)
        best = jnp.where(better, current, s.best)
        bad = jnp.where(better, 0, s.num_bad_epochs + 1)
        in_cooldown = s.cooldown_counter > 0
        cooldown_counter = jnp.where(in_cooldown, s.cooldown_counter - 1, s.cooldown_counter)
        bad = jnp.where(in_cooldown, 0, bad)
        reduce = bad > self.patience
        new_lr = jnp.maximum(s.lr * self.factor, self.min_lr)
        lr = jnp.where(reduce & (s.lr - new_lr > self.eps), new_lr, s.lr)
        cooldown_counter = jnp.where(reduce, self.cooldown, cooldown_counter)
        bad = jnp.where(reduce, 0, bad)
        return PlateauState(
            lr=lr.astype(s.lr.dtype),
            best=best,
            num_bad_epochs=bad.astype(jnp.int32),
            cooldown_counter=cooldown_counter.astype(jnp.int32),
            last_epoch=s.last_epoch + 1,
        )

    def step(self, state: Any, metric: Any) -> Any:
        """torch's ``scheduler.step(metric)``: advance every ``PlateauState`` in ``state``."""
        is_state = lambda x: isinstance(x, PlateauState)
        found = [x for x in jax.tree_util.tree_leaves(state, is_leaf=is_state) if is_state(x)]
        if not found:
            raise ValueError(
                "ReduceLROnPlateau.step: no PlateauState in the given state; pass the optimizer state of "
                "an optimizer built with lr=<this ReduceLROnPlateau>, or plateau.init()"
            )
        return jax.tree_util.tree_map(
            lambda x: self._step_one(x, metric) if is_state(x) else x, state, is_leaf=is_state
        )

    def __repr__(self) -> str:
        return (
            f"ReduceLROnPlateau(lr={self.lr}, mode={self.mode!r}, factor={self.factor}, "
            f"patience={self.patience}, threshold={self.threshold}, threshold_mode={self.threshold_mode!r}, "
            f"cooldown={self.cooldown}, min_lr={self.min_lr}, eps={self.eps})"
        )
