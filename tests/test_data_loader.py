"""DataLoader: len/batches vs torch, epochs, determinism, resume, threads, devices, on-device mode."""

import gc
import pickle
import threading
import time
import traceback

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.utils.data as tud

from funcnet.utils.data import (
    BatchSampler,
    ConcatDataset,
    DataLoader,
    Dataset,
    IterableDataset,
    RandomSampler,
    SequentialSampler,
    Subset,
    TensorDataset,
)
from funcnet.utils.data import transforms as T


def arrays(n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 3, 4, 4)).astype(np.float32), rng.integers(0, 10, n).astype(np.int32)


def collect(loader):
    return [tuple(np.asarray(a) for a in batch) for batch in loader]


def concat(batches, field=0):
    return np.concatenate([b[field] for b in batches]) if batches else np.zeros((0,))


class PerSample(Dataset):
    """A map-style dataset without __getitems__ (the per-sample + default_collate path)."""

    def __init__(self, x, y, fail_at=None, delay=0.0):
        self.x, self.y, self.fail_at, self.delay = x, y, fail_at, delay

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        if self.delay:
            time.sleep(self.delay * ((i * 7919) % 5) / 5)  # scrambles completion order
        if i == self.fail_at:
            raise KeyError(f"sample {i} is broken")
        return self.x[i], self.y[i]


@pytest.mark.parametrize("n", [0, 1, 9, 10, 64, 65])
@pytest.mark.parametrize("bs", [1, 4, 10, 100])
@pytest.mark.parametrize("drop_last", [False, True])
def test_len_and_sequential_batches_equal_torch(n, bs, drop_last):
    x, y = arrays(n)
    ours = DataLoader(TensorDataset(x, y), batch_size=bs, drop_last=drop_last)
    theirs = tud.DataLoader(tud.TensorDataset(torch.tensor(x), torch.tensor(y)), batch_size=bs,
                            drop_last=drop_last)
    assert len(ours) == len(theirs)
    ob, tb = collect(ours), [tuple(t.numpy() for t in b) for b in theirs]
    assert len(ob) == len(tb) == len(ours)
    for (ox, oy), (tx, ty) in zip(ob, tb, strict=True):
        np.testing.assert_array_equal(ox, tx)
        np.testing.assert_array_equal(oy, ty)
        assert ox.dtype == np.float32 and oy.dtype == np.int32


def test_partial_last_batch_and_batch_larger_than_dataset():
    x, y = arrays(10)
    b = collect(DataLoader(TensorDataset(x, y), batch_size=4))
    assert [len(t[0]) for t in b] == [4, 4, 2]
    dropped = collect(DataLoader(TensorDataset(x, y), batch_size=4, drop_last=True))
    assert [len(t[0]) for t in dropped] == [4, 4]
    big = collect(DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True))
    assert len(big) == 1 and sorted(big[0][1].tolist()) == sorted(y.tolist())
    assert collect(DataLoader(TensorDataset(x, y), batch_size=32, drop_last=True)) == []
    assert len(DataLoader(TensorDataset(x, y), batch_size=32, drop_last=True)) == 0


def test_empty_dataset():
    x, y = arrays(0)
    loader = DataLoader(TensorDataset(x, y), batch_size=4)
    assert len(loader) == 0 and collect(loader) == []
    msg = "num_samples should be a positive integer value, but got num_samples=0"
    with pytest.raises(ValueError, match=msg):
        DataLoader(TensorDataset(x, y), batch_size=4, shuffle=True)  # torch raises the same


