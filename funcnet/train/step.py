"""Compiled train and eval steps: pure functions of a :class:`TrainState` and a batch.

The torch loop ::

    optimizer.zero_grad(); loss = criterion(model(x), y); loss.backward(); optimizer.step()

becomes one jitted call ``state, metrics = train_step(state, (x, y))``. The state
is donated, so the optimizer state (and, except for sizeable models on CPU, the parameters) is
updated in place on the device.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import optax

from funcnet import backends
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

        _check_optimizer(optimizer, state, trainable)  # at trace time only
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


def _check_optimizer(optimizer: optax.GradientTransformation, state: TrainState, trainable: Any) -> None:
    """The step's optimizer must be the one ``state.opt_state`` was made with: compare the state
    tree it would create with the state's (at trace time, shapes only) and say so if they differ,
    instead of optax's "The number of updates and states has to be the same in chain!"."""
    params = state.params if trainable is None else split_trainable(state.params, trainable)[0]
    expected = jax.tree.structure(jax.eval_shape(optimizer.init, params))
    actual = jax.tree.structure(state.opt_state)
    if expected != actual:
        raise TypeError(
            "the optimizer given to the train step (make_train_step / fit) is not the one "
            "state.opt_state was made with: build both from one object, e.g. "
            "opt = funcnet.optim.Adam(lr=1e-3); state = TrainState.create(model, opt, key); "
            "fit(model, state, loader, optimizer=opt, ...)"
            + ("" if trainable is None else " (with trainable=..., create the state with the same trainable=)")
            + f".\n  state.opt_state: {_brief(actual)}\n  optimizer.init:  {_brief(expected)}"
        )


def _brief(treedef: Any) -> str:
    text = str(treedef)
    return text if len(text) <= 300 else text[:300] + " ..."


def _consumed_state_error(error: Exception) -> Exception:
    """A clear error for a state whose buffers were donated to an earlier step (XLA says only
    "Buffer has been deleted or donated"), else ``error`` itself."""
    text = str(error)
    if "deleted" in text or "donated" in text:
        return RuntimeError(
            "this TrainState was consumed by a previous train step: the step donates its input state "
            "(its arrays are updated in place), so use the state it returned "
            "(state, metrics = step(state, batch)), or make_train_step(..., donate=False) to keep inputs"
        )
    return error


class _Horizon:
    """Host-side count of updates against the optimizer's schedule horizon (``OneCycleLR``):
    raises torch's error before the first update past it. The count comes from the device once
    (the first state seen) and is then kept on the host for the states the step returns, so
    checking costs no device synchronisation per step."""

    def __init__(self, optimizer: optax.GradientTransformation) -> None:
        from funcnet.optim.lr_scheduler import optimizer_horizon

        self.optimizer = optimizer
        self.horizon = optimizer_horizon(optimizer)
        self._last: tuple[Any, int] | None = None  # (the state last returned, its step)

    def before(self, state: TrainState) -> int:
        if self._last is not None and self._last[0] is state:
            count = self._last[1]
        else:
            count = int(jax.device_get(state.step))
        from funcnet.optim.lr_scheduler import check_horizon

        check_horizon(self.optimizer, count + 1)
        return count

    def after(self, new_state: TrainState, count: int) -> None:
        self._last = (new_state, count + 1)


def eval_step_fn(model: Any, loss_fn: LossFn, topk: tuple[int, ...] = (), compute_dtype: Any = None):
    """The un-jitted eval step ``(state, (x, y)) -> metrics`` (eval mode, no key)."""

    def step(state: TrainState, batch: Any) -> M.Metrics:
        inputs, target = batch
        out = model.apply(state.params, inputs, buffers=state.buffers, compute_dtype=compute_dtype)
        return M.batch_metrics(loss_fn(out, target), out, target, state.step, topk)

    return step


# CPU steps whose parameters take at least this many bytes keep them out of the donation.
_KEEP_PARAMS_FROM_BYTES = 2**20


def _jit_state_fn(fn: Callable, donate: bool) -> Callable:
    """``jax.jit`` of ``fn(state, *args)`` with :func:`funcnet.backends.compiler_options`, the state donated
    (on CPU, all but sizeable parameters: :class:`_ParamsApart`)."""
    options = backends.compiler_options()
    if not donate:
        return jax.jit(fn, compiler_options=options)
    if jax.default_backend() != "cpu":
        return jax.jit(fn, donate_argnums=(0,), compiler_options=options)
    return _ParamsApart(fn, options)


class _ParamsApart:
    """A CPU step that donates the state but not its parameters, once they reach
    ``_KEEP_PARAMS_FROM_BYTES`` (decided at the first call; reusing a consumed state still raises,
    its optimizer state, buffers, key and step are donated).

    XLA:CPU copies every donated parameter before the step: 55 full copies in ResNet-18's, which
    made donating them 8-13% slower for ResNet-18/50 than fresh output buffers. Below the size
    the extra argument costs more than the copies (the seed MLP: +2% per step at batch 64).
    """

    def __init__(self, fn: Callable, options: dict[str, Any] | None):
        self._whole = jax.jit(fn, donate_argnums=(0,), compiler_options=options)
        self._apart = jax.jit(lambda params, rest, *args: fn(rest.replace(params=params), *args),
                              donate_argnums=(1,), compiler_options=options)
        self._keep_params: bool | None = None

    def _route(self, state: TrainState, args: tuple) -> tuple[Any, tuple]:
        if self._keep_params is None:
            size = sum(getattr(leaf, "nbytes", 0) for leaf in jax.tree.leaves(state.params))
            self._keep_params = size >= _KEEP_PARAMS_FROM_BYTES
        if self._keep_params:
            return self._apart, (state.params, state.replace(params=None), *args)
        return self._whole, (state, *args)

    def __call__(self, state: TrainState, *args: Any) -> Any:
        compiled, call_args = self._route(state, args)
        return compiled(*call_args)

    def lower(self, state: TrainState, *args: Any) -> Any:
        compiled, call_args = self._route(state, args)
        return compiled.lower(*call_args)

    def _cache_size(self) -> int:
        return self._whole._cache_size() + self._apart._cache_size()


