"""funcnet.train: compiled steps, the compiled epoch, fit, metrics and callbacks."""

import csv
import json
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import funcnet.nn as nn
from funcnet.train import (
    CSVLogger,
    EarlyStopping,
    JSONLogger,
    NonFiniteLossError,
    TrainState,
    fit,
    make_epoch_fn,
    make_eval_step,
    make_train_step,
    metrics,
)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(16, 32)
        self.bn = nn.BatchNorm1d(32)
        self.drop = nn.Dropout(0.2)
        self.fc2 = nn.Linear(32, 4)

    def forward(self, x):
        return self.fc2(self.drop(jax.nn.relu(self.bn(self.fc1(x)))))


def cross_entropy(logits, target):
    return optax.softmax_cross_entropy_with_integer_labels(logits, target).mean()


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 16)).astype(np.float32)
    y = (x[:, :4].argmax(1)).astype(np.int32)
    return x, y


def batches(x, y, order, batch_size):
    return [(x[order[i:i + batch_size]], y[order[i:i + batch_size]]) for i in range(0, len(order), batch_size)]


def test_compiled_epoch_equals_step_loop_bit_for_bit(data):
    x, y = data
    model, optimizer = Net(), optax.sgd(0.1, momentum=0.9)
    start = TrainState.create(model, optimizer, jax.random.key(0))
    step = make_train_step(model, cross_entropy, optimizer, donate=False)
    epoch = make_epoch_fn(model, cross_entropy, optimizer, donate=False)
    order = np.random.default_rng(1).permutation(len(x))
    full, tail = order[:288].reshape(9, 32), order[288:]

    state, running = start, metrics.empty()
    for batch in batches(x, y, order, 32):
        state, running = step.accumulate(state, running, batch)
    compiled, compiled_running = epoch(start, (jnp.asarray(x), jnp.asarray(y)), jnp.asarray(full), jnp.asarray(tail))

    same = jax.tree.map(lambda a, b: np.array_equal(np.asarray(a), np.asarray(b)),
                        (state.params, state.buffers, state.step), (compiled.params, compiled.buffers, compiled.step))
    assert all(jax.tree.leaves(same)), same
    assert metrics.compute(running) == metrics.compute(compiled_running)
    assert int(compiled.step) == 10


def test_train_step_learns_and_eval_step_counts(data):
    x, y = data
    model, optimizer = Net(), optax.adam(1e-2)
    state = TrainState.create(model, optimizer, jax.random.key(0))
    step = make_train_step(model, cross_entropy, optimizer, topk=(2,))
    evaluate = make_eval_step(model, cross_entropy, topk=(2,))
    before = metrics.compute(evaluate(state, (x, y)))
    for _ in range(100):
        state, m = step(state, (x, y))
    after = metrics.compute(evaluate(state, (x, y)))
    assert after["loss"] < 0.5 * before["loss"] and after["accuracy"] > 0.9
    assert after["top2_accuracy"] >= after["accuracy"] and after["samples"] == len(x)
    assert int(state.step) == 100


def test_metrics_accumulate_like_a_plain_mean():
    logits = jnp.asarray([[2.0, 0.0], [0.0, 1.0], [3.0, 1.0]])
    target = jnp.asarray([0, 0, 0])
    a = metrics.batch_metrics(jnp.asarray(1.5), logits[:2], target[:2], jnp.asarray(0))
    b = metrics.batch_metrics(jnp.asarray(0.3), logits[2:], target[2:], jnp.asarray(1))
    values = metrics.compute(metrics.merge(a, b))
    assert values["samples"] == 3
    np.testing.assert_allclose(values["loss"], (1.5 * 2 + 0.3) / 3, rtol=1e-6)
    np.testing.assert_allclose(values["accuracy"], 2 / 3)


