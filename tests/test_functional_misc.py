"""F.pad (all modes, torch's last-dim-first order, negative pads) and Flatten/Unflatten against torch."""

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


@pytest.mark.parametrize(
    "shape,pad",
    [
        ((5,), (1, 2)),
        ((2, 3, 4), (1, 0, 2, 1)),
        ((2, 3, 4), (1, 1, 1, 1, 1, 1)),
        ((2, 3, 4, 5), (-1, 2, 0, -2)),
    ],
)
@pytest.mark.parametrize("value", [None, 0.0, -1.5])
def test_constant_pad_matches_torch(shape, pad, value, rng):
    x = rng.standard_normal(shape).astype(np.float32)
    kwargs = {} if value is None else {"value": value}
    check_function(lambda a: F.pad(a, pad, **kwargs), lambda a: TF.pad(a, pad, **kwargs), [x])


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
@pytest.mark.parametrize(
    "shape,pad",
    [
        ((3, 6), (2, 1)),
        ((2, 3, 6), (1, 3)),
        ((3, 4, 5), (1, 2, 2, 0)),
        ((2, 3, 4, 5), (1, 1, 3, 2)),
        ((2, 3, 4, 5), (-1, 2, 1, -2)),
        ((1, 2, 3, 4, 5), (1, 2, 0, 1, 2, 1)),
    ],
)
def test_non_constant_pad_matches_torch(mode, shape, pad, rng):
    x = rng.standard_normal(shape).astype(np.float32)
    check_function(lambda a: F.pad(a, pad, mode=mode), lambda a: TF.pad(a, pad, mode=mode), [x])


@settings(max_examples=30, deadline=None)
@given(
    mode=st.sampled_from(["constant", "reflect", "replicate", "circular"]),
    k=st.integers(1, 3),
    batched=st.booleans(),
    data=st.data(),
)
def test_pad_random_configurations_match_torch_or_both_raise(mode, k, batched, data):
    ndim = k + (2 if batched else 1)
    shape = tuple(data.draw(st.integers(2, 5)) for _ in range(ndim))
    pad = tuple(data.draw(st.integers(-1, 4)) for _ in range(2 * k))
    x = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    try:
        expected = TF.pad(torch.tensor(x), pad, mode=mode).numpy()
    except (RuntimeError, NotImplementedError, ValueError):
        with pytest.raises((ValueError, NotImplementedError)):
            F.pad(jnp.asarray(x), pad, mode=mode)
        return
    try:
        ours = np.asarray(F.pad(jnp.asarray(x), pad, mode=mode))
    except ValueError as e:  # funcnet's documented refusal: circular wrapping past a crop
        assert mode == "circular" and "wraps more than once" in str(e)
        return
    np.testing.assert_array_equal(ours, expected)


def test_pad_errors():
    with pytest.raises(ValueError, match="divisible by 2"):
        F.pad(jnp.ones((2, 3)), (1,))
    with pytest.raises(ValueError, match="too large"):
        F.pad(jnp.ones((3,)), (1, 1, 1, 1))
    with pytest.raises(NotImplementedError, match="not supported for 1D"):
        F.pad(jnp.ones((3,)), (1, 1), mode="reflect")
    with pytest.raises(ValueError, match="less than the corresponding input dimension"):
        F.pad(jnp.ones((1, 3)), (3, 0), mode="reflect")
    with pytest.raises(ValueError, match="mode"):
        F.pad(jnp.ones((1, 3)), (1, 0), mode="symmetric")


@pytest.mark.parametrize("mode", ["constant", "reflect", "replicate", "circular"])
@pytest.mark.parametrize("pad", [(-1, -1), (-2, 0), (-1, -2)])
def test_negative_pads_that_empty_a_dimension_follow_torch(mode, pad):
    # torch allows an empty output for 'constant'/'circular' only, and never a negative size.
    x = np.arange(4, dtype=np.float32).reshape(1, 2, 2)
    try:
        expected = TF.pad(torch.tensor(x), pad, mode=mode).numpy()
    except RuntimeError:
        with pytest.raises(ValueError, match=r"too small for padding .* output size would be"):
            F.pad(jnp.asarray(x), pad, mode=mode)
        return
    np.testing.assert_array_equal(np.asarray(F.pad(jnp.asarray(x), pad, mode=mode)), expected)


def test_pad_is_jittable():
    x = jnp.arange(12.0).reshape(1, 3, 4)
    np.testing.assert_array_equal(
        jax.jit(lambda a: F.pad(a, (1, 2), mode="reflect"))(x), F.pad(x, (1, 2), mode="reflect")
    )


# -- Flatten / Unflatten -----------------------------------------------------------------


@pytest.mark.parametrize(
    "args,shape",
    [
        ((), (2, 3, 4, 5)),
        ((0,), (2, 3, 4)),
        ((1, 2), (2, 3, 4, 5)),
        ((-3, -2), (2, 3, 4, 5)),
        ((2, 2), (2, 3, 4)),
    ],
)
def test_flatten_matches_torch(args, shape, rng):
    ours, theirs = nn.Flatten(*args), tnn.Flatten(*args)
    assert repr(ours) == repr(theirs)
    check_module(ours, theirs, rng.standard_normal(shape).astype(np.float32))


def test_flatten_zero_dim_and_errors():
    assert nn.Flatten(0).apply({}, jnp.asarray(3.0)).shape == tnn.Flatten(0)(torch.tensor(3.0)).shape == (1,)
    with pytest.raises(nn.ShapeError):  # torch: IndexError, dim 1 out of range for 0-d
        nn.Flatten().apply({}, jnp.asarray(3.0))
    net = nn.Sequential(nn.Flatten(start_dim=2))
    with pytest.raises(nn.ShapeError, match=r"Sequential\.0 \(Flatten\).*start_dim=2.*\(4, 5\)"):
        net.apply({}, jnp.ones((4, 5)))


@pytest.mark.parametrize(
    "dim,sizes,shape",
    [(1, (2, 3), (4, 6)), (-1, [2, 2, 2], (3, 8)), (0, (2, -1), (6, 5)), (1, (5, 1), (2, 5, 3))],
)
def test_unflatten_matches_torch(dim, sizes, shape, rng):
    ours, theirs = nn.Unflatten(dim, sizes), tnn.Unflatten(dim, sizes)
    assert repr(ours) == repr(theirs)
    check_module(ours, theirs, rng.standard_normal(shape).astype(np.float32))


def test_unflatten_errors():
    with pytest.raises(TypeError, match="tuple of ints"):
        nn.Unflatten(1, 6)
    with pytest.raises(TypeError, match="at pos 1"):
        nn.Unflatten(1, (2, 3.0))
    net = nn.Sequential(nn.Linear(4, 6), nn.Unflatten(1, (4, 2)))
    with pytest.raises(nn.ShapeError, match=r"Sequential\.1 \(Unflatten\).*dim 1 of size 6.*\(4, 2\)"):
        net.apply(net.init(jax.random.key(0)), jnp.ones((3, 4)))


def test_flatten_unflatten_round_trip_in_a_model(rng):
    ours = nn.Sequential(nn.Flatten(), nn.Linear(12, 12), nn.Unflatten(1, (3, 4)))
    theirs = tnn.Sequential(tnn.Flatten(), tnn.Linear(12, 12), tnn.Unflatten(1, (3, 4)))
    assert repr(ours) == repr(theirs)
    check_module(ours, theirs, rng.standard_normal((2, 3, 4)).astype(np.float32))
