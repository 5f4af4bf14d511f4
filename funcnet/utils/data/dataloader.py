"""``DataLoader``: torch's vocabulary, built for JAX.

- Whole batches in one vectorised step: for a dataset with ``__getitems__`` (``TensorDataset``,
  ``Subset``/``ConcatDataset`` of them, the shipped datasets) and the default ``collate_fn``, a batch
  is one ``np.take`` per array, with no per-sample Python.
- Order is a pure function of ``(seed, epoch)``; each new pass over the loader is the next epoch,
  ``set_epoch(n)`` sets it; ``state_dict()``/``load_state_dict()`` resume exactly, mid-epoch too.
- ``num_workers > 0`` prepares batches in parallel: background *threads* by default (no pickling, no
  start-up; right for in-memory arrays and for decoders that release the GIL), or, with
  ``worker_mode="process"``, torch's worker *processes* (``forkserver``/``spawn``, never a fork of
  the JAX process, jax #9190; batches come back through shared memory). ``device=`` puts batches on
  a device or sharding, with the transfer done (and waited for) in a background thread.
- Datasets with ``set_epoch`` (``ImageFolder``: per-sample augmentation keys) are told the epoch
  at every pass, in workers too, so augmented epochs are reproducible and resumable.
- On-device mode for arrays that fit in device memory: ``device_arrays()`` + ``epoch_indices(epoch)``
  (+ ``batch_key``) let a compiled step or a ``lax.scan`` over the epoch gather each batch itself,
  in exactly the host iteration's order.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from funcnet.utils.data import _prefetch, _workers
from funcnet.utils.data.collate import default_collate
from funcnet.utils.data.dataset import IterableDataset, _seed_entropy
from funcnet.utils.data.sampler import (
    BatchSampler,
    RandomSampler,
    SequentialSampler,
    _check_positive_int,
    sampler_indices,
)


class _InfiniteConstantSampler:
    """Placeholder sampler for an IterableDataset (as torch)."""

    def __iter__(self) -> Iterator[None]:
        while True:
            yield None


def _make_placer(device: Any) -> Callable[[Any], Any] | None:
    """``device`` -> a function that puts a host batch (pytree) on it, or None for host batches."""
    if device is None or device is False:
        return None
    import jax

    if callable(device) and not isinstance(device, (jax.Device, jax.sharding.Sharding)):
        return device  # a placement function, e.g. funcnet.parallel.PerDeviceSplit()
    is_sharding = isinstance(device, jax.sharding.Sharding)
    if device is True:
        # The default device, uncommitted (jax.device_put(a, None)): a step whose other inputs are
        # uncommitted too (a fresh TrainState) then compiles once, not again for committed outputs.
        device = None
    elif not is_sharding and not isinstance(device, jax.Device):
        raise TypeError(f"DataLoader: device must be None, True, a jax.Device, a jax.sharding.Sharding or a "
                        f"placement callable; "
                        f"got {type(device).__name__}")
    multihost = is_sharding and jax.process_count() > 1

    def put_leaf(a: Any) -> Any:
        if not isinstance(a, (np.ndarray, np.generic, jax.Array)):
            return a  # strings, None: stay on host
        if multihost:  # each process holds its local part of the global batch
            return jax.make_array_from_process_local_data(device, np.asarray(a))
        return jax.device_put(a, device)

    return lambda batch: jax.tree.map(put_leaf, batch)


class DataLoader:
    """``torch.utils.data.DataLoader`` for JAX.

    Args:
        dataset: a map-style :class:`Dataset` (``__len__``/``__getitem__``, optionally the batched
            ``__getitems__``) or an :class:`IterableDataset`.
        batch_size: samples per batch; ``None`` disables batching (yields single samples), as torch.
        shuffle: a new random order each epoch (``RandomSampler(dataset, seed=seed)``).
        sampler / batch_sampler: torch's meaning and mutual-exclusion rules. Samplers with
            ``indices(epoch)`` (all of funcnet's) are evaluated in one vectorised step; any
            torch-style sampler (``__iter__`` [+ ``set_epoch``]) also works.
        drop_last: drop the last incomplete batch.
        collate_fn: list of samples -> batch. Default: the batched fast path when the dataset has
            ``__getitems__``, else :func:`default_collate`. A custom one is called on the list of
            ``dataset[i]`` (torch's per-sample path).
        seed: an int or a JAX key; the order and transform keys depend only on ``(seed, epoch)``.
            Replaces torch's ``generator``; iterating never touches a global RNG.
        num_workers: workers preparing batches in parallel (0: batches are prepared in the caller's
            thread, the fastest choice for in-memory arrays).
        worker_mode: ``"thread"`` (default) or ``"process"`` (torch's worker processes: for
            per-sample Python work that holds the GIL, e.g. ``ImageFolder`` + transforms). In
            process mode the dataset, ``collate_fn`` and ``worker_init_fn`` must be picklable, and
            ``transform``/``device`` still run in the main process (a background thread).
        prefetch / prefetch_factor: batches kept ready ahead per worker (torch's
            ``prefetch_factor``; give either). Default (``None``): 2 when ``num_workers > 0`` or
            ``device`` is set, else 0 (no thread at all).
        persistent_workers: keep worker processes alive between passes (torch's meaning).
        worker_init_fn: ``worker_init_fn(worker_id)`` called in each worker before its first batch.
        timeout: seconds to wait for any one batch from a worker before raising (0: no limit; a
            dead worker process is always detected and reported within a fraction of a second).
        multiprocessing_context: ``"forkserver"`` (default where available) or ``"spawn"`` (or a
            context object); ``"fork"`` is refused (jax #9190).
        pin_memory: accepted for torch code; no effect (JAX stages host-to-device copies itself;
            use ``device=`` to overlap the transfer with compute).
        transform: ``transform(batch, key) -> batch`` applied after collation, with
            ``key = self.batch_key(epoch, batch_index)`` (see :mod:`~funcnet.utils.data.transforms`).
        device: ``None`` (host numpy batches), ``True`` (the default JAX device), a ``jax.Device``
            or a ``jax.sharding.Sharding`` (multi-device; on several hosts each process passes its
            local part of the global batch, e.g. from :class:`DistributedSampler`), or a callable
            ``batch -> placed batch`` such as ``funcnet.parallel.PerDeviceSplit()`` (pmap layout).
        jit_transform: compile ``transform`` with ``jax.jit`` (set False for non-jittable ones).

    ``len(loader)`` is torch's: ``n // bs`` with ``drop_last`` else ``ceil(n / bs)``.

    Differences from torch: batches are numpy arrays (``device=None``) or JAX arrays, not tensors;
    workers are threads unless ``worker_mode="process"``; ``seed`` instead of ``generator``; an
    ``IterableDataset`` is read by one thread (process workers would need per-worker sharding).
    """

    def __init__(
        self,
        dataset: Any,
        batch_size: int | None = 1,
        shuffle: bool | None = False,
        sampler: Any = None,
        batch_sampler: Any = None,
        drop_last: bool = False,
        collate_fn: Callable[[list], Any] | None = None,
        seed: Any = 0,
        num_workers: int = 0,
        prefetch: int | None = None,
        transform: Callable[[Any, Any], Any] | None = None,
        device: Any = None,
        jit_transform: bool = True,
        worker_mode: str = "thread",
        prefetch_factor: int | None = None,
        persistent_workers: bool = False,
        worker_init_fn: Callable[[int], None] | None = None,
        timeout: float = 0,
        multiprocessing_context: Any = None,
        pin_memory: bool = False,
    ) -> None:
        if not isinstance(num_workers, int) or num_workers < 0:
            raise ValueError("num_workers option should be non-negative; use num_workers=0 to disable "
                             "multiprocessing.")
        if worker_mode not in ("thread", "process"):
            raise ValueError(f"worker_mode must be 'thread' or 'process', got {worker_mode!r}")
        if prefetch_factor is not None:
            if num_workers == 0:
                raise ValueError("prefetch_factor option could only be specified in multiprocessing. "
                                 "let num_workers > 0 to enable multiprocessing, otherwise set prefetch_factor "
                                 "to None.")
            if prefetch is not None and prefetch != prefetch_factor:
                raise ValueError(f"prefetch={prefetch} and prefetch_factor={prefetch_factor} are the same "
                                 f"setting; give one")
            prefetch = prefetch_factor
        if prefetch is not None and (not isinstance(prefetch, int) or prefetch < 0):
            raise ValueError(f"prefetch should be a non-negative integer or None, but got "
                             f"prefetch={prefetch}")
        if persistent_workers and num_workers == 0:
            raise ValueError("persistent_workers option needs num_workers > 0")
        if timeout < 0:
            raise ValueError("timeout option should be non-negative")
        if worker_mode == "process" and num_workers > 0:
            if isinstance(dataset, IterableDataset):
                raise NotImplementedError("DataLoader(worker_mode='process') reads map-style datasets only; an "
                                          "IterableDataset is read by one thread (worker_mode='thread')")
            _workers.check_context(multiprocessing_context)  # refuses 'fork' now, not at the first pass
        _seed_entropy(seed)  # validates
        self.dataset = dataset
        self.num_workers = num_workers
        self.collate_fn = collate_fn
        self.seed = seed
        self.transform = transform
        self.device = device
        self.worker_mode = worker_mode
        self.persistent_workers = persistent_workers
        self.worker_init_fn = worker_init_fn
        self.timeout = timeout
        self.multiprocessing_context = multiprocessing_context
        self.pin_memory = pin_memory
        self._pool: _workers.WorkerPool | None = None
        self._last_pool: _workers.WorkerPool | None = None
        self._iterable = isinstance(dataset, IterableDataset)

        if self._iterable:
            if shuffle not in (False, None):
                raise ValueError(f"DataLoader with IterableDataset: expected unspecified shuffle option, "
                                 f"but got shuffle={shuffle}")
            if sampler is not None:
                raise ValueError(f"DataLoader with IterableDataset: expected unspecified sampler option, "
                                 f"but got sampler={sampler}")
            if batch_sampler is not None:
                raise ValueError(f"DataLoader with IterableDataset: expected unspecified batch_sampler "
                                 f"option, but got batch_sampler={batch_sampler}")
        shuffle = bool(shuffle)
        if sampler is not None and shuffle:
            raise ValueError("sampler option is mutually exclusive with shuffle")
        if batch_sampler is not None:
            if batch_size != 1 or shuffle or sampler is not None or drop_last:
                raise ValueError("batch_sampler option is mutually exclusive with batch_size, shuffle, "
                                 "sampler, and drop_last")
            batch_size = None
            drop_last = False
        elif batch_size is None:
            if drop_last:
                raise ValueError("batch_size=None option disables auto-batching and is mutually exclusive "
                                 "with drop_last")
        else:
            _check_positive_int("batch_size", batch_size)

        if sampler is None:
            if self._iterable:
                sampler = _InfiniteConstantSampler()
            elif shuffle:
                sampler = RandomSampler(dataset, seed=seed)
            else:
                sampler = SequentialSampler(dataset)
        if batch_size is not None and batch_sampler is None and not self._iterable:
            batch_sampler = BatchSampler(sampler, batch_size, drop_last)

        self.batch_size = batch_size
        self.drop_last = drop_last
        self.sampler = sampler
        self.batch_sampler = batch_sampler
        self._auto_collation = batch_sampler is not None or (self._iterable and batch_size is not None)
        threads = num_workers > 0 or device is not None
        self.prefetch = (2 if threads else 0) if prefetch is None else prefetch
        self._place = _make_placer(device)
        self._transform = transform
        if transform is not None and jit_transform:
            import jax

            self._transform = jax.jit(transform)

        self._epoch = 0
        self._pos = 0  # batches of self._epoch already handed to the caller
        self._started = False  # a pass over self._epoch has begun
        self._resume = False  # load_state_dict: the next pass continues at (_epoch, _pos)
        self._device_cache: dict[Any, tuple] = {}
        self._last_threads: list = []

    # ------------------------------------------------------------------ sizes and epochs
    def __len__(self) -> int:
        if self._iterable:
            n = len(self.dataset)  # TypeError if the stream has no length, as torch
            if self.batch_size is None:
                return n
            return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)
        if self.batch_sampler is not None:
            return len(self.batch_sampler)
        return len(self.sampler)

    @property
    def epoch(self) -> int:
        """The epoch of the pass in progress, or of the next pass."""
        return self._epoch

    def set_epoch(self, epoch: int) -> None:
        """Make the next pass epoch ``epoch``, from its first batch."""
        if not isinstance(epoch, (int, np.integer)) or epoch < 0:
            raise ValueError(f"set_epoch: epoch must be a non-negative integer, got {epoch!r}")
        self._epoch, self._pos, self._started, self._resume = int(epoch), 0, False, False

    def _sampler_epoch_request(self) -> int | None:
        """An epoch set by the user with ``sampler.set_epoch`` (torch's habit) since the last pass."""
        requested = None
        for s in (self.batch_sampler, getattr(self.batch_sampler, "sampler", None), self.sampler):
            pending = getattr(s, "_pending_epoch", None)
            if pending is not None:
                requested = pending
                s._pending_epoch = None
        return requested

    def _begin(self) -> tuple[int, int]:
        requested = self._sampler_epoch_request()
        if self._resume:  # a loaded state wins over a sampler's set_epoch
            self._resume = False
        elif requested is not None:
            self._epoch, self._pos = requested, 0
        elif self._started:  # the previous pass was left early: a new pass is a new epoch
            self._epoch += 1
            self._pos = 0
        self._started = True
        if not self._iterable and hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(self._epoch)  # per-sample augmentation keys (ImageFolder)
        return self._epoch, self._pos

    def _finish(self, epoch: int) -> None:
        if self._epoch == epoch and self._started:
            self._epoch, self._pos, self._started = epoch + 1, 0, False

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Where the loader stands: ``{"epoch", "batches_done", "num_batches", "seed"}`` (plain ints).

        ``batches_done`` counts batches already handed out, so resuming continues with the next one.
        After a finished pass it is ``(epoch + 1, 0)``.
        """
        epoch, pos = self._epoch, self._pos
        try:
            nb: int | None = len(self)
        except TypeError:
            nb = None
        if nb is not None and pos >= nb and self._started:
            epoch, pos = epoch + 1, 0
        seed = int(self.seed) if isinstance(self.seed, (int, np.integer)) else None
        return {"epoch": int(epoch), "batches_done": int(pos), "num_batches": nb, "seed": seed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume: the next pass continues epoch ``state["epoch"]`` after ``state["batches_done"]``
        batches."""
        missing = {"epoch", "batches_done"} - set(state)
        if missing:
            raise KeyError(f"DataLoader.load_state_dict: missing keys {sorted(missing)}; got {sorted(state)}")
        try:
            nb: int | None = len(self)
        except TypeError:
            nb = None
        saved_nb = state.get("num_batches")
        if saved_nb is not None and nb is not None and saved_nb != nb:
            raise ValueError(f"DataLoader.load_state_dict: the state has num_batches={saved_nb} but this "
                             f"loader has {nb} batches per epoch (different dataset, batch_size or sampler?)")
        saved_seed = state.get("seed")
        if saved_seed is not None and isinstance(self.seed, (int, np.integer)) and saved_seed != self.seed:
            raise ValueError(f"DataLoader.load_state_dict: the state was saved with seed={saved_seed} but "
                             f"this loader has seed={self.seed}")
        pos = int(state["batches_done"])
        if pos < 0 or (nb is not None and pos > nb):
            raise ValueError(f"DataLoader.load_state_dict: batches_done={pos} is outside [0, {nb}]")
        self._epoch, self._pos = int(state["epoch"]), pos
        self._started, self._resume = False, True

    # ------------------------------------------------------------------ epoch plans
    def _plan(self, epoch: int) -> tuple[int, Callable[[int], np.ndarray]]:
        """``(num_batches, indices_of(b))`` for a map-style dataset and this epoch."""
        bsamp = self.batch_sampler
        if bsamp is None:  # no auto-collation: one index per "batch"
            order = sampler_indices(self.sampler, epoch)
            return len(order), order.__getitem__
        if type(bsamp) is BatchSampler:
            order = sampler_indices(bsamp.sampler, epoch)
            bs = bsamp.batch_size
            nb = len(order) // bs if bsamp.drop_last else -(-len(order) // bs)
            return nb, lambda b: order[b * bs : (b + 1) * bs]
        if hasattr(bsamp, "batches"):
            batches = [np.asarray(b, dtype=np.intp) for b in bsamp.batches(epoch)]
        else:
            if hasattr(bsamp, "set_epoch"):
                bsamp.set_epoch(epoch)
            batches = [np.asarray(b, dtype=np.intp) for b in bsamp]
        return len(batches), batches.__getitem__

    def _fetcher(self) -> Callable[[np.ndarray], Any]:
        ds = self.dataset
        if self.batch_sampler is None:
            return lambda i: ds[int(i)]
        if self.collate_fn is None and hasattr(ds, "__getitems__"):
            return ds.__getitems__
        collate = self.collate_fn or default_collate

        def fetch(idx: np.ndarray) -> Any:
            samples = []
            for i in idx:
                try:
                    samples.append(ds[int(i)])
                except Exception as e:
                    if hasattr(e, "add_note"):
                        e.add_note(f"(while loading sample index {int(i)})")
                    raise
            return collate(samples)

        return fetch

    # ------------------------------------------------------------------ keys
    def _base_key(self) -> Any:
        import jax

        seed = self.seed
        if isinstance(seed, (int, np.integer)):
            return jax.random.PRNGKey(int(seed))
        if jax.dtypes.issubdtype(seed.dtype, jax.dtypes.prng_key):
            return jax.random.key_data(seed)
        return seed

    def batch_key(self, epoch: Any, batch_index: Any) -> Any:
        """The transform key of batch ``batch_index`` of ``epoch``:
        ``fold_in(fold_in(PRNGKey(seed), epoch), batch_index)`` (a raw uint32[2] key).
        Traceable: call it inside a ``lax.scan`` to get the same augmentation as host iteration."""
        import jax

        return jax.random.fold_in(jax.random.fold_in(self._base_key(), epoch), batch_index)

    def _epoch_keys(self, epoch: int, count: int) -> np.ndarray:
        import jax
        import jax.numpy as jnp

        base = jax.random.fold_in(self._base_key(), epoch)
        keys = jax.vmap(lambda i: jax.random.fold_in(base, i))(jnp.arange(count, dtype=jnp.uint32))
        return np.asarray(keys)

    # ------------------------------------------------------------------ iteration
    def __iter__(self) -> Iterator[Any]:
        if self._iterable:
            return self._iter_stream()
        return self._iter_map()

    def _iter_map(self) -> Iterator[Any]:
        epoch, start = self._begin()
        fetch = self._fetcher()
        order = None
        if type(self.batch_sampler) is BatchSampler:  # contiguous slices of one index array
            bsamp = self.batch_sampler
            order = sampler_indices(bsamp.sampler, epoch)
            bs = bsamp.batch_size
            nb = len(order) // bs if bsamp.drop_last else -(-len(order) // bs)
            indices_of = lambda b: order[b * bs : b * bs + bs]
        else:
            nb, indices_of = self._plan(epoch)
        transform, place = self._transform, self._place
        if self.worker_mode == "process" and self.num_workers > 0:
            yield from self._iter_processes(epoch, start, nb, indices_of)
            return
        use_threads = self.num_workers > 0 or self.prefetch > 0

        if transform is None and place is None and not use_threads:
            # The hot path: one gather per batch, nothing else per batch.
            if order is not None:
                for b in range(start, nb):
                    batch = fetch(order[b * bs : b * bs + bs])
                    self._pos = b + 1
                    yield batch
                self._finish(epoch)
                return
            for b in range(start, nb):
                batch = fetch(indices_of(b))
                self._pos = b + 1
                yield batch
            self._finish(epoch)
            return

        keys = self._epoch_keys(epoch, nb) if transform is not None else None
        block = use_threads and place is not None

        def make(b: int) -> Any:
            batch = fetch(indices_of(b))
            if transform is not None:
                batch = transform(batch, keys[b])
            if place is not None:
                batch = place(batch)
                if block:  # finish the transfer here, in the background thread
                    import jax

                    jax.block_until_ready(batch)
            return batch

        if not use_threads:
            for b in range(start, nb):
                batch = make(b)
                self._pos = b + 1
                yield batch
            self._finish(epoch)
            return

        workers = max(1, self.num_workers)
        init = self.worker_init_fn

        def source(w: int) -> Iterator[Any]:
            if init is not None:
                init(w)
            return (make(b) for b in range(start + w, nb, workers))

        sources = [(lambda w=w: source(w)) for w in range(workers)]
        self._last_threads = []
        inner = _prefetch.threaded(sources, self.prefetch, "funcnet-DataLoader", self._last_threads,
                                   timeout=self.timeout)
        yield from self._counted(inner, start, epoch)

    # ------------------------------------------------------------------ worker processes
    def _worker_pool(self) -> _workers.WorkerPool:
        pool = self._pool
        if pool is None or pool.closed:
            seed = self.seed if isinstance(self.seed, (int, np.integer)) else 0
            pool = _workers.WorkerPool(
                self.dataset, self.num_workers, batched=self.batch_sampler is not None,
                collate_fn=self.collate_fn, worker_init_fn=self.worker_init_fn, seed=int(seed),
                context=self.multiprocessing_context, timeout=self.timeout, prefetch_factor=max(1, self.prefetch))
            if self.persistent_workers:
                self._pool = pool
                weakref.finalize(self, pool.shutdown)
        self._last_pool = pool  # for tests and inspection, like _last_threads
        return pool

    def shutdown_workers(self) -> None:
        """Stop persistent worker processes now (otherwise they stop with the loader or the program)."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def _iter_processes(self, epoch: int, start: int, nb: int, indices_of: Callable[[int], np.ndarray]
                        ) -> Iterator[Any]:
        pool = self._worker_pool()

        def from_pool() -> Iterator[Any]:
            try:
                yield from pool.batches(epoch, start, nb, indices_of)
            finally:
                if not self.persistent_workers:
                    pool.shutdown()

        transform, place = self._transform, self._place
        if transform is None and place is None:
            yield from self._counted(from_pool(), start, epoch)
            return
        keys = self._epoch_keys(epoch, nb) if transform is not None else None

        def post() -> Iterator[Any]:  # the JAX side stays in this process, in a background thread
            import jax

            for b, batch in enumerate(from_pool(), start):
                if transform is not None:
                    batch = transform(batch, keys[b])
                if place is not None:
                    batch = jax.block_until_ready(place(batch))
                yield batch

        self._last_threads = []
        inner = _prefetch.threaded([post], max(1, self.prefetch), "funcnet-DataLoader", self._last_threads,
                                   timeout=self.timeout)
        yield from self._counted(inner, start, epoch)

    def _counted(self, inner: Iterator[Any], start: int, epoch: int) -> Iterator[Any]:
        """Yield ``inner``'s batches, recording the position for ``state_dict``; close ``inner``
        however iteration ends, and mark the epoch finished only when it ran to the end."""
        try:
            b = start
            for batch in inner:
                b += 1
                self._pos = b
                yield batch
        finally:
            inner.close()
        self._finish(epoch)

    def _iter_stream(self) -> Iterator[Any]:
        epoch, start = self._begin()
        ds = self.dataset
        if hasattr(ds, "set_epoch"):
            ds.set_epoch(epoch)
        bs, drop_last = self.batch_size, self.drop_last
        collate = self.collate_fn or default_collate
        transform, place = self._transform, self._place
        use_threads = self.num_workers > 0 or self.prefetch > 0

        def produce() -> Iterator[Any]:
            def raw() -> Iterator[Any]:
                if bs is None:
                    yield from iter(ds)
                    return
                buf: list = []
                for sample in ds:
                    buf.append(sample)
                    if len(buf) == bs:
                        yield collate(buf)
                        buf = []
                if buf and not drop_last:
                    yield collate(buf)

            import jax

            for b, batch in enumerate(raw()):
                if b < start:  # resuming a stream re-reads and drops the batches already seen
                    continue
                if transform is not None:
                    batch = transform(batch, self.batch_key(epoch, b))
                if place is not None:
                    batch = place(batch)
                    if use_threads:
                        jax.block_until_ready(batch)
                yield batch

        if use_threads:
            self._last_threads = []
            inner = _prefetch.threaded([produce], self.prefetch, "funcnet-DataLoader", self._last_threads,
                                       timeout=self.timeout)
        else:
            inner = produce()
        yield from self._counted(inner, start, epoch)

    # ------------------------------------------------------------------ on-device mode
    def _arrays(self) -> tuple[np.ndarray, ...]:
        tensors = getattr(self.dataset, "tensors", None)
        if tensors is None or self._iterable:
            raise TypeError(f"on-device mode needs an array dataset with .tensors (TensorDataset, Digits, "
                            f"MNIST, FakeData); got {type(self.dataset).__name__}. Wrap the arrays in a "
                            f"TensorDataset first.")
        return tuple(tensors)

    def device_arrays(self, device: Any = None) -> tuple:
        """The dataset's arrays placed on the device once (cached): ``(inputs, targets, …)``.

        ``device`` defaults to the loader's ``device`` (else the default device); a sharding is
        allowed (e.g. replicated). Use with :meth:`epoch_indices`: ``x = inputs[idx[b]]``.
        """
        import jax

        device = device if device is not None else self.device
        if device is None or device is True or device is False:
            device = None  # the default device, uncommitted, as for a fresh TrainState: one compilation
        cache_key = id(device)
        if cache_key not in self._device_cache:
            self._device_cache[cache_key] = (device, tuple(jax.device_put(a, device) for a in self._arrays()))
        return self._device_cache[cache_key][1]

    def epoch_indices(self, epoch: int, with_mask: bool = False) -> Any:
        """The epoch's batches as a device array ``int32[num_batches, batch_size]``, same order as
        host iteration for the same ``(seed, epoch)``.

        If the last batch is partial (``drop_last=False`` and ``batch_size`` not dividing the
        sample count), pass ``with_mask=True``: it is padded with index 0 and the function returns
        ``(indices, mask)`` with ``mask`` ``bool[num_batches, batch_size]`` False on the padding.

        Example (a whole epoch in one compiled call)::

            x_all, y_all = loader.device_arrays()
            def epoch_fn(state, idx):
                def step(state, b_idx):
                    return train_step(state, x_all[b_idx], y_all[b_idx]), None
                return jax.lax.scan(step, state, idx)[0]
            state = jax.jit(epoch_fn)(state, loader.epoch_indices(epoch))
        """
        import jax

        if self.batch_sampler is None:
            raise ValueError("epoch_indices needs batching (batch_size or batch_sampler), got "
                             "batch_size=None")
        self._arrays()
        nb, indices_of = self._plan(int(epoch))
        batches = [indices_of(b) for b in range(nb)]
        width = max((len(b) for b in batches), default=self.batch_size or 0)
        idx = np.zeros((nb, width), dtype=np.int32)
        mask = np.zeros((nb, width), dtype=bool)
        for b, ind in enumerate(batches):
            idx[b, : len(ind)] = ind
            mask[b, : len(ind)] = True
        if not mask.all() and not with_mask:
            sizes = sorted({len(b) for b in batches})
            raise ValueError(f"epoch_indices: batches have unequal sizes {sizes} (a partial last batch); "
                             f"use drop_last=True, or epoch_indices(epoch, with_mask=True) for padded "
                             f"indices and a mask")
        device = self.device if isinstance(self.device, jax.Device) else None
        out = jax.device_put(idx, device)
        return (out, jax.device_put(mask, device)) if with_mask else out

    def __repr__(self) -> str:
        return (f"DataLoader(dataset={type(self.dataset).__name__}, batch_size={self.batch_size}, "
                f"sampler={type(self.sampler).__name__}, drop_last={self.drop_last}, "
                f"num_workers={self.num_workers}, worker_mode={self.worker_mode!r}, prefetch={self.prefetch}, "
                f"seed={self.seed!r})")