def test_fit_history_callbacks_and_logs(data, tmp_path):
    x, y = data
    model, optimizer = Net(), optax.inject_hyperparams(optax.sgd)(learning_rate=0.05)
    state = TrainState.create(model, optimizer, jax.random.key(0))
    loader = batches(x, y, np.arange(len(x)), 50)
    state, history = fit(model, state, loader, loss_fn=cross_entropy, optimizer=optimizer, epochs=3,
                         val_loader=loader[:2], progress=False,
                         callbacks=[CSVLogger(tmp_path / "log.csv"), JSONLogger(tmp_path / "log.json")])
    assert [h["epoch"] for h in history] == [0, 1, 2]
    assert history[-1]["loss"] < history[0]["loss"]
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "lr", "time", "samples"} <= set(history[0])
    np.testing.assert_allclose(history[0]["lr"], 0.05)
    rows = list(csv.DictReader(open(tmp_path / "log.csv")))
    assert len(rows) == 3 and float(rows[2]["loss"]) == pytest.approx(history[2]["loss"])
    assert json.load(open(tmp_path / "log.json"))[1]["epoch"] == 1
    assert int(state.step) == 3 * len(loader)


def test_progress_bar_shows_steps_loss_lr_and_epoch_line(data, capsys):
    import funcnet.optim as optim

    x, y = data
    model, optimizer = Net(), optim.SGD(lr=optim.lr_scheduler.StepLR(0.1, step_size=3, gamma=0.5))
    state = TrainState.create(model, optimizer, jax.random.key(0))
    loader = batches(x, y, np.arange(len(x)), 30)  # 10 steps
    fit(model, state, loader, loss_fn=cross_entropy, optimizer=optimizer, epochs=1, sync_every=4)
    err = capsys.readouterr().err
    assert "10/10" in err and re.search(r"loss=\d+\.\d{4}", err) and "lr=0.0125" in err, err  # 0.1·0.5^(10//3)
    assert re.search(r"epoch 1/1  loss \d+\.\d{4}  accuracy 0\.\d+  lr 0\.0125", err), err


def test_early_stopping_stops():
    stopper = EarlyStopping(monitor="val_loss", patience=2)
    results = [stopper.on_epoch_end(i, None, {"val_loss": v}) for i, v in enumerate([1.0, 0.9, 0.95, 0.91])]
    assert results == [False, False, False, True]


def test_nonfinite_loss_stops_with_named_epoch_and_step(data):
    x, y = data
    model, optimizer = Net(), optax.sgd(0.1)
    state = TrainState.create(model, optimizer, jax.random.key(0))
    x = x.copy()
    loader = batches(x, y, np.arange(len(x)), 30)
    poisoned = list(loader)
    bad_x = poisoned[7][0].copy()
    bad_x[0, 0] = np.nan
    poisoned[7] = (bad_x, poisoned[7][1])
    epoch_two = [poisoned if i == 1 else loader for i in range(3)]

    class Loader:
        epoch = 0

        def set_epoch(self, epoch):
            self.epoch = epoch

        def __len__(self):
            return len(loader)

        def __iter__(self):
            return iter(epoch_two[self.epoch])

    with pytest.raises(NonFiniteLossError,
                       match=r"in epoch 2, step 7 of the epoch \(global step 17, history epoch 1\)"):
        fit(model, state, Loader(), loss_fn=cross_entropy, optimizer=optimizer, epochs=3, progress=False)


def test_nonfinite_loss_stops_within_two_sync_intervals(data):
    # fit reads the metrics of the previous sync point (never waiting for the newest step), so a
    # NaN at step 7 is seen at most 2 * sync_every steps later — long before the epoch ends.
    x, y = data
    model, optimizer = Net(), optax.sgd(0.1)
    state = TrainState.create(model, optimizer, jax.random.key(0))
    good = batches(x, y, np.arange(len(x)), 3)  # 100 batches
    bad_x = good[7][0].copy()
    bad_x[1, 2] = np.inf
    epoch = [*good[:7], (bad_x, good[7][1]), *good[8:]]
    taken = []

    def loader():
        for i, b in enumerate(epoch):
            taken.append(i)
            yield b

    with pytest.raises(NonFiniteLossError, match=r"in epoch 1 \(global step 7, history epoch 0\)"):
        fit(model, state, loader(), loss_fn=cross_entropy, optimizer=optimizer, epochs=1, progress=False,
            sync_every=2)
    assert len(taken) <= 8 + 2 * 2, len(taken)


