"""Datasets: ``torch.utils.data.Dataset`` and friends, with a batched fast path.

A map-style dataset has ``__len__`` and ``__getitem__(i) -> sample``. It may also define
``__getitems__(indices: np.ndarray) -> batch`` that returns an **already collated** batch
(e.g. a tuple of arrays gathered with one fancy index each). :class:`~funcnet.utils.data.DataLoader`
uses it when ``collate_fn`` is left at its default, so an array dataset costs one gather per batch
and no per-sample Python.

Difference from torch: torch's ``__getitems__`` returns a *list of samples* that ``collate_fn``
then stacks; here it returns the collated batch itself (the point of the fast path). With a custom
``collate_fn`` the loader uses ``__getitem__`` per sample, as torch does.
"""

from __future__ import annotations

import bisect
import math
import warnings
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Generic, TypeVar

import numpy as np

T_co = TypeVar("T_co", covariant=True)


class Dataset(Generic[T_co]):
    """``torch.utils.data.Dataset``: map-style; subclasses define ``__getitem__`` and ``__len__``.

    ``dataset + other`` gives a :class:`ConcatDataset`, as in torch.
    """

    def __getitem__(self, index: int) -> T_co:
        raise NotImplementedError(f"{type(self).__name__} must implement __getitem__")

    def __add__(self, other: Dataset) -> ConcatDataset:
        return ConcatDataset([self, other])


class IterableDataset(Dataset[T_co]):
    """``torch.utils.data.IterableDataset``: a stream; subclasses define ``__iter__``.

    If the dataset defines ``set_epoch(epoch)``, the DataLoader calls it at the start of each pass
    so a shuffling stream can be made a pure function of (seed, epoch).
    """

    def __iter__(self) -> Iterator[T_co]:
        raise NotImplementedError(f"{type(self).__name__} must implement __iter__")

    def __add__(self, other: Dataset) -> Any:
        raise TypeError("IterableDataset does not support '+' (torch's ChainDataset is not provided)")


def _as_host_array(a: Any, position: int) -> np.ndarray:
    """numpy view of a numpy/JAX/array-like input (JAX arrays are copied to host once)."""
    arr = np.asarray(a)
    if arr.ndim == 0:
        raise ValueError(f"TensorDataset: array {position} is a scalar (shape ()); it needs a leading "
                         f"sample dimension")
    return arr


class TensorDataset(Dataset[tuple]):
    """``torch.utils.data.TensorDataset(*tensors)``: sample ``i`` is ``tuple(t[i] for t in tensors)``.

    Args:
        *tensors: numpy arrays, JAX arrays or array-likes, all with the same first dimension ``N``.
            They are held as host numpy arrays (a JAX array is copied to host once); the
            DataLoader's ``device=``/``device_arrays()`` put them on a device.

    Fast path: ``__getitems__(idx)`` returns ``tuple(t.take(idx, axis=0) for t in tensors)``,
    fresh arrays (never a reused buffer).
    """

    def __init__(self, *tensors: Any) -> None:
        if not tensors:
            raise ValueError("TensorDataset needs at least one array")
        arrays = tuple(_as_host_array(t, i) for i, t in enumerate(tensors))
        n = arrays[0].shape[0]
        for i, a in enumerate(arrays):
            if a.shape[0] != n:
                raise ValueError(
                    "Size mismatch between tensors: TensorDataset array 0 has "
                    f"{n} samples (shape {arrays[0].shape}) but array {i} has {a.shape[0]} "
                    f"(shape {a.shape})"
                )
        self.tensors: tuple[np.ndarray, ...] = arrays

    def __len__(self) -> int:
        return self.tensors[0].shape[0]

    def __getitem__(self, index: int) -> tuple:
        return tuple(t[index] for t in self.tensors)

    def __getitems__(self, indices: np.ndarray) -> tuple:
        # ndarray.take, not np.take or fancy indexing: same copy, ~2 µs less Python/C overhead per call
        tensors = self.tensors
        if len(tensors) == 2:  # the common (inputs, targets) case, without a generator expression
            return (tensors[0].take(indices, 0), tensors[1].take(indices, 0))
        return tuple(t.take(indices, 0) for t in tensors)

    def __repr__(self) -> str:
        shapes = ", ".join(f"{t.dtype}{list(t.shape)}" for t in self.tensors)
        return f"{type(self).__name__}({shapes})"


class Subset(Dataset[T_co]):
    """``torch.utils.data.Subset(dataset, indices)``: ``subset[i] = dataset[indices[i]]``.

    Keeps the batched fast path: ``__getitems__(idx)`` forwards ``indices[idx]`` to the dataset's
    ``__getitems__`` when it has one.
    """

    def __init__(self, dataset: Dataset[T_co], indices: Sequence[int]) -> None:
        self.dataset = dataset
        self.indices = np.asarray(indices, dtype=np.intp).reshape(-1)
        if hasattr(dataset, "__getitems__"):
            self.__getitems__ = self._getitems

    def __getitem__(self, idx: int | list[int]) -> Any:
        if isinstance(idx, list):
            return [self.dataset[int(self.indices[i])] for i in idx]
        return self.dataset[int(self.indices[idx])]

    def _getitems(self, indices: np.ndarray) -> Any:
        return self.dataset.__getitems__(self.indices[indices])

    def __len__(self) -> int:
        return len(self.indices)

    def set_epoch(self, epoch: int) -> None:
        """Forwarded to the wrapped dataset if it has one (per-sample augmentation keys, ImageFolder)."""
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)


