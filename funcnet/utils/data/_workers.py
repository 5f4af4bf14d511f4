"""Worker *processes* for the DataLoader (``worker_mode="process"``): torch's ``num_workers`` meaning.

- Started with ``forkserver`` (default on POSIX) or ``spawn``, never plain ``fork``: forking a process
  whose JAX runtime is initialised can hang (jax #9190). Workers never touch an accelerator
  (``JAX_PLATFORMS=cpu`` is set in them before any user code runs).
- Batch ``b`` goes to worker ``b % num_workers``; at most ``prefetch_factor × num_workers`` batches are
  outstanding; results are reordered, so batches come out in sampler order whatever worker is
  faster. Tasks carry ``(generation, batch, epoch, indices)``: the worker calls
  ``dataset.set_epoch(epoch)`` when it changes (per-sample augmentation keys), and results of an
  abandoned pass (early ``break`` with persistent workers) are recognised by generation and dropped.
- Arrays come back through shared memory: the worker writes the whole batch into one ``/dev/shm``
  buffer, the main process maps it (no copy) and unlinks its name at once, so nothing is left behind
  if a process dies. Buffers are **reused**: when every array of a batch has been garbage-collected
  in the main process (a ``weakref.finalize`` on the arrays' common base), its id goes back to the
  worker with the next task, and the worker writes a later batch into the same, already-mapped
  pages. A fresh 38 MB buffer per batch cost ~45 ms of page faults and zeroing against ~4 ms for a
  reused one (64 × 3 × 224 × 224 float32). A worker keeps at most ``prefetch_factor + 2`` free
  buffers and tells the main process which it dropped. Other leaves (strings, ints) are pickled.
  Without ``/dev/shm`` the arrays are pickled through the queue instead.
- A worker exception is re-raised in the main process, same type where possible, with the worker's
  traceback and the sample index. A worker that dies (segfault, ``os._exit``, OOM kill) is detected
  within ``_POLL_S`` and reported; ``timeout > 0`` bounds the wait for any one batch. Nothing blocks
  forever: shutdown joins with a deadline, then terminates.
"""

from __future__ import annotations

import collections
import glob
import itertools
import mmap
import multiprocessing
import os
import pickle
import queue
import secrets
import signal
import sys
import time
import traceback
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

_POLL_S = 0.1
_SHM_DIR = "/dev/shm"


@dataclass(frozen=True)
class WorkerInfo:
    """What :func:`get_worker_info` returns inside a worker process (torch's fields)."""

    id: int
    num_workers: int
    seed: int
    dataset: Any


_worker_info: WorkerInfo | None = None


def get_worker_info() -> WorkerInfo | None:
    """``torch.utils.data.get_worker_info``: the current worker's info in a worker process, else None."""
    return _worker_info


# ------------------------------------------------------------------------------ batch encoding
def _layout(batch: Any, arrays: list[np.ndarray]) -> Any:
    """The batch with every numpy array replaced by a ``("__a", position)`` placeholder."""
    if isinstance(batch, np.ndarray) and batch.dtype != object:
        arrays.append(batch)
        return ("__a", len(arrays) - 1)
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):
        return ("__nt", type(batch), tuple(_layout(v, arrays) for v in batch))
    if isinstance(batch, tuple):
        return ("__t", tuple(_layout(v, arrays) for v in batch))
    if isinstance(batch, list):
        return ("__l", [_layout(v, arrays) for v in batch])
    if isinstance(batch, dict):
        return ("__d", {k: _layout(v, arrays) for k, v in batch.items()})
    return ("__o", batch)


def _rebuild(layout: Any, arrays: list[np.ndarray]) -> Any:
    tag, value = layout[0], layout[1]
    if tag == "__a":
        return arrays[value]
    if tag == "__nt":
        return value(*(_rebuild(v, arrays) for v in layout[2]))
    if tag == "__t":
        return tuple(_rebuild(v, arrays) for v in value)
    if tag == "__l":
        return [_rebuild(v, arrays) for v in value]
    if tag == "__d":
        return {k: _rebuild(v, arrays) for k, v in value.items()}
    return value


