"""Conv1d/2d/3d and ConvTranspose1d/2d/3d against torch 2.13: forward, gradients, init, repr, errors."""

import math

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
# torch warns that its own 'same' padding with even kernels copies the input; not our concern.
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")


def assert_close(actual, expected, rtol=1e-5):
    """~1e-5 relative; the absolute floor scales with the array's magnitude (sums of many terms)."""
    magnitude = np.abs(np.asarray(expected.detach() if hasattr(expected, "detach") else expected))
    scale = max(1.0, float(magnitude.max())) if magnitude.size else 1.0
    funcnet_testing.assert_close(actual, expected, rtol=rtol, atol=rtol * scale, check_dtype=False, equal_nan=True)


def zero_variables(module):
    """Variables without compiling Module.init (cheap for tests that do not look at values)."""
    return module.load_state_dict({k: np.zeros(spec.shape, np.float32)
                                   for k, spec in module.named_parameter_specs()})[0]


def jax_vjp(fn, args, cotangent):
    """(output, grads) of ``fn`` at ``args`` for ``cotangent``, compiled as one program (fast on CPU)."""

    @jax.jit
    def run(args, ct):
        out, vjp = jax.vjp(fn, *args)
        return out, vjp(ct)

    return run(args, cotangent)


def check_module_parity(cls, torch_cls, args, kwargs, input_shape, seed=0, forward_kwargs=None):
    """Same weights on both sides; compare output and grads w.r.t. input, weight, bias."""
    forward_kwargs = forward_kwargs or {}
    rng = np.random.default_rng(seed)
    m = cls(*args, **kwargs)
    torch.manual_seed(seed)
    tm = torch_cls(*args, **kwargs)
    # torch's weights into funcnet (load_state_dict checks keys and shapes); Module.init is
    # tested on its own below and is slow to compile for many shapes on CPU.
    variables, _ = m.load_state_dict(tm.state_dict())
    assert list(m.state_dict(variables)) == list(tm.state_dict())

    x = rng.standard_normal(input_shape).astype(np.float32)
    xt = torch.tensor(x, requires_grad=True)
    tout = tm(xt, **forward_kwargs)
    ct = rng.standard_normal(tout.shape).astype(np.float32)
    tout.backward(torch.tensor(ct))
    out, (gparams, gx) = jax_vjp(lambda p, x: m.apply(p, x, **forward_kwargs),
                                 (variables.params, jnp.asarray(x)), jnp.asarray(ct))
    assert_close(out, tout)
    assert_close(gx, xt.grad)
    assert_close(gparams["weight"], tm.weight.grad)
    if tm.bias is not None:
        assert_close(gparams["bias"], tm.bias.grad)
    else:
        assert "bias" not in gparams
    return m, variables, tm


