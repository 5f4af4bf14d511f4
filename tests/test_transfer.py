"""Transfer learning: load_backbone, the frozen train step (trainable=), and the examples."""

from __future__ import annotations

import re

import jax
import numpy as np
import optax
import pytest
from conftest import load_example, run_example

import funcnet.nn as nn
import funcnet.optim as optim
from funcnet.datasets import Digits
from funcnet.nn.transfer import LoadReport, load_backbone
from funcnet.nn.utils import named_leaves
from funcnet.train import TrainState, evaluate, make_epoch_fn, make_train_step
from funcnet.utils.data import DataLoader, TensorDataset


class Net(nn.Module):
    """A tiny CNN: ``backbone`` (conv, BN, ReLU, max-pool, flatten: 8*4*4 features) and a linear head."""

    def __init__(self, num_classes: int = 5):
        super().__init__()
        self.backbone = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten()
        )
        self.head = nn.Linear(128, num_classes)

    def forward(self, x):
        return self.head(self.backbone(x))


BACKBONE_KEYS = [
    "backbone.0.weight", "backbone.0.bias", "backbone.1.weight", "backbone.1.bias",
    "backbone.1.running_mean", "backbone.1.running_var", "backbone.1.num_batches_tracked",
]


def digits(train: bool, classes: range, shots: int | None = None, seed: int = 0):
    images, labels = Digits(train=train).tensors
    rng = np.random.default_rng(seed)
    keep = []
    for c in classes:
        idx = np.flatnonzero(labels == c)
        keep.append(idx if shots is None else rng.choice(idx, shots, replace=False))
    keep = np.sort(np.concatenate(keep))
    return images[keep], (labels[keep] - classes.start).astype(np.int32)


def batch(n: int = 10, seed: int = 0):
    x, y = digits(True, range(5, 10))
    idx = np.random.default_rng(seed).choice(len(x), n, replace=False)
    return x[idx], y[idx]


def random_state_dict(model: nn.Module, seed: int) -> dict:
    """A state dict of the right shapes whose values differ from any init."""
    v = model.init(jax.random.key(seed))
    return {k: np.asarray(a) + (0 if a.dtype.kind == "i" else 0.5) for k, a in model.state_dict(v).items()}


# -- load_backbone ----------------------------------------------------------------------------


def test_load_backbone_loads_backbone_and_keeps_fresh_head():
    model = Net()
    pretrained = random_state_dict(Net(), seed=1)  # a full Net state dict: backbone.* and head.*
    fresh = model.init(jax.random.key(2))
    fresh_head = {k: np.asarray(v) for k, v in fresh.params["head"].items()}
    variables, report = load_backbone(model, pretrained, fresh)

    assert isinstance(report, LoadReport)
    assert report.loaded == BACKBONE_KEYS
    assert report.missing == ["head.weight", "head.bias"]
    assert report.unexpected == []
    assert report.ignored == ["head.weight", "head.bias"]
    assert report.loaded_values == 8 * 9 + 8 + 4 * 8 + 1
    assert report.incompatible_keys == nn.IncompatibleKeys(["head.weight", "head.bias"], [])
    sd = model.state_dict(variables)
    for k in BACKBONE_KEYS:
        np.testing.assert_array_equal(np.asarray(sd[k]), pretrained[k])
    np.testing.assert_array_equal(np.asarray(sd["head.weight"]), fresh_head["weight"])
    np.testing.assert_array_equal(np.asarray(sd["head.bias"]), fresh_head["bias"])
    text = str(report)
    assert "loaded 7 tensors (113 values)" in text
    assert "missing 2 (kept from init): head.weight, head.bias" in text
    assert "ignored 2 (outside the prefix): head.weight, head.bias" in text


def test_load_backbone_renames_source_prefix_and_accepts_a_key():
    model = Net()
    bare = {k.removeprefix("backbone."): v for k, v in random_state_dict(Net(), 3).items() if k in BACKBONE_KEYS}
    variables, report = load_backbone(model, bare, jax.random.key(0), source_prefix="")
    assert report.loaded == BACKBONE_KEYS and report.ignored == []
    np.testing.assert_array_equal(np.asarray(variables.params["backbone"]["0"]["weight"]), bare["0.weight"])

    features = {"features." + k: v for k, v in bare.items()}
    features["classifier.weight"] = np.zeros((10, 128), np.float32)
    _, report = load_backbone(model, features, jax.random.key(0), source_prefix="features")
    assert report.loaded == BACKBONE_KEYS and report.ignored == ["classifier.weight"]