class _WorkerBuffers:
    """Worker side of the shared-memory buffers: ``take(size)`` gives a mapped buffer (a free one
    that fits, else a new ``/dev/shm`` file); ids the main process has released come back through
    :meth:`release`. Ids dropped here (over the free-pool bound) are reported once in
    :meth:`dropped`, so the main process unmaps them too."""

    def __init__(self, prefix: str, keep: int) -> None:
        self.prefix, self.keep = prefix, keep
        self.maps: dict[int, mmap.mmap] = {}
        self.free: list[int] = []
        self._dropped: list[int] = []
        self._ids = itertools.count()

    def release(self, ids: list[int]) -> None:
        self.free.extend(i for i in ids if i in self.maps)
        while len(self.free) > self.keep:  # bounded: the pages go back to the system
            bid = self.free.pop(0)
            self.maps.pop(bid).close()
            self._dropped.append(bid)

    def dropped(self) -> list[int]:
        ids, self._dropped = self._dropped, []
        return ids

    def take(self, size: int) -> tuple[int, str, int, bool, mmap.mmap]:
        """``(id, name, capacity, new, mapping)`` of a buffer of at least ``size`` bytes."""
        fits = [b for b in self.free if len(self.maps[b]) >= size]
        if fits:
            bid = min(fits, key=lambda b: len(self.maps[b]))
            self.free.remove(bid)
            return bid, "", len(self.maps[bid]), False, self.maps[bid]
        bid = next(self._ids)
        name = f"{self.prefix}{bid}"
        fd = os.open(os.path.join(_SHM_DIR, name), os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
        try:
            os.ftruncate(fd, size)
            self.maps[bid] = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        return bid, name, size, True, self.maps[bid]


def _pack(specs: list[tuple[int, tuple[int, ...], str]], size: int, buffers: _WorkerBuffers,
          write: Callable[[mmap.mmap], None], layout: Any) -> tuple:
    """``write`` the arrays into a buffer of at least ``size`` bytes; the payload the main process decodes."""
    bid, name, capacity, new, mm = buffers.take(max(size, 1))
    write(mm)
    return ("shm", bid, name, capacity, new, buffers.dropped(), layout, specs)


def _offsets(items: list[tuple[tuple[int, ...], np.dtype]]) -> tuple[list, int]:
    specs, offset = [], 0
    for shape, dtype in items:
        offset = -(-offset // 64) * 64  # 64-byte aligned arrays
        specs.append((offset, shape, np.dtype(dtype).str))
        offset += int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    return specs, offset


def _encode(batch: Any, buffers: _WorkerBuffers | None) -> tuple:
    """Worker side: ``("shm", id, name, capacity, new, dropped, layout, specs)`` or ``("pickle", batch)``."""
    arrays: list[np.ndarray] = []
    layout = _layout(batch, arrays)
    if buffers is None or not arrays:
        return ("pickle", batch)
    specs, size = _offsets([(a.shape, a.dtype) for a in arrays])

    def write(mm: mmap.mmap) -> None:
        for a, (off, shape, dtype) in zip(arrays, specs, strict=True):
            np.frombuffer(mm, dtype=dtype, count=a.size, offset=off).reshape(shape)[...] = a

    return _pack(specs, size, buffers, write, layout)


def _collate_into_shm(samples: list, buffers: _WorkerBuffers) -> tuple | None:
    """``default_collate`` of plain-tuple samples (``(image, label)`` from ImageFolder) with the
    equal-shape array fields stacked straight into the shared-memory buffer: one write of the batch
    instead of ``np.stack`` then a copy. ``None`` if the samples have another structure."""
    if not samples or any(type(x) is not tuple or len(x) != len(samples[0]) for x in samples):
        return None
    from funcnet.utils.data.collate import default_collate

    fields = list(zip(*samples))
    stacked, layout, items = [], [], []
    for values in fields:
        first = values[0]
        if (isinstance(first, np.ndarray) and first.dtype != object
                and all(isinstance(v, np.ndarray) and v.shape == first.shape and v.dtype == first.dtype
                        for v in values)):
            items.append(((len(values), *first.shape), first.dtype))
            stacked.append(values)
            layout.append(("__a", len(items) - 1))
        else:
            layout.append(("__o", default_collate(list(values))))
    if not items:
        return None
    specs, size = _offsets(items)

    def write(mm: mmap.mmap) -> None:
        for values, (off, shape, dtype) in zip(stacked, specs, strict=True):
            count = int(np.prod(shape, dtype=np.int64))
            np.stack(values, out=np.frombuffer(mm, dtype=dtype, count=count, offset=off).reshape(shape))

    return _pack(specs, size, buffers, write, ("__t", tuple(layout)))


class _MainBuffers:
    """Main side: each worker buffer mapped once (its name unlinked at once) and kept by
    ``(worker, id)``; a batch's arrays are views of one fresh base array over the mapping, and
    when that base is collected (no array of the batch is left) the id is queued for the worker."""

    def __init__(self, num_workers: int) -> None:
        self.maps: dict[tuple[int, int], mmap.mmap] = {}
        self.released: list[collections.deque] = [collections.deque() for _ in range(num_workers)]

    def take_released(self, worker: int) -> list[int]:
        ids, q = [], self.released[worker]
        while q:
            ids.append(q.popleft())
        return ids

    def decode(self, worker: int, payload: tuple) -> Any:
        if payload[0] == "pickle":
            return payload[1]
        _, bid, name, capacity, new, dropped, layout, specs = payload
        for gone in dropped:
            self.maps.pop((worker, gone), None)
        if new:
            path = os.path.join(_SHM_DIR, name)
            fd = os.open(path, os.O_RDWR)
            try:
                self.maps[(worker, bid)] = mmap.mmap(fd, capacity)
            finally:
                os.close(fd)
                os.unlink(path)
        base = np.frombuffer(self.maps[(worker, bid)], np.uint8, count=capacity)
        arrays = []
        for off, shape, dtype in specs:
            dt = np.dtype(dtype)
            n = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
            arrays.append(base[off:off + n].view(dt).reshape(shape))  # views keep `base` alive
        weakref.finalize(base, self.released[worker].append, bid)
        return _rebuild(layout, arrays)

    def discard(self, worker: int, payload: Any) -> None:
        """A result nobody will see (an abandoned pass): its buffer goes straight back."""
        if isinstance(payload, tuple) and payload and payload[0] == "shm":
            self.decode(worker, payload)  # maps a new buffer; the unreferenced batch releases it


# ------------------------------------------------------------------------------ errors
class _WorkerError:
    """A worker exception, carried to the main process as its type and formatted text."""

    def __init__(self, exc: BaseException, where: str) -> None:
        self.exc_type = type(exc)
        self.where = where
        self.text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))

    def reraise(self) -> None:
        msg = f"Caught {self.exc_type.__name__} {self.where}.\nOriginal {self.text}"
        if self.exc_type is KeyError:  # KeyError repr()s its message; keep it readable
            msg = KeyError.__repr__(KeyError(msg))
        try:
            exception = self.exc_type(msg)
        except Exception:  # noqa: BLE001 - a constructor that wants other arguments
            raise RuntimeError(msg) from None
        raise exception


