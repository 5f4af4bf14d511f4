"""Compiled train and eval steps: pure functions of a :class:`TrainState` and a batch.

The torch loop ::

    optimizer.zero_grad(); loss = criterion(model(x), y); loss.backward(); optimizer.step()

becomes one jitted call ``state, metrics = train_step(state, (x, y))``. The state
is donated, so parameters and optimizer state are updated in place on the device.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import optax

from funcnet.nn.utils.trainable import NameSpec, merge, split_trainable
from funcnet.train import metrics as M
from funcnet.train.state import TrainState

LossFn = Callable[[jax.Array, jax.Array], jax.Array]


def train_step_fn(
    model: Any,
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    topk: tuple[int, ...] = (),
    compute_dtype: Any = None,
    trainable: NameSpec | None = None,
    eval_modules: tuple[str, ...] = (),
) -> Callable[[TrainState, Any, jax.Array | None], tuple[TrainState, M.Metrics]]:
    """The un-jitted step ``(state, (x, y), key=None) -> (state, metrics)``.

    The key for step ``k`` is ``fold_in(state.key, k)`` unless one is given, so
    the run is reproducible from the state alone. Shared by the step-by-step loop
    and the compiled epoch, which is why both give the same bits.

    With ``trainable`` (a name selector, see ``funcnet.nn.utils.split_trainable``) the
    parameters are split inside the step: only the trainable part is differentiated and
    given to the optimizer (whose state must be ``optimizer.init`` of that part, see
    ``TrainState.create(..., trainable=...)``); the rest is a constant, left untouched.
    """

    def step(state: TrainState, batch: Any, key: jax.Array | None = None):
        inputs, target = batch
        # Derived lazily: a model without dropout traces no key arithmetic at all.
        step_key = (lambda: jax.random.fold_in(state.key, state.step)) if key is None else key

        def objective(params):
            out, buffers = model.apply(
                params, inputs, buffers=state.buffers, key=step_key, train=True, compute_dtype=compute_dtype,
                eval_modules=eval_modules,
            )
            return loss_fn(out, target), (out, buffers)

        if trainable is None:
            (loss, (out, buffers)), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
            updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
            params = optax.apply_updates(state.params, updates)
        else:
            train_params, frozen = split_trainable(state.params, trainable)
            (loss, (out, buffers)), grads = jax.value_and_grad(
                lambda p: objective(merge(p, frozen)), has_aux=True
            )(train_params)
            updates, opt_state = optimizer.update(grads, state.opt_state, train_params)
            params = merge(optax.apply_updates(train_params, updates), frozen)
        new_state = state.replace(
            params=params,
            buffers=buffers,
            opt_state=opt_state,
            step=state.step + 1,
        )
        return new_state, M.batch_metrics(loss, out, target, state.step, topk)

    return step


def eval_step_fn(model: Any, loss_fn: LossFn, topk: tuple[int, ...] = (), compute_dtype: Any = None):
    """The un-jitted eval step ``(state, (x, y)) -> metrics`` (eval mode, no key)."""

    def step(state: TrainState, batch: Any) -> M.Metrics:
        inputs, target = batch
        out = model.apply(state.params, inputs, buffers=state.buffers, compute_dtype=compute_dtype)
        return M.batch_metrics(loss_fn(out, target), out, target, state.step, topk)

    return step


class TrainStep:
    """A jitted train step. ``step(state, batch, key=None) -> (state, metrics)``.

    ``step.accumulate(state, running, batch) -> (state, running)`` adds the batch's
    metrics to ``running`` inside the same compiled call, so a loop keeps its sums
    on the device with no extra dispatch per step. Only ``state`` is donated.
    """

    def __init__(self, fn: Callable, donate: bool = True):
        self.fn = fn
        donate_state = (0,) if donate else ()
        self._step = jax.jit(fn, donate_argnums=donate_state)

        def accumulate(state, running, batch):
            state, batch_metrics = fn(state, batch)
            return state, M.merge(running, batch_metrics)

        # `running` is not donated: a loop may keep an earlier value and read it later
        # (fit's lagged progress read) without waiting for the newest step.
        self._accumulate = jax.jit(accumulate, donate_argnums=(0,) if donate else ())

    def __call__(self, state: TrainState, batch: Any, key: jax.Array | None = None):
        return self._step(state, batch, key)

    def accumulate(self, state: TrainState, running: M.Metrics, batch: Any):
        return self._accumulate(state, running, batch)


class EvalStep:
    """A jitted eval step. ``step(state, batch) -> metrics``; ``accumulate`` as in :class:`TrainStep`."""

    def __init__(self, fn: Callable):
        self.fn = fn
        self._step = jax.jit(fn)
        self._accumulate = jax.jit(lambda state, running, batch: M.merge(running, fn(state, batch)),
                                   donate_argnums=(1,))

    def __call__(self, state: TrainState, batch: Any) -> M.Metrics:
        return self._step(state, batch)

    def accumulate(self, state: TrainState, running: M.Metrics, batch: Any) -> M.Metrics:
        return self._accumulate(state, running, batch)


def make_train_step(
    model: Any,
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    *,
    topk: tuple[int, ...] = (),
    compute_dtype: Any = None,
    donate: bool = True,
    trainable: NameSpec | None = None,
    eval_modules: tuple[str, ...] = (),
) -> TrainStep:
    """A jitted step ``(state, (x, y), key=None) -> (state, metrics)``.

    Args:
        model: a funcnet ``Module``.
        loss_fn: ``loss_fn(output, target) -> scalar``, e.g. ``nn.CrossEntropyLoss()``.
        optimizer: any ``optax.GradientTransformation`` (``funcnet.optim.SGD(lr=0.01)``, ...).
        topk: extra top-k accuracies to count (e.g. ``(5,)``).
        compute_dtype: a mixed-precision policy, e.g. ``jnp.bfloat16`` (parameters stay float32).
        donate: donate the input state's buffers (do not reuse the state you passed in).
        trainable: train only these parameters (torch: ``requires_grad_(False)`` on the rest).
            A predicate on the dotted torch name, a name, or a list of names / module prefixes
            (``"head"`` selects ``head.*``). Gradients are computed for this part only, and
            ``state.opt_state`` must have been made from it:
            ``TrainState.create(model, optimizer, key, trainable=...)``. ``None``: all.
        eval_modules: submodules kept in eval mode while training (torch's
            ``model.backbone.eval()``): their BatchNorm uses its running statistics, their
            dropout is off. Typical with a frozen backbone: ``eval_modules=("backbone",)``.
    """
    return TrainStep(train_step_fn(model, loss_fn, optimizer, topk, compute_dtype, trainable, eval_modules), donate)


def make_eval_step(model: Any, loss_fn: LossFn, *, topk: tuple[int, ...] = (), compute_dtype: Any = None) -> EvalStep:
    """A jitted eval step ``(state, (x, y)) -> metrics`` (``train=False``: BatchNorm uses running stats)."""
    return EvalStep(eval_step_fn(model, loss_fn, topk, compute_dtype))