def test_accumulate_leaves_the_running_metrics_readable(data):
    x, y = data
    model, optimizer = Net(), optax.sgd(0.1)
    step = make_train_step(model, cross_entropy, optimizer)
    state = TrainState.create(model, optimizer, jax.random.key(0))
    first = metrics.empty()
    state, second = step.accumulate(state, first, (x[:30], y[:30]))
    state, third = step.accumulate(state, second, (x[30:60], y[30:60]))
    assert metrics.compute(second)["samples"] == 30 and metrics.compute(third)["samples"] == 60
    assert metrics.compute(first)["samples"] == 0


def test_keyboard_interrupt_returns_history(data):
    x, y = data
    model, optimizer = Net(), optax.sgd(0.1)
    state = TrainState.create(model, optimizer, jax.random.key(0))
    loader = batches(x, y, np.arange(len(x)), 100)

    class Interrupting:
        epoch = 0

        def set_epoch(self, epoch):
            self.epoch = epoch

        def __iter__(self):
            if self.epoch == 2:
                raise KeyboardInterrupt
            return iter(loader)

    state, history = fit(model, state, Interrupting(), loss_fn=cross_entropy, optimizer=optimizer, epochs=5,
                         progress=False)
    assert len(history) == 2 and int(state.step) == 2 * len(loader)


def test_fit_compiled_mode_equals_step_mode_with_a_dataloader(data):
    from funcnet.utils.data import DataLoader, TensorDataset

    x, y = data
    model, optimizer = Net(), optax.sgd(0.05, momentum=0.9)
    results = []
    for compiled in (False, True):
        loader = DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True, seed=3)  # 300 = 4·64 + 44
        state = TrainState.create(model, optimizer, jax.random.key(0))
        state, history = fit(model, state, loader, loss_fn=cross_entropy, optimizer=optimizer, epochs=2,
                             progress=False, compiled=compiled)
        results.append((state, history))
    (a, ha), (b, hb) = results
    same = jax.tree.map(lambda u, v: np.array_equal(np.asarray(u), np.asarray(v)),
                        (a.params, a.buffers, a.step), (b.params, b.buffers, b.step))
    assert all(jax.tree.leaves(same)), same
    assert [h["loss"] for h in ha] == [h["loss"] for h in hb]


@pytest.mark.parametrize("mode", ["compiled", "device_loader"])
def test_training_compiles_once_across_epochs(data, mode):
    # Data on the default device stays uncommitted, like a fresh TrainState: the second epoch (or
    # step) must not compile again for committed outputs (it cost 0.4 s per run before).
    from funcnet.train.fit import _cached_steps
    from funcnet.utils.data import DataLoader, TensorDataset

    x, y = data
    model, optimizer = Net(), optax.sgd(0.05)
    loader = DataLoader(TensorDataset(x, y), batch_size=50, shuffle=True, device=mode == "device_loader")
    state = TrainState.create(model, optimizer, jax.random.key(0))
    state, _ = fit(model, state, loader, loss_fn=cross_entropy, optimizer=optimizer, epochs=3, progress=False,
                   compiled=mode == "compiled")
    train_step, _, epoch_fn = _cached_steps(model, cross_entropy, optimizer, (), None, None, (),
                                            mode == "compiled", False)
    compiled_fn = epoch_fn if mode == "compiled" else train_step._accumulate
    assert compiled_fn._cache_size() == 1
