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
  file, the main process maps it (no copy) and unlinks it at once, so the memory is freed when the
  batch's arrays are. Other leaves (strings, ints) are pickled. Without ``/dev/shm`` the arrays are
  pickled through the queue instead.
- A worker exception is re-raised in the main process, same type where possible, with the worker's
  traceback and the sample index. A worker that dies (segfault, ``os._exit``, OOM kill) is detected
  within ``_POLL_S`` and reported; ``timeout > 0`` bounds the wait for any one batch. Nothing blocks
  forever: shutdown joins with a deadline, then terminates.
"""

from __future__ import annotations

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


def _encode(batch: Any, shm_name: str | None) -> tuple:
    """Worker side: ``("shm", name, size, layout, specs)`` or ``("pickle", batch)``."""
    arrays: list[np.ndarray] = []
    layout = _layout(batch, arrays)
    if shm_name is None or not arrays:
        return ("pickle", batch)
    specs, offset = [], 0
    for a in arrays:
        offset = -(-offset // 64) * 64  # 64-byte aligned arrays
        specs.append((offset, a.shape, a.dtype.str))
        offset += a.nbytes
    size = max(offset, 1)
    with _shm_file(shm_name, size) as mm:
        for a, (off, shape, dtype) in zip(arrays, specs):
            np.frombuffer(mm, dtype=dtype, count=a.size, offset=off).reshape(shape)[...] = a
    return ("shm", shm_name, size, layout, specs)


def _shm_file(name: str, size: int) -> mmap.mmap:
    fd = os.open(os.path.join(_SHM_DIR, name), os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    try:
        os.ftruncate(fd, size)
        return mmap.mmap(fd, size)
    finally:
        os.close(fd)


def _collate_into_shm(samples: list, shm_name: str) -> tuple | None:
    """``default_collate`` of plain-tuple samples (``(image, label)`` from ImageFolder) with the
    equal-shape array fields stacked straight into the shared-memory file: one write of the batch
    instead of ``np.stack`` then a copy. ``None`` if the samples have another structure."""
    if not samples or any(type(x) is not tuple or len(x) != len(samples[0]) for x in samples):
        return None
    from funcnet.utils.data.collate import default_collate

    fields = list(zip(*samples))
    specs, layout, offset, arrays = [], [], 0, []
    for values in fields:
        first = values[0]
        if (isinstance(first, np.ndarray) and first.dtype != object
                and all(isinstance(v, np.ndarray) and v.shape == first.shape and v.dtype == first.dtype
                        for v in values)):
            offset = -(-offset // 64) * 64
            shape = (len(values), *first.shape)
            specs.append((offset, shape, first.dtype.str))
            arrays.append(values)
            layout.append(("__a", len(specs) - 1))
            offset += first.nbytes * len(values)
        else:
            layout.append(("__o", default_collate(list(values))))
    if not specs:
        return None
    size = max(offset, 1)
    with _shm_file(shm_name, size) as mm:
        for values, (off, shape, dtype) in zip(arrays, specs):
            count = int(np.prod(shape, dtype=np.int64))
            np.stack(values, out=np.frombuffer(mm, dtype=dtype, count=count, offset=off).reshape(shape))
    return ("shm", shm_name, size, ("__t", tuple(layout)), specs)


def _decode(payload: tuple) -> Any:
    """Main side: map the shared-memory file (no copy) and unlink it; the arrays keep the mapping."""
    if payload[0] == "pickle":
        return payload[1]
    _, name, size, layout, specs = payload
    path = os.path.join(_SHM_DIR, name)
    fd = os.open(path, os.O_RDWR)
    try:
        mm = mmap.mmap(fd, size)
    finally:
        os.close(fd)
        os.unlink(path)
    arrays = [np.frombuffer(mm, dtype=dtype, count=int(np.prod(shape, dtype=np.int64)), offset=off).reshape(shape)
              for off, shape, dtype in specs]
    return _rebuild(layout, arrays)


def _discard(payload: Any) -> None:
    if isinstance(payload, tuple) and payload and payload[0] == "shm":
        try:
            os.unlink(os.path.join(_SHM_DIR, payload[1]))
        except FileNotFoundError:
            pass


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
           shm_name: str | None = None) -> Any:
    """One batch: ``dataset.__getitems__`` (fast path), ``collate([dataset[i] …])``, or one sample.
    With ``shm_name`` and the default collate, the batch may come back already encoded (a
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

        if shm_name is not None:
            encoded = _collate_into_shm(samples, shm_name)
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
                 done: Any, shm_prefix: str | None, parent_pid: int) -> None:
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
    counter = itertools.count()
    while True:
        try:
            task = index_queue.get(timeout=1.0)
        except queue.Empty:
            if not _alive(parent_pid):  # orphaned: the main process died
                return
            continue
        if task is None or done.is_set():  # shutting down: skip the batches still queued
            return
        gen, b, task_epoch, indices = task
        where: list = [None]
        try:
            if task_epoch != epoch and hasattr(dataset, "set_epoch"):
                dataset.set_epoch(task_epoch)
            epoch = task_epoch
            name = None if shm_prefix is None else f"{shm_prefix}{worker_id}_{next(counter)}"
            batch = _fetch(dataset, indices, batched, collate_fn, where, name)
            send((gen, b, "ok", batch.payload if type(batch) is _Encoded else _encode(batch, name)))
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
        self.closed = False
        self.procs = []
        for w in range(num_workers):
            p = ctx.Process(target=_worker_loop, name=f"funcnet-DataLoader-worker-{w}", daemon=True,
                            args=(w, num_workers, dataset, batched, collate_fn, worker_init_fn, seed + w,
                                  self.index_queues[w], self.result_queue, self.done, self.shm_prefix, os.getpid()))
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
                self.index_queues[sent % self.num_workers].put((gen, sent, epoch, indices_of(sent)))
                sent += 1

        for b in range(start, nb):
            top_up(b)
            while b not in ready:
                g, got, status, payload = self._receive(b)
                if status == "err" and g == -1:  # worker_init_fn failed
                    self.shutdown()
                    payload.reraise()
                if g != gen:
                    _discard(payload)
                    continue
                ready[got] = (status, payload)
            status, payload = ready.pop(b)
            if status == "err":
                payload.reraise()
            # As torch: the next index goes out before batch b is handed over, so the workers have
            # `cap` batches to do while the training step uses b (one fewer idled a worker: -10%).
            top_up(b + 1)
            yield _decode(payload)

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
            _discard(item[3])
        for q in [*self.index_queues, self.result_queue]:
            q.cancel_join_thread()
            q.close()
        if self.shm_prefix is not None:  # a worker killed mid-batch may leave its file behind
            for path in glob.glob(os.path.join(_SHM_DIR, self.shm_prefix + "*")):
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass
