"""What a PyTorch user tries in the first hour with ``funcnet.train`` (issue 17, points 3-7):
a fixed-horizon schedule refuses to run past its end with torch's error, metrics read the obvious
ways, a mismatched optimizer and a reused (donated) state say what happened, an int seed works."""

import jax
import numpy as np
import pytest

import funcnet
import funcnet.nn as nn
from funcnet.optim.lr_scheduler import OneCycleLR, per_epoch
from funcnet.train import TrainState, fit, make_eval_step, make_train_step, metrics
from funcnet.utils.data import DataLoader, TensorDataset

rng = np.random.default_rng(0)
X = rng.normal(size=(64, 6)).astype(np.float32)
Y = rng.integers(0, 3, size=64).astype(np.int32)
model = nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 3))
criterion = nn.CrossEntropyLoss()


def torch_error_past(total_steps: int) -> str:
    torch = pytest.importorskip("torch")
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=total_steps)
    with pytest.raises(ValueError) as info:
        for _ in range(total_steps + 1):
            opt.step()
            sched.step()
    return str(info.value)


def test_train_step_refuses_the_update_past_one_cycle_with_torchs_error():
    opt = funcnet.optim.SGD(lr=OneCycleLR(0.1, total_steps=5))
    step = make_train_step(model, criterion, opt)
    state = TrainState.create(model, opt, jax.random.key(0))
    for _ in range(5):
        state, _ = step(state, (X, Y))
    with pytest.raises(ValueError) as info:
        step(state, (X, Y))
    assert str(info.value).startswith(torch_error_past(5))  # "Tried to step 6 times. ... is 5"
    assert int(state.step) == 5  # refused before running: the state is intact
    np.testing.assert_array_equal(np.asarray(funcnet.optim.get_lr(state.opt_state)),
                                  np.asarray(OneCycleLR(0.1, total_steps=5)(5)))


def test_fit_checks_the_horizon_before_any_step():
    loader = DataLoader(TensorDataset(X, Y), batch_size=16, shuffle=True)  # 4 steps per epoch
    opt = funcnet.optim.Adam(lr=OneCycleLR(0.01, epochs=2, steps_per_epoch=4))
    state = TrainState.create(model, opt, jax.random.key(0))
    with pytest.raises(ValueError, match=r"^Tried to step 9 times. The specified number of total steps is 8"):
        fit(model, state, loader, loss_fn=criterion, optimizer=opt, epochs=3, progress=False)
    assert int(state.step) == 0  # nothing ran (the state was not donated)
    state, history = fit(model, state, loader, loss_fn=criterion, optimizer=opt, epochs=2, progress=False)
    assert int(state.step) == 8 and len(history) == 2
    # per_epoch: the horizon counts scheduler steps (epochs), as torch would for a per-epoch step()
    opt = funcnet.optim.SGD(lr=per_epoch(OneCycleLR(0.1, total_steps=2), 4))
    with pytest.raises(ValueError, match=r"^Tried to step 3 times. The specified number of total steps is 2"):
        fit(model, TrainState.create(model, opt, jax.random.key(0)), DataLoader(TensorDataset(X, Y), batch_size=16),
            loss_fn=criterion, optimizer=opt, epochs=3, progress=False)


def test_schedules_state_their_horizon():
    assert OneCycleLR(0.1, total_steps=69).horizon == 69
    assert OneCycleLR(0.1, epochs=3, steps_per_epoch=23).horizon == 69
    assert per_epoch(OneCycleLR(0.1, total_steps=3), 10).horizon == 30
    assert funcnet.optim.lr_scheduler.StepLR(0.1, step_size=3).horizon is None
    seq = funcnet.optim.lr_scheduler.SequentialLR(
        [funcnet.optim.lr_scheduler.ConstantLR(0.1, total_iters=2), OneCycleLR(0.1, total_steps=5)], [2])
    assert seq.horizon == 7
    assert funcnet.optim.lr_scheduler.optimizer_horizon(funcnet.optim.param_groups(
        funcnet.optim.SGD, [{"params": "0", "lr": 0.01}], lr=OneCycleLR(0.1, total_steps=9))) == 9


def test_metrics_read_the_obvious_ways():
    opt = funcnet.optim.SGD(lr=0.1)
    state = TrainState.create(model, opt, jax.random.key(0))
    logits = model.apply(state.params, X)
    loss = float(criterion(logits, Y))
    accuracy = float(np.mean(np.argmax(np.asarray(logits), -1) == Y))
    state, m = make_train_step(model, criterion, opt)(state, (X, Y))
    np.testing.assert_allclose([m["loss"], float(m), metrics.compute(m)["loss"], m.compute()["loss"]],
                               loss, rtol=1e-6)
    assert m["accuracy"] == accuracy and m["samples"] == 64
    assert dict(m) == metrics.compute(m)
    assert repr(m).startswith("Metrics(loss=") and "accuracy=" in repr(m)
    with pytest.raises(KeyError, match="not 'acc'"):
        m["acc"]
    # Sums over batches: merge / accumulate average per sample.
    evaluate = make_eval_step(model, criterion)
    running = metrics.empty()
    for i in range(0, 64, 16):
        running = evaluate.accumulate(state, running, (X[i:i + 16], Y[i:i + 16]))
    np.testing.assert_allclose(running["loss"], evaluate(state, (X, Y))["loss"], rtol=1e-6)


def test_a_different_optimizer_in_the_step_says_so():
    state = TrainState.create(model, funcnet.optim.Adam(lr=1e-3), jax.random.key(0))
    step = make_train_step(model, criterion, funcnet.optim.SGD(lr=0.1, momentum=0.9))
    with pytest.raises(TypeError, match="not the one state.opt_state was made with"):
        step(state, (X, Y))
    with pytest.raises(TypeError, match="not the one state.opt_state was made with"):
        fit(model, state, [(X, Y)], loss_fn=criterion, optimizer=funcnet.optim.SGD(lr=0.1), epochs=1,
            progress=False)


def test_reusing_a_donated_state_says_it_was_consumed():
    opt = funcnet.optim.SGD(lr=0.1)
    step = make_train_step(model, criterion, opt)
    state = TrainState.create(model, opt, jax.random.key(0))
    new_state, _ = step(state, (X, Y))
    for again in (lambda: step(state, (X, Y)), lambda: step.accumulate(state, metrics.empty(), (X, Y)),
                  lambda: make_eval_step(model, criterion)(state, (X, Y)),
                  lambda: fit(model, state, [(X, Y)], loss_fn=criterion, optimizer=opt, epochs=1, progress=False)):
        with pytest.raises(RuntimeError, match="consumed by a previous train step.*use the state it returned"):
            again()
    step(new_state, (X, Y))  # the returned one works


def test_an_int_seed_is_jax_random_key_of_it():
    opt = funcnet.optim.SGD(lr=0.1)
    a = TrainState.create(model, opt, 0)
    b = TrainState.create(model, opt, jax.random.key(0))
    assert all(jax.tree.leaves(jax.tree.map(lambda u, v: np.array_equal(u, v), a.params, b.params)))
    np.testing.assert_array_equal(jax.random.key_data(a.key), jax.random.key_data(b.key))
    with pytest.raises(TypeError, match="int seed"):
        TrainState.create(model, opt, "0")
