"""Max/avg/adaptive pooling against torch 2.13: forward, input gradients (ties included),
ceil_mode and padding rules, indices, repr, errors, jit/vmap."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import funcnet.nn as nn
import funcnet.nn.functional as F
import funcnet.testing as funcnet_testing

TF = torch.nn.functional


def assert_close(actual, expected, rtol=1e-5):
    """~1e-5 relative; the absolute floor scales with the array's magnitude (sums of many terms)."""
    magnitude = np.abs(np.asarray(expected.detach() if hasattr(expected, "detach") else expected))
    scale = max(1.0, float(magnitude.max())) if magnitude.size else 1.0
    funcnet_testing.assert_close(actual, expected, rtol=rtol, atol=rtol * scale, check_dtype=False, equal_nan=True)


def check_parity(fn, tfn, x, seed=0):
    """Forward and input gradient (random cotangent) of ``fn`` (JAX, jitted) vs ``tfn`` (torch)."""
    xt = torch.tensor(x, requires_grad=True)
    tout = tfn(xt)
    ct = np.random.default_rng(seed + 1).standard_normal(tout.shape).astype(np.float32)
    tout.backward(torch.tensor(ct))

    @jax.jit
    def run(x, ct):
        out, vjp = jax.vjp(fn, x)
        return out, vjp(ct)[0]

    out, gx = run(jnp.asarray(x), jnp.asarray(ct))
    assert_close(out, tout)
    assert_close(gx, xt.grad)


