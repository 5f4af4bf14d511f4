"""Samplers and random_split against torch.utils.data (lengths, sequential orders, shard rules)."""

import math
import warnings

import numpy as np
import pytest
import torch.utils.data as tud

from funcnet.utils.data import (
    BatchSampler,
    DistributedSampler,
    RandomSampler,
    SequentialSampler,
    SubsetRandomSampler,
    TensorDataset,
    WeightedRandomSampler,
    random_split,
)


class Sized:
    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n


def test_sequential_sampler():
    s = SequentialSampler(Sized(5))
    assert list(s) == list(tud.SequentialSampler(range(5))) == [0, 1, 2, 3, 4]
    assert len(s) == 5
    assert list(SequentialSampler(Sized(0))) == []


@pytest.mark.parametrize("n", [1, 7, 100])
def test_random_sampler_permutation_deterministic_per_epoch(n):
    s = RandomSampler(Sized(n), seed=3)
    e0, e0b, e1 = s.indices(0), RandomSampler(Sized(n), seed=3).indices(0), s.indices(1)
    assert sorted(e0.tolist()) == list(range(n))
    np.testing.assert_array_equal(e0, e0b)
    if n > 5:
        assert not np.array_equal(e0, e1)
        assert not np.array_equal(e0, RandomSampler(Sized(n), seed=4).indices(0))
    s.set_epoch(1)
    assert list(s) == e1.tolist()
    assert len(s) == n


def test_random_sampler_num_samples_without_replacement_is_blocks_of_permutations():
    s = RandomSampler(Sized(10), num_samples=25, seed=0)
    idx = s.indices(0)
    assert len(idx) == len(s) == 25
    assert sorted(idx[:10].tolist()) == list(range(10)) == sorted(idx[10:20].tolist())
    assert len(set(idx[20:].tolist())) == 5


def test_random_sampler_with_replacement():
    s = RandomSampler(Sized(4), replacement=True, num_samples=1000, seed=1)
    idx = s.indices(0)
    assert len(idx) == 1000 and idx.min() >= 0 and idx.max() <= 3
    assert np.bincount(idx).min() > 180  # all four values drawn about equally


def test_random_sampler_errors_match_torch():
    for ours, theirs in [(lambda: RandomSampler(Sized(0)), lambda: tud.RandomSampler(range(0))),
                         (lambda: RandomSampler(Sized(3), num_samples=0),
                          lambda: tud.RandomSampler(range(3), num_samples=0))]:
        with pytest.raises(ValueError) as a:
            ours()
        with pytest.raises(ValueError) as b:
            theirs()
        assert str(a.value) == str(b.value)
    with pytest.raises(TypeError, match="replacement should be a boolean"):
        RandomSampler(Sized(3), replacement=1)


def test_subset_random_sampler():
    s = SubsetRandomSampler([5, 9, 2, 7], seed=0)
    assert sorted(s.indices(0).tolist()) == [2, 5, 7, 9]
    assert len(s) == 4
    orders = {tuple(s.indices(e).tolist()) for e in range(20)}
    assert len(orders) > 5


def test_weighted_random_sampler():
    w = [0.0, 1.0, 3.0, 0.0]
    s = WeightedRandomSampler(w, num_samples=8000, seed=0)
    counts = np.bincount(s.indices(0), minlength=4)
    assert counts[0] == counts[3] == 0
    assert abs(counts[2] / counts[1] - 3.0) < 0.3
    no_rep = WeightedRandomSampler([1, 2, 3, 4, 5], num_samples=5, replacement=False, seed=0).indices(2)
    assert sorted(no_rep.tolist()) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="without replacement"):
        WeightedRandomSampler([1, 0, 1], num_samples=3, replacement=False)
    with pytest.raises(ValueError) as a:
        WeightedRandomSampler([[1.0, 2.0]], num_samples=2)
    with pytest.raises(ValueError) as b:
        tud.WeightedRandomSampler([[1.0, 2.0]], num_samples=2)
    assert str(a.value) == str(b.value)
    with pytest.raises(ValueError) as a:
        WeightedRandomSampler([1.0], num_samples=0)
    with pytest.raises(ValueError) as b:
        tud.WeightedRandomSampler([1.0], num_samples=0)
    assert str(a.value) == str(b.value)


@pytest.mark.parametrize("n", [0, 1, 5, 10, 11])
@pytest.mark.parametrize("bs", [1, 3, 10, 12])
@pytest.mark.parametrize("drop_last", [False, True])
def test_batch_sampler_matches_torch(n, bs, drop_last):
    ours = BatchSampler(SequentialSampler(Sized(n)), bs, drop_last)
    theirs = tud.BatchSampler(tud.SequentialSampler(range(n)), bs, drop_last)
    assert list(ours) == list(theirs)
    assert len(ours) == len(theirs)


