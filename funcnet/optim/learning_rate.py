"""The learning-rate step of every funcnet optimizer, and ``get_lr`` to read it back.

torch keeps ``param_groups[i]['lr']`` on the optimizer; funcnet records the lr inside the optax
state of this transform, so a training loop can display it (``get_lr(opt_state)``) and a
``ReduceLROnPlateau`` can change it, while everything stays a pure ``GradientTransformation``.

Count ↔ torch: the update made with optax count ``c`` (``c`` updates already applied) uses
``lr(c)``; in torch this is the lr after ``c`` calls of ``scheduler.step()`` when the scheduler
is stepped once per ``optimizer.step()`` (see ``funcnet.optim.lr_scheduler``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from funcnet.optim.lr_scheduler.plateau import PlateauState, ReduceLROnPlateau

ScalarOrSchedule = float | jax.Array | Callable[[jax.Array], jax.Array]


class LRState(NamedTuple):
    """State of ``scale_by_lr``: ``count`` updates made, ``lr`` the lr the *next* update uses."""

    count: jax.Array
    lr: jax.Array


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class ConstantLRState:
    """State of ``scale_by_lr`` with a constant Python-number lr: the lr as static data.

    No arrays: the compiled step carries no counter or lr buffer for a fixed learning rate
    (optax's ``sgd(0.01)`` carries none either), yet ``get_lr`` still reads it back.
    """

    lr: float = field(metadata=dict(static=True))


def value_at(x: ScalarOrSchedule, count: jax.Array) -> jax.Array:
    """``x(count)`` for a schedule, ``x`` for a constant, as a float array."""
    v = x(count) if callable(x) else x
    return jnp.asarray(v, dtype=jnp.result_type(float))


def scale_by_lr(lr: ScalarOrSchedule | ReduceLROnPlateau) -> optax.GradientTransformation:
    """``updates ← -lr · updates`` (torch's final ``p.add_(update, alpha=-lr)``), recording the lr.

    ``lr`` is a float, any optax schedule ``count -> lr`` (e.g. a ``funcnet.optim.lr_scheduler``
    object) or a ``ReduceLROnPlateau`` (its ``PlateauState`` then lives here and is advanced with
    ``plateau.step(opt_state, metric)``). Equivalent to ``optax.scale_by_learning_rate`` plus a
    record of the current lr for ``get_lr``.
    """
    if isinstance(lr, ReduceLROnPlateau):
        plateau = lr

        def init_plateau(params: Any) -> PlateauState:
            del params
            return plateau.init()

        def update_plateau(updates: Any, state: PlateauState, params: Any = None):
            del params
            updates = jax.tree_util.tree_map(lambda g: (-state.lr).astype(g.dtype) * g, updates)
            return updates, state

        return optax.GradientTransformation(init_plateau, update_plateau)

    if isinstance(lr, (int, float)):
        constant = float(lr)

        def init_constant(params: Any) -> ConstantLRState:
            del params
            return ConstantLRState(constant)

        def update_constant(updates: Any, state: ConstantLRState, params: Any = None):
            del params
            updates = jax.tree_util.tree_map(lambda g: jnp.asarray(-constant, g.dtype) * g, updates)
            return updates, state

        return optax.GradientTransformation(init_constant, update_constant)

    def init_fn(params: Any) -> LRState:
        del params
        count = jnp.zeros((), jnp.int32)
        return LRState(count=count, lr=value_at(lr, count))

    def update_fn(updates: Any, state: LRState, params: Any = None):
        del params
        step_lr = value_at(lr, state.count)
        updates = jax.tree_util.tree_map(lambda g: (-step_lr).astype(g.dtype) * g, updates)
        count = optax.safe_increment(state.count)
        return updates, LRState(count=count, lr=value_at(lr, count))

    return optax.GradientTransformation(init_fn, update_fn)


def get_lrs(opt_state: Any) -> list[jax.Array]:
    """Every learning rate recorded in ``opt_state``, in tree order (one per parameter group).

    Each is the lr the *next* update will use — torch's ``[g['lr'] for g in opt.param_groups]``
    after ``scheduler.step()``. Parameter groups built by ``funcnet.optim.param_groups`` come in
    group order, with the default group last.
    """
    is_lr = lambda x: isinstance(x, (LRState, ConstantLRState, PlateauState))
    return [jnp.asarray(s.lr, jnp.result_type(float)) if isinstance(s, ConstantLRState) else s.lr
            for s in jax.tree_util.tree_leaves(opt_state, is_leaf=is_lr) if is_lr(s)]


def get_lr(opt_state: Any) -> jax.Array | list[jax.Array]:
    """The current learning rate: a 0-d array, or a list of them with several parameter groups.

    torch: ``optimizer.param_groups[0]['lr']`` / ``scheduler.get_last_lr()``. Works on the state
    of any funcnet optimizer, also nested inside an optax chain, ``param_groups`` or ``freeze``.
    Raises ``ValueError`` if the state holds no funcnet learning rate.
    """
    lrs = get_lrs(opt_state)
    if not lrs:
        raise ValueError(
            "get_lr: no funcnet learning-rate state (LRState / ConstantLRState / PlateauState) found in opt_state; "
            "build the optimizer with funcnet.optim (or funcnet.optim.scale_by_lr)"
        )
    return lrs[0] if len(lrs) == 1 else lrs
