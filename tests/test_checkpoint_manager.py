"""CheckpointManager: cadence, retention (last K + best), listing, restore, and bit-identical resume."""

import json
import os
import runpy
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import funcnet
from funcnet.checkpoint import CheckpointInfo, CheckpointManager
from funcnet.checkpoint import manager as manager_module


def small_state(step):
    return {"params": {"w": jnp.full((2, 3), float(step))}, "step": step, "key": jax.random.key(step)}


def test_saves_every_n_and_keeps_the_last_k(tmp_path):
    mgr = CheckpointManager(tmp_path, keep=2, save_every=3)
    written = [mgr.save(s, small_state(s)) for s in range(1, 11)]
    assert [w is not None for w in written] == [s % 3 == 0 for s in range(1, 11)]
    assert mgr.steps() == [6, 9]
    assert sorted(n for n in os.listdir(tmp_path) if n.endswith(".ckpt")) == ["ckpt_00000006.ckpt",
                                                                              "ckpt_00000009.ckpt"]
    assert mgr.latest() == CheckpointInfo(9, str(tmp_path / "ckpt_00000009.ckpt"), {})
    assert mgr.save(10, small_state(10), force=True) is not None
    assert mgr.steps() == [9, 10]
    restored = mgr.restore()
    assert restored["step"] == 10
    np.testing.assert_array_equal(restored["params"]["w"], np.full((2, 3), 10.0))
    key_data = jax.random.key_data
    np.testing.assert_array_equal(key_data(restored["key"]), key_data(jax.random.key(10)))
    assert mgr.restore(9)["step"] == 9
    assert mgr.save(jnp.asarray(12, jnp.int32), small_state(12)) is not None  # e.g. TrainState.step
    assert mgr.steps() == [10, 12]
    with pytest.raises(FileNotFoundError, match=r"step 6 .*saved steps: \[10, 12\]"):
        mgr.restore(6)


@pytest.mark.parametrize("mode, losses, best_step", [
    ("min", [5.0, 1.0, 4.0, 3.0, 2.0], 2),
    ("max", [1.0, 9.0, 2.0, float("nan"), 3.0], 2),
])
def test_best_checkpoint_is_kept_beyond_the_last_k(tmp_path, mode, losses, best_step):
    mgr = CheckpointManager(tmp_path, keep=2, best_metric="val", mode=mode)
    for step, loss in enumerate(losses, start=1):
        mgr.save(step, small_state(step), metrics={"val": np.float32(loss)})
    assert mgr.steps() == [best_step, 4, 5]
    assert mgr.best().step == best_step and mgr.best().metrics["val"] == losses[best_step - 1]
    assert mgr.restore(best=True)["step"] == best_step
    with pytest.raises(KeyError, match="best_metric 'val' is missing"):
        mgr.save(6, small_state(6), metrics={"train": 1.0})


def test_a_new_manager_sees_the_checkpoints_and_recovers_an_unindexed_one(tmp_path):
    mgr = CheckpointManager(tmp_path, keep=None, best_metric="acc", mode="max")
    for step in (1, 2, 3):
        mgr.save(step, small_state(step), metrics={"acc": step / 10})
    # a run that died after writing checkpoint 4 but before updating the index, mid-write of 5
    record = {"step": 4, "metrics": {"acc": 0.9}, "state": small_state(4)}
    funcnet.save(record, tmp_path / "ckpt_00000004.ckpt")
    (tmp_path / ".ckpt_00000005.ckpt.0123456789ab.tmp").write_bytes(b"partial")
    again = CheckpointManager(tmp_path, keep=None, best_metric="acc", mode="max")
    assert again.steps() == [1, 2, 3, 4]
    assert again.best().step == 4 and again.latest().step == 4
    assert not any(n.endswith(".tmp") for n in os.listdir(tmp_path))
    index = json.loads((tmp_path / "checkpoints.json").read_text())
    assert [e["step"] for e in index["checkpoints"]] == [1, 2, 3]
    again.save(5, small_state(5), metrics={"acc": 0.5})
    index = json.loads((tmp_path / "checkpoints.json").read_text())
    assert [e["step"] for e in index["checkpoints"]] == [1, 2, 3, 4, 5]


def test_empty_directory(tmp_path):
    mgr = CheckpointManager(tmp_path / "new", best_metric="loss")
    assert mgr.latest() is None and mgr.best() is None and mgr.checkpoints() == []
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        mgr.restore()


def test_restore_into_a_target_checks_shapes_and_places_arrays(tmp_path):
    mgr = CheckpointManager(tmp_path)
    state = {"w": jnp.arange(6.0).reshape(2, 3), "n": 3}
    mgr.save(1, state)
    target = {"w": jnp.zeros((2, 3)), "n": 0}
    out = mgr.restore(target=target)
    assert out["n"] == 3 and out["w"].sharding == target["w"].sharding
    np.testing.assert_array_equal(out["w"], state["w"])
    with pytest.raises(ValueError, match=r"\[.w.\]: checkpoint has float32\[2, 3\], target has float32"):
        mgr.restore(target={"w": jnp.zeros((3, 2)), "n": 0})
    with pytest.raises(ValueError, match="tree structure differs"):
        mgr.restore(target={"w": jnp.zeros((2, 3))})


