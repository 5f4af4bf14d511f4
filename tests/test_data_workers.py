"""DataLoader workers: processes (forkserver) and threads over ImageFolder — same batches as no
workers, resume mid-epoch, errors with the sample index, dead or stalled workers, early break.

Every test runs under an alarm: a hang fails the test instead of blocking the suite. Worker
processes fork from one fork server per session (started once, ~2 s), so each pool is cheap."""

import glob
import os
import signal
import time

import numpy as np
import pytest

from funcnet.datasets import ImageFolder, UnreadableFileError
from funcnet.utils.data import DataLoader, _workers
from funcnet.vision import transforms as T
from tests._worker_datasets import Indexed, Touching, failing_init, init_worker
from tests.test_image_folder import corrupt, make_tree


@pytest.fixture(autouse=True)
def no_hang():
    def fail(signum, frame):
        raise TimeoutError("test exceeded 60 s: a DataLoader hang")

    old = signal.signal(signal.SIGALRM, fail)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return make_tree(str(tmp_path_factory.mktemp("workers") / "data"))


def augmenting(root):
    return ImageFolder(root, T.Compose([T.RandomResizedCrop(12), T.RandomHorizontalFlip(), T.ColorJitter(0.3),
                                        T.ToTensor(), T.Normalize([0.5] * 3, [0.25] * 3)]), seed=5)


def collect(loader, limit=None):
    out = []
    for b in loader:
        out.append(b)
        if limit is not None and len(out) == limit:
            break
    return out


def assert_same(got, want):
    assert len(got) == len(want)
    for (x, y), (u, v) in zip(got, want):
        np.testing.assert_array_equal(x, u)
        np.testing.assert_array_equal(y, v)


def shm_files(loader_or_pool):
    pool = getattr(loader_or_pool, "_pool", loader_or_pool)
    return glob.glob(f"/dev/shm/{pool.shm_prefix}*") if pool is not None and pool.shm_prefix else []


@pytest.mark.slow
@pytest.mark.subprocess
@pytest.mark.parametrize("mode", ["process", "thread"])
def test_workers_give_the_same_batches_and_resume_mid_epoch(tree, mode):
    kw = dict(batch_size=3, shuffle=True, seed=9)
    ref = DataLoader(augmenting(tree), **kw)
    epoch0, epoch1 = collect(ref), collect(ref)
    assert not np.array_equal(epoch0[0][0], epoch1[0][0])  # a new epoch, new order and augmentation
    loader = DataLoader(augmenting(tree), num_workers=2, worker_mode=mode, persistent_workers=mode == "process",
                        prefetch_factor=2, **kw)
    assert_same(collect(loader), epoch0)
    first = collect(loader, limit=2)  # epoch 1, left after 2 batches
    assert_same(first, epoch1[:2])
    state = loader.state_dict()
    assert state["epoch"] == 1 and state["batches_done"] == 2
    resumed = DataLoader(augmenting(tree), num_workers=2, worker_mode=mode, **kw)
    resumed.load_state_dict(state)
    assert_same(collect(resumed), epoch1[2:])
    # the persistent pool, left mid-epoch, drops the stale results of the abandoned pass
    loader.set_epoch(0)
    assert_same(collect(loader), epoch0)
    if mode == "process":
        pool = loader._pool
        assert pool is not None and all(p.is_alive() for p in pool.procs)
        loader.shutdown_workers()
        assert not any(p.is_alive() for p in pool.procs) and not shm_files(pool)


@pytest.mark.subprocess
def test_worker_exception_reraised_with_sample_index_and_path(tmp_path):
    root = make_tree(str(tmp_path / "data"))
    path = corrupt(root)
    ds = ImageFolder(root, T.Compose([T.Resize((8, 8)), T.ToTensor()]))
    bad = [p for p, _ in ds.samples].index(path)
    loader = DataLoader(ds, batch_size=2, num_workers=2, worker_mode="process")
    got = []
    with pytest.raises(UnreadableFileError) as info:
        for b in loader:
            got.append(b)
    msg = str(info.value)
    assert f"sample index {bad}" in msg and "10.jpg" in msg and "worker process" in msg
    assert len(got) == bad // 2  # the batches before the broken one arrive, in order
    threads = DataLoader(ds, batch_size=2, num_workers=2)
    with pytest.raises(UnreadableFileError, match="10.jpg") as info:
        collect(threads)
    assert f"(while loading sample index {bad})" in getattr(info.value, "__notes__", [])


