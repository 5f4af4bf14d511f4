"""funcnet.train.ModelCheckpoint (through fit and directly) and distributed.main_process_only."""

import jax
import numpy as np
import optax
import pytest

import funcnet.nn as nn
from funcnet import distributed
from funcnet.checkpoint import CheckpointManager
from funcnet.nn.functional import cross_entropy
from funcnet.train import ModelCheckpoint, TrainState, fit


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(x)


def test_model_checkpoint_saves_every_n_epochs_through_fit(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((40, 4)).astype(np.float32), rng.integers(0, 3, 40)
    loader = [(x[i:i + 10], y[i:i + 10]) for i in range(0, 40, 10)]
    model, optimizer = Tiny(), optax.sgd(0.1)
    state = TrainState.create(model, optimizer, jax.random.key(0))
    calls = []
    cb = ModelCheckpoint(tmp_path / "ckpt", every=2, monitor="loss",
                         extra=lambda: calls.append(1) or {"loader": {"position": len(calls)}})
    state, history = fit(model, state, loader, loss_fn=cross_entropy, optimizer=optimizer, epochs=5,
                         progress=False, callbacks=[cb])
    mgr = CheckpointManager(tmp_path / "ckpt")
    assert mgr.steps() == [2, 4]  # epochs 2 and 4 (1-based), not 1, 3, 5
    assert len(calls) == 2
    saved = mgr.restore(4)
    assert saved["epoch"] == 3 and saved["loader"] == {"position": 2}
    assert saved["logs"]["loss"] == history[3]["loss"]
    assert mgr.steps() == [2, 4] and [i.metrics for i in mgr.checkpoints()] == [
        {"loss": history[1]["loss"]}, {"loss": history[3]["loss"]}]
    # the state saved after epoch 4 is the state fit had then: one more epoch of SGD moves it
    final = np.asarray(state.params["fc"]["weight"])
    at_4 = np.asarray(saved["state"].params["fc"]["weight"])
    assert at_4.shape == final.shape and not np.array_equal(at_4, final)
    assert saved["state"].step == 16


def test_model_checkpoint_accepts_a_manager_and_saves_without_monitor(tmp_path):
    mgr = CheckpointManager(tmp_path, keep=1)
    cb = ModelCheckpoint(mgr)
    assert cb.manager is mgr
    for epoch in range(3):
        cb.on_epoch_end(epoch, {"w": np.full(2, float(epoch))}, {"loss": 1.0 / (epoch + 1)})
    assert mgr.steps() == [3]  # keep=1: the last only
    restored = mgr.restore()
    np.testing.assert_array_equal(restored["state"]["w"], [2.0, 2.0])
    assert restored["epoch"] == 2 and restored["logs"] == {"loss": 1.0 / 3}


def test_main_process_only_runs_on_process_zero_only(monkeypatch):
    calls = []

    @distributed.main_process_only
    def record(a, b=0):
        """Docstring kept."""
        calls.append((a, b))
        return a + b

    assert record.__name__ == "record" and record.__doc__ == "Docstring kept."
    assert record(1, b=2) == 3 and calls == [(1, 2)]
    monkeypatch.setattr(jax, "process_index", lambda: 1)  # another process of a job
    assert not distributed.is_main_process()
    assert record(5) is None and calls == [(1, 2)]
    monkeypatch.setattr(jax, "process_index", lambda: 0)
    assert record(5) == 5 and calls == [(1, 2), (5, 0)]


def test_print0_prints_on_process_zero_only(monkeypatch, capsys):
    distributed.print0("hello", 3)
    monkeypatch.setattr(jax, "process_index", lambda: 2)
    distributed.print0("not shown")
    assert capsys.readouterr().out == "hello 3\n"


@pytest.mark.parametrize("every", [0, -1, 1.5, True])
def test_model_checkpoint_refuses_a_cadence_that_is_not_a_positive_int(tmp_path, every):
    with pytest.raises(ValueError, match="every must be a positive number of epochs"):
        ModelCheckpoint(tmp_path / "ckpt", every=every)
