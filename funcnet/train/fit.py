"""``fit``: epochs over a DataLoader with progress, validation, callbacks and history.

The loop never waits on the device for the step it just dispatched. Every
``sync_every`` steps it reads the running metrics of the *previous* sync point,
which the device has usually finished by then: the progress bar and the early
non-finite check lag by ``sync_every`` steps, the steps in flight stay bounded
(multi-device CPU runs need that), and the device is never left idle waiting for
the host (a blocking read of the newest value cost 10–15% of an epoch here).
"""

from __future__ import annotations

import functools
import sys
import time
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import jax
import numpy as np

from funcnet.train import metrics as M
from funcnet.train.callbacks import Callback
from funcnet.train.epoch import make_epoch_fn
from funcnet.train.state import TrainState
from funcnet.train.step import _consumed_state_error, make_eval_step, make_train_step


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or Inf; the message names the epoch and the step."""


def current_lr(opt_state: Any) -> float | None:
    """The learning rate recorded in an optimizer state, if it records one.

    Uses ``funcnet.optim.get_lr`` when available, else looks for optax's
    ``inject_hyperparams`` ``learning_rate``.
    """
    value = _lr_value(opt_state)
    return None if value is None else float(value)


def _lr_value(opt_state: Any) -> Any:
    """The (first) recorded lr as stored — an array or a float — or None; reads nothing from the device."""
    try:
        from funcnet.optim import get_lrs

        lrs = get_lrs(opt_state)
        if lrs:
            return lrs[0]
    except (ImportError, AttributeError, KeyError, ValueError, TypeError):
        pass
    for leaf_state in jax.tree.leaves(opt_state, is_leaf=lambda s: hasattr(s, "hyperparams")):
        hyper = getattr(leaf_state, "hyperparams", None)
        if isinstance(hyper, dict) and "learning_rate" in hyper:
            return hyper["learning_rate"]
    return None


def _check_finite(running: M.Metrics, epoch: int, steps_per_epoch: int | None) -> None:
    """Raise :class:`NonFiniteLossError` if ``running`` (host values: see ``metrics.to_host``) saw one.

    Human-readable text counts epochs from 1 (the progress line's "epoch 1/3"), steps from 0 as
    the global step ``state.step``; ``history[i]["epoch"]`` is the 0-based epoch number."""
    bad = int(running.nonfinite_step)
    if bad >= 0:
        within = f", step {bad % steps_per_epoch} of the epoch" if steps_per_epoch else ""
        raise NonFiniteLossError(
            f"training loss became non-finite in epoch {epoch + 1}{within} (global step {bad}, "
            f"history epoch {epoch}); "
            f"lower the learning rate, check the inputs, or clip gradients"
        )


def _progress(total: int | None, epoch: int, epochs: int, enabled: bool):
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is optional: fall back to a line per epoch
        return None
    return tqdm(total=total, desc=f"epoch {epoch + 1}/{epochs}", unit="step", leave=True,
                dynamic_ncols=True, file=sys.stderr)


def evaluate(eval_step: Any, state: TrainState, loader: Iterable) -> dict[str, Any]:
    """Mean loss and accuracy of ``state`` over ``loader`` (eval mode)."""
    running = None
    for batch in loader:
        running = eval_step(state, batch) if running is None else eval_step.accumulate(state, running, batch)
    if running is None:
        return {}
    return M.compute(running)


def fit(
    model: Any,
    state: TrainState,
    train_loader: Any,
    *,
    loss_fn: Any,
    optimizer: Any,
    epochs: int,
    val_loader: Any = None,
    callbacks: Sequence[Callback] = (),
    progress: bool = True,
    compiled: bool = False,
    sync_every: int | None = None,
    topk: tuple[int, ...] = (),
    compute_dtype: Any = None,
    start_epoch: int | None = None,
    trainable: Any = None,
    eval_modules: tuple[str, ...] = (),
) -> tuple[TrainState, list[dict[str, Any]]]:
    """Train ``model`` until ``epochs`` epochs are done; returns ``(state, history)``.

    torch's ``for epoch in range(epochs): for x, y in loader: ...``, resumable: with a funcnet
    ``DataLoader`` the run starts where the loader stands — epoch 0 for a fresh loader, or the
    epoch *and batch* of a restored one (``loader.load_state_dict(saved)``) — so the same call
    after restoring ``state`` and loader continues the interrupted run bit for bit.

    Args:
        model, loss_fn, optimizer: as for :func:`make_train_step` (``optimizer`` must
            be the one ``state.opt_state`` was made with; a different one raises).
        state: a :class:`TrainState` (e.g. ``TrainState.create(model, optimizer, key)``).
        train_loader: a ``funcnet.utils.data.DataLoader`` (or any iterable of ``(x, y)``
            batches; ``set_epoch`` is called when present).
        epochs: the total number of epochs of the run (as Keras' ``epochs`` and torch's
            ``range(epochs)``): a run resumed at epoch 3 with ``epochs=5`` trains epochs 3 and 4.
        val_loader: evaluated after every epoch (``val_loss``, ``val_accuracy``).
        callbacks: :class:`Callback` objects; one returning ``True`` stops training.
        progress: a tqdm bar per epoch (step, steps/s, ETA, loss, lr) and a line per epoch
            (loss, accuracy, validation, lr, samples/s); ``False`` is quiet.
        compiled: run each epoch as one compiled ``lax.scan`` (array datasets that fit
            in device memory; uses ``train_loader.epoch_indices``). Same bits as the step loop.
        sync_every: every this many steps, read the metrics of the previous sync point
            (progress bar, early NaN check); at most ``2 * sync_every`` steps are in flight.
            Default: 5 on multi-device CPU (where long chains of collectives deadlock XLA),
            else 100.
        start_epoch: start at this epoch, from its first batch, whatever the loader's position
            (default: the loader's position; 0 for loaders without ``state_dict``).
        trainable: train only these parameters (see :func:`make_train_step`); the state
            must come from ``TrainState.create(..., trainable=...)``.
        eval_modules: submodules kept in eval mode while training (see :func:`make_train_step`).

    Returns:
        The final state and the history: one dict per finished epoch; ``"epoch"`` is the
        0-based epoch number (torch's loop variable), while printed text counts from 1
        ("epoch 1/3").

    Raises:
        NonFiniteLossError: the loss became NaN/Inf; names the epoch and step.
        ValueError: nothing to do (the loader already stands at or past ``epochs``).
    KeyboardInterrupt (Ctrl-C) stops training and returns the state after the last step
    applied; the loader's ``state_dict()`` then says where to resume, mid-epoch included.
    """
    train_step, eval_step, epoch_fn = _steps(
        model, loss_fn, optimizer, tuple(topk), compute_dtype, trainable,
        (eval_modules,) if isinstance(eval_modules, str) else tuple(eval_modules), compiled,
        val_loader is not None,
    )
    first_epoch, skip = _start(train_loader, start_epoch)
    if first_epoch >= epochs:
        raise ValueError(
            f"fit: epochs={epochs} is the total number of epochs, and the loader already stands at "
            f"epoch {first_epoch}{f', batch {skip}' if skip else ''}: nothing to train (to train more, "
            f"raise epochs)"
        )
    _check_live(state)
    _check_position(state, train_loader, first_epoch, skip)
    _check_horizon(optimizer, state, _planned_steps(train_loader, first_epoch, skip, epochs))
    device_data = _device_arrays(train_loader) if compiled else None
    if sync_every is None:
        sync_every = 5 if jax.default_backend() == "cpu" and jax.device_count() > 1 else 100
    history: list[dict[str, Any]] = []
    for cb in callbacks:
        cb.on_train_begin(state)
    for epoch in range(first_epoch, epochs):
        resume_at = skip if epoch == first_epoch else 0
        if resume_at:  # continue the restored pass at its batch
            train_loader.load_state_dict(train_loader.state_dict())
        elif hasattr(train_loader, "set_epoch"):
            train_loader.set_epoch(epoch)
        start = time.perf_counter()
        try:
            if compiled:
                state, running = _compiled_epoch(epoch_fn, state, train_loader, device_data, epoch, resume_at)
                steps = None
                if hasattr(train_loader, "set_epoch"):
                    train_loader.set_epoch(epoch + 1)  # the loader stands after the finished epoch
            else:
                # Ctrl-C inside the epoch: _step_epoch returns the state after the last step applied
                # (the one passed in was donated), and the interrupt is raised again here.
                state, running, steps, interrupted = _step_epoch(
                    train_step, state, train_loader, epoch, epochs, progress, sync_every, topk
                )
                if interrupted:
                    raise KeyboardInterrupt
            running = M.to_host(running)
            _check_finite(running, epoch, steps)
            logs = {"epoch": epoch, **M.compute(running)}
            logs["time"] = time.perf_counter() - start
            logs["samples_per_s"] = logs["samples"] / max(logs["time"], 1e-9)
            lr = current_lr(state.opt_state)
            if lr is not None:
                logs["lr"] = lr
            if eval_step is not None:
                logs.update({f"val_{k}": v for k, v in evaluate(eval_step, state, val_loader).items()})
            history.append(logs)
            if progress:
                print(_epoch_line(logs, epochs), file=sys.stderr)
            stop = [bool(cb.on_epoch_end(epoch, state, logs)) for cb in callbacks]
        except KeyboardInterrupt:
            print(f"interrupted in epoch {epoch + 1}: returning the state after its last step and the "
                  f"history of {len(history)} finished epoch(s)", file=sys.stderr)
            break
        if any(stop):
            break
    for cb in callbacks:
        cb.on_train_end(state, history)
    return state, history


def _start(loader: Any, start_epoch: int | None) -> tuple[int, int]:
    """``(epoch, batches already done)`` where training begins: ``start_epoch`` if given, else the
    loader's position (``loader.state_dict()``: a restored loader's epoch and batch), else 0."""
    if start_epoch is not None:
        if not isinstance(start_epoch, (int, np.integer)) or start_epoch < 0:
            raise ValueError(f"fit: start_epoch must be a non-negative int, got {start_epoch!r}")
        return int(start_epoch), 0
    if callable(getattr(loader, "state_dict", None)) and callable(getattr(loader, "load_state_dict", None)):
        position = loader.state_dict()
        if isinstance(position, dict) and {"epoch", "batches_done"} <= set(position):  # funcnet's DataLoader
            return int(position["epoch"]), int(position["batches_done"])
    return 0, 0


def _planned_steps(loader: Any, first_epoch: int, skip: int, epochs: int) -> int | None:
    """How many steps ``fit`` will run, if the loader has a length."""
    try:
        per_epoch = len(loader)
    except TypeError:
        return None
    return (epochs - first_epoch) * per_epoch - skip


def _check_live(state: TrainState) -> None:
    """A state whose arrays were donated to an earlier step cannot train: say so up front."""
    if any(getattr(leaf, "is_deleted", lambda: False)() for leaf in jax.tree.leaves(state)):
        raise _consumed_state_error(RuntimeError("donated"))


def _check_position(state: TrainState, loader: Any, epoch: int, skip: int) -> None:
    """Warn when a trained state meets a loader that is not where that state stopped (the state was
    restored but the loader was not): the run would replay batches the state has already seen."""
    try:
        per_epoch = len(loader)
    except TypeError:
        return
    done = int(jax.device_get(state.step))
    if done and done != epoch * per_epoch + skip:
        warnings.warn(
            f"fit: state.step is {done}, but the loader stands at epoch {epoch}, batch {skip} "
            f"({epoch * per_epoch + skip} steps of {per_epoch} per epoch): to resume a run, restore the "
            f"loader with the state (loader.load_state_dict(saved_loader_state)); training goes on from "
            f"the loader's position",
            stacklevel=3,
        )


def _check_horizon(optimizer: Any, state: TrainState, planned: int | None) -> None:
    """Before training: the run's last update must lie within the horizon of a fixed-horizon
    schedule (``OneCycleLR``), as torch would raise at that step. Unknown lengths are checked
    step by step by the train step."""
    from funcnet.optim.lr_scheduler import check_horizon, optimizer_horizon

    if planned is not None and optimizer_horizon(optimizer) is not None:
        done = int(jax.device_get(state.step))
        check_horizon(optimizer, done + planned,
                      f", and this fit would end after update {done + planned}: lower epochs or give the "
                      f"schedule more steps")


def _steps(model, loss_fn, optimizer, topk, compute_dtype, trainable, eval_modules, compiled, validate):
    """The jitted functions ``fit`` needs, built once per configuration: calling ``fit`` again
    (one epoch at a time, or after a restore) reuses the compiled steps instead of recompiling."""
    args = (model, loss_fn, optimizer, topk, compute_dtype, trainable, eval_modules, compiled, validate)
    try:
        return _cached_steps(*args)
    except TypeError:  # an unhashable option (e.g. a list of names): build without caching
        return _build_steps(*args)


def _build_steps(model, loss_fn, optimizer, topk, compute_dtype, trainable, eval_modules, compiled, validate):
    options = dict(topk=topk, compute_dtype=compute_dtype, trainable=trainable, eval_modules=eval_modules)
    train_step = make_train_step(model, loss_fn, optimizer, **options)
    eval_step = make_eval_step(model, loss_fn, topk=topk, compute_dtype=compute_dtype) if validate else None
    epoch_fn = make_epoch_fn(model, loss_fn, optimizer, **options) if compiled else None
    return train_step, eval_step, epoch_fn


_cached_steps = functools.lru_cache(maxsize=16)(_build_steps)


def _epoch_line(logs: dict[str, Any], epochs: int) -> str:
    parts = [f"epoch {logs['epoch'] + 1}/{epochs}", f"loss {logs['loss']:.4f}"]
    for key in ("accuracy", "val_loss", "val_accuracy", "lr"):
        if key in logs:
            parts.append(f"{key} {logs[key]:.4g}")
    parts.append(f"{logs['samples_per_s']:,.0f} samples/s")
    return "  ".join(parts)


def _lr_snapshot(opt_state: Any) -> Any:
    """The lr now, without waiting: a float, a copy of the lr array (the state itself is donated
    to the next step), or None."""
    value = _lr_value(opt_state)
    return jax.numpy.copy(value) if isinstance(value, jax.Array) else value


def _step_epoch(train_step, state, loader, epoch, epochs, progress, sync_every, topk):
    total = len(loader) if hasattr(loader, "__len__") else None
    bar = _progress(total, epoch, epochs, progress)
    running = M.empty(topk)
    steps = 0
    lagged: tuple | None = None  # (steps, running, lr) at the previous sync point
    shown = 0

    def report(done: int, metrics: M.Metrics, lr: Any) -> None:
        nonlocal shown
        host = M.to_host(metrics)  # waits only until step `done` has finished
        _check_finite(host, epoch, total)
        if bar is not None:  # tqdm shows the step, the rate (steps/s) and the ETA
            bar.update(done - shown)
            postfix = {"loss": f"{M.compute(host)['loss']:.4f}"}
            if lr is not None:
                postfix["lr"] = f"{float(lr):.4g}"
            bar.set_postfix(postfix, refresh=False)
            shown = done

    try:
        for batch in loader:
            state, running = train_step.accumulate(state, running, batch)  # `running` is not donated
            steps += 1
            if steps % sync_every == 0:
                if lagged is not None:
                    report(*lagged)
                lagged = (steps, running, _lr_snapshot(state.opt_state) if bar is not None else None)
        if bar is not None:
            report(steps, running, _lr_snapshot(state.opt_state))
    except KeyboardInterrupt:
        return state, running, total or steps, True
    finally:
        if bar is not None:
            bar.close()
    return state, running, total or steps, False


def _device_arrays(loader: Any):
    if not hasattr(loader, "device_arrays"):
        raise TypeError(
            "compiled=True needs a funcnet DataLoader over an array dataset "
            "(it uses loader.device_arrays() and loader.epoch_indices(epoch))"
        )
    return loader.device_arrays()


def _compiled_epoch(epoch_fn, state, loader, data, epoch, skip=0):
    """One compiled epoch; ``skip`` batches already done (a resumed epoch runs the rest)."""
    indices, mask = loader.epoch_indices(epoch, with_mask=True)  # already on the device
    if skip:
        indices, mask = indices[skip:], mask[skip:]
    last_row = np.asarray(mask[-1])  # only the mask's last row comes to the host
    if last_row.all():
        return epoch_fn(state, data, indices)
    # A partial last batch runs after the scan, with its own shape, as in the step loop.
    return epoch_fn(state, data, indices[:-1], indices[-1, : int(last_row.sum())])


__all__ = ["NonFiniteLossError", "current_lr", "evaluate", "fit"]
