"""``fit`` resumes exactly from a restored loader and state (issue 17, points 2 and 8).

A run is interrupted mid-epoch (Ctrl-C while the loader fetches a batch), checkpointed with
``funcnet.save``, and resumed in a new Python process by the very same ``fit`` call: the final
parameters are bit-identical to a run that never stopped, the resumed epoch sees only the samples
it had left, and the history numbers epochs as they are (0-based), the printed text from 1.
"""

import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

import funcnet
from funcnet.train import fit
from funcnet.utils.data import DataLoader

# The run, shared by this process and the resuming one (which gets it as source text).
SETUP = textwrap.dedent("""
    import jax, numpy as np, funcnet, funcnet.nn as nn
    from funcnet.optim.lr_scheduler import OneCycleLR
    from funcnet.train import TrainState, fit
    from funcnet.utils.data import DataLoader, TensorDataset

    EPOCHS, BATCH = 3, 32
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 8)).astype(np.float32)     # 300 = 9 * 32 + 12: a partial last batch
    Y = (X[:, 0] + X[:, 1] > 0).astype(np.int32) + (X[:, 2] > 1).astype(np.int32)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 3))
    criterion = nn.CrossEntropyLoss()
    optimizer = funcnet.optim.Adam(lr=OneCycleLR(0.05, total_steps=EPOCHS * 10))

    def loader(cls=DataLoader):
        return cls(TensorDataset(X, Y), batch_size=BATCH, shuffle=True, seed=7)

    def train(state, data, **kw):
        return fit(model, state, data, loss_fn=criterion, optimizer=optimizer, epochs=EPOCHS,
                   progress=False, **kw)
""")

RESUME = SETUP + textwrap.dedent("""
    import sys
    saved = funcnet.load(sys.argv[1])
    data = loader()
    data.load_state_dict(saved["loader"])
    state, history = train(saved["state"], data, compiled=sys.argv[3] == "compiled")
    np.savez(sys.argv[2], **{k: np.asarray(v) for k, v in model.state_dict(state).items()})
    print(json.dumps([[h["epoch"], h["samples"]] for h in history]))
""").replace("import sys", "import sys, json")

run = {}
exec(SETUP, run)  # noqa: S102 - our own source text, the same the subprocess runs


class StopsMidEpoch(DataLoader):
    """Raises KeyboardInterrupt (as Ctrl-C would) while fetching batch 4 of epoch 1."""

    def __iter__(self):
        inner = super().__iter__()
        while True:
            if self.epoch == 1 and self.state_dict()["batches_done"] == 4:
                raise KeyboardInterrupt
            try:
                batch = next(inner)
            except StopIteration:
                return
            yield batch


@pytest.fixture(scope="module")
def uninterrupted():
    state = funcnet.train.TrainState.create(run["model"], run["optimizer"], jax.random.key(0))
    state, history = run["train"](state, run["loader"]())
    return run["model"].state_dict(state), history


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    state = funcnet.train.TrainState.create(run["model"], run["optimizer"], jax.random.key(0))
    data = run["loader"](StopsMidEpoch)
    state, history = run["train"](state, data)
    assert [h["epoch"] for h in history] == [0] and int(state.step) == 14
    assert data.state_dict()["epoch"] == 1 and data.state_dict()["batches_done"] == 4
    path = tmp_path_factory.mktemp("ckpt") / "run.fn"
    funcnet.save({"state": state, "loader": data.state_dict()}, path)
    return path


def _same(a, b):
    assert list(a) == list(b)
    for k in a:
        np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]), err_msg=k)


@pytest.mark.slow
@pytest.mark.subprocess
def test_fit_resumed_mid_epoch_in_a_new_process_is_bit_identical(uninterrupted, checkpoint, tmp_path):
    out = tmp_path / "resumed.npz"
    proc = subprocess.run([sys.executable, "-c", RESUME, str(checkpoint), str(out), "steps"],
                          capture_output=True, text=True, timeout=300, env=os.environ.copy())
    assert proc.returncode == 0, proc.stderr[-3000:]
    epochs = json.loads(proc.stdout.strip().splitlines()[-1])
    # The resumed epoch 1 saw the 300 - 4 * 32 samples it had left; history keeps epoch numbers.
    assert epochs == [[1, 300 - 4 * 32], [2, 300]], epochs
    _same(dict(np.load(out)), uninterrupted[0])


@pytest.mark.slow
def test_compiled_fit_resumes_the_same_checkpoint_identically(uninterrupted, checkpoint):
    saved = funcnet.load(checkpoint)
    data = run["loader"]()
    data.load_state_dict(saved["loader"])
    state, history = run["train"](saved["state"], data, compiled=True)
    assert [h["epoch"] for h in history] == [1, 2]
    _same(run["model"].state_dict(state), uninterrupted[0])
    assert data.state_dict()["epoch"] == 3  # the loader stands after the run, as in step mode


def test_epochs_are_numbered_as_they_are(uninterrupted, capsys):
    history = uninterrupted[1]
    assert [h["epoch"] for h in history] == [0, 1, 2]
    state = funcnet.train.TrainState.create(run["model"], run["optimizer"], jax.random.key(0))
    data = run["loader"]()
    data.set_epoch(2)  # e.g. restored after two finished epochs
    state, history = fit(run["model"], state, data, loss_fn=run["criterion"], optimizer=run["optimizer"],
                         epochs=3, progress=True)
    assert [h["epoch"] for h in history] == [2]
    assert "epoch 3/3  loss" in capsys.readouterr().err
    with pytest.raises(ValueError, match="epochs=3 is the total number of epochs.*stands at epoch 3"):
        fit(run["model"], state, data, loss_fn=run["criterion"], optimizer=run["optimizer"], epochs=3)


def test_a_restored_state_with_a_fresh_loader_warns(checkpoint):
    saved = funcnet.load(checkpoint)
    with pytest.warns(UserWarning, match=r"state.step is 14, but the loader stands at epoch 0, batch 0"):
        fit(run["model"], saved["state"], run["loader"](), loss_fn=run["criterion"], optimizer=run["optimizer"],
            epochs=1, progress=False)


def test_ctrl_c_mid_epoch_returns_a_live_state(checkpoint):
    # Before, fit returned the state it had at the start of the epoch: donated, hence deleted.
    saved = funcnet.load(checkpoint)
    assert not any(leaf.is_deleted() for leaf in jax.tree.leaves(saved["state"]) if hasattr(leaf, "is_deleted"))
    state = funcnet.train.TrainState.create(run["model"], run["optimizer"], jax.random.key(0))
    state, _ = run["train"](state, run["loader"](StopsMidEpoch))
    assert int(state.step) == 14