# ------------------------------------------------------------------------------ the worker
def _fetch(dataset: Any, indices: Any, batched: bool, collate_fn: Callable | None, where: list,
           buffers: _WorkerBuffers | None = None) -> Any:
    """One batch: ``dataset.__getitems__`` (fast path), ``collate([dataset[i] …])``, or one sample.
    With ``buffers`` and the default collate, the batch may come back already encoded (a
    ``("shm", …)`` payload, see :func:`_collate_into_shm`)."""
    if not batched:
        where[0] = int(indices)
        return dataset[int(indices)]
    if collate_fn is None and hasattr(dataset, "__getitems__"):
        where[0] = [int(i) for i in indices]
        return dataset.__getitems__(indices)
    samples = []
    for i in indices:
        where[0] = int(i)
        samples.append(dataset[int(i)])
    where[0] = [int(i) for i in indices]
    if collate_fn is None:
        from funcnet.utils.data.collate import default_collate

        if buffers is not None:
            encoded = _collate_into_shm(samples, buffers)
            if encoded is not None:
                return _Encoded(encoded)
        collate_fn = default_collate
    return collate_fn(samples)


class _Encoded:
    """A batch already written to shared memory by :func:`_collate_into_shm`."""

    __slots__ = ("payload",)

    def __init__(self, payload: tuple) -> None:
        self.payload = payload


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists (a worker's parent is the fork server, so not ``getppid``)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _worker_loop(worker_id: int, num_workers: int, dataset: Any, batched: bool, collate_fn: Callable | None,
                 worker_init_fn: Callable | None, seed: int, index_queue: Any, result_queue: Any,
                 done: Any, shm_prefix: str | None, parent_pid: int, keep_buffers: int) -> None:
    os.environ["JAX_PLATFORMS"] = "cpu"  # a worker never takes an accelerator
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle
    global _worker_info
    _worker_info = WorkerInfo(worker_id, num_workers, seed, dataset)

    def send(item: tuple) -> None:
        try:
            data = pickle.dumps(item)
        except Exception as e:  # noqa: BLE001 - e.g. an unpicklable exception or batch leaf
            gen, b = item[0], item[1]
            data = pickle.dumps((gen, b, "err", _WorkerError(
                RuntimeError(f"the result of batch {b} cannot be sent to the main process: {e}"),
                f"in DataLoader worker process {worker_id}")))
        result_queue.put(data)

    try:
        if worker_init_fn is not None:
            worker_init_fn(worker_id)
    except BaseException as e:  # noqa: BLE001
        send((-1, -1, "err", _WorkerError(e, f"in worker_init_fn of DataLoader worker process {worker_id}")))
        return
    epoch = None
    buffers = None if shm_prefix is None else _WorkerBuffers(f"{shm_prefix}{worker_id}_", keep_buffers)
    while True:
        try:
            task = index_queue.get(timeout=1.0)
        except queue.Empty:
            if not _alive(parent_pid):  # orphaned: the main process died
                return
            continue
        if task is None or done.is_set():  # shutting down: skip the batches still queued
            return
        gen, b, task_epoch, indices, released = task
        if buffers is not None:
            buffers.release(released)
        where: list = [None]
        try:
            if task_epoch != epoch and hasattr(dataset, "set_epoch"):
                dataset.set_epoch(task_epoch)
            epoch = task_epoch
            batch = _fetch(dataset, indices, batched, collate_fn, where, buffers)
            send((gen, b, "ok", batch.payload if type(batch) is _Encoded else _encode(batch, buffers)))
        except BaseException as e:  # noqa: BLE001 - handed to the main process
            what = "sample index" if isinstance(where[0], int) else "sample indices"
            send((gen, b, "err", _WorkerError(
                e, f"in DataLoader worker process {worker_id} while loading {what} {where[0]} (batch {b}, "
                   f"epoch {task_epoch})")))