def test_shuffle_is_deterministic_and_changes_per_epoch():
    x, y = arrays(50)
    make = lambda seed: DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True, seed=seed)
    a, b = make(0), make(0)
    a0, a1, a2 = collect(a), collect(a), collect(a)
    b0, b1 = collect(b), collect(b)
    for u, v in zip(a0 + a1, b0 + b1, strict=True):
        np.testing.assert_array_equal(u[0], v[0])
    assert not np.array_equal(concat(a0, 1), concat(a1, 1))
    assert not np.array_equal(concat(a1, 1), concat(a2, 1))
    assert not np.array_equal(concat(a0, 1), concat(collect(make(1)), 1))
    for epoch_batches in (a0, a1, a2):  # each epoch is a permutation of the data
        np.testing.assert_array_equal(np.sort(concat(epoch_batches, 1)), np.sort(y))
    # the order is the sampler's order for (seed, epoch)
    order = RandomSampler(range(50), seed=0).indices(2)
    np.testing.assert_array_equal(concat(a2, 0), x[order])
    assert a.epoch == 3
    a.set_epoch(1)
    np.testing.assert_array_equal(concat(collect(a), 0), concat(a1, 0))


def test_abandoned_pass_starts_next_epoch():
    x, y = arrays(40)
    loader = DataLoader(TensorDataset(x, y), batch_size=5, shuffle=True)
    for _ in loader:
        break
    assert loader.epoch == 0
    rest = collect(loader)
    assert loader.epoch == 2
    ref = DataLoader(TensorDataset(x, y), batch_size=5, shuffle=True)
    ref.set_epoch(1)
    np.testing.assert_array_equal(concat(rest, 0), concat(collect(ref), 0))


@pytest.mark.parametrize("config", [dict(), dict(num_workers=2), dict(prefetch=1),
                                    dict(transform=T.PerField(T.RandomHorizontalFlip()))])
def test_exact_mid_epoch_resume(config):
    x, y = arrays(37)
    make = lambda: DataLoader(TensorDataset(x, y), batch_size=4, shuffle=True, seed=7, **config)
    full = make()
    collect(full)  # epoch 0
    reference = collect(full)  # epoch 1
    run = make()
    collect(run)
    it = iter(run)
    first = [tuple(np.asarray(a) for a in next(it)) for _ in range(3)]
    state = pickle.loads(pickle.dumps(run.state_dict()))
    assert state == {"epoch": 1, "batches_done": 3, "num_batches": 10, "seed": 7}
    del it
    resumed = make()
    resumed.load_state_dict(state)
    rest = collect(resumed)
    for u, v in zip(first + rest, reference, strict=True):
        np.testing.assert_array_equal(u[0], v[0])
        np.testing.assert_array_equal(u[1], v[1])
    assert len(first + rest) == len(reference)
    assert resumed.epoch == 2 and resumed.state_dict()["batches_done"] == 0


def test_state_after_full_epoch_and_load_errors():
    x, y = arrays(10)
    loader = DataLoader(TensorDataset(x, y), batch_size=3, shuffle=True, seed=1)
    assert loader.state_dict() == {"epoch": 0, "batches_done": 0, "num_batches": 4, "seed": 1}
    collect(loader)
    assert loader.state_dict()["epoch"] == 1 and loader.state_dict()["batches_done"] == 0
    with pytest.raises(ValueError, match="num_batches=4 but this loader has 2"):
        DataLoader(TensorDataset(x, y), batch_size=5).load_state_dict(loader.state_dict())
    with pytest.raises(ValueError, match="seed=1 but this loader has seed=2"):
        DataLoader(TensorDataset(x, y), batch_size=3, seed=2).load_state_dict(loader.state_dict())
    with pytest.raises(KeyError, match="batches_done"):
        loader.load_state_dict({"epoch": 0})


def test_per_sample_path_equals_fast_path_and_custom_collate():
    x, y = arrays(23)
    fast = collect(DataLoader(TensorDataset(x, y), batch_size=5, shuffle=True, seed=3))
    slow = collect(DataLoader(PerSample(x, y), batch_size=5, shuffle=True, seed=3))
    for u, v in zip(fast, slow, strict=True):
        np.testing.assert_array_equal(u[0], v[0])
        np.testing.assert_array_equal(u[1], v[1])
    seen = []
    custom = DataLoader(TensorDataset(x, y), batch_size=5,
                        collate_fn=lambda samples: seen.append(samples) or 0)
    assert list(custom) == [0] * 5
    assert isinstance(seen[0], list) and len(seen[0]) == 5 and len(seen[0][0]) == 2
    np.testing.assert_array_equal(seen[0][1][0], x[1])


