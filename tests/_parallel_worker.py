"""Worker for tests/test_parallel.py and tests/test_distributed.py, run in a subprocess.

    python tests/_parallel_worker.py equivalence OUT   # 8 simulated CPU devices (XLA_FLAGS)
    python tests/_parallel_worker.py chained OUT       # 200 steps, no waits by the caller
    python tests/_parallel_worker.py equivalence,chained OUT   # both, one process
    python tests/_parallel_worker.py dist OUT          # one of several processes (torch env vars)

(with ``PYTHONPATH`` set to the checkout, see :func:`worker_env`).

Each scenario writes ``.npz`` files of flat state dicts under OUT; the tests compare them
with single-device training done in the pytest process itself. The model, data and
hyper-parameters shared with the tests live here.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
WORKER = Path(__file__).resolve()
IN, HIDDEN, CLASSES = 6, 16, 3
GLOBAL_BATCH, STEPS, LR = 32, 4, 0.1


def worker_env(**extra: str) -> dict[str, str]:
    """The environment of a worker process: this checkout's funcnet first on the path, CPU only."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return dict(os.environ, PYTHONPATH=path, JAX_PLATFORMS="cpu", **extra)


def make_model(p: float = 0.0, sync: bool = False):
    import jax

    import funcnet.nn as nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(IN, HIDDEN)
            self.bn = nn.SyncBatchNorm(HIDDEN) if sync else nn.BatchNorm1d(HIDDEN)
            self.drop = nn.Dropout(p)
            self.fc2 = nn.Linear(HIDDEN, CLASSES)

        def forward(self, x):
            return self.fc2(self.drop(jax.nn.relu(self.bn(self.fc1(x)))))

    return Net()


def loss_fn(out, target):
    import optax

    return optax.softmax_cross_entropy_with_integer_labels(out, target).mean()


def optimizer():
    import optax

    return optax.sgd(LR, momentum=0.9)  # SGD: Adam turns ~1e-9 gradient noise (a bias before BN) into ±lr


def data(n: int = GLOBAL_BATCH * STEPS) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, IN)).astype(np.float32), rng.integers(0, CLASSES, n).astype(np.int32)


_VARIABLES: list = []


def initial_state(model):
    """A fresh state (new buffers, safe to donate). All the test models have the same parameter
    tree, so the variables are made once (host copies: the same on every process and device count)."""
    import jax

    from funcnet.nn import Variables
    from funcnet.train import TrainState

    if not _VARIABLES:
        _VARIABLES.append(jax.device_get(jax.jit(model.init)(jax.random.PRNGKey(0))))
    variables = Variables(*jax.tree.map(jax.numpy.asarray, tuple(_VARIABLES[0])))
    return TrainState.create(model, optimizer(), jax.random.PRNGKey(1), variables=variables)


def flat(model, state) -> dict[str, np.ndarray]:
    from funcnet.nn import Variables
    from funcnet.parallel import gather

    host = gather(Variables(state.params, state.buffers))
    return {k: np.asarray(v) for k, v in model.state_dict(host).items()}


def _loader(device=None, batch_size=GLOBAL_BATCH, sampler=None):
    from funcnet.utils.data import DataLoader, TensorDataset

    x, y = data()
    return DataLoader(TensorDataset(x, y), batch_size=batch_size, sampler=sampler, drop_last=True, device=device)


