"""funcnet losses against torch 2.13: forward and gradients (input and, where torch has it, target)."""

from __future__ import annotations

import itertools
import os
import warnings
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from conftest import assert_close
from hypothesis import given, settings
from hypothesis import strategies as st

import funcnet.nn as nn
import funcnet.nn.functional as F
from funcnet.nn import ShapeError

REDUCTIONS = ("none", "mean", "sum")


def _torch(a: np.ndarray, grad: bool) -> torch.Tensor:
    if np.issubdtype(a.dtype, np.integer):
        return torch.tensor(a.astype(np.int64))
    return torch.tensor(a, requires_grad=grad)


def compare(jfn, tfn, args, grad_args=(0,), rtol=1e-5, atol=1e-6, seed=0):
    """Forward values and the VJP (random cotangent) w.r.t. ``args[i]`` for i in ``grad_args``."""
    t_args = [_torch(a, i in grad_args) for i, a in enumerate(args)]
    t_out = tfn(*t_args)
    cot = np.random.default_rng(seed).standard_normal(tuple(t_out.shape)).astype(np.float32)
    t_out.backward(torch.tensor(cot))

    def f(*diff):
        full = [jnp.asarray(a) for a in args]
        for i, d in zip(grad_args, diff, strict=True):
            full[i] = d
        return jfn(*full)

    j_out, vjp = jax.vjp(f, *[jnp.asarray(args[i]) for i in grad_args])
    assert j_out.shape == tuple(t_out.shape)
    assert j_out.dtype == jnp.float32
    assert_close(j_out, t_out, rtol=rtol, atol=atol)
    for i, g in zip(grad_args, vjp(jnp.asarray(cot)), strict=True):
        assert_close(g, t_args[i].grad, rtol=rtol, atol=atol)


def seed_of(*parts) -> int:
    """A seed stable across processes (``hash`` of a str is salted per process); setting
    ``FUNCNET_TEST_SEED`` draws other inputs (to probe the tolerances)."""
    return zlib.crc32(repr((parts, os.environ.get("FUNCNET_TEST_SEED", ""))).encode())