def test_subset_and_concat_keep_fast_path():
    x, y = arrays(30)
    ds = TensorDataset(x, y)
    sub = Subset(ds, [29, 3, 5, 7, 11])
    got = collect(DataLoader(sub, batch_size=2))
    np.testing.assert_array_equal(concat(got, 1), y[[29, 3, 5, 7, 11]])
    cat = ConcatDataset([Subset(ds, range(10)), TensorDataset(x[10:], y[10:])])
    assert hasattr(cat, "__getitems__")
    got = collect(DataLoader(cat, batch_size=7, shuffle=True, seed=2))
    order = RandomSampler(range(30), seed=2).indices(0)
    np.testing.assert_array_equal(concat(got, 0), x[order])
    assert cat[-1][1] == y[-1] and len(ds + ds) == 60


def test_user_samplers_and_batch_sampler():
    x, y = arrays(12)
    ds = TensorDataset(x, y)
    got = collect(DataLoader(ds, batch_sampler=[[0, 1], [5, 3, 2], [11]]))
    assert [b[1].tolist() for b in got] == [y[[0, 1]].tolist(), y[[5, 3, 2]].tolist(), y[[11]].tolist()]
    torch_style = tud.SequentialSampler(range(12))  # a torch sampler: only __iter__/__len__
    got = collect(DataLoader(ds, sampler=torch_style, batch_size=5))
    np.testing.assert_array_equal(concat(got, 1), y)
    bsamp = BatchSampler(RandomSampler(ds, seed=9), 4, drop_last=True)
    loader = DataLoader(ds, batch_sampler=bsamp)
    assert len(loader) == 3
    np.testing.assert_array_equal(concat(collect(loader), 0), x[RandomSampler(ds, seed=9).indices(0)])
    singles = list(DataLoader(ds, batch_size=None))
    assert len(singles) == 12 and singles[3][1] == y[3]


@pytest.mark.parametrize("kwargs", [dict(batch_sampler=[[0]], batch_size=2),
                                    dict(batch_sampler=[[0]], shuffle=True),
                                    dict(sampler=[0, 1], shuffle=True),
                                    dict(batch_size=None, drop_last=True)])
def test_argument_errors_equal_torch(kwargs):
    x, y = arrays(4)
    with pytest.raises(ValueError) as a:
        DataLoader(TensorDataset(x, y), **kwargs)
    tkwargs = {k: (tud.SequentialSampler(range(2)) if k == "sampler" else v) for k, v in kwargs.items()}
    with pytest.raises(ValueError) as b:
        tud.DataLoader(tud.TensorDataset(torch.tensor(x)), **tkwargs)
    assert str(a.value) == str(b.value)


@pytest.mark.parametrize("workers,prefetch", [(1, 1), (3, 2), (4, 1), (0, 3)])
def test_threads_preserve_order(workers, prefetch):
    x, y = arrays(41)
    ref = collect(DataLoader(PerSample(x, y), batch_size=3, shuffle=True, seed=4))
    got = collect(DataLoader(PerSample(x, y, delay=0.002), batch_size=3, shuffle=True, seed=4,
                             num_workers=workers, prefetch=prefetch))
    assert len(got) == len(ref)
    for u, v in zip(got, ref, strict=True):
        np.testing.assert_array_equal(u[0], v[0])