# -- module parity: forward and gradients --------------------------------------------------
CONV_CASES = [
    # (cls name, args, kwargs, input shape)
    ("Conv1d", (3, 5, 3), {}, (2, 3, 11)),
    ("Conv1d", (4, 6, 4), dict(stride=2, padding=3, dilation=2, groups=2), (3, 4, 17)),
    ("Conv1d", (3, 4, 4), dict(padding="same", dilation=3), (2, 3, 13)),
    ("Conv1d", (3, 4, 2), dict(padding="valid", bias=False), (3, 9)),  # unbatched
    ("Conv1d", (2, 4, 3), dict(padding=2, padding_mode="reflect"), (2, 2, 8)),
    ("Conv1d", (2, 4, 3), dict(padding=2, padding_mode="circular"), (2, 2, 8)),
    ("Conv2d", (3, 8, 3), {}, (2, 3, 10, 9)),
    ("Conv2d", (3, 8, (3, 2)), dict(stride=(2, 1), padding=(1, 2)), (2, 3, 11, 8)),
    ("Conv2d", (6, 9, 3), dict(groups=3, dilation=(2, 1), bias=False), (2, 6, 12, 10)),
    ("Conv2d", (4, 4, 3), dict(groups=4, padding=1), (1, 4, 7, 7)),  # depthwise
    ("Conv2d", (3, 5, (4, 3)), dict(padding="same", dilation=(1, 2)), (2, 3, 9, 8)),
    ("Conv2d", (3, 5, (2, 4)), dict(padding="same"), (3, 8, 7)),  # unbatched, even kernels
    ("Conv2d", (3, 5, 5), dict(stride=3, padding=2), (2, 3, 16, 14)),
    ("Conv2d", (3, 5, 3), dict(padding=(1, 2), padding_mode="reflect"), (2, 3, 8, 9)),
    ("Conv2d", (3, 5, 3), dict(padding=1, stride=2, padding_mode="replicate"), (2, 3, 8, 9)),
    ("Conv2d", (3, 5, (2, 3)), dict(padding="same", padding_mode="circular"), (2, 3, 8, 9)),
    ("Conv3d", (2, 4, 3), dict(padding=1), (2, 2, 5, 6, 7)),
    ("Conv3d", (4, 6, (2, 3, 1)), dict(stride=(1, 2, 1), groups=2, dilation=(2, 1, 1)), (1, 4, 6, 7, 5)),
    ("Conv3d", (2, 3, 2), dict(padding="same", bias=False), (2, 4, 5, 3)),  # unbatched
    ("ConvTranspose1d", (3, 5, 3), {}, (2, 3, 7)),
    ("ConvTranspose1d", (4, 6, 4), dict(stride=3, padding=2, output_padding=1, groups=2), (2, 4, 6)),
    ("ConvTranspose1d", (3, 4, 3), dict(stride=2, dilation=3, output_padding=2, bias=False), (3, 5)),
    ("ConvTranspose2d", (3, 5, 3), {}, (2, 3, 6, 5)),
    ("ConvTranspose2d", (3, 5, (3, 2)), dict(stride=(2, 3), padding=(1, 0), output_padding=(1, 2)),
     (2, 3, 5, 4)),
    ("ConvTranspose2d", (6, 4, 3), dict(stride=2, padding=1, groups=2, dilation=2, output_padding=1),
     (2, 6, 5, 6)),
    ("ConvTranspose2d", (6, 9, 2), dict(stride=2, groups=3, bias=False), (6, 4, 3)),  # unbatched
    ("ConvTranspose2d", (2, 3, 5), dict(padding=4), (1, 2, 6, 6)),  # padding > k-1: cropping
    ("ConvTranspose3d", (2, 4, 3), dict(stride=2, padding=1, output_padding=1), (1, 2, 3, 4, 3)),
    ("ConvTranspose3d", (4, 2, (2, 3, 2)), dict(groups=2, dilation=(1, 2, 1)), (4, 3, 3, 4)),
]


@pytest.mark.parametrize("name,args,kwargs,shape", CONV_CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CONV_CASES)])
def test_module_matches_torch(name, args, kwargs, shape):
    check_module_parity(getattr(nn, name), getattr(torch.nn, name), args, kwargs, shape)


@pytest.mark.parametrize("output_size", [(11, 9), [2, 5, 12, 10], (12, 10)])
def test_conv_transpose_output_size(output_size):
    check_module_parity(nn.ConvTranspose2d, torch.nn.ConvTranspose2d, (5, 4, 3), dict(stride=2, padding=1),
                        (2, 5, 6, 5), forward_kwargs={"output_size": output_size})


def test_conv_transpose_output_size_out_of_range():
    m = nn.ConvTranspose2d(5, 4, 3, stride=2, padding=1)
    v = zero_variables(m)
    with pytest.raises(ValueError, match="valid sizes range from"):
        m.apply(v, jnp.zeros((2, 5, 6, 5)), output_size=(13, 9))
    with pytest.raises(ValueError):
        torch.nn.ConvTranspose2d(5, 4, 3, stride=2, padding=1)(torch.zeros(2, 5, 6, 5), output_size=(13, 9))