# ------------------------------------------------------------------------------ the pool
def check_context(context: Any) -> Any:
    """``None`` -> forkserver where available, else spawn; ``"fork"`` is refused."""
    if context is None:
        context = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    if isinstance(context, str):
        if context == "fork":
            raise ValueError("DataLoader: multiprocessing_context='fork' is not allowed: a forked child of a "
                             "process that has initialised JAX can hang (jax #9190); use 'forkserver' or 'spawn'")
        context = multiprocessing.get_context(context)
        if context.get_start_method() == "forkserver":
            _preload_once(context)
        return context
    if getattr(context, "get_start_method", lambda: None)() == "fork":
        raise ValueError("DataLoader: a 'fork' multiprocessing context is not allowed (jax #9190); use "
                         "'forkserver' or 'spawn'")
    return context


def _preload_once(context: Any) -> None:
    """Have the fork server import the worker's modules (numpy, funcnet's data code) once, so each
    worker forked from it starts in milliseconds. Only effective before the server first starts; the
    server imports modules but never initialises a JAX backend, so forking it is safe."""
    from multiprocessing import forkserver

    modules = list(getattr(forkserver._forkserver, "_preload_modules", ["__main__"]))
    if __name__ not in modules:
        context.set_forkserver_preload([*modules, __name__])