def randn(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def ties(shape, seed=0):
    """Values from {0, 1, 2}: many equal maxima per window (like ReLU outputs)."""
    return np.random.default_rng(seed).integers(0, 3, shape).astype(np.float32)


# -- modules ---------------------------------------------------------------------------------
MODULE_CASES = [
    ("MaxPool1d", (3,), {}, (2, 3, 10)),
    ("MaxPool1d", (4,), dict(stride=2, padding=2, dilation=2, ceil_mode=True), (2, 3, 13)),
    ("MaxPool1d", (2,), dict(ceil_mode=True), (3, 7)),  # unbatched
    ("MaxPool2d", (2,), {}, (2, 3, 8, 8)),
    ("MaxPool2d", (3,), dict(stride=2, padding=1), (2, 3, 9, 10)),
    ("MaxPool2d", ((3, 2),), dict(stride=(2, 1), padding=(1, 0), ceil_mode=True), (2, 3, 10, 7)),
    ("MaxPool2d", (3,), dict(stride=2, dilation=2, padding=1, ceil_mode=True), (2, 3, 12, 11)),
    ("MaxPool2d", (2,), dict(stride=2, padding=1, ceil_mode=True), (3, 5, 5)),  # unbatched
    ("MaxPool3d", (2,), dict(stride=(1, 2, 2), padding=1, ceil_mode=True), (2, 2, 4, 5, 6)),
    # Non-overlapping windows (stride = kernel) with a padding or a remainder: their own gradient.
    ("MaxPool2d", ((3, 2),), dict(padding=1), (2, 3, 10, 7)),  # floor mode drops a row
    ("MaxPool3d", (2,), dict(ceil_mode=True), (2, 2, 5, 6, 7)),  # ceil mode: partial last windows
    ("AvgPool1d", (3,), dict(stride=2, padding=1), (2, 3, 10)),
    ("AvgPool1d", (4,), dict(stride=3, padding=2, ceil_mode=True, count_include_pad=False), (2, 3, 12)),
    ("AvgPool1d", (2,), dict(ceil_mode=True), (3, 7)),  # unbatched
    ("AvgPool2d", (2,), {}, (2, 3, 8, 8)),
    ("AvgPool2d", (3,), dict(stride=2, padding=1, ceil_mode=True), (2, 3, 10, 9)),
    ("AvgPool2d", (3,), dict(stride=2, padding=1, ceil_mode=True, count_include_pad=False), (2, 3, 10, 9)),
    ("AvgPool2d", ((4, 3),), dict(stride=(3, 2), padding=(2, 1), ceil_mode=True, divisor_override=5),
     (2, 3, 11, 8)),
    ("AvgPool2d", (3,), dict(stride=1, padding=1, count_include_pad=False), (3, 6, 5)),  # unbatched
    ("AvgPool3d", (3,), dict(stride=2, padding=1, ceil_mode=True, count_include_pad=False), (1, 2, 5, 6, 7)),
    ("AdaptiveAvgPool1d", (4,), {}, (2, 3, 10)),
    ("AdaptiveAvgPool1d", (7,), {}, (3, 5)),  # unbatched, upsampling bins
    ("AdaptiveAvgPool2d", (1,), {}, (2, 3, 7, 6)),
    ("AdaptiveAvgPool2d", ((3, 4),), {}, (2, 3, 10, 9)),
    ("AdaptiveAvgPool2d", ((None, 5),), {}, (2, 3, 6, 7)),
    ("AdaptiveAvgPool2d", ((5, 2),), {}, (3, 4, 8)),  # unbatched
    ("AdaptiveAvgPool3d", ((2, 3, None),), {}, (1, 2, 5, 7, 3)),
    ("AdaptiveMaxPool1d", (3,), {}, (2, 3, 10)),
    ("AdaptiveMaxPool2d", (1,), {}, (2, 3, 7, 6)),
    ("AdaptiveMaxPool2d", ((3, 4),), {}, (2, 3, 10, 9)),
    ("AdaptiveMaxPool2d", ((6, None),), {}, (3, 4, 5)),  # unbatched, more bins than rows
    ("AdaptiveMaxPool3d", (2,), {}, (1, 2, 5, 4, 3)),
]


# Ties (repeated maxima) matter only to max pooling: the whole gradient goes to the first one.
MODULE_RUNS = [(*case, "randn") for case in MODULE_CASES] + [
    (*case, "ties") for case in MODULE_CASES if "Max" in case[0]
]


@pytest.mark.parametrize("name,args,kwargs,shape,data", MODULE_RUNS,
                         ids=[f"{c[0]}-{c[4]}-{i}" for i, c in enumerate(MODULE_RUNS)])
def test_module_matches_torch(name, args, kwargs, shape, data):
    m = getattr(nn, name)(*args, **kwargs)
    tm = getattr(torch.nn, name)(*args, **kwargs)
    x = randn(shape) if data == "randn" else ties(shape)
    check_parity(lambda x: m.apply({}, x), tm, x)


@pytest.mark.parametrize(
    "name,args,kwargs,shape",
    [
        ("MaxPool2d", (3,), dict(stride=2, padding=1, ceil_mode=True, return_indices=True), (2, 3, 9, 8)),
        ("MaxPool2d", (3,), dict(stride=1, dilation=2, padding=1, return_indices=True), (3, 8, 7)),
        ("MaxPool1d", (2,), dict(return_indices=True), (2, 3, 9)),
        ("MaxPool3d", (2,), dict(padding=1, return_indices=True), (1, 2, 4, 3, 5)),
        ("AdaptiveMaxPool2d", ((3, 5),), dict(return_indices=True), (2, 3, 7, 8)),
        ("AdaptiveMaxPool1d", (4,), dict(return_indices=True), (3, 9)),
    ],
)
def test_return_indices_match_torch(name, args, kwargs, shape):
    m = getattr(nn, name)(*args, **kwargs)
    tm = getattr(torch.nn, name)(*args, **kwargs)
    for x in (randn(shape), ties(shape)):
        values, indices = jax.jit(lambda x: m.apply({}, x))(jnp.asarray(x))
        tvalues, tindices = tm(torch.tensor(x))
        assert_close(values, tvalues)
        assert indices.dtype == jnp.int32
        np.testing.assert_array_equal(np.asarray(indices), tindices.numpy())
    check_parity(lambda x: m.apply({}, x)[0], lambda x: tm(x)[0], ties(shape))


# -- functional, randomised over the option space ----------------------------------------------
def _torch_or_error(fn):
    try:
        return fn(), None
    except RuntimeError as err:  # torch's size/padding checks
        return None, err


@pytest.mark.slow  # randomised: many compilations
@settings(max_examples=20, deadline=None)
@given(
    h=st.integers(1, 9), w=st.integers(1, 9), k=st.integers(1, 4), kw=st.integers(1, 3),
    s=st.integers(1, 3), p=st.integers(0, 2), d=st.integers(1, 2), ceil=st.booleans(),
    tie=st.booleans(), seed=st.integers(0, 1000),
)
def test_max_pool2d_random(h, w, k, kw, s, p, d, ceil, tie, seed):
    x = ties((2, 2, h, w), seed) if tie else randn((2, 2, h, w), seed)
    opts = dict(kernel_size=(k, kw), stride=(s, 1), padding=(p, min(p, kw // 2)), dilation=(d, 1),
                ceil_mode=ceil)
    tout, err = _torch_or_error(lambda: TF.max_pool2d(torch.tensor(x), **opts))
    if err is not None:
        with pytest.raises(ValueError):
            F.max_pool2d(jnp.asarray(x), **opts)
        return
    if torch.isinf(tout).any():
        # A dilated window that holds only padding gives -inf in both. torch's backward then
        # writes the gradient outside the input plane (out-of-bounds index), so only the
        # forward is compared; funcnet sends no gradient from such a window.
        assert_close(F.max_pool2d(jnp.asarray(x), **opts), tout)
        return
    check_parity(lambda x: F.max_pool2d(x, **opts), lambda x: TF.max_pool2d(x, **opts), x, seed)


@pytest.mark.slow  # randomised: many compilations
@settings(max_examples=20, deadline=None)
@given(
    h=st.integers(1, 9), w=st.integers(1, 9), k=st.integers(1, 4), kw=st.integers(1, 3),
    s=st.integers(1, 3), p=st.integers(0, 2), ceil=st.booleans(), cip=st.booleans(),
    div=st.sampled_from([None, 1, 3]), seed=st.integers(0, 1000),
)
def test_avg_pool2d_random(h, w, k, kw, s, p, ceil, cip, div, seed):
    x = randn((2, 2, h, w), seed)
    opts = dict(kernel_size=(k, kw), stride=(s, 2), padding=(p, min(p, kw // 2)), ceil_mode=ceil,
                count_include_pad=cip, divisor_override=div)
    tout, err = _torch_or_error(lambda: TF.avg_pool2d(torch.tensor(x), **opts))
    if err is not None:
        with pytest.raises(ValueError):
            F.avg_pool2d(jnp.asarray(x), **opts)
        return
    check_parity(lambda x: F.avg_pool2d(x, **opts), lambda x: TF.avg_pool2d(x, **opts), x, seed)


@pytest.mark.slow  # randomised: many compilations
@settings(max_examples=15, deadline=None)
@given(h=st.integers(1, 11), w=st.integers(1, 11), oh=st.integers(1, 6), ow=st.integers(1, 6),
       kind=st.sampled_from(["avg", "max"]), seed=st.integers(0, 1000))
def test_adaptive_pool2d_random(h, w, oh, ow, kind, seed):
    x = randn((2, 3, h, w), seed) if kind == "avg" else ties((2, 3, h, w), seed)
    fn = getattr(F, f"adaptive_{kind}_pool2d")
    tfn = getattr(TF, f"adaptive_{kind}_pool2d")
    check_parity(lambda x: fn(x, (oh, ow)), lambda x: tfn(x, (oh, ow)), x, seed)


@pytest.mark.parametrize(
    "size,k,s,p,expected",
    [(5, 2, 2, 0, 3), (5, 2, 2, 1, 3), (6, 3, 2, 1, 4), (4, 3, 3, 1, 2), (7, 3, 3, 0, 3)],
)
def test_ceil_mode_output_lengths(size, k, s, p, expected):
    """Hand-checked lengths (last window must start inside the input or left padding)."""
    x = jnp.zeros((1, 1, size))
    assert F.max_pool1d(x, k, s, p, ceil_mode=True).shape[-1] == expected
    assert F.avg_pool1d(x, k, s, p, ceil_mode=True).shape[-1] == expected
    assert TF.max_pool1d(torch.zeros(1, 1, size), k, s, p, ceil_mode=True).shape[-1] == expected


def test_functional_stride_none_and_1d_adaptive():
    x = randn((2, 3, 11))
    check_parity(lambda x: F.max_pool1d(x, 3, None), lambda x: TF.max_pool1d(x, 3, None), x)
    check_parity(lambda x: F.avg_pool1d(x, 3), lambda x: TF.avg_pool1d(x, 3), x)
    check_parity(lambda x: F.adaptive_avg_pool1d(x, 4), lambda x: TF.adaptive_avg_pool1d(x, 4), x)
    check_parity(lambda x: F.adaptive_max_pool1d(x, 4), lambda x: TF.adaptive_max_pool1d(x, 4),
                 ties((2, 3, 11)))


# -- repr ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name,args,kwargs",
    [
        ("MaxPool1d", (3,), {}),
        ("MaxPool2d", (2,), {}),
        ("MaxPool2d", ((3, 2),), dict(stride=1, padding=1, dilation=2, ceil_mode=True, return_indices=True)),
        ("MaxPool3d", (2,), dict(stride=(1, 2, 2))),
        ("AvgPool1d", (3,), dict(stride=2, padding=1)),
        ("AvgPool2d", (2,), {}),
        ("AvgPool2d", ((3, 2),), dict(stride=1, padding=(1, 0), ceil_mode=True, divisor_override=2)),
        ("AvgPool3d", (2,), {}),
        ("AdaptiveAvgPool1d", (5,), {}),
        ("AdaptiveAvgPool2d", ((None, 7),), {}),
        ("AdaptiveAvgPool3d", (2,), {}),
        ("AdaptiveMaxPool1d", (3,), {}),
        ("AdaptiveMaxPool2d", ((3, 4),), dict(return_indices=True)),
        ("AdaptiveMaxPool3d", (1,), {}),
    ],
)
def test_repr_matches_torch(name, args, kwargs):
    assert repr(getattr(nn, name)(*args, **kwargs)) == repr(getattr(torch.nn, name)(*args, **kwargs))


# -- errors ----------------------------------------------------------------------------------
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.MaxPool2d(2), nn.AdaptiveAvgPool2d(1))

    def forward(self, x):
        return self.features(x)


def test_wrong_ndim_names_module_path():
    with pytest.raises(nn.ShapeError, match=r"Net\.features\.0 \(MaxPool2d\).*\[N, C, H, W\] or \[C, H, W\]"
                                            r".*\(2, 3, 4, 8, 8\)"):
        Net().apply({}, jnp.zeros((2, 3, 4, 8, 8)))
    with pytest.raises(nn.ShapeError, match=r"AvgPool1d.*\[N, C, L\].*\(8,\)"):
        nn.AvgPool1d(2).apply({}, jnp.zeros(8))


@pytest.mark.parametrize(
    "call",
    [
        lambda F, x: F.max_pool2d(x, 2, padding=2),  # pad > half the kernel
        lambda F, x: F.avg_pool2d(x, 3, padding=2),
        lambda F, x: F.max_pool2d(x, 9),  # output would be empty
        lambda F, x: F.avg_pool2d(x, 2, divisor_override=0),
        lambda F, x: F.max_pool2d(x[0, 0], 2),  # 2D input to a 2d pool
    ],
)
def test_invalid_arguments_raise_like_torch(call):
    x = np.zeros((1, 2, 6, 6), np.float32)
    with pytest.raises(RuntimeError):
        call(TF, torch.tensor(x))
    with pytest.raises(ValueError):
        call(F, jnp.asarray(x))


# -- transforms ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "module,torch_module",
    [
        (nn.MaxPool2d(3, 2, 1, ceil_mode=True), torch.nn.MaxPool2d(3, 2, 1, ceil_mode=True)),
        (nn.MaxPool1d(3, 1, dilation=2), torch.nn.MaxPool1d(3, 1, dilation=2)),
        (nn.AvgPool2d(3, 2, 1, count_include_pad=False),
         torch.nn.AvgPool2d(3, 2, 1, count_include_pad=False)),
        (nn.AdaptiveAvgPool2d((3, 2)), torch.nn.AdaptiveAvgPool2d((3, 2))),
        (nn.AdaptiveMaxPool2d((3, 2)), torch.nn.AdaptiveMaxPool2d((3, 2))),
    ],
)
def test_jit_and_vmap_over_unbatched_inputs(module, torch_module):
    shape = (4, 3, 9) if isinstance(module, nn.MaxPool1d) else (4, 3, 9, 7)
    x = randn(shape)
    expected = torch_module(torch.tensor(x))
    assert_close(jax.jit(lambda x: module.apply({}, x))(jnp.asarray(x)), expected)
    assert_close(jax.jit(jax.vmap(lambda xi: module.apply({}, xi)))(jnp.asarray(x)), expected)


@pytest.mark.parametrize("kernel,stride,padding", [(3, 2, 1), (2, 2, 0), (3, 1, 1)])
def test_max_pool2d_nan_takes_the_window_and_its_gradient(kernel, stride, padding):
    # A NaN is maximal in torch's scan (``val > maxval || isnan(val)``): the window's output is
    # NaN and its whole gradient goes to the NaN. One NaN per window neighbourhood, so that the
    # rule for several NaNs in one window (torch: the last) does not matter here.
    x = np.random.default_rng(3).standard_normal((2, 3, 12, 12)).astype(np.float32)
    x[0, 0, 1, 1] = x[0, 2, 6, 7] = x[1, 1, 10, 4] = np.nan
    check_parity(lambda x: F.max_pool2d(x, kernel, stride, padding),
                 lambda x: TF.max_pool2d(x, kernel, stride, padding), x)
