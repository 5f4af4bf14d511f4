"""Samplers: ``torch.utils.data.sampler`` and ``DistributedSampler``, seeded and epoch-pure.

Every sampler here has

- ``indices(epoch) -> np.ndarray[intp]``: the whole epoch's order, a pure function of
  ``(seed, epoch)`` computed in one vectorised step (the DataLoader uses this);
- ``set_epoch(epoch)`` and ``__iter__`` (yields Python ints for the epoch set), as torch.

Difference from torch: randomness comes from ``seed`` (numpy's PCG64 seeded with
``(seed, epoch)``) instead of a ``torch.Generator`` or the global RNG, so iterating never
changes any global state and the same (seed, epoch) always gives the same order. The orders
are not torch's (torch's ``randperm`` is mt19937-based).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence, Sized
from typing import Any

import numpy as np

from funcnet.utils.data.dataset import _seed_entropy


def epoch_rng(seed: Any, epoch: int, stream: int = 0) -> np.random.Generator:
    """The numpy Generator for ``(seed, epoch)``; ``stream`` separates independent uses."""
    entropy = _seed_entropy(seed)
    entropy = list(entropy) if isinstance(entropy, list) else [entropy]
    return np.random.default_rng(entropy + [int(epoch), int(stream)])


def _check_positive_int(name: str, value: Any) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{name} should be a positive integer value, but got {name}={value}")


class Sampler:
    """``torch.utils.data.Sampler``: base class. Subclasses define ``indices(epoch)`` (preferred)
    or ``__iter__``; a plain torch-style sampler with only ``__iter__`` also works in the DataLoader."""

    epoch: int = 0

    def indices(self, epoch: int) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} must implement indices(epoch) or __iter__")

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch that ``__iter__`` yields (``DistributedSampler.set_epoch`` in torch).

        A DataLoader using this sampler also starts its next pass at this epoch (torch's
        ``sampler.set_epoch(epoch)`` before each ``for batch in loader`` keeps working)."""
        self.epoch = int(epoch)
        self._pending_epoch = int(epoch)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices(self.epoch).tolist())


class SequentialSampler(Sampler):
    """``torch.utils.data.SequentialSampler``: ``0, 1, …, len(data_source) − 1``."""

    def __init__(self, data_source: Sized) -> None:
        self.data_source = data_source

    def indices(self, epoch: int) -> np.ndarray:
        return np.arange(len(self.data_source), dtype=np.intp)

    def __len__(self) -> int:
        return len(self.data_source)


class RandomSampler(Sampler):
    """``torch.utils.data.RandomSampler(data_source, replacement=False, num_samples=None)``.

    Without replacement: a fresh permutation per ``n`` samples (``num_samples // n`` full
    permutations, then the head of one more), as torch. With replacement: ``num_samples`` uniform
    draws. ``seed`` replaces torch's ``generator``; the order depends only on ``(seed, epoch)``.
    """

    def __init__(self, data_source: Sized, replacement: bool = False, num_samples: int | None = None,
                 seed: Any = 0) -> None:
        self.data_source = data_source
        self.replacement = replacement
        self._num_samples = num_samples
        self.seed = seed
        if not isinstance(replacement, bool):
            raise TypeError(f"replacement should be a boolean value, but got replacement={replacement}")
        _check_positive_int("num_samples", self.num_samples)

    @property
    def num_samples(self) -> int:
        return len(self.data_source) if self._num_samples is None else self._num_samples

    def indices(self, epoch: int) -> np.ndarray:
        n = len(self.data_source)
        rng = epoch_rng(self.seed, epoch)
        if self.replacement:
            return rng.integers(0, n, size=self.num_samples, dtype=np.intp)
        full, rest = divmod(self.num_samples, n)
        parts = [rng.permutation(n) for _ in range(full)]
        if rest:
            parts.append(rng.permutation(n)[:rest])
        return np.concatenate(parts).astype(np.intp, copy=False) if len(parts) != 1 else parts[0]

    def __len__(self) -> int:
        return self.num_samples


class SubsetRandomSampler(Sampler):
    """``torch.utils.data.SubsetRandomSampler(indices)``: the given indices in a random order."""

    def __init__(self, indices: Sequence[int], seed: Any = 0) -> None:
        self._indices = np.asarray(indices, dtype=np.intp).reshape(-1)
        self.seed = seed

    def indices(self, epoch: int) -> np.ndarray:
        return self._indices[epoch_rng(self.seed, epoch).permutation(len(self._indices))]

    def __len__(self) -> int:
        return len(self._indices)


