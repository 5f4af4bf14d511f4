"""Data parallelism with ``jax.pmap``: torch's ``DistributedDataParallel`` on the local devices.

Parameters, buffers and optimizer state are *replicated*: every leaf carries a leading
device axis ``[n_devices, ...]`` (:func:`replicate`, back with :func:`unreplicate`). The
global batch ``[N, ...]`` is split into ``[n_devices, N / n_devices, ...]``
(:func:`shard_batch`, or a DataLoader with ``device=PerDeviceSplit()``). Each device runs
the forward and backward pass on its slice; the gradients are averaged with
``lax.pmean`` (so with equal slices they are the gradients of the global-batch mean loss,
as in DDP), every device applies the same update, and the metrics are summed over
devices (they describe the global batch).

Buffers (BatchNorm running statistics): ``buffers="mean"`` (default) averages the
floating-point buffers over devices after every step (each device normalised with its
own slice's statistics); ``"local"`` keeps each device's own. For exact global-batch
statistics use ``nn.SyncBatchNorm`` (or ``BatchNorm*(axis_name="batch")``): the forward
pass averages mean and variance across the axis, and the result equals single-device
training on the global batch.

Randomness (Dropout): the step key is ``fold_in(state.key, state.step)`` as in
``funcnet.train``; device ``i`` uses ``fold_in(step_key, i)``. Each device's masks are
therefore independent and reproducible, but not the slices of the mask single-device
training would draw for the global batch (the sharding path, ``funcnet.parallel.sharding``,
does reproduce those).

``jax.pmap`` is in maintenance mode since JAX 0.8 (it runs on ``jit`` + ``shard_map``);
the sharding path is what the JAX documentation teaches and the one that spans hosts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from funcnet.parallel._common import allreduce_metrics, is_float, token
from funcnet.parallel._inflight import InflightLimiter, default_max_inflight
from funcnet.train import metrics as M
from funcnet.train.state import TrainState

AXIS_NAME = "batch"


def _devices(devices: Sequence[Any] | None) -> list:
    return list(jax.local_devices() if devices is None else devices)


def _stacked_sharding(devices: Sequence[Any], axis_name: str = AXIS_NAME) -> NamedSharding:
    """The sharding pmap gives its mapped outputs: leading axis split over ``devices``."""
    return NamedSharding(Mesh(np.array(devices), (axis_name,)), PartitionSpec(axis_name))


def replicate(tree: Any, devices: Sequence[Any] | None = None) -> Any:
    """Copy every leaf onto each device: ``[...]`` -> ``[n_devices, ...]`` (pmap's replicated layout)."""
    devices = _devices(devices)
    sharding = _stacked_sharding(devices)
    n = len(devices)
    return jax.tree.map(lambda a: jax.device_put(jnp.broadcast_to(a, (n,) + jnp.shape(a)), sharding), tree)


def unreplicate(tree: Any) -> Any:
    """Device 0's copy of a replicated tree: ``[n_devices, ...]`` -> ``[...]`` (e.g. to save or evaluate)."""
    return jax.tree.map(lambda a: a[0], tree)


def shard_batch(batch: Any, n_devices: int | None = None) -> Any:
    """Split every array leaf ``[N, ...]`` into ``[n_devices, N // n_devices, ...]`` (host-side reshape).

    Raises ValueError when ``N`` is not a multiple of ``n_devices`` (use ``drop_last=True``
    and a batch size that the device count divides).
    """
    n = jax.local_device_count() if n_devices is None else n_devices

    def split(a: Any) -> Any:
        if not hasattr(a, "shape") or not hasattr(a, "reshape"):
            return a
        if a.ndim == 0 or a.shape[0] % n:
            raise ValueError(f"shard_batch: a batch leaf of shape {tuple(a.shape)} cannot be split over {n} "
                             f"devices: the leading (batch) size must be a multiple of {n}; use a batch size "
                             f"divisible by the device count and drop_last=True")
        return a.reshape((n, a.shape[0] // n) + tuple(a.shape[1:]))

    return jax.tree.map(split, batch)


class PerDeviceSplit:
    """Batch placement for the pmap path: split ``[N, ...]`` per device and put each slice on its device.

    Pass it as ``DataLoader(..., device=PerDeviceSplit())``: the loader's background thread
    then delivers ``[n_devices, N / n_devices, ...]`` arrays already on the devices.
    """

    def __init__(self, devices: Sequence[Any] | None = None) -> None:
        self.devices = _devices(devices)
        self.sharding = _stacked_sharding(self.devices)

    def __call__(self, batch: Any) -> Any:
        split = shard_batch(batch, len(self.devices))
        return jax.tree.map(
            lambda a: jax.device_put(a, self.sharding) if isinstance(a, (np.ndarray, jax.Array)) else a, split)

    def __repr__(self) -> str:
        return f"PerDeviceSplit({len(self.devices)} devices)"


def pmap_train_step_fn(
    model: Any,
    loss_fn: Callable[[jax.Array, jax.Array], jax.Array],
    optimizer: optax.GradientTransformation,
    axis_name: str = AXIS_NAME,
    buffers: Literal["mean", "local"] = "mean",
    topk: tuple[int, ...] = (),
    compute_dtype: Any = None,
) -> Callable:
    """The per-device step ``(state, (x, y), key=None) -> (state, metrics)``, to run under
    ``pmap(..., axis_name=axis_name)``. Mirrors ``funcnet.train.train_step_fn`` plus the
    cross-device means."""
    if buffers not in ("mean", "local"):
        raise ValueError(f"buffers must be 'mean' or 'local', got {buffers!r}")

    def step(state: TrainState, batch: Any, key: jax.Array | None = None):
        inputs, target = batch
        step_key = jax.random.fold_in(state.key, state.step) if key is None else key
        device_key = jax.random.fold_in(step_key, jax.lax.axis_index(axis_name))

        def objective(params):
            out, new_buffers = model.apply(
                params, inputs, buffers=state.buffers, key=device_key, train=True, compute_dtype=compute_dtype
            )
            return loss_fn(out, target), (out, new_buffers)

        (loss, (out, new_buffers)), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
        grads = jax.lax.pmean(grads, axis_name)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        if buffers == "mean":
            new_buffers = jax.tree.map(lambda b: jax.lax.pmean(b, axis_name) if is_float(b) else b, new_buffers)
        new_state = state.replace(
            params=optax.apply_updates(state.params, updates),
            buffers=new_buffers,
            opt_state=opt_state,
            step=state.step + 1,
        )
        return new_state, allreduce_metrics(M.batch_metrics(loss, out, target, state.step, topk), axis_name)

    return step


class PmapTrainStep:
    """A data-parallel train step on the local devices, built on ``jax.pmap``.

    ``step(state, batch, key=None) -> (state, metrics)`` with ``state`` replicated
    (:meth:`replicate`) and ``batch`` split per device (:meth:`place_batch`). The returned
    ``metrics`` are a single (unreplicated) :class:`~funcnet.train.metrics.Metrics` of the
    global batch, ready for ``metrics.compute``. ``step.accumulate(state, running, batch)``
    merges them into ``running`` inside the same call. The state is donated.

    On CPU with several devices at most ``max_inflight`` steps are queued (see
    :mod:`funcnet.parallel._inflight`); ``max_inflight="auto"`` picks that bound only there.
    """

    def __init__(
        self,
        model: Any,
        loss_fn: Callable[[jax.Array, jax.Array], jax.Array],
        optimizer: optax.GradientTransformation,
        *,
        devices: Sequence[Any] | None = None,
        axis_name: str = AXIS_NAME,
        buffers: Literal["mean", "local"] = "mean",
        topk: tuple[int, ...] = (),
        compute_dtype: Any = None,
        donate: bool = True,
        max_inflight: int | None | Literal["auto"] = "auto",
    ) -> None:
        self.devices = _devices(devices)
        self.axis_name = axis_name
        self.fn = pmap_train_step_fn(model, loss_fn, optimizer, axis_name, buffers, topk, compute_dtype)
        fn = self.fn

        def with_token(state, batch, key=None):
            state, m = fn(state, batch, key)
            return state, m, token(m)

        def accumulate(state, running, batch):
            state, m = fn(state, batch)
            return state, M.merge(running, m), token(m)

        pmap = dict(axis_name=axis_name, devices=self.devices)
        self._step = jax.pmap(with_token, in_axes=(0, 0), out_axes=(0, None, None),
                              donate_argnums=(0,) if donate else (), **pmap)
        self._step_key = jax.pmap(with_token, in_axes=(0, 0, None), out_axes=(0, None, None),
                                  donate_argnums=(0,) if donate else (), **pmap)
        self._accumulate = jax.pmap(accumulate, in_axes=(0, None, 0), out_axes=(0, None, None),
                                    donate_argnums=(0, 1) if donate else (), **pmap)
        self._split = PerDeviceSplit(self.devices)
        limit = default_max_inflight(self.devices) if max_inflight == "auto" else max_inflight
        self._limiter = InflightLimiter(limit)

    @property
    def n_devices(self) -> int:
        return len(self.devices)

    def replicate(self, tree: Any) -> Any:
        """A state (or any tree) copied onto every device of this step."""
        return replicate(tree, self.devices)

    def unreplicate(self, tree: Any) -> Any:
        return unreplicate(tree)

    def place_batch(self, batch: Any) -> Any:
        """Split a global batch ``[N, ...]`` per device and put it there."""
        return self._split(batch)

    def _check_batch(self, batch: Any) -> None:
        for leaf in jax.tree.leaves(batch):
            shape = getattr(leaf, "shape", None)
            if shape is not None and (len(shape) < 1 or shape[0] != self.n_devices):
                raise ValueError(f"PmapTrainStep: batch leaves must be split per device, shape "
                                 f"[{self.n_devices}, N / {self.n_devices}, ...]; got {tuple(shape)}. "
                                 f"Use step.place_batch(batch) or DataLoader(device=PerDeviceSplit()).")

    def __call__(self, state: TrainState, batch: Any, key: jax.Array | None = None):
        self._check_batch(batch)
        if key is None:
            state, metrics, tok = self._step(state, batch)
        else:
            state, metrics, tok = self._step_key(state, batch, key)
        self._limiter.push(tok)
        return state, metrics

    def accumulate(self, state: TrainState, running: M.Metrics, batch: Any):
        self._check_batch(batch)
        state, running, tok = self._accumulate(state, running, batch)
        self._limiter.push(tok)
        return state, running

    def wait(self) -> None:
        """Block until every step issued so far has finished."""
        self._limiter.wait_all()


def make_pmap_train_step(model: Any, loss_fn: Callable, optimizer: optax.GradientTransformation,
                         **kwargs: Any) -> PmapTrainStep:
    """``PmapTrainStep(model, loss_fn, optimizer, **kwargs)``, named like ``funcnet.train.make_train_step``."""
    return PmapTrainStep(model, loss_fn, optimizer, **kwargs)


class PmapEvalStep:
    """Eval on the local devices: ``step(state, batch) -> metrics`` of the global batch
    (replicated ``state``, per-device split ``batch``; ``train=False``)."""

    def __init__(self, model: Any, loss_fn: Callable, *, devices: Sequence[Any] | None = None,
                 axis_name: str = AXIS_NAME, topk: tuple[int, ...] = (), compute_dtype: Any = None) -> None:
        self.devices = _devices(devices)

        def fn(state, batch):
            inputs, target = batch
            out = model.apply(state.params, inputs, buffers=state.buffers, compute_dtype=compute_dtype)
            return allreduce_metrics(M.batch_metrics(loss_fn(out, target), out, target, state.step, topk),
                                     axis_name)

        self._step = jax.pmap(fn, axis_name=axis_name, in_axes=(0, 0), out_axes=None, devices=self.devices)
        self._accumulate = jax.pmap(lambda s, r, b: M.merge(r, fn(s, b)), axis_name=axis_name,
                                    in_axes=(0, None, 0), out_axes=None, devices=self.devices)
        self._split = PerDeviceSplit(self.devices)

    def place_batch(self, batch: Any) -> Any:
        return self._split(batch)

    def __call__(self, state: TrainState, batch: Any) -> M.Metrics:
        return self._step(state, batch)

    def accumulate(self, state: TrainState, running: M.Metrics, batch: Any) -> M.Metrics:
        return self._accumulate(state, running, batch)