def test_load_backbone_strict_names_the_keys():
    model = Net()
    sd = random_state_dict(Net(), 4)
    with pytest.raises(RuntimeError, match=r'Missing key\(s\) under \'backbone\.\': "backbone\.0\.weight"'):
        load_backbone(model, sd, jax.random.key(0), source_prefix="features.")  # wrong prefix: nothing loads
    extra = {**sd, "backbone.9.weight": np.zeros(3, np.float32)}
    with pytest.raises(RuntimeError, match=r'Unexpected key\(s\) in state_dict: "backbone\.9\.weight"'):
        load_backbone(model, extra, jax.random.key(0))
    _, report = load_backbone(model, extra, jax.random.key(0), strict=False)
    assert report.unexpected == ["backbone.9.weight"]
    wrong = {**sd, "backbone.0.weight": np.zeros((8, 1, 5, 5), np.float32)}
    with pytest.raises(RuntimeError, match=r"size mismatch for backbone\.0\.weight"):
        load_backbone(model, wrong, jax.random.key(0), strict=False)  # as torch: even when not strict


# -- the frozen train step ---------------------------------------------------------------------


def _states(trainable="head", optimizer=None):
    model = Net()
    optimizer = optimizer or optim.SGD(lr=0.1, momentum=0.9)
    variables, _ = load_backbone(model, random_state_dict(Net(), 5), jax.random.key(6))
    state = TrainState.create(model, optimizer, jax.random.key(7), variables=variables, trainable=trainable)
    return model, optimizer, state


def test_frozen_backbone_is_bit_identical_and_head_trains():
    model, optimizer, state = _states()
    before = {k: np.asarray(v) for k, v in named_leaves(state.params)}
    step = make_train_step(model, nn.CrossEntropyLoss(), optimizer, trainable="head")
    for i in range(5):
        state, _ = step(state, batch(seed=i))
    after = dict(named_leaves(state.params))
    assert sorted(after) == sorted(before)
    for name in ("backbone.0.weight", "backbone.0.bias", "backbone.1.weight", "backbone.1.bias"):
        np.testing.assert_array_equal(np.asarray(after[name]), before[name])
    for name in ("head.weight", "head.bias"):
        assert not np.allclose(np.asarray(after[name]), before[name])
    # As in torch, requires_grad_(False) does not stop train-mode BatchNorm statistics.
    assert int(state.buffers["backbone"]["1"]["num_batches_tracked"]) == 5  # loaded 0, +5 steps


def test_optimizer_state_holds_only_the_head():
    _, _, state = _states()
    names = [name for name, leaf in named_leaves(state.opt_state) if np.ndim(leaf) > 0]
    assert names and all(".head." in f".{n}." for n in names), names
    shapes = sorted(np.shape(leaf) for leaf in jax.tree.leaves(state.opt_state) if np.ndim(leaf) > 0)
    assert shapes == [(5,), (5, 128)]  # SGD momentum buffers for head.bias and head.weight only


# XLA's convolution, and oneDNN's three (funcnet.onednn: forward, input and weight gradients)
CONV_PRIMITIVES = ("conv_general_dilated", "funcnet_onednn_conv", "funcnet_onednn_conv_backward_data",
                   "funcnet_onednn_conv_backward_weights")


def _conv_ops(jaxpr) -> int:
    count = 0
    for eqn in jaxpr.eqns:
        count += eqn.primitive.name in CONV_PRIMITIVES
        for value in eqn.params.values():
            inner = getattr(value, "jaxpr", None)
            if inner is not None and hasattr(inner, "eqns"):
                count += _conv_ops(inner)
            elif hasattr(value, "eqns"):
                count += _conv_ops(value)
    return count


def test_no_gradient_is_computed_for_the_frozen_backbone():
    model, optimizer, state = _states()
    frozen = make_train_step(model, nn.CrossEntropyLoss(), optimizer, trainable="head")
    frozen_jaxpr = jax.make_jaxpr(frozen.fn)(state, batch()).jaxpr
    _, _, full_state = _states(trainable=None)
    full = make_train_step(model, nn.CrossEntropyLoss(), optimizer)
    full_jaxpr = jax.make_jaxpr(full.fn)(full_state, batch()).jaxpr
    assert _conv_ops(frozen_jaxpr) == 1  # the forward convolution only
    assert _conv_ops(full_jaxpr) == 2  # forward + the gradient of the conv weight

    # The gradient tree the optimizer sees: capture it with a pass-through transform.
    seen = []

    def record(updates, opt_state, params=None):
        seen.append(sorted(n for n, _ in named_leaves(updates)))
        return updates, opt_state

    spy = optax.chain(optax.GradientTransformation(lambda p: optax.EmptyState(), record), optimizer)
    _, _, spy_state = _states(optimizer=spy)
    jax.make_jaxpr(make_train_step(model, nn.CrossEntropyLoss(), spy, trainable="head").fn)(spy_state, batch())
    assert seen == [["head.bias", "head.weight"]]