def test_only_process_zero_writes(tmp_path, monkeypatch):
    barriers = []
    monkeypatch.setattr(manager_module.jax, "process_count", lambda: 2)
    monkeypatch.setattr(manager_module.jax, "process_index", lambda: 1)
    monkeypatch.setattr(manager_module, "gather_for_save", lambda tree: tree)
    from jax.experimental import multihost_utils

    monkeypatch.setattr(multihost_utils, "sync_global_devices", barriers.append)
    secondary = CheckpointManager(tmp_path / "a")
    assert secondary.save(1, small_state(1)) is None
    assert not (tmp_path / "a").exists() and len(barriers) == 1
    everyone = CheckpointManager(tmp_path / "b", primary_only=False)
    assert everyone.save(1, small_state(1)) is not None and everyone.steps() == [1]
    monkeypatch.setattr(manager_module.jax, "process_index", lambda: 0)
    primary = CheckpointManager(tmp_path / "a")
    assert primary.save(1, small_state(1)) is not None and primary.steps() == [1]
    assert len(barriers) == 3


def test_argument_errors(tmp_path):
    with pytest.raises(ValueError, match="keep"):
        CheckpointManager(tmp_path, keep=0)
    with pytest.raises(ValueError, match="mode"):
        CheckpointManager(tmp_path, mode="best")
    with pytest.raises(ValueError, match="save_every"):
        CheckpointManager(tmp_path, save_every=0)
    mgr = CheckpointManager(tmp_path)
    for bad in (-1, 1.0, True, jnp.ones(2, jnp.int32)):
        with pytest.raises(TypeError, match="step must be a non-negative int"):
            mgr.save(bad, {})
    with pytest.raises(TypeError, match="metric 'x' must be a number"):
        mgr.save(1, {}, metrics={"x": "high"})
    with pytest.raises(ValueError, match="no best_metric"):
        mgr.best()


# -- bit-identical resume in a fresh process ----------------------------------------------
_TRAIN = textwrap.dedent('''
    import sys
    import jax, jax.numpy as jnp, numpy as np, optax
    import funcnet
    from funcnet import nn
    from funcnet.checkpoint import CheckpointManager
    from funcnet.utils.data import DataLoader, TensorDataset

    mode, ckpt_dir, out = sys.argv[1], sys.argv[2], sys.argv[5]
    n_steps, m_steps = int(sys.argv[3]), int(sys.argv[4])

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(8, 32)
            self.bn = nn.BatchNorm1d(32)
            self.drop = nn.Dropout(0.3)
            self.fc2 = nn.Linear(32, 3)

        def forward(self, x):
            return self.fc2(self.drop(jax.nn.relu(self.bn(self.fc1(x)))))

    def batches(loader):
        """Endless batches, epoch after epoch; loader.state_dict() tracks the position."""
        while True:
            yield from loader

    data_rng = np.random.default_rng(0)
    X = data_rng.standard_normal((48, 8)).astype(np.float32)
    Y = data_rng.integers(0, 3, 48)
    model = Net()
    tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(optax.cosine_decay_schedule(0.05, 50)))

    @jax.jit
    def train_step(params, buffers, opt_state, key, x, y):
        key, sub = jax.random.split(key)
        def loss_fn(p):
            logits, new_buffers = model.apply(p, x, buffers=buffers, key=sub, train=True)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), new_buffers
        (loss, buffers), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), buffers, opt_state, key, loss

    def run(state, loader, stream, steps, losses):
        params, buffers, opt_state, key = state["params"], state["buffers"], state["opt_state"], state["key"]
        for _ in range(steps):
            x, y = next(stream)
            params, buffers, opt_state, key, loss = train_step(params, buffers, opt_state, key, x, y)
            losses.append(float(loss))
        where = loader.state_dict()
        return {"params": params, "buffers": buffers, "opt_state": opt_state, "key": key,
                "step": state["step"] + steps, "epoch": where["epoch"], "loader": where}

    mgr = CheckpointManager(ckpt_dir, keep=2)
    if mode == "first":
        params, buffers = model.init(jax.random.key(1))
        state = {"params": params, "buffers": buffers, "opt_state": tx.init(params),
                 "key": jax.random.key(2), "step": 0, "epoch": 0}
        loader = DataLoader(TensorDataset(X, Y), batch_size=16, shuffle=True, seed=7)
        stream = batches(loader)
        losses = []
        state = run(state, loader, stream, n_steps, losses)
        mgr.save(state["step"], state, metrics={"loss": losses[-1]})
        state = run(state, loader, stream, m_steps, losses)   # the uninterrupted run goes on
    else:
        state = mgr.restore()
        loader = DataLoader(TensorDataset(X, Y), batch_size=16, shuffle=True, seed=7)
        loader.load_state_dict(state["loader"])
        losses = []
        state = run(state, loader, batches(loader), m_steps, losses)
    funcnet.save({"state": state, "losses": losses}, out)
''')


