"""Interleaved timing shared by the benchmarks: each round runs every system once, the first
system rotating from round to round, and ratios are taken within a round.

On a shared machine a fixed order biases whoever runs first, and two separate medians keep the
slow drifts that a per-round ratio cancels.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def interleaved(runs: dict[str, Callable[[], object]], rounds: int, scale: float = 1.0) -> dict[str, list[float]]:
    """Wall time of every ``run()`` × ``scale``, one sample per round, the first system rotating."""
    names = list(runs)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            start = time.perf_counter()
            runs[name]()
            samples[name].append((time.perf_counter() - start) * scale)
    return samples


def median_ratios(samples: dict[str, list[float]], base: str) -> dict[str, float]:
    """Median over rounds of each system's time divided by ``base``'s time in the same round."""
    return {name: statistics.median(t / b for t, b in zip(v, samples[base], strict=True))
            for name, v in samples.items()}