@pytest.mark.subprocess
def test_dead_worker_is_reported_not_waited_for():
    loader = DataLoader(Indexed(12, exit_at=5), batch_size=2, num_workers=2, worker_mode="process")
    with pytest.raises(RuntimeError, match=r"worker process \d \(pid \d+\) exited unexpectedly \(exit code 3\)"):
        collect(loader)


@pytest.mark.subprocess
@pytest.mark.parametrize("mode", ["process", "thread"])
def test_timeout_on_a_stalled_worker(mode):
    # a stalled process is terminated; a stalled thread cannot be, so it only stalls briefly here
    loader = DataLoader(Indexed(8, sleep_at=2, sleep_s=20 if mode == "process" else 2), batch_size=2,
                        num_workers=2, worker_mode=mode, timeout=1.0)
    with pytest.raises(RuntimeError, match=r"timed out after 1.0 seconds waiting for"):
        collect(loader)
    for t in loader._last_threads:
        t.join(5)
    if mode == "process":
        assert not any(p.is_alive() for p in loader._last_pool.procs)


@pytest.mark.subprocess
def test_prefetch_keeps_prefetch_factor_times_workers_batches_in_flight_past_the_consumer(tmp_path):
    # torch's rule: the next index is sent before a batch is handed over, so while the caller holds
    # batch 0, batches 1..prefetch_factor*num_workers are being loaded (no more: bounded memory).
    loader = DataLoader(Touching(20, str(tmp_path)), batch_size=1, num_workers=2, worker_mode="process",
                        prefetch_factor=1)
    it = iter(loader)
    assert int(next(it)[0]) == 0
    deadline = time.monotonic() + 10
    while len(os.listdir(tmp_path)) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # anything beyond the bound would have started by now
    assert sorted(int(f) for f in os.listdir(tmp_path)) == [0, 1, 2]
    it.close()


@pytest.mark.subprocess
def test_early_break_stops_workers_and_frees_shared_memory():
    loader = DataLoader(Indexed(400), batch_size=4, num_workers=2, worker_mode="process", prefetch_factor=4)
    it = iter(loader)
    next(it)
    pool = loader._last_pool
    assert all(p.is_alive() for p in pool.procs)
    it.close()
    assert not any(p.is_alive() for p in pool.procs)
    assert not shm_files(pool)


@pytest.mark.subprocess
def test_worker_init_fn_worker_info_and_non_array_leaves():
    loader = DataLoader(Indexed(8), batch_size=4, num_workers=2, worker_mode="process", worker_init_fn=init_worker)
    batches = collect(loader)
    assert [b["worker"].tolist() for b in batches] == [[0] * 4, [1] * 4]
    assert batches[1]["init"] == ["init1"] * 4 and batches[0]["name"] == ["s0", "s1", "s2", "s3"]
    np.testing.assert_array_equal(np.concatenate([b["x"] for b in batches]), np.repeat(np.arange(8.0), 2).reshape(8, 2))
    bad = DataLoader(Indexed(4), batch_size=2, num_workers=1, worker_mode="process", worker_init_fn=failing_init)
    with pytest.raises(ValueError, match="worker_init_fn refuses worker 0"):
        collect(bad)
    threads = DataLoader(Indexed(4), batch_size=2, num_workers=1, worker_init_fn=init_worker)
    assert collect(threads)[0]["worker"][0] == -1  # no worker info in threads


def test_options_validated_like_torch():
    with pytest.raises(ValueError, match="not allowed.*jax #9190"):
        DataLoader(Indexed(4), num_workers=2, worker_mode="process", multiprocessing_context="fork")
    with pytest.raises(ValueError, match="persistent_workers option needs num_workers > 0"):
        DataLoader(Indexed(4), persistent_workers=True)
    with pytest.raises(ValueError, match="prefetch_factor option could only be specified in multiprocessing"):
        DataLoader(Indexed(4), prefetch_factor=2)
    with pytest.raises(ValueError, match="timeout option should be non-negative"):
        DataLoader(Indexed(4), timeout=-1)
    with pytest.raises(ValueError, match="worker_mode must be 'thread' or 'process'"):
        DataLoader(Indexed(4), worker_mode="fiber")