def equivalence(out: str) -> None:
    import jax

    from funcnet.parallel import PerDeviceSplit, PmapTrainStep, ShardedTrainStep, gather
    from funcnet.train import metrics as M

    assert jax.device_count() == 8, jax.devices()
    results = {}

    def run_pmap(p, sync, model=None, step=None):
        model = make_model(p, sync) if model is None else model
        step = PmapTrainStep(model, loss_fn, optimizer()) if step is None else step
        state = step.replicate(initial_state(model))
        running = M.empty()
        for batch in _loader(device=PerDeviceSplit()):
            state, running = step.accumulate(state, running, batch)
        return model, step.unreplicate(state), M.compute(running), state, step

    model, state, logs, replicated, _ = run_pmap(0.0, sync=True)
    np.savez(f"{out}/pmap_sync.npz", **flat(model, state))
    results["pmap_sync_loss"] = logs["loss"]
    # every device holds the same parameters
    leaves = jax.tree.leaves(gather(replicated.params))
    results["pmap_replicas_equal"] = all(bool((leaf == leaf[:1]).all()) for leaf in leaves)

    model, state, _, _, step = run_pmap(0.5, sync=True)
    np.savez(f"{out}/pmap_dropout_a.npz", **flat(model, state))
    model, state, _, _, _ = run_pmap(0.5, sync=True, model=model, step=step)  # same step, fresh state
    np.savez(f"{out}/pmap_dropout_b.npz", **flat(model, state))

    def run_sharded(p, shard_params):
        model = make_model(p)
        step = ShardedTrainStep(model, loss_fn, optimizer(), shard_params=shard_params, min_shard_size=8)
        state = step.place_state(initial_state(model))
        running = M.empty()
        for batch in _loader(device=step.batch_sharding):
            state, running = step.accumulate(state, running, batch)
        return model, state, M.compute(running)

    model, state, logs = run_sharded(0.0, False)
    np.savez(f"{out}/sharded.npz", **flat(model, state))
    results["sharded_loss"] = logs["loss"]
    results["sharded_param_specs"] = sorted({str(a.sharding.spec) for a in jax.tree.leaves(state.params)})
    model, state, _ = run_sharded(0.5, False)
    np.savez(f"{out}/sharded_dropout.npz", **flat(model, state))
    model, state, _ = run_sharded(0.0, True)
    results["fsdp_param_specs"] = sorted({str(a.sharding.spec) for a in jax.tree.leaves(state.params)})
    # The checkpoint: written from the FSDP-sharded state by process 0 only.
    from funcnet.distributed import save_on_main

    checkpoint = {"model": flat(model, state), "step": int(gather(state.step))}
    save_on_main(checkpoint, f"{out}/fsdp_checkpoint.fn")
    with open(f"{out}/results.json", "w") as f:
        json.dump(results, f)


def chained(out: str, steps: int = 200) -> None:
    """Many steps that the caller never waits on: must not deadlock on CPU multi-device."""
    import jax

    from funcnet.parallel import PmapTrainStep, ShardedTrainStep
    from funcnet.train import metrics as M

    model = make_model()
    x, y = data(GLOBAL_BATCH)
    times = {}
    pstep = PmapTrainStep(model, loss_fn, optimizer())
    state, running, batch = pstep.replicate(initial_state(model)), M.empty(), pstep.place_batch((x, y))
    start = time.perf_counter()
    for _ in range(steps):
        state, running = pstep.accumulate(state, running, batch)
    times["pmap"] = M.compute(running)["samples"], time.perf_counter() - start
    sstep = ShardedTrainStep(model, loss_fn, optimizer())
    state, running, batch = sstep.place_state(initial_state(model)), M.empty(), sstep.place_batch((x, y))
    start = time.perf_counter()
    for _ in range(steps):
        state, running = sstep.accumulate(state, running, batch)
    times["sharded"] = M.compute(running)["samples"], time.perf_counter() - start
    jax.block_until_ready(state)
    with open(f"{out}/chained.json", "w") as f:
        json.dump(times, f)


def dist(out: str) -> None:
    """One process of a multi-process job: init from torch's env vars, train on this rank's shard."""
    import funcnet.distributed as dist

    dist.init(initialization_timeout=60, heartbeat_timeout_seconds=30)
    import jax

    from funcnet.parallel import ShardedTrainStep
    from funcnet.train import metrics as M
    from funcnet.utils.data import DistributedSampler, TensorDataset

    rank, world = dist.get_rank(), dist.get_world_size()
    assert world == int(os.environ["WORLD_SIZE"]) and rank == int(os.environ["RANK"]), (rank, world)
    assert jax.device_count() == world and jax.local_device_count() == 1
    model = make_model()
    step = ShardedTrainStep(model, loss_fn, optimizer())
    state = step.place_state(initial_state(model))
    x, y = data()
    sampler = DistributedSampler(TensorDataset(x, y), shuffle=False)
    running = M.empty()
    for batch in _loader(device=step.batch_sharding, batch_size=GLOBAL_BATCH // world, sampler=sampler):
        assert batch[0].shape == (GLOBAL_BATCH, IN), batch[0].shape  # the global array
        state, running = step.accumulate(state, running, batch)
    np.savez(f"{out}/rank{rank}.npz", **flat(model, state))
    dist.save_on_main({"model": flat(model, state), "step": int(state.step)}, f"{out}/dist_checkpoint.fn")
    # only process 0 wrote; after the barrier in save_on_main every process sees the file
    written = os.path.exists(f"{out}/dist_checkpoint.fn")
    with open(f"{out}/rank{rank}.json", "w") as f:
        json.dump({"loss": M.compute(running)["loss"], "main": dist.is_main_process(), "written": written,
                   "samples": M.compute(running)["samples"]}, f)
    dist.barrier("done")
    dist.shutdown()


if __name__ == "__main__":
    scenarios, out_dir = sys.argv[1], sys.argv[2]
    for scenario in scenarios.split(","):
        {"equivalence": equivalence, "chained": chained, "dist": dist}[scenario](out_dir)
        print(f"{scenario}: ok", flush=True)