def test_worker_exception_reraised_with_original_traceback():
    x, y = arrays(20)
    loader = DataLoader(PerSample(x, y, fail_at=13), batch_size=2, num_workers=2)
    got = []
    with pytest.raises(KeyError, match="sample 13 is broken") as info:
        for b in loader:
            got.append(b)
    assert len(got) == 6  # the batches before the broken one arrive, in order
    frames = [f.name for f in traceback.extract_tb(info.value.__traceback__)]
    assert "__getitem__" in frames
    assert all(not t.is_alive() for t in _wait_stopped(loader._last_threads))


def _wait_stopped(threads, timeout=3.0):
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    return threads


@pytest.mark.parametrize("workers", [0, 1, 4])
def test_early_break_stops_threads(workers):
    x, y = arrays(2000)
    loader = DataLoader(PerSample(x, y), batch_size=2, num_workers=workers, prefetch=2)
    t0 = time.monotonic()
    for i, _ in enumerate(loader):
        if i == 2:
            break
    gc.collect()
    threads = _wait_stopped(loader._last_threads)
    assert threads and all(not t.is_alive() for t in threads)
    assert time.monotonic() - t0 < 3.0
    assert not [t for t in threading.enumerate() if t.name.startswith("funcnet-DataLoader") and t.is_alive()]


def test_device_prefetch_gives_device_arrays_equal_to_host():
    x, y = arrays(30)
    host = collect(DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True))
    dev = jax.devices()[0]
    for kwargs in (dict(device=True), dict(device=dev, prefetch=0), dict(device=dev, num_workers=2)):
        got = list(DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True, **kwargs))
        assert all(isinstance(a, jax.Array) for b in got for a in b)
        assert got[0][0].devices() == {dev}
        for u, v in zip(got, host, strict=True):
            np.testing.assert_array_equal(np.asarray(u[0]), v[0])
    with pytest.raises(TypeError, match="device must be None, True, a jax.Device"):
        DataLoader(TensorDataset(x, y), device="gpu")


class Stream(IterableDataset):
    def __init__(self, n):
        self.n, self.epoch = n, None

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __iter__(self):
        rng = np.random.default_rng(self.epoch)
        for i in rng.permutation(self.n):
            yield {"x": np.full(2, i, np.float32), "i": int(i)}

    def __len__(self):
        return self.n


@pytest.mark.parametrize("workers", [0, 2])
def test_iterable_dataset(workers):
    loader = DataLoader(Stream(10), batch_size=4, num_workers=workers)
    assert len(loader) == 3
    b = list(loader)
    assert [len(t["i"]) for t in b] == [4, 4, 2]
    assert b[0]["x"].shape == (4, 2) and b[0]["i"].dtype == np.int32
    assert sorted(np.concatenate([t["i"] for t in b]).tolist()) == list(range(10))
    again = list(loader)  # epoch 1: the stream's set_epoch was called
    assert not np.array_equal(np.concatenate([t["i"] for t in b]), np.concatenate([t["i"] for t in again]))
    it = iter(loader)
    first = next(it)
    state = loader.state_dict()
    del it
    resumed = DataLoader(Stream(10), batch_size=4)
    resumed.load_state_dict(state)
    rest = list(resumed)
    ref = DataLoader(Stream(10), batch_size=4)
    ref.set_epoch(2)
    ref = list(ref)
    assert [t["i"].tolist() for t in [first] + rest] == [t["i"].tolist() for t in ref]
    with pytest.raises(ValueError, match="expected unspecified shuffle option"):
        DataLoader(Stream(3), shuffle=True)


