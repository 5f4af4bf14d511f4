"""Data parallelism with ``jax.jit`` over a device ``Mesh``: the path that spans hosts.

The step is *the same program* as single-device training (``funcnet.train.train_step_fn``)
compiled for sharded inputs: the batch is split on the mesh axis ``'data'``
(``NamedSharding(mesh, P('data'))``), parameters and optimizer state are replicated
(``P()``), and XLA inserts the gradient all-reduce. Because the program is the
single-device one, the results equal single-device training on the global batch —
BatchNorm statistics (plain ``BatchNorm`` already sees the global batch) and Dropout
masks (JAX's partitionable threefry draws the same bits sharded or not) included.

``shard_params=True`` is a ZeRO-3/FSDP-style option: every parameter and optimizer-state
leaf with at least ``min_shard_size`` elements is split along its first axis divisible by
the number of devices; XLA gathers the parameters where they are used and reduce-scatters
the gradients. Same numbers, less memory per device.

Several hosts: call ``funcnet.distributed.init()`` first; ``make_mesh()`` then spans every
device of every process, each process loads only its slice of the global batch
(``DistributedSampler``) and :func:`place_batch` (or ``DataLoader(device=step.batch_sharding)``)
assembles the global array with ``jax.make_array_from_process_local_data``. The global batch
is the concatenation of the processes' slices, in process order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from funcnet.parallel._common import token
from funcnet.parallel._inflight import InflightLimiter, default_max_inflight
from funcnet.train import metrics as M
from funcnet.train.state import TrainState
from funcnet.train.step import eval_step_fn, train_step_fn

AXIS_NAME = "data"


def make_mesh(devices: Sequence[Any] | None = None, axis_name: str = AXIS_NAME) -> Mesh:
    """A one-axis mesh over ``devices`` (default: every device of every process)."""
    devices = jax.devices() if devices is None else list(devices)
    return Mesh(np.array(devices), (axis_name,))


def data_sharding(mesh: Mesh, axis_name: str = AXIS_NAME) -> NamedSharding:
    """Leading (batch) axis split over ``axis_name``: ``NamedSharding(mesh, P(axis_name))``."""
    return NamedSharding(mesh, PartitionSpec(axis_name))


def replicated_sharding(mesh: Mesh) -> NamedSharding:
    """A full copy on every device: ``NamedSharding(mesh, P())``."""
    return NamedSharding(mesh, PartitionSpec())


def _fsdp_spec(shape: tuple[int, ...], n: int, axis_name: str, min_size: int) -> PartitionSpec:
    if len(shape) == 0 or int(np.prod(shape)) < min_size:
        return PartitionSpec()
    for axis, dim in enumerate(shape):
        if dim % n == 0:
            return PartitionSpec(*([None] * axis), axis_name)
    return PartitionSpec()


def state_shardings(state: Any, mesh: Mesh, axis_name: str = AXIS_NAME, shard_params: bool = False,
                    min_shard_size: int = 2**12) -> Any:
    """The sharding of every leaf of ``state``: replicated, or with ``shard_params`` the FSDP rule
    (leaves of ≥ ``min_shard_size`` elements split on their first axis divisible by the mesh size;
    the PRNG key, the step counter and small leaves stay replicated)."""
    n = mesh.shape[axis_name]
    rep = replicated_sharding(mesh)

    def leaf(a: Any) -> NamedSharding:
        if not shard_params or jax.dtypes.issubdtype(jnp.result_type(a), jax.dtypes.prng_key):
            return rep
        return NamedSharding(mesh, _fsdp_spec(tuple(jnp.shape(a)), n, axis_name, min_shard_size))

    if isinstance(state, TrainState):  # the key and step counter are always replicated
        return TrainState(params=jax.tree.map(leaf, state.params), buffers=jax.tree.map(leaf, state.buffers),
                          opt_state=jax.tree.map(leaf, state.opt_state), key=rep, step=rep)
    return jax.tree.map(leaf, state)


def _put_global(a: Any, sharding: NamedSharding) -> jax.Array:
    """Place a value that every process holds in full onto a (possibly multi-host) sharding."""
    if sharding.is_fully_addressable:
        return jax.device_put(a, sharding)
    if jax.dtypes.issubdtype(jnp.result_type(a), jax.dtypes.prng_key):
        data = _put_global(jax.random.key_data(a), sharding)
        return jax.random.wrap_key_data(data, impl=jax.random.key_impl(a))
    host = np.asarray(jax.device_get(a))
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def place(tree: Any, shardings: Any) -> Any:
    """Put every leaf of ``tree`` (the same full value on every process) on its sharding
    (``shardings``: one sharding or a matching tree)."""
    if isinstance(shardings, jax.sharding.Sharding):
        return jax.tree.map(lambda a: _put_global(a, shardings), tree)
    return jax.tree.map(_put_global, tree, shardings)


def place_batch(batch: Any, sharding: NamedSharding) -> Any:
    """Put a batch on ``sharding`` (split on the batch axis).

    One process: ``batch`` is the global batch. Several processes: ``batch`` is this process's
    slice and the result is the global array (slices concatenated in process order), built
    with ``jax.make_array_from_process_local_data``.
    """
    multihost = not sharding.is_fully_addressable

    def put(a: Any) -> Any:
        if not isinstance(a, (np.ndarray, np.generic, jax.Array)):
            return a
        if isinstance(a, jax.Array) and (a.sharding == sharding or not a.is_fully_addressable):
            return a  # already placed (e.g. by a DataLoader with device=sharding)
        if multihost:
            return jax.make_array_from_process_local_data(sharding, np.asarray(a))
        return jax.device_put(a, sharding)

    return jax.tree.map(put, batch)


def gather(tree: Any) -> Any:
    """Every leaf as a host numpy array with its full (global) value — for checkpoints and logs.

    Collective when a leaf is split across processes (FSDP on several hosts): call it on every
    process. PRNG key leaves come back as key arrays on the default device.
    """
    from jax.experimental import multihost_utils

    def get(a: Any) -> Any:
        if not isinstance(a, jax.Array):
            return a
        if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
            return jax.random.wrap_key_data(jnp.asarray(get(jax.random.key_data(a))), impl=jax.random.key_impl(a))
        if a.is_fully_addressable or a.is_fully_replicated:
            return np.asarray(a)
        return np.asarray(multihost_utils.process_allgather(a, tiled=True))

    return jax.tree.map(get, tree)


class ShardedTrainStep:
    """A data-parallel train step: ``jax.jit`` of the single-device step over a mesh.

    ``state = step.place_state(state)`` replicates (or FSDP-shards) a state once;
    ``step(state, batch, key=None) -> (state, metrics)`` takes a global batch (host arrays are
    placed automatically on one process; on several, pass ``step.place_batch(local_slice)`` or
    use ``DataLoader(device=step.batch_sharding)``). ``metrics`` are replicated: read them with
    ``funcnet.train.metrics.compute``. The state is donated. On CPU with several devices at most
    ``max_inflight`` steps are queued (``"auto"``: only there).
    """

    def __init__(
        self,
        model: Any,
        loss_fn: Callable[[jax.Array, jax.Array], jax.Array],
        optimizer: optax.GradientTransformation,
        mesh: Mesh | None = None,
        *,
        axis_name: str = AXIS_NAME,
        shard_params: bool = False,
        min_shard_size: int = 2**12,
        topk: tuple[int, ...] = (),
        compute_dtype: Any = None,
        donate: bool = True,
        max_inflight: int | None | str = "auto",
    ) -> None:
        self.mesh = make_mesh(axis_name=axis_name) if mesh is None else mesh
        if axis_name not in self.mesh.axis_names:
            raise ValueError(f"ShardedTrainStep: the mesh has axes {self.mesh.axis_names}, no {axis_name!r}")
        self.axis_name = axis_name
        self.shard_params = shard_params
        self.min_shard_size = min_shard_size
        self.batch_sharding = data_sharding(self.mesh, axis_name)
        self.replicated = replicated_sharding(self.mesh)
        self.fn = train_step_fn(model, loss_fn, optimizer, topk, compute_dtype)
        self._donate = (0,) if donate else ()
        self._accumulate_donate = (0, 1) if donate else ()
        self._compiled: dict[Any, tuple] = {}
        devices = list(self.mesh.devices.flat)
        limit = default_max_inflight(devices) if max_inflight == "auto" else max_inflight
        self._limiter = InflightLimiter(limit)

    # ------------------------------------------------------------------ placement
    def state_shardings(self, state: TrainState) -> Any:
        return state_shardings(state, self.mesh, self.axis_name, self.shard_params, self.min_shard_size)

    def place_state(self, state: TrainState) -> TrainState:
        """The state on the mesh (replicated, or FSDP-sharded with ``shard_params=True``)."""
        return place(state, self.state_shardings(state))

    def place_batch(self, batch: Any) -> Any:
        """A global batch (one process) or this process's slice (several) on the batch sharding."""
        return place_batch(batch, self.batch_sharding)

    # ------------------------------------------------------------------ compiled functions
    def _functions(self, state: TrainState) -> tuple:
        treedef = jax.tree.structure(state)
        shapes = tuple((jnp.shape(a), jnp.result_type(a)) for a in jax.tree.leaves(state))
        cache_key = (treedef, shapes)
        if cache_key not in self._compiled:
            st = self.state_shardings(state)
            data, rep, fn = self.batch_sharding, self.replicated, self.fn

            def step(state, batch, key=None):
                state, m = fn(state, batch, key)
                return state, m, token(m)

            def accumulate(state, running, batch):
                state, m = fn(state, batch)
                return state, M.merge(running, m), token(m)

            out = (st, rep, rep)
            self._compiled[cache_key] = (
                jax.jit(step, in_shardings=(st, data), out_shardings=out, donate_argnums=self._donate),
                jax.jit(step, in_shardings=(st, data, rep), out_shardings=out, donate_argnums=self._donate),
                jax.jit(accumulate, in_shardings=(st, rep, data), out_shardings=out,
                        donate_argnums=self._accumulate_donate),
            )
        return self._compiled[cache_key]

    def _batch(self, batch: Any) -> Any:
        if self.batch_sharding.is_fully_addressable:
            return batch  # jit's in_shardings place host arrays
        return self.place_batch(batch)  # several processes: local slices -> global arrays

    def __call__(self, state: TrainState, batch: Any, key: jax.Array | None = None):
        plain, keyed, _ = self._functions(state)
        batch = self._batch(batch)
        state, metrics, tok = plain(state, batch) if key is None else keyed(state, batch, key)
        self._limiter.push(tok)
        return state, metrics

    def accumulate(self, state: TrainState, running: M.Metrics, batch: Any):
        _, _, acc = self._functions(state)
        state, running, tok = acc(state, running, self._batch(batch))
        self._limiter.push(tok)
        return state, running

    def wait(self) -> None:
        """Block until every step issued so far has finished."""
        self._limiter.wait_all()