class WorkerPool:
    """``num_workers`` processes serving batches of one dataset; see the module docstring."""

    def __init__(self, dataset: Any, num_workers: int, batched: bool, collate_fn: Callable | None,
                 worker_init_fn: Callable | None, seed: int, context: Any, timeout: float,
                 prefetch_factor: int) -> None:
        ctx = check_context(context)
        self.num_workers, self.timeout, self.prefetch_factor = num_workers, timeout, prefetch_factor
        self.shm_prefix = (f"funcnet_{os.getpid()}_{secrets.token_hex(4)}_"
                           if os.path.isdir(_SHM_DIR) and sys.platform.startswith("linux") else None)
        self.index_queues = [ctx.Queue() for _ in range(num_workers)]
        self.result_queue = ctx.Queue()
        self.done = ctx.Event()
        self.generation = 0
        self.buffers = _MainBuffers(num_workers)
        self.closed = False
        self.procs = []
        for w in range(num_workers):
            p = ctx.Process(target=_worker_loop, name=f"funcnet-DataLoader-worker-{w}", daemon=True,
                            args=(w, num_workers, dataset, batched, collate_fn, worker_init_fn, seed + w,
                                  self.index_queues[w], self.result_queue, self.done, self.shm_prefix, os.getpid(),
                                  prefetch_factor + 2))
            p.start()
            self.procs.append(p)

    def _receive(self, waiting_for: int) -> tuple:
        start = time.monotonic()
        while True:
            try:
                return pickle.loads(self.result_queue.get(timeout=_POLL_S))
            except queue.Empty:
                pass
            for w, p in enumerate(self.procs):
                if p.exitcode is not None:
                    code = p.exitcode
                    how = (f"killed by signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}")
                    self.shutdown(graceful=False)
                    raise RuntimeError(f"DataLoader worker process {w} (pid {p.pid}) exited unexpectedly ({how}) "
                                       f"while batch {waiting_for} was pending. If it was killed for memory, lower "
                                       f"batch_size, num_workers or prefetch_factor.")
            if self.timeout and time.monotonic() - start > self.timeout:
                self.shutdown(graceful=False)
                raise RuntimeError(f"DataLoader timed out after {self.timeout} seconds waiting for batch "
                                   f"{waiting_for} from worker {waiting_for % self.num_workers}")

    def batches(self, epoch: int, start: int, nb: int, indices_of: Callable[[int], Any]) -> Iterator[Any]:
        """Batches ``start … nb − 1`` of ``epoch`` in order."""
        if self.closed:
            raise RuntimeError("DataLoader worker pool is shut down")
        self.generation += 1
        gen = self.generation
        cap = self.prefetch_factor * self.num_workers
        sent, ready = start, {}

        def top_up(first_pending: int) -> None:  # keep `cap` batches in flight past the consumer
            nonlocal sent
            while sent < nb and sent - first_pending < cap:
                w = sent % self.num_workers
                self.index_queues[w].put((gen, sent, epoch, indices_of(sent), self.buffers.take_released(w)))
                sent += 1

        for b in range(start, nb):
            top_up(b)
            while b not in ready:
                g, got, status, payload = self._receive(b)
                if status == "err" and g == -1:  # worker_init_fn failed
                    self.shutdown()
                    payload.reraise()
                if g != gen:
                    self.buffers.discard(got % self.num_workers, payload)
                    continue
                ready[got] = (status, payload)
            status, payload = ready.pop(b)
            if status == "err":
                payload.reraise()
            # As torch: the next index goes out before batch b is handed over, so the workers have
            # `cap` batches to do while the training step uses b (one fewer idled a worker: -10%).
            top_up(b + 1)
            yield self.buffers.decode(b % self.num_workers, payload)

    def shutdown(self, graceful: bool = True) -> None:
        """Stop the workers (each finishes the batch in hand; joined with a deadline, then
        terminated; at once if not ``graceful``) and free pending shared memory."""
        if self.closed:
            return
        self.closed = True
        self.done.set()
        for q in self.index_queues:
            try:
                q.put(None)
            except (OSError, ValueError):
                pass
        deadline = time.monotonic() + (2.0 if graceful else 0.0)
        for p in self.procs:
            p.join(max(0.0, deadline - time.monotonic()))
        for p in self.procs:
            if p.is_alive():
                p.terminate()
                p.join(1.0)
        while True:
            try:
                item = pickle.loads(self.result_queue.get_nowait())
            except (queue.Empty, OSError, ValueError, EOFError):
                break
            del item  # its buffer's name, if new, is unlinked below with the rest
        for q in [*self.index_queues, self.result_queue]:
            q.cancel_join_thread()
            q.close()
        if self.shm_prefix is not None:  # a worker killed mid-batch may leave its file behind
            for path in glob.glob(os.path.join(_SHM_DIR, self.shm_prefix + "*")):
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass
        self.buffers.maps.clear()  # batches still held keep their own mapping
