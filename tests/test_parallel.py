"""funcnet.parallel: data-parallel training equals single-device training.

The 8-device checks run in a subprocess with ``XLA_FLAGS=--xla_force_host_platform_device_count=8``
(``tests/_parallel_worker.py``); the single-device references are computed here, in the pytest
process, which keeps its one CPU device. In-process tests cover SyncBatchNorm against torch
(through ``jax.vmap`` with an axis name), batch splitting and the in-flight bound.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from pathlib import Path

import _parallel_worker as W
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from conftest import assert_close

import funcnet
import funcnet.nn as nn
from funcnet.parallel import InflightLimiter, PerDeviceSplit, PmapTrainStep, shard_batch
from funcnet.parallel._inflight import default_max_inflight
from funcnet.train import make_train_step
from funcnet.train import metrics as M
from funcnet.utils.data import DataLoader, TensorDataset


def run_worker(scenario: str, out: Path, devices: int = 8, timeout: float = 240) -> subprocess.CompletedProcess:
    env = W.worker_env(XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
    proc = subprocess.run([sys.executable, str(W.WORKER), scenario, str(out)], cwd=W.ROOT,
                          env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{scenario} worker failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr[-4000:]}"
    return proc


@pytest.fixture(scope="module")
def eight_devices(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("parallel")
    run_worker("equivalence,chained", out)  # one process: the 8-device start-up is paid once
    return out


@functools.cache
def single_device_reference(p: float = 0.0):
    """K steps of funcnet.train on the global batches, on this process's one device."""
    assert jax.device_count() == 1
    model = W.make_model(p)
    step = make_train_step(model, W.loss_fn, W.optimizer())
    state = W.initial_state(model)
    x, y = W.data()
    running = M.empty()
    for b in range(W.STEPS):
        sl = slice(b * W.GLOBAL_BATCH, (b + 1) * W.GLOBAL_BATCH)
        state, running = step.accumulate(state, running, (x[sl], y[sl]))
    return model, state, M.compute(running)


@pytest.fixture(scope="module")
def reference():
    return single_device_reference(0.0)  # cached: do not mutate