def test_trainable_everything_equals_the_default_step_bit_for_bit():
    model, optimizer, a = _states(trainable=None, optimizer=optim.Adam(lr=1e-2))
    _, _, b = _states(trainable=lambda name: True, optimizer=optim.Adam(lr=1e-2))
    default = make_train_step(model, nn.CrossEntropyLoss(), optimizer)
    split = make_train_step(model, nn.CrossEntropyLoss(), optimizer, trainable=lambda name: True)
    for i in range(3):
        a, ma = default(a, batch(seed=i))
        b, mb = split(b, batch(seed=i))
    for (na, la), (nb, lb) in zip(named_leaves((a.params, a.buffers)), named_leaves((b.params, b.buffers)),
                                  strict=True):
        assert na == nb
        np.testing.assert_array_equal(np.asarray(la), np.asarray(lb))
    np.testing.assert_array_equal(np.asarray(ma.loss_sum), np.asarray(mb.loss_sum))


def test_frozen_step_matches_optim_freeze():
    """Splitting (no backbone gradient) and optim.freeze (gradient discarded) give the same head."""
    adam = optim.Adam(lr=1e-2)
    model, _, split_state = _states(trainable="head", optimizer=adam)
    freeze = optim.freeze(adam, "backbone")
    _, _, freeze_state = _states(trainable=None, optimizer=freeze)
    split_step = make_train_step(model, nn.CrossEntropyLoss(), adam, trainable="head")
    freeze_step = make_train_step(model, nn.CrossEntropyLoss(), freeze)
    for i in range(3):
        split_state, _ = split_step(split_state, batch(seed=i))
        freeze_state, _ = freeze_step(freeze_state, batch(seed=i))
    for (na, la), (nb, lb) in zip(named_leaves(split_state.params), named_leaves(freeze_state.params), strict=True):
        assert na == nb
        np.testing.assert_allclose(np.asarray(la), np.asarray(lb), rtol=1e-6, atol=1e-7)


def test_compiled_epoch_with_trainable_freezes_the_backbone_too():
    model, optimizer, state = _states()
    x, y = digits(True, range(5, 10), shots=4)
    loader = DataLoader(TensorDataset(x, y), batch_size=5, shuffle=True, seed=0)
    step = make_train_step(model, nn.CrossEntropyLoss(), optimizer, trainable="head", donate=False)
    looped = state
    for b in loader:
        looped, _ = step(looped, b)
    epoch = make_epoch_fn(model, nn.CrossEntropyLoss(), optimizer, trainable="head", donate=False)
    compiled, _ = epoch(state, (jax.numpy.asarray(x), jax.numpy.asarray(y)), loader.epoch_indices(0))
    start = dict(named_leaves(state.params))
    for (na, la), (nb, lb) in zip(named_leaves(looped.params), named_leaves(compiled.params), strict=True):
        assert na == nb
        if na.startswith("backbone."):
            np.testing.assert_array_equal(np.asarray(lb), np.asarray(start[na]))
        else:  # XLA fuses a scan body differently from a lone step: float32 rounding only
            np.testing.assert_allclose(np.asarray(la), np.asarray(lb), rtol=1e-5, atol=1e-6)
            assert not np.allclose(np.asarray(lb), np.asarray(start[na]))


# -- does transfer help? -----------------------------------------------------------------------


def _example():
    """examples/transfer_learning.py as a module (its CNN, data subsets and comparison protocol)."""
    return load_example("transfer_learning")


def _example_net():
    """The CNN of examples/transfer_learning.py (two conv/BN/ReLU/pool blocks, dropout, linear head)."""
    return _example().Net