def randn(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


# (input shape, number of classes); class dim 1, or 0 for the unbatched [C]
CLASS_SHAPES = [((5,), 5), ((4, 5), 5), ((3, 4, 6), 4), ((2, 3, 2, 3), 3)]


def index_target(rng, shape, n_classes, ignore_index=None, p_ignore=0.3):
    """Class indices for ``shape``'s target, some set to ``ignore_index``, but never all: at least
    one position carries a real class (else both sides only compare the all-ignored 0 or NaN,
    which ``test_cross_entropy_all_ignored`` covers)."""
    tshape = () if len(shape) == 1 else (shape[0],) + shape[2:]
    real = [c for c in range(n_classes) if c != ignore_index]
    assert real, f"no class left besides ignore_index={ignore_index}"
    target = np.asarray(rng.choice(real, tshape) if tshape else rng.choice(real), dtype=np.int64)
    if ignore_index is not None and target.size > 1:
        ignored = rng.random(tshape) < p_ignore
        ignored.flat[rng.integers(target.size)] = False
        target = np.where(ignored, ignore_index, target)
    return np.asarray(target, dtype=np.int64)


# --------------------------------------------------------------------------- cross_entropy / nll
@pytest.mark.parametrize("shape,n_classes", CLASS_SHAPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("ignore", [-100, 1])  # some targets ignored; the rest are ordinary
@pytest.mark.parametrize("label_smoothing", [0.0, 0.15])
def test_cross_entropy_index_targets(shape, n_classes, reduction, weighted, ignore, label_smoothing):
    rng = np.random.default_rng(seed_of(shape, reduction, weighted, ignore, label_smoothing))
    x = randn(rng, *shape) * 2
    y = index_target(rng, shape, n_classes, ignore)
    if ignore is not None and y.size > 1 and (y != ignore).all():
        y.flat[0] = ignore  # make sure the ignore path is exercised
    w = rng.uniform(0.2, 2.0, n_classes).astype(np.float32) if weighted else None
    ignore_index = -100 if ignore is None else ignore
    kw = dict(ignore_index=ignore_index, reduction=reduction, label_smoothing=label_smoothing)
    compare(
        lambda a, b: F.cross_entropy(a, b, weight=w, **kw),
        lambda a, b: TF.cross_entropy(a, b, weight=None if w is None else torch.tensor(w), **kw),
        [x, y],
    )


@pytest.mark.parametrize("shape,n_classes", CLASS_SHAPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
def test_cross_entropy_probability_targets(shape, n_classes, reduction, weighted, label_smoothing):
    rng = np.random.default_rng(seed_of(shape, reduction, weighted, label_smoothing))
    x = randn(rng, *shape) * 2
    class_dim = 0 if len(shape) == 1 else 1
    t = np.asarray(jax.nn.softmax(randn(rng, *shape), axis=class_dim))
    w = rng.uniform(0.2, 2.0, n_classes).astype(np.float32) if weighted else None
    kw = dict(reduction=reduction, label_smoothing=label_smoothing)
    compare(
        lambda a, b: F.cross_entropy(a, b, weight=w, **kw),
        lambda a, b: TF.cross_entropy(a, b, weight=None if w is None else torch.tensor(w), **kw),
        [x, t],
        grad_args=(0, 1),
    )


@settings(max_examples=5, deadline=None)
@given(n=st.integers(1, 3), c=st.integers(1, 4), k=st.lists(st.integers(1, 2), max_size=2),
       seed=st.integers(0, 2**31))
def test_cross_entropy_random_shapes(n, c, k, seed):
    """Random shapes, four reduction/weight/smoothing options on each (Hypothesis' five derandomized
    draws of those options left smoothing under 'mean' and 'sum' untried)."""
    rng = np.random.default_rng(seed)
    shape = (n, c, *k)
    x = randn(rng, *shape) * 3
    ignore_index = 0 if c > 1 else -100  # with one class, ignoring class 0 would ignore every target
    y = index_target(rng, shape, c, ignore_index=ignore_index, p_ignore=0.2)
    assert (y != ignore_index).any()
    w = rng.uniform(0.1, 3.0, c).astype(np.float32)
    # every reduction; 'mean' (the weighted-denominator path) with and without weights; no, some
    # and full smoothing
    options = [("mean", True, 0.05), ("mean", False, 1.0), ("sum", True, 0.0), ("none", False, 0.05)]
    for reduction, weighted, label_smoothing in options:
        kw = dict(ignore_index=ignore_index, reduction=reduction, label_smoothing=label_smoothing)
        ww = w if weighted else None
        compare(
            lambda a, b, kw=kw, ww=ww: F.cross_entropy(a, b, weight=ww, **kw),
            lambda a, b, kw=kw, ww=ww: TF.cross_entropy(a, b, weight=None if ww is None else torch.tensor(ww), **kw),
            [x, y], seed=seed,
        )


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
@pytest.mark.parametrize("weighted", [False, True])
def test_cross_entropy_all_ignored(label_smoothing, weighted):
    x = randn(np.random.default_rng(1), 3, 4)
    y = np.full((3,), -100, np.int64)
    w = np.linspace(0.5, 2, 4).astype(np.float32) if weighted else None
    for reduction in REDUCTIONS:
        kw = dict(reduction=reduction, label_smoothing=label_smoothing)
        compare(
            lambda a, b, kw=kw: F.cross_entropy(a, b, weight=w, **kw),
            lambda a, b, kw=kw: TF.cross_entropy(a, b, weight=None if w is None else torch.tensor(w), **kw),
            [x, y],
        )
    assert np.isnan(F.cross_entropy(x, y, weight=w, label_smoothing=label_smoothing))
    # the unbatched case: one target, and it is the ignored one
    x1, y1 = x[0], np.array(-100, np.int64)
    for reduction in REDUCTIONS:
        kw = dict(reduction=reduction, label_smoothing=label_smoothing)
        compare(
            lambda a, b, kw=kw: F.cross_entropy(a, b, weight=w, **kw),
            lambda a, b, kw=kw: TF.cross_entropy(a, b, weight=None if w is None else torch.tensor(w), **kw),
            [x1, y1],
        )
        if label_smoothing == 0.0:
            compare(
                lambda a, b, kw=kw: F.nll_loss(a, b, weight=w, reduction=kw["reduction"]),
                lambda a, b, kw=kw: TF.nll_loss(a, b, weight=None if w is None else torch.tensor(w),
                                                reduction=kw["reduction"]),
                [x1, y1],
            )


@pytest.mark.parametrize("shape,n_classes", CLASS_SHAPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("ignore", [None, 2])
def test_nll_loss(shape, n_classes, reduction, weighted, ignore):
    rng = np.random.default_rng(seed_of(shape, reduction, weighted, ignore))
    x = np.asarray(jax.nn.log_softmax(randn(rng, *shape), axis=0 if len(shape) == 1 else 1))
    y = index_target(rng, shape, n_classes, ignore)
    w = rng.uniform(0.2, 2.0, n_classes).astype(np.float32) if weighted else None
    kw = dict(ignore_index=-100 if ignore is None else ignore, reduction=reduction)
    compare(
        lambda a, b: F.nll_loss(a, b, weight=w, **kw),
        lambda a, b: TF.nll_loss(a, b, weight=None if w is None else torch.tensor(w), **kw),
        [x, y],
    )


def test_cross_entropy_jit_and_int32_targets():
    rng = np.random.default_rng(3)
    x, y = randn(rng, 6, 5), rng.integers(0, 5, 6)
    w = rng.uniform(0.5, 1.5, 5).astype(np.float32)
    eager = F.cross_entropy(x, jnp.asarray(y, jnp.int32), weight=w, label_smoothing=0.1)
    jitted = jax.jit(lambda a, b: F.cross_entropy(a, b, weight=w, label_smoothing=0.1))(x, y.astype("int32"))
    expected = TF.cross_entropy(torch.tensor(x), torch.tensor(y), weight=torch.tensor(w), label_smoothing=0.1)
    assert_close(eager, expected)
    assert_close(jitted, expected)


def test_per_example_losses_by_vmap_and_small_integer_targets():
    rng = np.random.default_rng(10)
    x, y = randn(rng, 5, 4), rng.integers(0, 4, 5)
    y[2] = 1
    expected = TF.cross_entropy(torch.tensor(x), torch.tensor(y), ignore_index=1, reduction="none")
    per_example = jax.vmap(lambda a, b: F.cross_entropy(a, b, ignore_index=1, reduction="none"))(x, y)
    assert_close(per_example, expected)
    for dtype in (jnp.uint8, jnp.int8, jnp.int16, jnp.int32):
        assert_close(F.cross_entropy(x, jnp.asarray(y, dtype), ignore_index=1, reduction="none"), expected)


def test_out_of_range_index_raises_eagerly_and_is_nan_under_jit():
    x = randn(np.random.default_rng(4), 3, 4)
    for bad in (4, -1):
        y = np.array([0, bad, 2])
        with pytest.raises(IndexError, match=f"target {bad} is out of bounds for 4 classes"):
            F.cross_entropy(x, y)
        with pytest.raises(IndexError, match="out of bounds"):
            F.nll_loss(x, y)
        out = jax.jit(lambda a, b: F.cross_entropy(a, b, reduction="none"))(x, y)
        assert np.isnan(out[1]) and np.isfinite(np.asarray(out)[[0, 2]]).all()
        assert np.isnan(jax.jit(F.cross_entropy)(x, y))
        assert np.isnan(jax.jit(F.nll_loss)(x, y))
    # the ignore_index itself is never out of range
    assert np.isfinite(F.cross_entropy(x, np.array([0, -100, 2])))


# --------------------------------------------------------------------------- binary cross entropy
BINARY_SHAPES = [(7,), (4, 5), (2, 3, 4)]


def _weight_variants(rng, shape):
    """None, a last-dim weight broadcast over the rest, and a full elementwise weight."""
    return [None, rng.uniform(0.2, 2, shape[-1:]).astype(np.float32),
            rng.uniform(0.2, 2, shape).astype(np.float32)]


@pytest.mark.parametrize("shape", BINARY_SHAPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weight_kind", [0, 1, 2])
def test_binary_cross_entropy(shape, reduction, weight_kind):
    rng = np.random.default_rng(seed_of(shape, reduction, weight_kind))
    x = rng.uniform(0.02, 0.98, shape).astype(np.float32)
    t = rng.uniform(0, 1, shape).astype(np.float32)
    w = _weight_variants(rng, shape)[weight_kind]
    compare(
        lambda a, b: F.binary_cross_entropy(a, b, weight=w, reduction=reduction),
        lambda a, b: TF.binary_cross_entropy(a, b, weight=None if w is None else torch.tensor(w),
                                             reduction=reduction),
        [x, t], grad_args=(0, 1),
    )


def test_binary_cross_entropy_edges_match_torch_clamp_and_epsilon():
    x = np.array([0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1e-30, 0.5], np.float32)
    t = np.array([0.0, 1.0, 0.0, 1.0, 0.3, 0.7, 1.0, 0.5], np.float32)
    compare(F.binary_cross_entropy, TF.binary_cross_entropy, [x, t], rtol=1e-6)
    compare(lambda a, b: F.binary_cross_entropy(a, b, reduction="none"),
            lambda a, b: TF.binary_cross_entropy(a, b, reduction="none"), [x, t], rtol=1e-6)
    # the target gradient -logit(x) is ±inf at the edges, as torch
    compare(lambda a, b: F.binary_cross_entropy(a, b, reduction="sum"),
            lambda a, b: TF.binary_cross_entropy(a, b, reduction="sum"), [x, t], grad_args=(1,))


@pytest.mark.parametrize("shape", [(6,), (4, 5), (2, 3, 4, 4)])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("pos_weighted", [False, True])
def test_bce_with_logits(shape, reduction, weighted, pos_weighted):
    rng = np.random.default_rng(seed_of(shape, reduction, weighted, pos_weighted))
    x = randn(rng, *shape) * 3
    t = (rng.random(shape) < 0.5).astype(np.float32) * rng.uniform(0.5, 1, shape).astype(np.float32)
    w = rng.uniform(0.2, 2, shape[-1:]).astype(np.float32) if weighted else None
    pw = None
    if pos_weighted:  # [C] over the last dim, or [C, 1, 1] for [N, C, H, W] (torch's docs)
        pw_shape = (shape[1], 1, 1) if len(shape) == 4 else shape[-1:]
        pw = rng.uniform(0.3, 4, pw_shape).astype(np.float32)
    compare(
        lambda a, b: F.binary_cross_entropy_with_logits(a, b, weight=w, reduction=reduction, pos_weight=pw),
        lambda a, b: TF.binary_cross_entropy_with_logits(
            a, b, weight=None if w is None else torch.tensor(w), reduction=reduction,
            pos_weight=None if pw is None else torch.tensor(pw)),
        [x, t], grad_args=(0, 1),
    )


def test_bce_with_logits_is_stable_for_large_logits():
    x = np.array([-200.0, -60.0, -20.0, 0.0, 20.0, 60.0, 200.0], np.float32)
    t = np.array([1.0, 1.0, 0.0, 0.5, 1.0, 0.0, 0.0], np.float32)
    pw = np.float32(3.0) * np.ones(7, np.float32)
    for reduction in REDUCTIONS:
        compare(
            lambda a, b, r=reduction: F.binary_cross_entropy_with_logits(a, b, reduction=r, pos_weight=pw),
            lambda a, b, r=reduction: TF.binary_cross_entropy_with_logits(a, b, reduction=r,
                                                                          pos_weight=torch.tensor(pw)),
            [x, t], grad_args=(0, 1),
        )
    assert np.isfinite(F.binary_cross_entropy_with_logits(x, t, reduction="none")).all()


# --------------------------------------------------------------------------- regression losses
REG_SHAPES = [(), (3, 4), (2, 3, 4)]


@pytest.mark.parametrize("shape", REG_SHAPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(
    "name,kw",
    [("mse_loss", {}), ("l1_loss", {})]
    + [("smooth_l1_loss", {"beta": b}) for b in (0.0, 0.5, 1.0, 2.0)]
    + [("huber_loss", {"delta": d}) for d in (0.5, 1.0, 2.0)],
)
def test_regression_losses(shape, reduction, name, kw):
    rng = np.random.default_rng(seed_of(shape, reduction, name, tuple(kw.items())))
    x, y = randn(rng, *shape) * 2, randn(rng, *shape) * 2
    compare(
        lambda a, b: getattr(F, name)(a, b, reduction=reduction, **kw),
        lambda a, b: getattr(TF, name)(a, b, reduction=reduction, **kw),
        [x, y], grad_args=(0, 1),
    )


@pytest.mark.parametrize("name", ["mse_loss", "l1_loss", "huber_loss"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_regression_losses_with_weight(name, reduction):
    rng = np.random.default_rng(seed_of(name, reduction))
    x, y, w = randn(rng, 4, 3), randn(rng, 4, 3), rng.uniform(0.1, 2, (4, 3)).astype(np.float32)
    compare(
        lambda a, b: getattr(F, name)(a, b, reduction=reduction, weight=w),
        lambda a, b: getattr(TF, name)(a, b, reduction=reduction, weight=torch.tensor(w)),
        [x, y], grad_args=(0, 1),
    )


@pytest.mark.parametrize("name", ["mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss"])
def test_regression_losses_broadcast_target_with_warning(name):
    rng = np.random.default_rng(5)
    x, y = randn(rng, 3, 4), randn(rng, 4)
    with pytest.warns(UserWarning, match="different to the input size"):
        compare(lambda a, b: getattr(F, name)(a, b), lambda a, b: getattr(TF, name)(a, b), [x, y],
                grad_args=(0, 1))


def test_l1_and_smooth_l1_gradient_is_zero_where_input_equals_target():
    x = np.array([0.0, 1.5, -2.0, 0.3], np.float32)
    y = np.array([0.0, 1.5, -1.0, 0.3], np.float32)
    for name, kw in [("l1_loss", {}), ("smooth_l1_loss", {"beta": 0.0}), ("smooth_l1_loss", {}),
                     ("huber_loss", {}), ("mse_loss", {})]:
        compare(lambda a, b, n=name, k=kw: getattr(F, n)(a, b, **k),
                lambda a, b, n=name, k=kw: getattr(TF, n)(a, b, **k), [x, y], grad_args=(0, 1))


# --------------------------------------------------------------------------- kl_div
@pytest.mark.parametrize("shape", [(), (5,), (4, 6), (2, 3, 4)])
@pytest.mark.parametrize("reduction", REDUCTIONS + ("batchmean",))
@pytest.mark.parametrize("log_target", [False, True])
def test_kl_div(shape, reduction, log_target):
    rng = np.random.default_rng(seed_of(shape, reduction, log_target))
    axis = -1 if shape else None
    x = np.asarray(jax.nn.log_softmax(randn(rng, *shape), axis=axis) if shape else randn(rng) - 1)
    t = np.asarray(jax.nn.log_softmax(randn(rng, *shape), axis=axis) if shape else randn(rng) - 1)
    if not log_target:
        t = np.exp(t)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # 'mean' warns on both sides
        compare(
            lambda a, b: F.kl_div(a, b, reduction=reduction, log_target=log_target),
            lambda a, b: TF.kl_div(a, b, reduction=reduction, log_target=log_target),
            [x, t], grad_args=(0, 1),
        )


def test_kl_div_zero_targets_and_mean_warning():
    rng = np.random.default_rng(6)
    x = np.asarray(jax.nn.log_softmax(randn(rng, 3, 4)))
    t = np.abs(randn(rng, 3, 4))
    t[0, 1] = t[2, 3] = 0.0  # 0·log 0 = 0
    compare(lambda a, b: F.kl_div(a, b, reduction="batchmean"),
            lambda a, b: TF.kl_div(a, b, reduction="batchmean"), [x, t])
    with pytest.warns(UserWarning, match="batchmean"):
        F.kl_div(x, t)


# --------------------------------------------------------------------------- criteria (classes)
CRITERIA = [
    ("CrossEntropyLoss", {}, "index"),
    ("CrossEntropyLoss", {"weight": [0.5, 1.0, 2.0, 1.5], "ignore_index": 1, "label_smoothing": 0.1},
     "index"),
    ("CrossEntropyLoss", {"reduction": "sum", "label_smoothing": 0.3}, "probs"),
    ("NLLLoss", {"weight": [0.5, 1.0, 2.0, 1.5], "reduction": "none"}, "index"),
    ("BCELoss", {"weight": [0.5, 1.0, 2.0, 1.5]}, "probs01"),
    ("BCEWithLogitsLoss", {"pos_weight": [0.5, 1.0, 2.0, 1.5], "reduction": "sum"}, "binary"),
    ("MSELoss", {}, "real"),
    ("L1Loss", {"reduction": "none"}, "real"),
    ("SmoothL1Loss", {"beta": 0.5}, "real"),
    ("HuberLoss", {"delta": 2.0, "reduction": "sum"}, "real"),
    ("KLDivLoss", {"reduction": "batchmean", "log_target": True}, "logprobs"),
]


def _criterion_data(kind, rng):
    x = randn(rng, 3, 4)
    if kind == "index":
        return x, rng.integers(0, 4, 3).astype(np.int64)
    if kind == "probs":
        return x, np.asarray(jax.nn.softmax(randn(rng, 3, 4)))
    if kind == "probs01":
        return rng.uniform(0.05, 0.95, (3, 4)).astype(np.float32), rng.random((3, 4)).astype(np.float32)
    if kind == "binary":
        return x, (rng.random((3, 4)) < 0.5).astype(np.float32)
    if kind == "logprobs":
        return np.asarray(jax.nn.log_softmax(x)), np.asarray(jax.nn.log_softmax(randn(rng, 3, 4)))
    return x, randn(rng, 3, 4)


@pytest.mark.parametrize("name,kw,kind", CRITERIA)
def test_criteria_match_torch_classes(name, kw, kind):
    rng = np.random.default_rng(7)
    x, y = _criterion_data(kind, rng)
    criterion = getattr(nn, name)(**kw)
    t_kw = {k: torch.tensor(v) if isinstance(v, list) else v for k, v in kw.items()}
    t_criterion = getattr(torch.nn, name)(**t_kw)
    compare(criterion, t_criterion, [x, y])
    # jit-able as a closure and as a static argument (hash by identity)
    assert_close(jax.jit(lambda a, b: criterion(a, b))(x, y), t_criterion(torch.tensor(x), _torch(y, False)))
    assert_close(jax.jit(lambda c, a, b: c(a, b), static_argnums=0)(criterion, x, y),
                 t_criterion(torch.tensor(x), _torch(y, False)))


@pytest.mark.parametrize("name", sorted({c[0] for c in CRITERIA}))
def test_criteria_defaults_and_repr(name):
    import inspect

    ours, theirs = getattr(nn, name), getattr(torch.nn, name)
    p_ours = inspect.signature(ours.__init__).parameters
    p_theirs = inspect.signature(theirs.__init__).parameters
    assert list(p_ours) == list(p_theirs)
    assert {k: v.default for k, v in p_ours.items()} == {k: v.default for k, v in p_theirs.items()}
    assert repr(ours()) == repr(theirs()) == f"{name}()"
    assert not isinstance(ours(), nn.Module)


@pytest.mark.parametrize(
    "name", ["cross_entropy", "nll_loss", "binary_cross_entropy", "binary_cross_entropy_with_logits",
             "mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss", "kl_div"])
def test_functional_signatures_match_torch(name):
    import inspect

    p_ours = inspect.signature(getattr(F, name)).parameters
    p_theirs = inspect.signature(getattr(TF, name)).parameters
    assert list(p_ours) == list(p_theirs)
    assert [v.default for v in p_ours.values()] == [v.default for v in p_theirs.values()]


def test_criteria_repr_shows_non_defaults():
    assert repr(nn.CrossEntropyLoss(weight=np.ones(3, np.float32), label_smoothing=0.1)) == (
        "CrossEntropyLoss(weight=float32[3], label_smoothing=0.1)")
    assert repr(nn.NLLLoss(ignore_index=0, reduction="sum")) == "NLLLoss(ignore_index=0, reduction='sum')"
    assert repr(nn.BCEWithLogitsLoss(pos_weight=jnp.ones((4, 1, 1)))) == (
        "BCEWithLogitsLoss(pos_weight=float32[4, 1, 1])")
    assert repr(nn.SmoothL1Loss(beta=0.0)) == "SmoothL1Loss(beta=0.0)"
    assert repr(nn.HuberLoss(delta=2.0)) == "HuberLoss(delta=2.0)"
    assert repr(nn.KLDivLoss(reduction="batchmean", log_target=True)) == (
        "KLDivLoss(reduction='batchmean', log_target=True)")


@pytest.mark.parametrize("size_average,reduce", list(itertools.product([None, True, False], repeat=2))[1:])
def test_legacy_size_average_reduce(size_average, reduce):
    rng = np.random.default_rng(8)
    x, y = randn(rng, 3, 4), rng.integers(0, 4, 3)
    with pytest.warns(UserWarning, match="deprecated"):
        ours = nn.CrossEntropyLoss(size_average=size_average, reduce=reduce)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = torch.nn.CrossEntropyLoss(size_average=size_average, reduce=reduce)
        with pytest.warns(UserWarning):
            out = F.mse_loss(x, x + 1, size_average, reduce)
        expected = TF.mse_loss(torch.tensor(x), torch.tensor(x + 1), size_average, reduce)
    assert ours.reduction == theirs.reduction
    assert_close(ours(x, y), theirs(torch.tensor(x), torch.tensor(y)))
    assert_close(out, expected)


def test_criterion_in_a_training_loss():
    rng = np.random.default_rng(9)
    x, y = randn(rng, 8, 5), rng.integers(0, 3, 8)
    w = randn(rng, 3, 5)
    criterion = nn.CrossEntropyLoss(weight=[1.0, 2.0, 0.5], label_smoothing=0.05)

    @jax.jit
    def loss_fn(w, x, y):
        return criterion(x @ w.T, y)

    g = jax.grad(loss_fn)(w, x, y)
    tw = torch.tensor(w, requires_grad=True)
    torch.nn.CrossEntropyLoss(weight=torch.tensor([1.0, 2.0, 0.5]), label_smoothing=0.05)(
        torch.tensor(x) @ tw.T, torch.tensor(y)).backward()
    assert_close(g, tw.grad)


# --------------------------------------------------------------------------- errors
def test_class_index_errors():
    x = np.zeros((4, 3, 5), np.float32)
    expected = r"expected target of shape \(4, 5\).*\(4, 3, 5\).*got target of shape \(4, 6\)"
    with pytest.raises(ShapeError, match=expected):
        F.cross_entropy(x, np.zeros((4, 6), np.int32))
    expected = r"nll_loss: .*expected target of shape \(4,\).*got target of shape \(3,\)"
    with pytest.raises(ShapeError, match=expected):
        F.nll_loss(np.zeros((4, 3)), np.zeros(3, np.int32))
    with pytest.raises(TypeError, match="integer dtype; got float32"):
        F.cross_entropy(np.zeros((4, 3)), np.zeros(4, np.float32))
    with pytest.raises(TypeError, match="integer dtype; got float32"):
        F.nll_loss(np.zeros((4, 3)), np.zeros(4, np.float32))
    with pytest.raises(TypeError, match="floating point target for class probabilities.*got int32"):
        F.cross_entropy(np.zeros((4, 3)), np.zeros((4, 3), np.int32))
    with pytest.raises(ValueError, match="ignore_index is not supported"):
        F.cross_entropy(np.zeros((4, 3)), np.zeros((4, 3), np.float32), ignore_index=0)
    expected = r"weight.*all 3 classes.*expected shape \(3,\).*got weight of shape \(4,\)"
    with pytest.raises(ShapeError, match=expected):
        F.cross_entropy(np.zeros((4, 3)), np.zeros(4, np.int32), weight=np.ones(4))
    with pytest.raises(ShapeError, match=r"got shape \(\)"):
        F.cross_entropy(np.float32(1.0), np.int32(0))
    for eps in (-0.1, 1.5):
        with pytest.raises(ValueError, match="label_smoothing must be between 0.0 and 1.0"):
            F.cross_entropy(np.zeros((4, 3)), np.zeros(4, np.int32), label_smoothing=eps)
        with pytest.raises(ValueError, match="label_smoothing"):
            nn.CrossEntropyLoss(label_smoothing=eps)


def test_binary_and_regression_errors():
    with pytest.raises(ShapeError, match=r"same shape as the input; expected \(3,\), got \(3, 1\)"):
        F.binary_cross_entropy(np.full(3, 0.5), np.full((3, 1), 0.5))
    with pytest.raises(ShapeError, match=r"expected \(3, 2\), got \(2, 3\)"):
        F.binary_cross_entropy_with_logits(np.zeros((3, 2)), np.zeros((2, 3)))
    expected = r"pos_weight of shape \(3,\) must broadcast to the input shape \(3, 2\)"
    with pytest.raises(ShapeError, match=expected):
        F.binary_cross_entropy_with_logits(np.zeros((3, 2)), np.zeros((3, 2)), pos_weight=np.ones(3))
    with pytest.raises(ShapeError, match=r"weight of shape \(2, 3, 2\) must broadcast"):
        F.binary_cross_entropy(np.full((3, 2), 0.5), np.full((3, 2), 0.5), weight=np.ones((2, 3, 2)))
    with pytest.raises(ValueError, match="input should be between 0 and 1"):
        F.binary_cross_entropy(np.array([0.5, 1.5]), np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="target should be between 0 and 1"):
        F.binary_cross_entropy(np.array([0.5, 0.5]), np.array([0.0, 2.0]))
    with pytest.raises(ValueError, match="negative values for beta"):
        F.smooth_l1_loss(np.zeros(2), np.zeros(2), beta=-1.0)
    with pytest.raises(ValueError, match="non-positive values for delta"):
        F.huber_loss(np.zeros(2), np.zeros(2), delta=0.0)
    with pytest.raises(ValueError, match="negative values for beta"):
        nn.SmoothL1Loss(beta=-0.5)
    with pytest.raises(ValueError, match="non-positive"):
        nn.HuberLoss(delta=-1.0)
    expected = r"\(4,\) does not broadcast with input of shape \(3, 2\)"
    with pytest.warns(UserWarning), pytest.raises(ShapeError, match=expected):
        F.mse_loss(np.zeros((3, 2)), np.zeros(4))
    expected = r"weight must have the same shape as the input; expected \(3, 2\), got \(2,\)"
    with pytest.raises(ShapeError, match=expected):
        F.l1_loss(np.zeros((3, 2)), np.zeros((3, 2)), weight=np.ones(2))
    with pytest.raises(ShapeError, match="does not broadcast"):
        F.kl_div(np.zeros((3, 2)), np.zeros(3), reduction="sum")


def test_reduction_errors():
    with pytest.raises(ValueError, match="batchmean is not a valid value for reduction"):
        F.cross_entropy(np.zeros((2, 3)), np.zeros(2, np.int32), reduction="batchmean")
    with pytest.raises(ValueError, match="avg is not a valid value for reduction"):
        F.mse_loss(np.zeros(2), np.zeros(2), reduction="avg")
    with pytest.raises(ValueError, match="MSELoss: batchmean is not a valid value"):
        nn.MSELoss(reduction="batchmean")
    assert nn.KLDivLoss(reduction="batchmean").reduction == "batchmean"