def load(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def assert_state_dicts_close(actual: dict, expected: dict, atol: float = 1e-5) -> None:
    assert sorted(actual) == sorted(expected) and len(expected) == 9  # fc1, bn (+3 buffers), fc2
    for k in expected:
        np.testing.assert_allclose(actual[k], np.asarray(expected[k]), rtol=1e-5, atol=atol, err_msg=k)


# ----------------------------------------------------------------------------- 8 devices (subprocess)
@pytest.mark.subprocess
@pytest.mark.slow
def test_pmap_syncbn_equals_single_device(eight_devices, reference):
    model, state, logs = reference
    expected = W.flat(model, state)
    actual = load(eight_devices / "pmap_sync.npz")
    assert_state_dicts_close(actual, expected)  # parameters and BatchNorm running statistics
    assert int(actual["bn.num_batches_tracked"]) == W.STEPS
    results = json.loads((eight_devices / "results.json").read_text())
    assert results["pmap_replicas_equal"]
    assert results["pmap_sync_loss"] == pytest.approx(logs["loss"], rel=1e-6)


@pytest.mark.subprocess
@pytest.mark.slow
def test_pmap_dropout_is_deterministic_and_active(eight_devices):
    a, b = load(eight_devices / "pmap_dropout_a.npz"), load(eight_devices / "pmap_dropout_b.npz")
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    no_dropout = load(eight_devices / "pmap_sync.npz")
    assert np.abs(a["fc2.weight"] - no_dropout["fc2.weight"]).max() > 1e-3


@pytest.mark.subprocess
@pytest.mark.slow
def test_sharded_equals_single_device(eight_devices, reference):
    model, state, logs = reference
    assert_state_dicts_close(load(eight_devices / "sharded.npz"), W.flat(model, state))
    results = json.loads((eight_devices / "results.json").read_text())
    assert results["sharded_param_specs"] == ["P()"]
    assert results["sharded_loss"] == pytest.approx(logs["loss"], rel=1e-6)


@pytest.mark.subprocess
@pytest.mark.slow
def test_sharded_dropout_draws_the_single_device_masks(eight_devices):
    model, state, _ = single_device_reference(0.5)
    expected = W.flat(model, state)
    assert_state_dicts_close(load(eight_devices / "sharded_dropout.npz"), expected)
    _, no_drop, _ = single_device_reference(0.0)
    assert np.abs(expected["fc2.weight"] - W.flat(model, no_drop)["fc2.weight"]).max() > 1e-3


@pytest.mark.subprocess
@pytest.mark.slow
def test_fsdp_checkpoint_loads_on_one_device(eight_devices, reference):
    results = json.loads((eight_devices / "results.json").read_text())
    assert "P('data',)" in results["fsdp_param_specs"]  # the parameters really were split
    checkpoint = funcnet.load(eight_devices / "fsdp_checkpoint.fn")
    assert checkpoint["step"] == W.STEPS
    model, state, _ = reference
    variables, missing = model.load_state_dict(checkpoint["model"])
    assert not missing.missing_keys and not missing.unexpected_keys
    assert all(a.devices() == {jax.devices()[0]} for a in jax.tree.leaves(variables))
    x = W.data()[0][:8]
    assert_close(model.apply(variables, x), model.apply(state.variables, x))


@pytest.mark.subprocess
@pytest.mark.slow
def test_long_chained_loop_does_not_hang(eight_devices):
    """200 steps per path on 8 CPU devices with no wait by the caller (unbounded, XLA's
    all-reduce rendezvous deadlocks and aborts); the worker's timeout bounds the test."""
    times = json.loads((eight_devices / "chained.json").read_text())
    for path in ("pmap", "sharded"):
        samples, _seconds = times[path]
        assert samples == 200 * W.GLOBAL_BATCH, path


# ----------------------------------------------------------------------------- in-process
def _torch_bn_global(x: np.ndarray, momentum=0.1):
    bn = torch.nn.BatchNorm1d(x.shape[1], momentum=momentum)
    xt = torch.tensor(x, requires_grad=True)
    out = bn(xt)
    (out * torch.arange(out.numel(), dtype=out.dtype).reshape(out.shape).sin()).sum().backward()
    return out, xt.grad, bn


@pytest.mark.parametrize("momentum", [0.1, None])
def test_syncbatchnorm_over_mapped_axis_matches_torch_on_global_batch(rng, momentum):
    """SyncBatchNorm inside a map over 'batch' (here jax.vmap with 4 'devices') normalises each
    slice with the global batch statistics: equal to torch BatchNorm1d on the whole batch."""
    x = rng.normal(size=(16, 5)).astype(np.float32) * 3 + 1
    layer = nn.SyncBatchNorm(5, momentum=momentum)
    params, buffers = layer.init(jax.random.PRNGKey(0))
    weights = jnp.sin(jnp.arange(x.size, dtype=jnp.float32)).reshape(x.shape)

    def per_device(xs):
        return layer.apply(params, xs, buffers=buffers, train=True)

    def objective(xg):
        out, new = jax.vmap(per_device, axis_name="batch")(xg.reshape(4, 4, 5))
        return jnp.sum(out.reshape(x.shape) * weights), (out, new)

    (_, (out, new)), grad = jax.value_and_grad(objective, has_aux=True)(jnp.asarray(x))
    t_out, t_grad, bn = _torch_bn_global(x, momentum)
    assert_close(out.reshape(x.shape), t_out)
    assert_close(grad, t_grad)
    for name in ("running_mean", "running_var"):
        for d in range(4):  # every device records the global statistics
            assert_close(new[name][d], getattr(bn, name))
    assert int(new["num_batches_tracked"][0]) == 1


def test_syncbatchnorm_outside_a_map_is_batchnorm(rng):
    x = jnp.asarray(rng.normal(size=(8, 5, 3)).astype(np.float32))
    sync, plain = nn.SyncBatchNorm(5), nn.BatchNorm1d(5)
    variables = plain.init(jax.random.PRNGKey(0))
    a, new_a = sync.apply(variables.params, x, buffers=variables.buffers, train=True)
    b, new_b = plain.apply(variables.params, x, buffers=variables.buffers, train=True)
    np.testing.assert_array_equal(a, b)
    jax.tree.map(np.testing.assert_array_equal, new_a, new_b)
    assert "axis_name='batch'" in repr(sync)
    with pytest.raises(ValueError, match="process_group"):
        nn.SyncBatchNorm(5, process_group=object())
    with pytest.raises(ValueError, match=r"SyncBatchNorm.*\[N, 5, \*\]"):
        sync.apply(variables.params, x[0, 0], buffers=variables.buffers, train=True)


def test_batchnorm_axis_name_default_unchanged():
    bn = nn.BatchNorm2d(3)
    assert bn.axis_name is None and "axis_name" not in repr(bn)
    assert nn.BatchNorm1d(4, axis_name="batch").axis_name == "batch"


def test_shard_batch_shapes_and_errors():
    x, y = np.zeros((12, 3), np.float32), np.arange(12)
    sx, sy = shard_batch((x, y), 4)
    assert sx.shape == (4, 3, 3) and sy.shape == (4, 3)
    np.testing.assert_array_equal(sy[1], [3, 4, 5])
    with pytest.raises(ValueError, match=r"\(10, 3\) cannot be split over 4 devices"):
        shard_batch((x[:10], y[:10]), 4)


def test_pmap_step_on_one_device_equals_train_step():
    """The pmap step over this process's single device (axis size 1) is plain training."""
    model = W.make_model(0.0, sync=True)
    step = PmapTrainStep(model, W.loss_fn, W.optimizer())
    state = step.replicate(W.initial_state(model))
    loader = DataLoader(TensorDataset(*W.data()), batch_size=W.GLOBAL_BATCH, drop_last=True,
                        device=PerDeviceSplit())
    running = M.empty()
    for batch in loader:
        assert batch[0].shape == (1, W.GLOBAL_BATCH, W.IN)
        state, running = step.accumulate(state, running, batch)
    model_ref, ref, logs = single_device_reference(0.0)
    assert_state_dicts_close(W.flat(model, step.unreplicate(state)), W.flat(model_ref, ref))
    assert M.compute(running)["loss"] == pytest.approx(logs["loss"], rel=1e-6)
    assert M.compute(running)["samples"] == W.GLOBAL_BATCH * W.STEPS
    with pytest.raises(ValueError, match=r"split per device.*got \(32, 6\)"):
        step(state, W.data(32))


def test_inflight_limiter_waits_for_the_oldest(monkeypatch):
    waited = []
    monkeypatch.setattr(jax, "block_until_ready", lambda t: waited.append(t))
    limiter = InflightLimiter(2)
    for i in range(5):
        limiter.push(i)
    assert waited == [0, 1, 2]  # after each push at most 2 steps remain unwaited
    limiter.wait_all()
    assert waited == [0, 1, 2, 3, 4]
    unbounded = InflightLimiter(None)
    unbounded.push(9)
    assert waited == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="max_inflight"):
        InflightLimiter(-1)


