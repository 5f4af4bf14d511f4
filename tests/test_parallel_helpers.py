"""funcnet.parallel's module-level helpers on 4 simulated CPU devices (a subprocess, as
tests/test_parallel.py): make_mesh, data_sharding, replicated_sharding, state_shardings, place,
place_batch, make_pmap_train_step and make_sharded_train_step (one step equals the single-device
funcnet.train step)."""

import subprocess
import sys

import _parallel_worker as W
import pytest

_SCRIPT = r'''
import jax, jax.numpy as jnp, numpy as np
from jax.sharding import PartitionSpec as P
import _parallel_worker as W
from funcnet.parallel import (PmapTrainStep, ShardedTrainStep, data_sharding, make_mesh, make_pmap_train_step,
                              make_sharded_train_step, place, place_batch, replicated_sharding, state_shardings,
                              unreplicate)
from funcnet.train import TrainState, make_train_step

devices = jax.devices()
assert len(devices) == 4, devices
mesh = make_mesh()
assert mesh.axis_names == ("data",) and list(mesh.devices) == devices
assert make_mesh(devices[:2], axis_name="b").shape == {"b": 2}
ds, rep = data_sharding(mesh), replicated_sharding(mesh)
assert ds.spec == P("data") and rep.spec == P() and ds.mesh == mesh == rep.mesh

# place_batch: the leading axis split in 4 consecutive slices, one per device; non-arrays untouched
x, y = W.data(W.GLOBAL_BATCH)
bx, by, tag = place_batch((x, y, "tag"), ds)
assert tag == "tag" and bx.sharding == ds
shards = sorted(bx.addressable_shards, key=lambda s: s.device.id)
for k, s in enumerate(shards):
    np.testing.assert_array_equal(np.asarray(s.data), x[k * 8:(k + 1) * 8])
assert place_batch((bx,), ds)[0] is bx  # already placed

# state_shardings: replicated by default; FSDP rule with shard_params (first axis divisible by 4,
# leaves below min_shard_size, the key and the step replicated)
model = W.make_model()
state = W.initial_state(model)
specs = state_shardings(state, mesh)
assert all(s.spec == P() for s in jax.tree.leaves(specs, is_leaf=lambda s: hasattr(s, "spec")))
fsdp = state_shardings(state, mesh, shard_params=True, min_shard_size=8)
assert fsdp.params["fc1"]["weight"].spec == P("data")        # [16, 6]: 16 % 4 == 0
assert fsdp.params["fc2"]["weight"].spec == P(None, "data")  # [3, 16]: axis 1
assert fsdp.params["fc2"]["bias"].spec == P()                # 3 elements < 8
assert fsdp.key.spec == P() and fsdp.step.spec == P()
plain = state_shardings({"w": np.zeros((8, 12)), "v": np.zeros((6, 3, 8))}, mesh, shard_params=True, min_shard_size=8)
assert plain["w"].spec == P("data") and plain["v"].spec == P(None, None, "data")  # the *first* divisible axis
placed = place(state, fsdp)
w = placed.params["fc1"]["weight"]
assert w.sharding.spec == P("data") and w.addressable_shards[0].data.shape == (4, 6)
np.testing.assert_array_equal(np.asarray(w), np.asarray(state.params["fc1"]["weight"]))
one = place({"a": np.arange(8.0)}, rep)["a"]
assert one.sharding == rep and all(np.array_equal(s.data, np.arange(8.0)) for s in one.addressable_shards)

# the factories: one step on the global batch equals the single-device step
ref_state, _ = make_train_step(model, W.loss_fn, W.optimizer())(W.initial_state(model), (x, y))
synced = W.make_model(sync=True)  # pmap: per-device BatchNorm statistics unless synchronised
pstep = make_pmap_train_step(synced, W.loss_fn, W.optimizer())
sstep = make_sharded_train_step(model, W.loss_fn, W.optimizer(), mesh)
assert isinstance(pstep, PmapTrainStep) and isinstance(sstep, ShardedTrainStep) and sstep.mesh is mesh
p_state, _ = pstep(pstep.replicate(W.initial_state(synced)), pstep.place_batch((x, y)))
s_state, _ = sstep(sstep.place_state(W.initial_state(model)), sstep.place_batch((x, y)))
for got in (unreplicate(p_state).params, s_state.params):
    jax.tree.map(lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6),
                 got, ref_state.params)
print("OK")
'''


@pytest.mark.subprocess
def test_parallel_helpers_on_four_devices(tmp_path):
    env = W.worker_env(XLA_FLAGS="--xla_force_host_platform_device_count=4")
    env["PYTHONPATH"] = f"{W.ROOT / 'tests'}:{env['PYTHONPATH']}"
    proc = subprocess.run([sys.executable, "-c", _SCRIPT], cwd=W.ROOT, env=env, capture_output=True, text=True,
                          timeout=240)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("OK"), proc.stderr[-4000:]