# -- functional parity, randomised --------------------------------------------------------
@pytest.mark.slow  # randomised: many compilations
@settings(max_examples=12, deadline=None)
@given(
    n=st.integers(1, 3),
    groups=st.sampled_from([1, 2]),
    k=st.integers(1, 3),
    stride=st.integers(1, 3),
    pad=st.integers(0, 2),
    dil=st.integers(1, 2),
    bias=st.booleans(),
    batched=st.booleans(),
    seed=st.integers(0, 10_000),
)
def test_functional_conv_random(n, groups, k, stride, pad, dil, bias, batched, seed):
    rng = np.random.default_rng(seed)
    cin, cout = 2 * groups, 3 * groups
    spatial = tuple(int(s) for s in rng.integers(dil * (k - 1) + 1, 9, size=n))
    x = rng.standard_normal(((2,) if batched else ()) + (cin,) + spatial).astype(np.float32)
    w = rng.standard_normal((cout, cin // groups) + (k,) * n).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32) if bias else None
    kw = dict(stride=stride, padding=pad, dilation=dil, groups=groups)
    fn = getattr(F, f"conv{n}d")
    tfn = getattr(TF, f"conv{n}d")
    args = tuple(jnp.asarray(a) for a in [x, w] + ([b] if bias else []))
    targs = [torch.tensor(a, requires_grad=True) for a in [x, w] + ([b] if bias else [])]
    tout = tfn(targs[0], targs[1], targs[2] if bias else None, **kw)
    ct = rng.standard_normal(tout.shape).astype(np.float32)
    tout.backward(torch.tensor(ct))
    out, grads = jax_vjp(lambda *a: fn(*a[:2], a[2] if bias else None, **kw), args, jnp.asarray(ct))
    assert_close(out, tout)
    for g, t in zip(grads, targs, strict=True):
        assert_close(g, t.grad)


@pytest.mark.slow  # randomised: many compilations
@settings(max_examples=12, deadline=None)
@given(
    n=st.integers(1, 2),
    groups=st.sampled_from([1, 2]),
    k=st.integers(1, 4),
    stride=st.integers(1, 3),
    pad=st.integers(0, 3),
    dil=st.integers(1, 2),
    out_pad=st.integers(0, 2),
    seed=st.integers(0, 10_000),
)
def test_functional_conv_transpose_random(n, groups, k, stride, pad, dil, out_pad, seed):
    if out_pad >= max(stride, dil):
        out_pad = 0  # torch requires output_padding < stride or < dilation
    rng = np.random.default_rng(seed)
    cin, cout = 2 * groups, 3 * groups
    spatial = tuple(int(s) for s in rng.integers(1, 7, size=n))
    out_sizes = [(i - 1) * stride - 2 * pad + dil * (k - 1) + out_pad + 1 for i in spatial]
    if min(out_sizes) <= 0:
        pad = 0
    x = rng.standard_normal((2, cin) + spatial).astype(np.float32)
    w = rng.standard_normal((cin, cout // groups) + (k,) * n).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32)
    kw = dict(stride=stride, padding=pad, output_padding=out_pad, groups=groups, dilation=dil)
    fn = getattr(F, f"conv_transpose{n}d")
    tfn = getattr(TF, f"conv_transpose{n}d")
    targs = [torch.tensor(a, requires_grad=True) for a in (x, w, b)]
    tout = tfn(*targs, **kw)
    ct = rng.standard_normal(tout.shape).astype(np.float32)
    tout.backward(torch.tensor(ct))
    out, grads = jax_vjp(lambda x, w, b: fn(x, w, b, **kw), tuple(jnp.asarray(a) for a in (x, w, b)),
                         jnp.asarray(ct))
    assert_close(out, tout)
    for g, t in zip(grads, targs, strict=True):
        assert_close(g, t.grad)


def test_functional_same_padding_even_kernel_puts_extra_right():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 2, 7, 6)).astype(np.float32)
    w = rng.standard_normal((3, 2, 4, 2)).astype(np.float32)
    out = F.conv2d(jnp.asarray(x), jnp.asarray(w), padding="same", dilation=(1, 3))
    assert_close(out, TF.conv2d(torch.tensor(x), torch.tensor(w), padding="same", dilation=(1, 3)))


# -- init distribution ----------------------------------------------------------------------
def _torch_bound(torch_module):
    fan_in, _ = torch.nn.init._calculate_fan_in_and_fan_out(torch_module.weight)
    return 1.0 / math.sqrt(fan_in)


def _check_uniform(values, bound):
    values = np.asarray(values, np.float64).ravel()
    n = values.size
    assert np.abs(values).max() <= bound * (1 + 1e-6)
    assert np.abs(values).max() >= bound * (1 - 20.0 / n)  # the max of n uniforms is near the bound
    std = bound / math.sqrt(3)
    assert abs(values.mean()) < 5 * std / math.sqrt(n)
    # sample std of a uniform: relative standard error ≈ sqrt(0.8 / (4 n)) (excess kurtosis −1.2)
    assert abs(values.std() / std - 1) < 5 * math.sqrt(0.2 / n)


@pytest.mark.parametrize(
    "name,args,kwargs",
    [
        ("Conv2d", (64, 96, 5), {}),
        ("Conv1d", (48, 64, 7), dict(groups=4)),
        ("Conv3d", (8, 64, 3), {}),
        # ConvTranspose: fan_in is weight.size(1)·∏k = out/groups·∏k (torch's trap), not in·∏k
        ("ConvTranspose2d", (16, 512, 3), dict(groups=2)),
        ("ConvTranspose1d", (256, 24, 5), {}),
    ],
)
def test_init_distribution_matches_torch(name, args, kwargs):
    m = getattr(nn, name)(*args, **kwargs)
    tm = getattr(torch.nn, name)(*args, **kwargs)
    bound = _torch_bound(tm)
    v = m.init(jax.random.key(3))
    assert v.params["weight"].shape == tuple(tm.weight.shape)
    assert v.params["weight"].dtype == jnp.float32
    _check_uniform(v.params["weight"], bound)
    # torch's own bias lies within the same bound: the expectation is torch's, not ours
    assert float(tm.bias.detach().abs().max()) <= bound
    bias = np.asarray(v.params["bias"])
    assert bias.shape == tuple(tm.bias.shape)
    assert np.abs(bias).max() <= bound * (1 + 1e-6)
    assert np.abs(bias).max() >= bound * (1 - 30.0 / bias.size)


def test_conv_transpose_fan_in_trap():
    m = nn.ConvTranspose2d(1024, 4, 3)  # in·∏k = 9216, out·∏k = 36: bounds differ by 16×
    w = np.asarray(m.init(jax.random.key(0)).params["weight"])
    bound = 1 / math.sqrt(4 * 9)
    assert torch.nn.ConvTranspose2d(1024, 4, 3).weight.abs().max() > bound / 2
    assert bound * 0.99 < np.abs(w).max() <= bound


def test_dtype_argument():
    m = nn.Conv2d(4, 4, 3, dtype=jnp.bfloat16)
    specs = dict(m.named_parameter_specs())
    assert specs["weight"].dtype == jnp.bfloat16 and specs["bias"].dtype == jnp.bfloat16


# -- repr ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name,args,kwargs",
    [
        ("Conv1d", (3, 5, 3), {}),
        ("Conv2d", (3, 8, 3), dict(stride=2, padding=1, bias=False)),
        ("Conv2d", (4, 8, (3, 5)), dict(padding="same", dilation=2, groups=2, padding_mode="reflect")),
        ("Conv2d", (4, 8, 3), dict(padding="valid")),
        ("Conv3d", (2, 4, (1, 2, 3)), dict(stride=(1, 2, 1), padding_mode="circular")),
        ("ConvTranspose1d", (3, 5, 3), dict(output_padding=1, stride=2)),
        ("ConvTranspose2d", (4, 6, (3, 2)),
         dict(stride=2, padding=1, output_padding=1, groups=2, dilation=2)),
        ("ConvTranspose3d", (2, 2, 2), dict(bias=False)),
    ],
)
def test_repr_matches_torch(name, args, kwargs):
    assert repr(getattr(nn, name)(*args, **kwargs)) == repr(getattr(torch.nn, name)(*args, **kwargs))


# -- errors ----------------------------------------------------------------------------------
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3)
        self.conv2 = nn.ConvTranspose1d(6, 2, 3)

    def forward(self, x):
        return self.conv1(x)