def test_on_device_mode_matches_host_iteration():
    x, y = arrays(40)
    flip = T.PerField(T.RandomHorizontalFlip(), None)
    loader = DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True, seed=11, transform=flip)
    xs, ys = loader.device_arrays()
    assert loader.device_arrays()[0] is xs  # placed once
    loader.set_epoch(3)
    host = collect(loader)
    idx = loader.epoch_indices(3)
    assert idx.shape == (5, 8) and idx.dtype == jnp.int32

    @jax.jit
    def epoch(xs, ys, idx):
        def step(carry, inp):
            b, ind = inp
            bx, by = flip((xs[ind], ys[ind]), loader.batch_key(3, b))
            return carry, (bx, by)
        return jax.lax.scan(step, 0, (jnp.arange(idx.shape[0]), idx))[1]

    bx, by = epoch(xs, ys, idx)
    for b in range(5):
        np.testing.assert_array_equal(np.asarray(bx[b]), host[b][0])
        np.testing.assert_array_equal(np.asarray(by[b]), host[b][1])
    # the flips did happen (some samples differ from the raw data)
    assert not np.array_equal(np.asarray(bx).reshape(40, 3, 4, 4), x[np.asarray(idx).reshape(-1)])


def test_epoch_indices_partial_batch_needs_mask():
    x, y = arrays(10)
    loader = DataLoader(TensorDataset(x, y), batch_size=4)
    with pytest.raises(ValueError, match="unequal sizes"):
        loader.epoch_indices(0)
    idx, mask = loader.epoch_indices(0, with_mask=True)
    np.testing.assert_array_equal(np.asarray(idx), [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 0, 0]])
    assert np.asarray(mask).sum() == 10 and not np.asarray(mask)[2, 2:].any()
    with pytest.raises(TypeError, match="needs an array dataset"):
        DataLoader(PerSample(x, y), batch_size=2).epoch_indices(0)


def test_sequential_sampler_as_sampler_argument():
    x, y = arrays(7)
    got = collect(DataLoader(TensorDataset(x, y), sampler=SequentialSampler(range(7)), batch_size=3))
    np.testing.assert_array_equal(concat(got, 1), y)


@pytest.mark.subprocess
def test_sharded_device_placement_on_four_cpu_devices():
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent("""
        import os
        os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
        import jax, numpy as np
        from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
        from funcnet.utils.data import DataLoader, TensorDataset
        x = np.arange(64 * 3, dtype=np.float32).reshape(64, 3); y = np.arange(64, dtype=np.int32)
        mesh = Mesh(np.array(jax.devices()), ("data",))
        sh = NamedSharding(mesh, P("data"))
        loader = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True, device=sh)
        host = list(DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True))
        for (bx, by), (hx, hy) in zip(loader, host):
            assert bx.sharding == sh and len(bx.addressable_shards) == 4, bx.sharding
            assert bx.addressable_shards[1].data.shape == (4, 3)
            np.testing.assert_array_equal(np.asarray(bx), hx)
        print("OK")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "OK" in out.stdout, out.stderr[-3000:]


def test_aliases_and_lazy_access():
    import funcnet

    assert funcnet.data.DataLoader is funcnet.utils.data.DataLoader is DataLoader
    assert funcnet.data.random_split is funcnet.utils.data.random_split
    assert "IterableDataset" in funcnet.data.__all__
    assert isinstance(Stream(3), IterableDataset)


def test_torch_habit_sampler_set_epoch_drives_the_loader():
    from funcnet.utils.data import DistributedSampler

    x, y = arrays(20)
    ds = TensorDataset(x, y)
    sampler = DistributedSampler(ds, num_replicas=2, rank=1, seed=3)
    loader = DataLoader(ds, sampler=sampler, batch_size=4)
    ref = DataLoader(ds, sampler=DistributedSampler(ds, num_replicas=2, rank=1, seed=3), batch_size=4)
    for epoch in (3, 4, 7):  # e.g. resuming at epoch 3, then jumping
        sampler.set_epoch(epoch)
        got = collect(loader)
        ref.set_epoch(epoch)
        np.testing.assert_array_equal(concat(got, 1), concat(collect(ref), 1))
        np.testing.assert_array_equal(concat(got, 0), x[sampler.indices(epoch)])
    assert loader.epoch == 8
    collect(loader)  # without set_epoch: simply the next epoch
    np.testing.assert_array_equal(concat(collect(loader), 0), x[sampler.indices(9)])