def make_sharded_train_step(model: Any, loss_fn: Callable, optimizer: optax.GradientTransformation,
                            mesh: Mesh | None = None, **kwargs: Any) -> ShardedTrainStep:
    """``ShardedTrainStep(model, loss_fn, optimizer, mesh, **kwargs)``, named like ``make_train_step``."""
    return ShardedTrainStep(model, loss_fn, optimizer, mesh, **kwargs)


class ShardedEvalStep:
    """Eval over a mesh: ``step(state, batch) -> metrics`` (global batch sharded on ``'data'``)."""

    def __init__(self, model: Any, loss_fn: Callable, mesh: Mesh | None = None, *, axis_name: str = AXIS_NAME,
                 topk: tuple[int, ...] = (), compute_dtype: Any = None) -> None:
        self.mesh = make_mesh(axis_name=axis_name) if mesh is None else mesh
        self.batch_sharding = data_sharding(self.mesh, axis_name)
        rep = replicated_sharding(self.mesh)
        fn = eval_step_fn(model, loss_fn, topk, compute_dtype)
        self._step = jax.jit(fn, out_shardings=rep)
        self._accumulate = jax.jit(lambda s, r, b: M.merge(r, fn(s, b)), out_shardings=rep)

    def place_batch(self, batch: Any) -> Any:
        return place_batch(batch, self.batch_sharding)

    def __call__(self, state: TrainState, batch: Any) -> M.Metrics:
        return self._step(state, self.place_batch(batch))

    def accumulate(self, state: TrainState, running: M.Metrics, batch: Any) -> M.Metrics:
        return self._accumulate(state, running, self.place_batch(batch))