def test_wrong_channels_names_module_path():
    net = Net()
    v = zero_variables(net)
    with pytest.raises(nn.ShapeError) as err:
        net.apply(v, jnp.zeros((2, 4, 8, 8)))
    msg = str(err.value)
    assert "Net.conv1" in msg and "Conv2d" in msg
    assert "[N, 3, H, W]" in msg and "(2, 4, 8, 8)" in msg


def test_wrong_ndim_names_module_path():
    net = Net()
    v = zero_variables(net)
    with pytest.raises(nn.ShapeError, match=r"Net\.conv1 .*\[N, 3, H, W\] or \[3, H, W\].*\(3, 8\)"):
        net.apply(v, jnp.zeros((3, 8)))
    m = nn.ConvTranspose1d(6, 2, 3)
    with pytest.raises(nn.ShapeError, match=r"ConvTranspose1d.*\[N, 6, L\].*\(2, 5, 4\)"):
        m.apply(zero_variables(m), jnp.zeros((2, 5, 4)))


def test_functional_errors_state_shapes():
    x, w = jnp.zeros((2, 4, 8, 8)), jnp.zeros((6, 3, 3, 3))
    with pytest.raises(ValueError, match=r"weight of size \[6, 3, 3, 3\].*3 channels, but got 4"):
        F.conv2d(x, w)
    with pytest.raises(ValueError, match="4D \\(batched\\)"):
        F.conv2d(jnp.zeros((1, 2, 3, 4, 5)), w)
    with pytest.raises(ValueError, match="Kernel size can't be greater"):
        F.conv2d(jnp.zeros((1, 3, 2, 8)), w)
    with pytest.raises(ValueError, match="strided"):
        F.conv1d(jnp.zeros((1, 3, 8)), jnp.zeros((2, 3, 3)), stride=2, padding="same")
    with pytest.raises(ValueError, match="output padding must be smaller"):
        F.conv_transpose1d(jnp.zeros((1, 3, 8)), jnp.zeros((3, 2, 3)), stride=2, output_padding=2)


