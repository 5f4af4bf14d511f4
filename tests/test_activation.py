"""Activations: functional and module forms against torch (values, gradients, repr, kinks)."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn as tnn
import torch.nn.functional as TF
from hypothesis import given, settings
from hypothesis import strategies as st
from layer_parity import check_function, check_module

import funcnet.nn as nn
import funcnet.nn.functional as F

# (funcnet functional, torch functional) with the same keyword arguments on both sides.
ELEMENTWISE = [
    ("relu", {}),
    ("relu6", {}),
    ("leaky_relu", {}),
    ("leaky_relu", {"negative_slope": 0.2}),
    ("elu", {}),
    ("elu", {"alpha": 0.5}),
    ("gelu", {}),
    # Its gradient at x ≈ -5 (tanh saturating) is rounding noise that matches torch's only as XLA's
    # default LLVM level rounds it (fused multiply-adds): 2.3e-5 off without them.
    pytest.param("gelu", {"approximate": "tanh"}, marks=pytest.mark.default_compile),
    ("silu", {}),
    ("mish", {}),
    ("sigmoid", {}),
    ("tanh", {}),
    ("softplus", {}),
    ("softplus", {"beta": 2.0, "threshold": 3.0}),
    ("hardtanh", {}),
    ("hardtanh", {"min_val": -0.5, "max_val": 2.0}),
]


# Kinks (0, ±1, 6 = clip bounds), values near the softplus threshold and far out (exp overflow).
SPECIAL = np.array([0.0, -1.0, 1.0, 6.0, -0.5, 2.0, 3.0, 1.5, -60.0, 60.0, 100.0, -100.0], np.float32)


@pytest.mark.parametrize("name,kwargs", ELEMENTWISE, ids=lambda v: str(v))
def test_elementwise_matches_torch_including_kinks_and_extremes(name, kwargs, rng):
    # One 4-D input: random values plus the special points (activations are elementwise,
    # so one shape exercises them all; fewer compiles keeps the suite fast).
    x = (3 * rng.standard_normal((2, 3, 4, 5))).astype(np.float32)
    x.flat[: SPECIAL.size] = SPECIAL
    out = check_function(
        lambda a: getattr(F, name)(a, **kwargs), lambda a: getattr(TF, name)(a, **kwargs), [x]
    )
    assert np.all(np.isfinite(np.asarray(out)))


@settings(max_examples=15, deadline=None)
@given(
    beta=st.floats(0.25, 4.0),
    threshold=st.floats(1.0, 25.0),
    data=st.lists(st.floats(-30, 30, width=32), min_size=16, max_size=16),
)
def test_softplus_threshold_region_matches_torch(beta, threshold, data):
    x = np.array(data, np.float32)
    check_function(
        lambda a: F.softplus(a, beta, threshold),
        lambda a: TF.softplus(a, beta, threshold),
        [x],
        atol=1e-5,
        jit=False,
    )


@pytest.mark.parametrize("fn", ["softmax", "log_softmax"])
@pytest.mark.parametrize(
    "shape,dim", [((5,), 0), ((3, 7), 1), ((3, 7), 0), ((2, 3, 4), -1), ((2, 3, 4, 5), 1)]
)
def test_softmax_family_matches_torch(fn, shape, dim, rng):
    x = (4 * rng.standard_normal(shape)).astype(np.float32)
    check_function(lambda a: getattr(F, fn)(a, dim=dim), lambda a: getattr(TF, fn)(a, dim=dim), [x])


@pytest.mark.parametrize("fn", ["softmax", "log_softmax"])
@pytest.mark.parametrize("shape", [(5,), (3, 7), (2, 3, 4), (2, 3, 4, 5)])
def test_softmax_implicit_dim_follows_torch_legacy_rule(fn, shape, rng):
    x = rng.standard_normal(shape).astype(np.float32)
    with pytest.warns(UserWarning, match="Implicit dimension choice"):
        ours = getattr(F, fn)(jnp.asarray(x))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = getattr(TF, fn)(torch.tensor(x))
    np.testing.assert_allclose(np.asarray(ours), theirs.numpy(), rtol=1e-5, atol=1e-6)


def test_softmax_dtype_argument_casts_first(rng):
    x = rng.standard_normal((2, 6)).astype(np.float32)
    out = F.softmax(jnp.asarray(x, jnp.bfloat16), dim=1, dtype=jnp.float32)
    assert out.dtype == jnp.float32
    np.testing.assert_allclose(
        np.asarray(out), TF.softmax(torch.tensor(x).bfloat16(), 1, dtype=torch.float32).numpy(), rtol=1e-5
    )


def test_log_softmax_is_stable_for_large_logits():
    x = np.array([[1000.0, 0.0, -1000.0]], np.float32)
    check_function(lambda a: F.log_softmax(a, 1), lambda a: TF.log_softmax(a, 1), [x])


def test_invalid_arguments_raise():
    with pytest.raises(ValueError, match="approximate"):
        F.gelu(jnp.ones(3), approximate="fast")
    with pytest.raises(ValueError, match="approximate"):
        nn.GELU("fast")
    with pytest.raises(ValueError, match="max_val"):
        nn.Hardtanh(1.0, 1.0)


MODULES = [
    (lambda: nn.ReLU(), lambda: tnn.ReLU()),
    (lambda: nn.ReLU(inplace=True), lambda: tnn.ReLU(inplace=True)),
    (lambda: nn.ReLU6(), lambda: tnn.ReLU6()),
    (lambda: nn.LeakyReLU(), lambda: tnn.LeakyReLU()),
    (lambda: nn.LeakyReLU(0.3, True), lambda: tnn.LeakyReLU(0.3, True)),
    (lambda: nn.ELU(), lambda: tnn.ELU()),
    (lambda: nn.ELU(alpha=0.7), lambda: tnn.ELU(alpha=0.7)),
    (lambda: nn.GELU(), lambda: tnn.GELU()),
    (lambda: nn.GELU("tanh"), lambda: tnn.GELU("tanh")),
    (lambda: nn.SiLU(), lambda: tnn.SiLU()),
    (lambda: nn.Mish(), lambda: tnn.Mish()),
    (lambda: nn.Sigmoid(), lambda: tnn.Sigmoid()),
    (lambda: nn.Tanh(), lambda: tnn.Tanh()),
    (lambda: nn.Softplus(), lambda: tnn.Softplus()),
    (lambda: nn.Softplus(beta=0.5, threshold=5), lambda: tnn.Softplus(beta=0.5, threshold=5)),
    (lambda: nn.Hardtanh(), lambda: tnn.Hardtanh()),
    (lambda: nn.Hardtanh(-2.0, 3.0), lambda: tnn.Hardtanh(-2.0, 3.0)),
    (lambda: nn.Softmax(dim=1), lambda: tnn.Softmax(dim=1)),
    (lambda: nn.Softmax(-1), lambda: tnn.Softmax(-1)),
    (lambda: nn.LogSoftmax(dim=1), lambda: tnn.LogSoftmax(dim=1)),
]


@pytest.mark.parametrize("make", MODULES, ids=lambda m: repr(m[1]()))
def test_module_matches_torch_and_repr(make, rng):
    ours, theirs = make[0](), make[1]()
    assert repr(ours) == repr(theirs)
    assert ours.init(jax.random.key(0)).params == {}
    x = (3 * rng.standard_normal((4, 6, 3))).astype(np.float32)
    check_module(ours, theirs, x)


def test_modules_compose_in_sequential(rng):
    x = rng.standard_normal((3, 4)).astype(np.float32)
    ours = nn.Sequential(nn.Linear(4, 5), nn.GELU(), nn.Linear(5, 3), nn.LogSoftmax(dim=1))
    theirs = tnn.Sequential(tnn.Linear(4, 5), tnn.GELU(), tnn.Linear(5, 3), tnn.LogSoftmax(dim=1))
    assert repr(ours) == repr(theirs)
    check_module(ours, theirs, x)


def test_gelu_second_derivative_and_forward_mode_match_torch():
    # F.gelu's erf form has a hand-written JVP; its derivative must still be differentiable
    # (Hessians, jacfwd) and agree with torch's double backward.
    x = np.random.default_rng(7).standard_normal(200).astype(np.float32) * 3
    tx = torch.tensor(x, requires_grad=True)
    (g,) = torch.autograd.grad(TF.gelu(tx).sum(), tx, create_graph=True)
    (gg,) = torch.autograd.grad(g.sum(), tx)
    grad = jax.grad(lambda x: F.gelu(x).sum())
    np.testing.assert_allclose(np.asarray(jax.jit(grad)(x)), g.detach().numpy(), rtol=1e-5, atol=1e-6)
    second = jax.jit(jax.grad(lambda x: grad(x).sum()))(x)
    np.testing.assert_allclose(np.asarray(second), gg.numpy(), rtol=1e-5, atol=1e-6)
    forward = jax.jit(lambda x: jax.jvp(F.gelu, (x,), (jnp.ones_like(x),))[1])(x)
    np.testing.assert_allclose(np.asarray(forward), g.detach().numpy(), rtol=1e-5, atol=1e-6)
