"""funcnet.distributed: argument resolution (in-process, jax.distributed mocked) and a real
two-process JAX job over 127.0.0.1 on CPU (subprocesses, bounded in time, always killed)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import _parallel_worker as W
import jax
import numpy as np
import pytest

import funcnet
import funcnet.distributed as dist
from funcnet.train import make_train_step
from funcnet.train import metrics as M

ENV_NAMES = ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK", "JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES",
             "JAX_PROCESS_ID", "JAX_COORDINATOR_BIND_ADDRESS")


@pytest.fixture
def clean_env(monkeypatch):
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


# ----------------------------------------------------------------------------- resolution
def test_resolve_reads_torch_launcher_variables(clean_env):
    clean_env.setenv("MASTER_ADDR", "10.0.0.1")
    clean_env.setenv("MASTER_PORT", "29500")
    clean_env.setenv("WORLD_SIZE", "4")
    clean_env.setenv("RANK", "3")
    clean_env.setenv("JAX_COORDINATOR_ADDRESS", "10.9.9.9:1")  # torch's variables come first
    args = dist.resolve()
    assert args == dict(coordinator_address="10.0.0.1:29500", num_processes=4, process_id=3,
                        coordinator_bind_address=None)  # a real host: JAX's default (all interfaces)


def test_resolve_reads_jax_variables_and_arguments_win(clean_env):
    clean_env.setenv("JAX_COORDINATOR_ADDRESS", "node0:1234")
    clean_env.setenv("JAX_NUM_PROCESSES", "2")
    clean_env.setenv("JAX_PROCESS_ID", "1")
    assert dist.resolve() == dict(coordinator_address="node0:1234", num_processes=2, process_id=1,
                                  coordinator_bind_address=None)
    args = dist.resolve("node1:99", 8, 5, bind_address="10.1.2.3")
    assert args == dict(coordinator_address="node1:99", num_processes=8, process_id=5,
                        coordinator_bind_address="10.1.2.3:99")


def test_resolve_binds_a_loopback_coordinator_to_loopback_only(clean_env):
    assert dist.resolve("127.0.0.1:4000", 2, 0)["coordinator_bind_address"] == "127.0.0.1:4000"
    assert dist.resolve("localhost:4000", 2, 0)["coordinator_bind_address"] == "localhost:4000"
    clean_env.setenv("JAX_COORDINATOR_BIND_ADDRESS", "0.0.0.0:4000")  # an explicit choice is kept
    assert dist.resolve("127.0.0.1:4000", 2, 0)["coordinator_bind_address"] == "0.0.0.0:4000"


def test_resolve_errors(clean_env):
    clean_env.setenv("MASTER_ADDR", "10.0.0.1")
    with pytest.raises(ValueError, match="MASTER_ADDR and MASTER_PORT must be set together"):
        dist.resolve()
    with pytest.raises(ValueError, match=r"rank 2 is outside \[0, 2\)"):
        dist.resolve("h:1", 2, 2)
    with pytest.raises(ValueError, match="'host:port'"):
        dist.resolve("hostonly", 2, 0)
    clean_env.delenv("MASTER_ADDR")
    clean_env.setenv("WORLD_SIZE", "two")
    with pytest.raises(ValueError, match="WORLD_SIZE='two' is not an integer"):
        dist.resolve()


def test_init_passes_arguments_and_turns_on_cpu_collectives(clean_env):
    calls = []
    clean_env.setattr(jax.distributed, "initialize", lambda **kw: calls.append(kw))
    clean_env.setattr(jax.distributed, "is_initialized", lambda: False)
    before = jax.config.jax_cpu_collectives_implementation
    try:
        jax.config.update("jax_cpu_collectives_implementation", None)  # off
        assert dist.init("127.0.0.1:5555", 2, 1, initialization_timeout=7) is True
        assert jax.config.jax_cpu_collectives_implementation == "gloo"
    finally:
        jax.config.update("jax_cpu_collectives_implementation", before)
    (kw,) = calls
    assert kw["coordinator_address"] == "127.0.0.1:5555" and kw["coordinator_bind_address"] == "127.0.0.1:5555"
    assert (kw["num_processes"], kw["process_id"], kw["initialization_timeout"]) == (2, 1, 7)
    # a world of one is not initialised
    clean_env.setenv("WORLD_SIZE", "1")
    assert dist.init() is False and len(calls) == 1


def test_init_error_names_the_job(clean_env):
    def fail(**kw):
        raise RuntimeError("connection refused")

    clean_env.setattr(jax.distributed, "initialize", fail)
    clean_env.setattr(jax.distributed, "is_initialized", lambda: False)
    with pytest.raises(RuntimeError, match=r"coordinator 127.0.0.1:6000, rank 0 of 2.*connection refused"):
        dist.init("127.0.0.1:6000", 2, 0, cpu_collectives=None)


def test_single_process_helpers(tmp_path, capsys):
    assert dist.get_rank() == 0 and dist.get_world_size() == 1 and dist.is_main_process()
    assert not dist.is_initialized()
    dist.barrier()  # no-op alone
    assert dist.broadcast(3) == 3
    dist.print0("hello")
    assert capsys.readouterr().out == "hello\n"
    dist.save_on_main({"w": jax.numpy.arange(3.0)}, tmp_path / "c.fn")
    np.testing.assert_array_equal(funcnet.load(tmp_path / "c.fn", as_numpy=True)["w"], [0, 1, 2])


# ----------------------------------------------------------------------------- two processes
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_job(out: Path, world: int, timeout: float = 150) -> None:
    """Start ``world`` workers as one job on 127.0.0.1; kill them all on failure or timeout."""
    port = free_port()
    procs = []
    for rank in range(world):
        env = W.worker_env(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank))
        env.pop("XLA_FLAGS", None)  # one CPU device per process
        procs.append(subprocess.Popen([sys.executable, str(W.WORKER), "dist", str(out)], cwd=W.ROOT,
                                      env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    deadline = time.monotonic() + timeout
    try:
        outputs = []
        for proc in procs:
            try:
                outputs.append(proc.communicate(timeout=max(1.0, deadline - time.monotonic()))[0])
            except subprocess.TimeoutExpired:
                pytest.fail(f"distributed job did not finish within {timeout} s")
        for rank, (proc, text) in enumerate(zip(procs, outputs)):
            assert proc.returncode == 0, f"rank {rank} failed ({proc.returncode}):\n{text[-4000:]}"
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def reference_on_interleaved_batches(world: int):
    """One process, the whole global batch per step, in the order the job assembles it:
    rank r's DistributedSampler shard is order[r::world]; the global batch b is the
    concatenation of every rank's b-th local batch, in rank order."""
    model = W.make_model()
    step = make_train_step(model, W.loss_fn, W.optimizer())
    state = W.initial_state(model)
    x, y = W.data()
    local = W.GLOBAL_BATCH // world
    shards = [np.arange(len(x))[r::world] for r in range(world)]
    running = M.empty()
    for b in range(W.STEPS):
        idx = np.concatenate([s[b * local:(b + 1) * local] for s in shards])
        state, running = step.accumulate(state, running, (x[idx], y[idx]))
    return W.flat(model, state), M.compute(running)