class ConcatDataset(Dataset[T_co]):
    """``torch.utils.data.ConcatDataset(datasets)``: the datasets one after another.

    Has ``cumulative_sizes`` as torch. ``__getitems__`` is provided when every part has one and
    their batches are pytrees of arrays with the same structure.
    """

    def __init__(self, datasets: Iterable[Dataset]) -> None:
        self.datasets = list(datasets)
        if not self.datasets:
            raise ValueError("datasets should not be an empty iterable")
        for d in self.datasets:
            if isinstance(d, IterableDataset):
                raise ValueError("ConcatDataset does not support IterableDataset")
        self.cumulative_sizes = list(np.cumsum([len(d) for d in self.datasets]).tolist())
        if all(hasattr(d, "__getitems__") for d in self.datasets):
            self.__getitems__ = self._getitems

    def set_epoch(self, epoch: int) -> None:
        """Forwarded to each part that has one (per-sample augmentation keys, ImageFolder)."""
        for d in self.datasets:
            if hasattr(d, "set_epoch"):
                d.set_epoch(epoch)

    def __len__(self) -> int:
        return self.cumulative_sizes[-1]

    def __getitem__(self, idx: int) -> Any:
        if idx < 0:
            if -idx > len(self):
                raise ValueError("absolute value of index should not exceed dataset length")
            idx = len(self) + idx
        d = bisect.bisect_right(self.cumulative_sizes, idx)
        sample_idx = idx if d == 0 else idx - self.cumulative_sizes[d - 1]
        return self.datasets[d][sample_idx]

    def _getitems(self, indices: np.ndarray) -> Any:
        import jax

        indices = np.asarray(indices, dtype=np.intp)
        which = np.searchsorted(np.asarray(self.cumulative_sizes), indices, side="right")
        starts = np.concatenate([[0], self.cumulative_sizes[:-1]])
        parts = {}
        for d in np.unique(which):
            mask = which == d
            parts[int(d)] = (mask, self.datasets[d].__getitems__(indices[mask] - starts[d]))
        if len(parts) == 1:
            return next(iter(parts.values()))[1]
        template = next(iter(parts.values()))[1]

        def assemble(*leaves: np.ndarray) -> np.ndarray:
            first = np.asarray(leaves[0])
            out = np.empty((len(indices),) + first.shape[1:], dtype=first.dtype)
            for (mask, _), leaf in zip(parts.values(), leaves, strict=False):
                out[mask] = leaf
            return out

        return jax.tree.map(assemble, template, *[p[1] for p in list(parts.values())[1:]])


def _lengths_from_fractions(n: int, fractions: Sequence[float]) -> list[int]:
    """torch's rule: ``floor(n·f)`` each, the remainder added round-robin from split 0."""
    lengths = []
    for i, frac in enumerate(fractions):
        if frac < 0 or frac > 1:
            raise ValueError(f"Fraction at index {i} is not between 0 and 1")
        lengths.append(int(math.floor(n * frac)))
    remainder = n - sum(lengths)
    for i in range(remainder):
        lengths[i % len(lengths)] += 1
    for i, length in enumerate(lengths):
        if length == 0:
            warnings.warn(f"Length of split at index {i} is 0. This might result in an empty dataset.",
                          stacklevel=3)
    return lengths


def _seed_entropy(seed: Any) -> Any:
    """An int seed, or a JAX PRNG key turned into numpy ``SeedSequence`` entropy."""
    if isinstance(seed, (int, np.integer)):
        if seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed}")
        return int(seed)
    import jax

    data = seed
    if hasattr(seed, "dtype") and jax.dtypes.issubdtype(seed.dtype, jax.dtypes.prng_key):
        data = jax.random.key_data(seed)
    return [int(v) for v in np.asarray(data, dtype=np.uint32).reshape(-1)]


def random_split(dataset: Dataset, lengths: Sequence[int | float], seed: Any = 0) -> list[Subset]:
    """``torch.utils.data.random_split``: disjoint random :class:`Subset` s of the given lengths.

    Args:
        dataset: a sized dataset of length ``n``.
        lengths: integer lengths summing to ``n``, or fractions summing to 1 (then torch's rule:
            ``floor(n·f)`` each, the remainder given one by one round-robin from split 0).
        seed: an int or a JAX PRNG key; replaces torch's ``generator``. The permutation is numpy's
            (PCG64), so the *members* differ from torch's for the same number; the lengths are equal.
    """
    n = len(dataset)
    lengths = list(lengths)
    if math.isclose(sum(lengths), 1) and sum(lengths) <= 1:
        lengths = _lengths_from_fractions(n, lengths)
    if sum(lengths) != n:
        raise ValueError("Sum of input lengths does not equal the length of the input dataset!")
    perm = np.random.default_rng(_seed_entropy(seed)).permutation(n)
    out = []
    offset = 0
    for length in lengths:
        out.append(Subset(dataset, perm[offset : offset + int(length)]))
        offset += int(length)
    return out