class TrainStep:
    """A jitted train step. ``step(state, batch, key=None) -> (state, metrics)``.

    ``step.accumulate(state, running, batch) -> (state, running)`` adds the batch's
    metrics to ``running`` inside the same compiled call, so a loop keeps its sums
    on the device with no extra dispatch per step. Only ``state`` is donated.
    """

    def __init__(self, fn: Callable, donate: bool = True, optimizer: optax.GradientTransformation | None = None):
        self.fn = fn
        horizon = _Horizon(optimizer) if optimizer is not None else None
        self._horizon = horizon if horizon is not None and horizon.horizon is not None else None
        self._step = _jit_state_fn(fn, donate)

        def accumulate(state, running, batch):
            state, batch_metrics = fn(state, batch)
            return state, M.merge(running, batch_metrics)

        # `running` is not donated: a loop may keep an earlier value and read it later
        # (fit's lagged progress read) without waiting for the newest step.
        self._accumulate = _jit_state_fn(accumulate, donate)

    def __call__(self, state: TrainState, batch: Any, key: jax.Array | None = None):
        return self._run(self._step, state, batch, key)

    def accumulate(self, state: TrainState, running: M.Metrics, batch: Any):
        return self._run(self._accumulate, state, running, batch)

    def _run(self, compiled: Callable, state: TrainState, *args: Any):
        try:
            count = self._horizon.before(state) if self._horizon is not None else None
            out = compiled(state, *args)
        except (RuntimeError, ValueError) as error:
            raise _consumed_state_error(error) from error
        if self._horizon is not None:
            self._horizon.after(out[0], count)
        return out


class EvalStep:
    """A jitted eval step. ``step(state, batch) -> metrics``; ``accumulate`` as in :class:`TrainStep`."""

    def __init__(self, fn: Callable):
        self.fn = fn
        options = backends.compiler_options()
        self._step = jax.jit(fn, compiler_options=options)
        self._accumulate = jax.jit(lambda state, running, batch: M.merge(running, fn(state, batch)),
                                   donate_argnums=(1,), compiler_options=options)

    def __call__(self, state: TrainState, batch: Any) -> M.Metrics:
        try:
            return self._step(state, batch)
        except (RuntimeError, ValueError) as error:
            raise _consumed_state_error(error) from error

    def accumulate(self, state: TrainState, running: M.Metrics, batch: Any) -> M.Metrics:
        try:
            return self._accumulate(state, running, batch)
        except (RuntimeError, ValueError) as error:
            raise _consumed_state_error(error) from error


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
        optimizer: any ``optax.GradientTransformation`` (``funcnet.optim.SGD(lr=0.01)``, ...): the
            very one ``state.opt_state`` was made with (``TrainState.create(model, optimizer, key)``);
            the state holds arrays only, so the step brings the functions. A different optimizer
            raises a ``TypeError`` saying so at the first call. A fixed-horizon schedule inside it
            (``OneCycleLR``) is checked on the host: the update past ``total_steps`` raises
            torch's ``Tried to step N times`` error instead of extrapolating the lr.
        topk: extra top-k accuracies to count (e.g. ``(5,)``).
        compute_dtype: a mixed-precision policy, e.g. ``jnp.bfloat16`` (parameters stay float32).
        donate: donate the input state's buffers (do not reuse the state you passed in: it raises
            a ``RuntimeError`` saying the state was consumed). On CPU, parameters of 1 MiB or
            more are not donated themselves (XLA:CPU would copy each one; see ``_ParamsApart``).
        trainable: train only these parameters (torch: ``requires_grad_(False)`` on the rest).
            A predicate on the dotted torch name, a name, or a list of names / module prefixes
            (``"head"`` selects ``head.*``). Gradients are computed for this part only, and
            ``state.opt_state`` must have been made from it:
            ``TrainState.create(model, optimizer, key, trainable=...)``. ``None``: all.
        eval_modules: submodules kept in eval mode while training (torch's
            ``model.backbone.eval()``): their BatchNorm uses its running statistics, their
            dropout is off. Typical with a frozen backbone: ``eval_modules=("backbone",)``.
    """
    return TrainStep(train_step_fn(model, loss_fn, optimizer, topk, compute_dtype, trainable, eval_modules), donate,
                     optimizer)


def make_eval_step(model: Any, loss_fn: LossFn, *, topk: tuple[int, ...] = (), compute_dtype: Any = None) -> EvalStep:
    """A jitted eval step ``(state, (x, y)) -> metrics`` (``train=False``: BatchNorm uses running stats)."""
    return EvalStep(eval_step_fn(model, loss_fn, topk, compute_dtype))
