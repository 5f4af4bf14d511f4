"""A bound on the number of data-parallel steps in flight.

JAX dispatches asynchronously: a loop that never reads its results queues steps
as fast as Python runs. On the CPU backend with several devices, too many queued
steps that contain collectives deadlock XLA's all-reduce rendezvous (measured on
jax 0.10: a chained 8-device loop aborted with "Termination timeout for all
reduce" every time it went ~50 steps without a wait; waiting every ≤ 10 steps
never did). The parallel steps therefore wait, on CPU with more than one device,
for the step ``max_inflight`` calls back before returning — a tiny token, not the
state, so the wait never touches a donated buffer. On GPU/TPU there is no bound.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import jax

#: Default bound on CPU multi-device runs (the hang needed ~50 queued steps; 10 was safe).
CPU_MAX_INFLIGHT = 4


def default_max_inflight(devices: Any) -> int | None:
    """``CPU_MAX_INFLIGHT`` when ``devices`` are CPU devices and more than one take part
    (locally or across processes), else ``None`` (unbounded)."""
    devices = list(devices)
    on_cpu = any(d.platform == "cpu" for d in devices)
    if on_cpu and (len(devices) > 1 or jax.process_count() > 1):
        return CPU_MAX_INFLIGHT
    return None


class InflightLimiter:
    """Keeps the last ``max_inflight`` tokens; ``push`` waits for the oldest beyond that.

    ``max_inflight=None`` disables the bound; ``0`` waits for every step (synchronous).
    """

    def __init__(self, max_inflight: int | None) -> None:
        if max_inflight is not None and (not isinstance(max_inflight, int) or max_inflight < 0):
            raise ValueError(f"max_inflight must be None or a non-negative int, got {max_inflight!r}")
        self.max_inflight = max_inflight
        self._tokens: deque = deque()

    def push(self, token: Any) -> None:
        if self.max_inflight is None:
            return
        self._tokens.append(token)
        while len(self._tokens) > self.max_inflight:
            jax.block_until_ready(self._tokens.popleft())

    def wait_all(self) -> None:
        """Wait for every step pushed so far."""
        while self._tokens:
            jax.block_until_ready(self._tokens.popleft())