def _run(script, *args):
    root = os.path.dirname(os.path.dirname(funcnet.__file__))
    env = {**os.environ, "PYTHONPATH": root, "JAX_PLATFORMS": "cpu"}
    subprocess.run([sys.executable, str(script), *map(str, args)], check=True, env=env, timeout=120)


@pytest.mark.slow
@pytest.mark.subprocess
def test_resumed_run_is_bit_identical_to_an_uninterrupted_one(tmp_path, monkeypatch):
    from test_serialization import assert_identical

    script = tmp_path / "train.py"
    script.write_text(_TRAIN)
    n, m = 5, 6
    # N+M uninterrupted steps (with a checkpoint after N) here; the resume in a fresh process
    monkeypatch.setattr(sys, "argv", [str(script), "first", str(tmp_path / "ckpts"), str(n), str(m),
                                      str(tmp_path / "full.fnc")])
    runpy.run_path(str(script), run_name="__main__")
    _run(script, "resume", tmp_path / "ckpts", n, m, tmp_path / "resumed.fnc")
    full, resumed = funcnet.load(tmp_path / "full.fnc"), funcnet.load(tmp_path / "resumed.fnc")
    assert resumed["state"]["step"] == full["state"]["step"] == n + m
    assert resumed["state"]["loader"] == full["state"]["loader"] and full["state"]["epoch"] == 3
    assert resumed["losses"] == full["losses"][n:]
    assert_identical(resumed["state"], full["state"])
    # and the run did move: the last M steps changed every parameter and the running statistics
    # (else a resume that restored nothing to train would pass), and BatchNorm counted the steps
    at_n = CheckpointManager(tmp_path / "ckpts").restore(n)
    assert at_n["step"] == n
    moved = jax.tree.map(lambda a, b: bool(np.any(np.asarray(a) != np.asarray(b))),
                         {"params": at_n["params"], "bn": at_n["buffers"]["bn"]},
                         {"params": full["state"]["params"], "bn": full["state"]["buffers"]["bn"]})
    assert all(jax.tree.leaves(moved)), moved
    assert full["state"]["buffers"]["bn"]["num_batches_tracked"] == n + m
    assert isinstance(full["state"]["opt_state"][1][0], optax.ScaleByAdamState)


def test_resume_needs_the_rng_key_and_optimizer_state(tmp_path):
    """The in-process counterpart: dropping any part of the state changes the continuation."""
    tx = optax.adam(0.1)
    params = {"w": jnp.ones(3)}
    state = {"params": params, "opt": tx.init(params), "key": jax.random.key(0)}

    def step(s):
        key, sub = jax.random.split(s["key"])
        g = {"w": jax.random.normal(sub, (3,))}
        u, opt = tx.update(g, s["opt"], s["params"])
        return {"params": optax.apply_updates(s["params"], u), "opt": opt, "key": key}

    for _ in range(3):
        state = step(state)
    mgr = CheckpointManager(tmp_path)
    mgr.save(3, state)
    restored = mgr.restore()
    a, b = step(state), step(restored)
    np.testing.assert_array_equal(a["params"]["w"], b["params"]["w"])
    c = step({**restored, "key": jax.random.key(0)})
    d = step({**restored, "opt": tx.init(params)})
    assert not np.array_equal(a["params"]["w"], c["params"]["w"])
    assert not np.array_equal(a["params"]["w"], d["params"]["w"])


_SHARDED = textwrap.dedent('''
    import os, sys
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
    import jax, numpy as np
    from jax.sharding import NamedSharding, PartitionSpec as P
    import funcnet
    from funcnet.checkpoint import CheckpointManager

    mesh = jax.make_mesh((4,), ("d",))
    rows = NamedSharding(mesh, P("d"))
    state = {
        "w": jax.device_put(np.arange(32, dtype=np.float32).reshape(8, 4), rows),
        "keys": jax.device_put(jax.random.split(jax.random.key(0), 8), rows),
        "devices": len(jax.devices()),
    }
    funcnet.save(state, sys.argv[1])
    mgr = CheckpointManager(sys.argv[2])
    mgr.save(1, state)
    back = mgr.restore(target=state)
    assert back["w"].sharding == rows and back["keys"].sharding == rows, (back["w"].sharding, rows)
    np.testing.assert_array_equal(back["w"], state["w"])
    print("ok")
''')


@pytest.mark.slow
@pytest.mark.subprocess
def test_sharded_arrays_save_and_load_on_one_device(tmp_path):
    script = tmp_path / "sharded.py"
    script.write_text(_SHARDED)
    _run(script, tmp_path / "sharded.fnc", tmp_path / "ckpts")
    assert len(jax.devices()) == 1
    back = funcnet.load(tmp_path / "sharded.fnc")
    assert back["devices"] == 4
    np.testing.assert_array_equal(back["w"], np.arange(32, dtype=np.float32).reshape(8, 4))
    np.testing.assert_array_equal(jax.random.key_data(back["keys"]),
                                  jax.random.key_data(jax.random.split(jax.random.key(0), 8)))
    restored = CheckpointManager(tmp_path / "ckpts").restore()
    np.testing.assert_array_equal(restored["w"], back["w"])