class WeightedRandomSampler(Sampler):
    """``torch.utils.data.WeightedRandomSampler(weights, num_samples, replacement=True)``.

    Draws ``num_samples`` indices in ``[0, len(weights))`` with probabilities proportional to
    ``weights`` (need not sum to one). Without replacement each index is drawn at most once, so
    ``num_samples`` must not exceed the number of non-zero weights.
    """

    def __init__(self, weights: Sequence[float], num_samples: int, replacement: bool = True,
                 seed: Any = 0) -> None:
        _check_positive_int("num_samples", num_samples)
        if not isinstance(replacement, bool):
            raise ValueError(f"replacement should be a boolean value, but got replacement={replacement}")
        w = np.asarray(weights, dtype=np.float64)
        if w.ndim != 1:
            raise ValueError(f"weights should be a 1d sequence but given weights have shape {tuple(w.shape)}")
        if (w < 0).any() or not np.isfinite(w).all() or w.sum() <= 0:
            raise ValueError("weights must be finite, non-negative and not all zero")
        if not replacement and num_samples > int((w > 0).sum()):
            raise ValueError(f"cannot draw num_samples={num_samples} without replacement from "
                             f"{int((w > 0).sum())} non-zero weights")
        self.weights = w
        self.num_samples = int(num_samples)
        self.replacement = replacement
        self.seed = seed

    def indices(self, epoch: int) -> np.ndarray:
        p = self.weights / self.weights.sum()
        rng = epoch_rng(self.seed, epoch)
        return rng.choice(len(p), size=self.num_samples, replace=self.replacement, p=p).astype(np.intp)

    def __len__(self) -> int:
        return self.num_samples


def sampler_indices(sampler: Any, epoch: int) -> np.ndarray:
    """The epoch's order of any sampler: ``indices(epoch)`` if it has one, else ``set_epoch`` (if
    any) and the ints of ``iter(sampler)``."""
    own = getattr(type(sampler), "indices", None)
    if callable(own) and own is not Sampler.indices:
        return np.asarray(sampler.indices(epoch), dtype=np.intp)
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)
        if hasattr(sampler, "_pending_epoch"):
            sampler._pending_epoch = None  # set by the loader itself, not a request from the user
    return np.fromiter((int(i) for i in sampler), dtype=np.intp)


class BatchSampler(Sampler):
    """``torch.utils.data.BatchSampler(sampler, batch_size, drop_last)``: lists of indices.

    ``batches(epoch)`` gives the epoch's batches as numpy arrays (views of one index array);
    ``__iter__`` yields lists of ints as torch. ``len`` is ``n // bs`` with ``drop_last`` else
    ``ceil(n / bs)``.
    """

    def __init__(self, sampler: Any, batch_size: int, drop_last: bool) -> None:
        _check_positive_int("batch_size", batch_size)
        if not isinstance(drop_last, bool):
            raise ValueError(f"drop_last should be a boolean value, but got drop_last={drop_last}")
        self.sampler = sampler
        self.batch_size = int(batch_size)
        self.drop_last = drop_last

    def batches(self, epoch: int) -> list[np.ndarray]:
        order = sampler_indices(self.sampler, epoch)
        bs = self.batch_size
        count = len(order) // bs if self.drop_last else -(-len(order) // bs)
        return [order[b * bs : (b + 1) * bs] for b in range(count)]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self._pending_epoch = int(epoch)
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[list[int]]:
        for b in self.batches(self.epoch):
            yield b.tolist()

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)


class DistributedSampler(Sampler):
    """``torch.utils.data.distributed.DistributedSampler``: this process's disjoint shard.

    Args:
        dataset: sized dataset of length ``n``.
        num_replicas: number of shards; default ``jax.process_count()``.
        rank: this shard; default ``jax.process_index()``.
        shuffle: permute with ``(seed, epoch)`` first (same order on every process).
        seed: shared by all processes.
        drop_last: drop the tail so every shard has ``floor(n / R)`` samples; otherwise pad by
            repeating the head of the order so each has ``ceil(n / R)`` (torch's rules).

    Shard ``rank`` is ``order[rank : total_size : num_replicas]``, as torch. In a funcnet
    DataLoader each pass is the next epoch anyway; torch's habit of calling
    ``sampler.set_epoch(epoch)`` before each pass still works (the loader's next pass starts at
    that epoch), as does ``loader.set_epoch(epoch)``.
    """

    def __init__(self, dataset: Sized, num_replicas: int | None = None, rank: int | None = None,
                 shuffle: bool = True, seed: Any = 0, drop_last: bool = False) -> None:
        if num_replicas is None or rank is None:
            import jax

            num_replicas = jax.process_count() if num_replicas is None else num_replicas
            rank = jax.process_index() if rank is None else rank
        if rank >= num_replicas or rank < 0:
            raise ValueError(f"Invalid rank {rank}, rank should be in the interval [0, {num_replicas - 1}]")
        self.dataset = dataset
        self.num_replicas = int(num_replicas)
        self.rank = int(rank)
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.epoch = 0
        n = len(dataset)
        if drop_last and n % self.num_replicas != 0:
            self.num_samples = math.ceil((n - self.num_replicas) / self.num_replicas)
        else:
            self.num_samples = math.ceil(n / self.num_replicas)
        self.total_size = self.num_samples * self.num_replicas

    def indices(self, epoch: int) -> np.ndarray:
        n = len(self.dataset)
        order = epoch_rng(self.seed, epoch).permutation(n) if self.shuffle else np.arange(n, dtype=np.intp)
        if not self.drop_last:
            padding = self.total_size - n
            if padding > 0:
                reps = math.ceil(padding / n) if n else 0
                order = np.concatenate([order, np.tile(order, reps)[:padding]])
        else:
            order = order[: self.total_size]
        if len(order) != self.total_size:
            raise ValueError(f"DistributedSampler: cannot build {self.total_size} indices from an "
                             f"empty dataset")
        return order[self.rank : self.total_size : self.num_replicas].astype(np.intp, copy=False)

    def __len__(self) -> int:
        return self.num_samples