def test_batch_sampler_errors():
    with pytest.raises(ValueError, match="batch_size should be a positive integer"):
        BatchSampler(SequentialSampler(Sized(3)), 0, False)
    with pytest.raises(ValueError, match="drop_last should be a boolean"):
        BatchSampler(SequentialSampler(Sized(3)), 2, 1)


@pytest.mark.parametrize("n", [0, 1, 7, 10, 13])
@pytest.mark.parametrize("replicas", [1, 2, 3, 4])
@pytest.mark.parametrize("drop_last", [False, True])
def test_distributed_sampler_unshuffled_equals_torch(n, replicas, drop_last):
    for rank in range(replicas):
        ours = DistributedSampler(Sized(n), num_replicas=replicas, rank=rank, shuffle=False,
                                  drop_last=drop_last)
        theirs = tud.DistributedSampler(range(n), num_replicas=replicas, rank=rank, shuffle=False,
                                        drop_last=drop_last)
        if n == 0 and not drop_last:
            assert len(ours) == len(theirs) == 0
            assert list(ours) == []
            continue
        assert list(ours) == list(theirs)
        assert len(ours) == len(theirs)


@pytest.mark.parametrize("n,replicas", [(12, 4), (13, 4), (5, 3), (3, 5), (100, 7)])
@pytest.mark.parametrize("drop_last", [False, True])
def test_distributed_sampler_shuffled_shards_disjoint_and_complete(n, replicas, drop_last):
    shards = [DistributedSampler(Sized(n), num_replicas=replicas, rank=r, seed=5, drop_last=drop_last)
              .indices(3) for r in range(replicas)]
    sizes = {len(s) for s in shards}
    assert len(sizes) == 1  # equal shards: no process waits on another at the last step
    size = sizes.pop()
    allidx = np.concatenate(shards)
    if drop_last:
        assert size == n // replicas
        assert len(set(allidx.tolist())) == len(allidx)  # disjoint
    else:
        assert size == math.ceil(n / replicas)
        assert set(allidx.tolist()) == set(range(n))  # complete
        if n % replicas == 0:
            assert len(set(allidx.tolist())) == n  # no padding needed: disjoint too
    # same permutation on every process: shards interleave back into one order
    perm = np.stack(shards, axis=1).reshape(-1)
    if not drop_last and n >= replicas:
        assert sorted(perm[:n].tolist()) == list(range(n))
    other = DistributedSampler(Sized(n), num_replicas=replicas, rank=0, seed=5, drop_last=drop_last)
    if n > 4 and size > 1:
        assert not np.array_equal(other.indices(3), other.indices(4))


def test_distributed_sampler_defaults_and_errors():
    import jax

    s = DistributedSampler(Sized(10))
    assert (s.num_replicas, s.rank) == (jax.process_count(), jax.process_index())
    with pytest.raises(ValueError, match="Invalid rank 2"):
        DistributedSampler(Sized(10), num_replicas=2, rank=2)
    s.set_epoch(2)
    assert list(s) == s.indices(2).tolist()


FRACTIONS = [[0.5, 0.5], [0.8, 0.2], [0.1, 0.2, 0.7], [1 / 3, 1 / 3, 1 / 3], [0.25] * 4, [0.9, 0.1],
             [0.05, 0.95], [0.3, 0.3, 0.4], [0.6, 0.2, 0.2], [1.0], [0.7, 0.1, 0.1, 0.1], [0.0, 1.0]]


@pytest.mark.parametrize("fractions", FRACTIONS)
def test_random_split_lengths_equal_torch(fractions):
    import torch

    for n in list(range(0, 40)) + [97, 100, 1000, 1797, 60000]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ours = random_split(Sized(n), fractions, seed=1)
            theirs = tud.random_split(range(n), fractions, generator=torch.Generator().manual_seed(0))
        assert [len(s) for s in ours] == [len(s) for s in theirs], (n, fractions)


def test_random_split_integer_lengths_members_and_errors():
    import jax

    ds = TensorDataset(np.arange(10))
    a, b = random_split(ds, [7, 3], seed=0)
    members = sorted(a.indices.tolist() + b.indices.tolist())
    assert members == list(range(10))
    assert [a[i][0] for i in range(len(a))] == a.indices.tolist()
    same = random_split(ds, [7, 3], seed=0)[0]
    np.testing.assert_array_equal(a.indices, same.indices)
    keyed = random_split(ds, [7, 3], seed=jax.random.key(0))[0]
    keyed2 = random_split(ds, [7, 3], seed=jax.random.key(0))[0]
    np.testing.assert_array_equal(keyed.indices, keyed2.indices)
    with pytest.raises(ValueError) as x:
        random_split(ds, [5, 4])
    with pytest.raises(ValueError) as y:
        tud.random_split(range(10), [5, 4])
    assert str(x.value) == str(y.value)
    with pytest.warns(UserWarning, match="Length of split at index 1 is 0"):
        random_split(Sized(1), [0.5, 0.5])