def test_default_inflight_bound_only_for_cpu_multi_device():
    cpu = jax.devices("cpu")[0]
    assert default_max_inflight([cpu]) is None  # one CPU device, one process
    assert default_max_inflight([cpu, cpu]) == 4

    class FakeGPU:
        platform = "gpu"

    assert default_max_inflight([FakeGPU(), FakeGPU()]) is None


def test_eval_steps_on_one_device_equal_make_eval_step():
    from funcnet.parallel import PmapEvalStep, ShardedEvalStep, ShardedTrainStep
    from funcnet.train import make_eval_step

    model_ref, ref, _ = single_device_reference(0.0)
    x, y = W.data(W.GLOBAL_BATCH)
    expected = M.compute(make_eval_step(model_ref, W.loss_fn)(ref, (x, y)))
    model = W.make_model(0.0, sync=True)
    pmap_eval = PmapEvalStep(model, W.loss_fn)
    replicated = PmapTrainStep(model, W.loss_fn, W.optimizer()).replicate(ref)
    got = M.compute(pmap_eval.accumulate(replicated, M.empty(), pmap_eval.place_batch((x, y))))
    assert got["loss"] == pytest.approx(expected["loss"], rel=1e-6) and got["accuracy"] == expected["accuracy"]
    train = ShardedTrainStep(model, W.loss_fn, W.optimizer())
    got = M.compute(ShardedEvalStep(model, W.loss_fn, train.mesh)(train.place_state(ref), (x, y)))
    assert got["loss"] == pytest.approx(expected["loss"], rel=1e-6) and got["samples"] == W.GLOBAL_BATCH