@pytest.mark.slow
def test_fine_tuned_beats_scratch_at_equal_step_budget():
    """The example's protocol: pretrain on digits 0-4 (10 epochs); then, on 10 labelled samples per
    class of 5-9 and a budget of 20 Adam steps, the loaded backbone frozen for 3 steps and then
    fine-tuned with the head, against the same net from scratch on the same batches (same head
    init, optimizer and steps). Mean over 10 few-shot draws; fixed seeds, so deterministic.

    Measured (jax 0.10.2, CPU): fine-tuned 0.899, scratch 0.869 (ahead in 7 of 10 draws), the
    frozen backbone alone 0.805 — a linear head on the features of 0-4 does not beat scratch on
    8x8 digits; fine-tuning them does (benchmarks/RESULTS.md, "Transfer learning")."""
    ex = _example()
    crit = nn.CrossEntropyLoss()
    adam = optim.Adam(lr=1e-2)
    source = ex.Net()
    loader = DataLoader(ex.digits_subset(True, range(0, 5)), batch_size=32, shuffle=True, seed=0)
    state = ex.run(make_train_step(source, crit, adam), TrainState.create(source, adam, jax.random.key(0)),
                   ex.first_batches(loader, 10 * len(loader)))
    pretrained = source.state_dict(state.variables)

    compare = ex.Comparison(ex.Net(), crit, lr=1e-2)
    test = DataLoader(ex.digits_subset(False, range(5, 10)), batch_size=512)
    rows = []
    for seed in range(10):
        few = ex.digits_subset(True, range(5, 10), shots=10, seed=seed)
        batches = ex.first_batches(DataLoader(few, batch_size=10, shuffle=True, seed=seed), 20)
        tuned, scratch, frozen = compare(pretrained, batches, head_steps=3, seed=seed)
        rows.append([evaluate(compare.eval_step, s, test)["accuracy"] for s in (tuned, scratch, frozen)])
        loaded = dict(named_leaves(load_backbone(compare.model, pretrained, compare.model.init(jax.random.key(0)))[0]
                                   .params))
        for name, value in named_leaves(frozen.params):  # the frozen-only backbone never moved
            if name.startswith("backbone."):
                np.testing.assert_array_equal(np.asarray(value), np.asarray(loaded[name]))
    tuned_acc, scratch_acc, frozen_acc = np.mean(rows, axis=0)
    print(f"fine-tuned {tuned_acc:.4f}, scratch {scratch_acc:.4f}, frozen backbone only {frozen_acc:.4f}")
    assert tuned_acc > scratch_acc + 0.01, rows
    assert sum(r[0] > r[1] for r in rows) > len(rows) // 2, rows
    assert frozen_acc > 0.6, rows  # chance is 0.2: the pretrained features are useful, if not enough alone


# -- the examples ------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.subprocess
def test_cnn_example_runs(tmp_path):
    lines = run_example("cnn.py", "--epochs", "1", "--out", str(tmp_path))
    assert re.fullmatch(r"Epoch 1, loss: \d+\.\d{4}", lines[0]), lines
    assert re.fullmatch(r"test accuracy: (0|1)\.\d{4}", lines[-1]), lines
    assert float(lines[-1].split()[-1]) > 0.5  # one epoch of a CNN on digits
    assert (tmp_path / "model.pkl").exists()


@pytest.mark.slow
@pytest.mark.subprocess
def test_transfer_example_runs(tmp_path):
    lines = run_example("transfer_learning.py", "--quick", "--out", str(tmp_path))
    assert re.fullmatch(r"test accuracy: fine-tuned (0|1)\.\d{4}, scratch (0|1)\.\d{4}", lines[-1]), lines
    assert any(line.startswith("loaded 14 tensors") for line in lines), lines
    assert "missing 2 (kept from init): head.weight, head.bias" in lines
    assert (tmp_path / "pretrained.pkl").exists()


def test_eval_modules_keep_a_frozen_backbone_in_eval_mode():
    """``eval_modules=("backbone",)`` is torch's ``model.backbone.eval()`` inside a training step:
    the backbone's BatchNorm uses and keeps its running statistics, the head still trains."""
    model = _example_net()()
    optimizer = optim.SGD(lr=0.1)
    variables = model.init(jax.random.key(0))
    state = TrainState.create(model, optimizer, jax.random.key(1), variables=variables, trainable="head")
    step = make_train_step(model, nn.CrossEntropyLoss(), optimizer, trainable="head", eval_modules=("backbone",),
                           donate=False)
    new, _ = step(state, batch())
    jax.tree.map(np.testing.assert_array_equal, new.buffers, state.buffers)
    x, _ = batch()
    eval_out = model.apply(state.variables, x)
    train_out, _ = model.apply(state.variables, x, train=True, key=jax.random.key(0), eval_modules=("backbone",))
    np.testing.assert_allclose(train_out, eval_out, rtol=1e-6)
    assert not np.array_equal(new.params["head"]["weight"], state.params["head"]["weight"])
