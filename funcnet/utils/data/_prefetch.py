"""Background threads that produce batches ahead of the caller, in order, and stop cleanly.

Threads, not processes: a forked JAX process can hang (jax #9190), and numpy gathers and
``jax.device_put`` release the GIL for the copies, which is where the time goes.

Each producer thread owns a bounded queue; the consumer reads the queues round-robin, so order is
preserved whatever thread finishes first. A producer error is put on its queue and re-raised in the
caller (the exception object keeps its original traceback). When the consumer goes away (early
``break``, ``close()``, garbage collection) a stop event is set; producers notice within
``_POLL_S`` seconds while waiting on a full queue and exit. Threads are daemons, so a producer stuck
in user code never blocks interpreter exit.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

_POLL_S = 0.05
_END = object()


class _Failure:
    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


def _put(q: queue.Queue, item: Any, stop: threading.Event) -> bool:
    while not stop.is_set():
        try:
            q.put(item, timeout=_POLL_S)
            return True
        except queue.Full:
            continue
    return False


def _produce(source: Callable[[], Iterable[Any]], q: queue.Queue, stop: threading.Event) -> None:
    try:
        for item in source():
            if stop.is_set() or not _put(q, item, stop):
                return
    except BaseException as error:  # noqa: BLE001 - handed to the consumer, which re-raises it
        _put(q, _Failure(error), stop)
        return
    _put(q, _END, stop)


def threaded(sources: list[Callable[[], Iterable[Any]]], buffer: int, name: str,
             threads_out: list | None = None, timeout: float = 0) -> Iterator[Any]:
    """Yield ``source_0[0], source_1[0], …, source_{W-1}[0], source_0[1], …`` until a source ends.

    ``sources[w]()`` is run in thread ``w``; each thread buffers at most ``buffer`` items ahead.
    ``threads_out`` (a list) receives the started threads, for tests and ``join``. ``timeout > 0``:
    raise if a thread has not delivered its next item within that many seconds.
    """
    stop = threading.Event()
    queues = [queue.Queue(maxsize=max(1, buffer)) for _ in sources]
    threads = [
        threading.Thread(target=_produce, args=(src, q, stop), name=f"{name}-{w}", daemon=True)
        for w, (src, q) in enumerate(zip(sources, queues, strict=False))
    ]
    if threads_out is not None:
        threads_out.extend(threads)
    for t in threads:
        t.start()
    try:
        w = 0
        count = len(queues)
        while True:
            try:
                item = queues[w].get(timeout=timeout or None)
            except queue.Empty:
                raise RuntimeError(f"DataLoader timed out after {timeout} seconds waiting for a batch from "
                                   f"background thread {name}-{w}") from None
            if item is _END:
                return
            if type(item) is _Failure:
                error = item.error
                if hasattr(error, "add_note"):
                    error.add_note(f"(raised in funcnet DataLoader background thread {name}-{w})")
                raise error
            yield item
            w += 1
            if w == count:
                w = 0
    finally:
        stop.set()