@pytest.mark.subprocess
@pytest.mark.slow
def test_two_process_job_trains_like_one_process(tmp_path):
    world = 2
    run_job(tmp_path, world)
    ranks = []
    for r in range(world):
        with np.load(tmp_path / f"rank{r}.npz") as z:
            ranks.append({k: z[k] for k in z.files})
    for k in ranks[0]:  # identical on every process
        np.testing.assert_array_equal(ranks[0][k], ranks[1][k], err_msg=k)
    expected, logs = reference_on_interleaved_batches(world)
    assert sorted(ranks[0]) == sorted(expected) and len(expected) == 9
    for k in expected:
        np.testing.assert_allclose(ranks[0][k], expected[k], rtol=1e-5, atol=1e-5, err_msg=k)
    infos = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(world)]
    assert [i["main"] for i in infos] == [True, False]
    assert all(i["written"] for i in infos)  # visible to every rank after save_on_main's barrier
    assert all(i["samples"] == W.GLOBAL_BATCH * W.STEPS for i in infos)
    assert infos[0]["loss"] == pytest.approx(logs["loss"], rel=1e-5)
    checkpoint = funcnet.load(tmp_path / "dist_checkpoint.fn", as_numpy=True)
    assert checkpoint["step"] == W.STEPS
    np.testing.assert_array_equal(checkpoint["model"]["fc1.weight"], ranks[0]["fc1.weight"])