def test_shared_memory_roundtrip_keeps_structure_and_dtypes():
    from collections import namedtuple

    Pair = namedtuple("Pair", "a b")
    batch = {"img": np.arange(24, dtype=np.uint8).reshape(2, 3, 4), "pair": Pair(np.ones(3, np.float64), [1, "x"]),
             "t": (np.zeros((0, 2), np.int32), None)}
    prefix = f"funcnet_test_{os.getpid()}_"
    main = _workers._MainBuffers(1)
    back = main.decode(0, _workers._encode(batch, _workers._WorkerBuffers(prefix, keep=2)))
    assert not glob.glob(f"/dev/shm/{prefix}*")  # the name is unlinked once mapped
    np.testing.assert_array_equal(back["img"], batch["img"])
    assert isinstance(back["pair"], Pair) and back["pair"].b == [1, "x"] and back["pair"].a.dtype == np.float64
    assert back["t"][0].shape == (0, 2) and back["t"][1] is None


def test_a_buffer_is_reused_only_after_every_array_of_its_batch_is_gone():
    prefix = f"funcnet_test_reuse_{os.getpid()}_"
    worker, main = _workers._WorkerBuffers(prefix, keep=1), _workers._MainBuffers(1)

    def send(value):
        worker.release(main.take_released(0))
        return main.decode(0, _workers._encode({"x": np.full((64, 64), value, np.float32), "i": value}, worker))

    first = send(1)
    kept = first["x"][3:5]  # a view of the batch outlives the batch
    del first
    second = send(2)
    assert not main.take_released(0), "released while a view of its batch was alive"
    np.testing.assert_array_equal(kept, 1)  # not overwritten by the second batch
    del kept
    reused = main.take_released(0)
    assert len(reused) == 1
    worker.release(reused)
    third = main.decode(0, _workers._encode({"x": np.full((64, 64), 3, np.float32), "i": 3}, worker))
    assert len(worker.maps) == 2, "the released buffer was not reused"
    np.testing.assert_array_equal(third["x"], 3)
    np.testing.assert_array_equal(second["x"], 2)
    del second, third
    worker.release(main.take_released(0))  # two free, keep=1: one dropped, and the main side told
    assert len(worker.maps) == 1 and len(worker.free) == 1
    payload = _workers._encode({"x": np.zeros(2, np.float32)}, worker)
    dropped = payload[5]  # the next batch tells the main process which buffer the worker unmapped
    assert len(dropped) == 1 and (0, dropped[0]) in main.maps
    main.decode(0, payload)
    assert (0, dropped[0]) not in main.maps


@pytest.mark.subprocess
def test_persistent_workers_drop_results_of_an_abandoned_pass():
    loader = DataLoader(Indexed(40), batch_size=2, num_workers=2, worker_mode="process", prefetch_factor=4,
                        persistent_workers=True)
    assert collect(loader, limit=1)[0]["i"].tolist() == [0, 1]  # 7 more batches were requested, then left
    loader.set_epoch(0)
    assert np.concatenate([b["i"] for b in collect(loader)]).tolist() == list(range(40))
    pool = loader._pool
    loader.shutdown_workers()
    assert not any(p.is_alive() for p in pool.procs) and not shm_files(pool)


@pytest.mark.subprocess
def test_process_workers_with_jax_transform_and_device_placement():
    import jax

    from funcnet.utils.data import TensorDataset
    from funcnet.utils.data import transforms as BT

    x = np.random.default_rng(0).standard_normal((20, 1, 4, 4)).astype(np.float32)
    y = np.arange(20, dtype=np.int32)
    kw = dict(batch_size=6, shuffle=True, seed=3, transform=BT.PerField(BT.RandomHorizontalFlip()), device=True)
    want = collect(DataLoader(TensorDataset(x, y), **kw))
    got = collect(DataLoader(TensorDataset(x, y), num_workers=2, worker_mode="process", **kw))
    assert all(isinstance(a, jax.Array) for b in got for a in b)
    assert_same([tuple(map(np.asarray, b)) for b in got], [tuple(map(np.asarray, b)) for b in want])