@pytest.mark.parametrize(
    "name,args,kwargs",
    [
        ("Conv2d", (3, 6, 3), dict(groups=2)),
        ("Conv2d", (4, 6, 3), dict(groups=4)),
        ("Conv2d", (4, 6, 3), dict(groups=0)),
        ("Conv2d", (4, 6, 3), dict(padding="full")),
        ("Conv2d", (4, 6, 3), dict(padding="same", stride=2)),
        ("Conv2d", (4, 6, 3), dict(padding_mode="mirror")),
        ("ConvTranspose2d", (4, 6, 3), dict(padding_mode="reflect")),
    ],
)
def test_constructor_errors_like_torch(name, args, kwargs):
    with pytest.raises(ValueError):
        getattr(torch.nn, name)(*args, **kwargs)
    with pytest.raises(ValueError):
        getattr(nn, name)(*args, **kwargs)


# -- transforms ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name,args,kwargs,shape",
    [
        ("Conv2d", (3, 4, 3), dict(padding=1), (5, 3, 8, 7)),
        ("Conv1d", (3, 4, 3), dict(padding_mode="reflect", padding=1), (5, 3, 8)),
        ("ConvTranspose2d", (3, 4, 3), dict(stride=2, output_padding=1), (5, 3, 4, 4)),
    ],
)
def test_jit_and_vmap_over_unbatched_inputs(name, args, kwargs, shape):
    m = getattr(nn, name)(*args, **kwargs)
    tm = getattr(torch.nn, name)(*args, **kwargs)
    v, _ = m.load_state_dict(tm.state_dict())
    x = np.random.default_rng(2).standard_normal(shape).astype(np.float32)
    expected = tm(torch.tensor(x))
    assert_close(jax.jit(m.apply)(v.params, jnp.asarray(x)), expected)
    per_example = jax.jit(jax.vmap(lambda xi: m.apply(v.params, xi)))(jnp.asarray(x))
    assert_close(per_example, expected)
    # unbatched torch call on one example agrees too
    assert_close(m.apply(v.params, jnp.asarray(x[0])), tm(torch.tensor(x[0])))


def test_grad_under_jit_through_a_small_net():
    seq = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ConvTranspose2d(4, 2, 2, stride=2))
    v = seq.init(jax.random.key(0))  # funcnet's init → torch: the other direction of interchange
    tseq = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1),
                               torch.nn.ConvTranspose2d(4, 2, 2, stride=2))
    tseq.load_state_dict({k: torch.tensor(np.asarray(a)) for k, a in seq.state_dict(v).items()})
    x = np.random.default_rng(0).standard_normal((3, 1, 6, 6)).astype(np.float32)
    grads = jax.jit(jax.grad(lambda p: jnp.sum(seq.apply(p, jnp.asarray(x)) ** 2)))(v.params)
    (tseq(torch.tensor(x)) ** 2).sum().backward()
    for k, g in seq.state_dict(grads).items():
        assert_close(g, dict(tseq.named_parameters())[k].grad)
