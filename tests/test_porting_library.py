"""Library pieces torch model code needs, each against torch (forward and gradients):
Hardswish/Hardsigmoid, F.interpolate/nn.Upsample, torch-named top-level functions, the
TorchScript/FX no-ops, torch._assert, and utils.checkpoint as jax.checkpoint."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from layer_parity import check_function, check_module

import funcnet
from funcnet import nn
from funcnet.nn import functional as F

RNG = np.random.default_rng(0)


def _x(*shape, scale=3.0):
    return (scale * RNG.standard_normal(shape)).astype(np.float32)


@pytest.mark.parametrize("name", ["hardswish", "hardsigmoid"])
def test_hard_activations_match_torch(name):
    x = _x(4, 5, 6)  # scale 3: both kinks (±3) and the flat parts are hit
    check_function(getattr(F, name), getattr(torch.nn.functional, name), [x])
    module = {"hardswish": (nn.Hardswish(), torch.nn.Hardswish()),
              "hardsigmoid": (nn.Hardsigmoid(), torch.nn.Hardsigmoid())}[name]
    check_module(*module, x)


_INTERP_CASES = [
    ((2, 3, 5, 7), "nearest", None, dict(size=(11, 4))),
    ((2, 3, 5, 7), "nearest", None, dict(scale_factor=2)),
    ((2, 3, 5, 7), "nearest", None, dict(scale_factor=1.7)),
    ((2, 3, 5, 7), "nearest", None, dict(scale_factor=(0.6, 2.3), recompute_scale_factor=True)),
    ((2, 3, 5, 7), "nearest-exact", None, dict(scale_factor=1.7)),
    ((2, 3, 5, 7), "bilinear", False, dict(size=(11, 4))),
    ((2, 3, 5, 7), "bilinear", True, dict(size=(11, 4))),
    ((2, 3, 5, 7), "bilinear", False, dict(scale_factor=1.7)),
    ((2, 3, 5, 7), "bilinear", True, dict(scale_factor=(0.6, 2.3))),
    ((2, 3, 5, 7), "bicubic", False, dict(size=(11, 4))),
    ((2, 3, 5, 7), "bicubic", True, dict(size=(9, 13))),
    ((2, 3, 5, 7), "bicubic", False, dict(scale_factor=2.5)),
    ((2, 3, 8, 6), "area", None, dict(size=(3, 4))),
    ((2, 3, 9), "linear", False, dict(scale_factor=1.5)),
    ((2, 3, 9), "linear", True, dict(size=4)),
    ((2, 3, 9), "nearest", None, dict(size=20)),
    ((1, 2, 3, 4, 5), "trilinear", False, dict(size=(5, 3, 7))),
    ((1, 2, 3, 4, 5), "trilinear", True, dict(scale_factor=2)),
    ((1, 2, 3, 4, 5), "nearest", None, dict(scale_factor=(2, 1.5, 0.5))),
]


@pytest.mark.parametrize("shape, mode, align_corners, kwargs", _INTERP_CASES)
def test_interpolate_matches_torch(shape, mode, align_corners, kwargs):
    check_function(
        lambda x: F.interpolate(x, mode=mode, align_corners=align_corners, **kwargs),
        lambda x: torch.nn.functional.interpolate(x, mode=mode, align_corners=align_corners, **kwargs),
        [_x(*shape)], jit=False,
        atol=1e-5 if mode == "bicubic" else 1e-6,  # 16-term sums of inputs of scale 3: float32 rounding
    )


def test_linear_source_positions_round_as_torchs_fused_multiply_add():
    """torch computes ``scale·(i + 0.5) − 0.5`` with one rounding (an FMA in its x86 build); two
    roundings move the weight by an ulp and the output by up to ~1e-5 at the last positions."""
    for seed in range(20):
        x = np.random.default_rng(seed).standard_normal((2, 3, 9)).astype(np.float32) * 3
        ours = F.interpolate(jnp.asarray(x), mode="linear", scale_factor=1.5)
        theirs = torch.nn.functional.interpolate(torch.from_numpy(x), mode="linear", scale_factor=1.5)
        np.testing.assert_allclose(np.asarray(ours), theirs.numpy(), rtol=0, atol=1e-6)


def test_upsample_modules_match_torch():
    x = _x(2, 3, 4, 5)
    check_module(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                 torch.nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False), x)
    check_module(nn.Upsample(size=(7, 3)), torch.nn.Upsample(size=(7, 3)), x)
    check_module(nn.UpsamplingBilinear2d(scale_factor=2), torch.nn.UpsamplingBilinear2d(scale_factor=2), x)
    check_module(nn.UpsamplingNearest2d(size=9), torch.nn.UpsamplingNearest2d(size=9), x)
    ours, ref = nn.Upsample(scale_factor=2, mode="bilinear"), torch.nn.Upsample(scale_factor=2, mode="bilinear")
    assert repr(ours) == repr(ref)


def test_interpolate_bad_input_is_an_error():
    with pytest.raises(ValueError, match="only one of size or scale_factor"):
        F.interpolate(jnp.ones((1, 1, 4, 4)), size=2, scale_factor=2)
    with pytest.raises(ValueError, match="align_corners option can only be set"):
        F.interpolate(jnp.ones((1, 1, 4, 4)), size=2, align_corners=True)
    with pytest.raises(NotImplementedError, match="bilinear"):
        F.interpolate(jnp.ones((1, 1, 4)), size=2, mode="bilinear")
    with pytest.raises(NotImplementedError, match="antialias"):
        F.interpolate(jnp.ones((1, 1, 4, 4)), size=2, mode="bilinear", antialias=True)


_TOP_LEVEL = [
    ("sum", [(3, 4, 5)], dict(dim=1, keepdim=True)),
    ("sum", [(3, 4, 5)], dict(dim=(0, 2))),
    ("mean", [(3, 4, 5)], dict(dim=-1)),
    ("mean", [(3, 4, 5)], dict(dim=1, keepdim=True)),
    ("log", [(3, 4)], {}),
    ("exp", [(3, 4)], {}),
    ("sqrt", [(3, 4)], {}),
    ("abs", [(3, 4)], {}),
    ("tanh", [(3, 4)], {}),
    ("sigmoid", [(3, 4)], {}),
    ("relu", [(3, 4)], {}),
    ("transpose", [(2, 3, 4)], dict(dim0=0, dim1=2)),
    ("permute", [(2, 3, 4)], dict(dims=(2, 0, 1))),
    ("unsqueeze", [(2, 3)], dict(dim=1)),
    ("flatten", [(2, 3, 4)], dict(start_dim=1)),
    ("matmul", [(2, 3, 4), (4, 5)], {}),
    ("softmax", [(3, 4)], dict(dim=-1)),
    ("log_softmax", [(3, 4)], dict(dim=0)),
    ("clamp", [(3, 4)], dict(min=-0.5, max=0.5)),
    ("cat", None, dict(dim=1)),
    ("stack", None, dict(dim=2)),
    ("std", [(3, 4)], dict(dim=1)),
    ("var", [(3, 4)], dict(dim=0, keepdim=True)),
    ("amax", [(3, 4)], dict(dim=1)),
    ("squeeze", [(3, 1, 4)], dict(dim=1)),
    ("roll", [(3, 4)], dict(shifts=1, dims=1)),
    ("pow", [(3, 4)], dict(exponent=3)),
]


@pytest.mark.parametrize("name, shapes, kwargs", _TOP_LEVEL, ids=[c[0] + str(i) for i, c in enumerate(_TOP_LEVEL)])
def test_top_level_functions_match_torch(name, shapes, kwargs):
    if shapes is None:  # functions over a sequence of tensors
        args = [_x(2, 3), _x(2, 3)]
        check_function(lambda a, b: getattr(funcnet, name)([a, b], **kwargs),
                       lambda a, b: getattr(torch, name)([a, b], **kwargs), args)
        return
    args = [np.abs(_x(*s)) + 0.1 if name in ("log", "sqrt") else _x(*s) for s in shapes]
    check_function(lambda *a: getattr(funcnet, name)(*a, **kwargs), lambda *a: getattr(torch, name)(*a, **kwargs),
                   args)


def test_round_where_meshgrid_match_torch():
    x = _x(5, 6)
    np.testing.assert_array_equal(funcnet.round(jnp.asarray(x)), torch.round(torch.from_numpy(x)).numpy())
    halves = np.array([0.5, 1.5, 2.5, -0.5], np.float32)  # half to even, as torch
    np.testing.assert_array_equal(funcnet.round(jnp.asarray(halves)), torch.round(torch.from_numpy(halves)).numpy())
    y = _x(5, 6)
    np.testing.assert_array_equal(funcnet.where(jnp.asarray(x > 0), x, y),
                                  torch.where(torch.from_numpy(x > 0), torch.from_numpy(x), torch.from_numpy(y)))
    a, b = np.arange(3), np.arange(4)
    for ours, ref in zip(funcnet.meshgrid(jnp.asarray(a), jnp.asarray(b)),
                         torch.meshgrid(torch.from_numpy(a), torch.from_numpy(b), indexing="ij"), strict=True):
        np.testing.assert_array_equal(ours, ref.numpy())


@pytest.mark.parametrize("n, arg", [(7, 3), (6, 3), (5, 4), (7, [2, 5])])
def test_chunk_and_split_match_torch(n, arg):
    x = _x(n, 2)
    if isinstance(arg, int):
        pairs = [(funcnet.chunk(jnp.asarray(x), arg), torch.chunk(torch.from_numpy(x), arg)),
                 (funcnet.split(jnp.asarray(x), arg), torch.split(torch.from_numpy(x), arg))]
    else:
        pairs = [(funcnet.split(jnp.asarray(x), arg), torch.split(torch.from_numpy(x), arg))]
    for ours, ref in pairs:
        assert [p.shape for p in ours] == [tuple(r.shape) for r in ref]
        for p, r in zip(ours, ref, strict=True):
            np.testing.assert_array_equal(p, r.numpy())


def test_torchscript_and_fx_helpers_are_no_ops():
    def f(x):
        return x + 1

    assert funcnet.jit.unused(f) is f and funcnet.jit._overload_method(f) is f and funcnet.fx.wrap(f) is f
    assert funcnet.fx.wrap("name") == "name"
    assert funcnet.jit.is_scripting() is False
    assert funcnet.jit.annotate(list[int], [1]) == [1]
    funcnet._assert(True, "never")
    with pytest.raises(AssertionError, match="wrong size"):
        funcnet._assert(3 == 4, "wrong size")
    jax.jit(lambda x: (funcnet._assert(x.sum() > 0, "traced: skipped"), x)[1])(jnp.ones(2))


class _Checkpointed(nn.Module):
    def __init__(self, use_checkpoint):
        super().__init__()
        self.use_checkpoint = use_checkpoint
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.head = nn.Linear(4, 2)

    def block(self, x):
        return F.relu(self.bn(self.conv(x)))

    def forward(self, x):
        y = funcnet.utils.checkpoint.checkpoint(self.block, x, use_reentrant=False) if self.use_checkpoint \
            else self.block(x)
        return self.head(y.mean(axis=(2, 3)))


def test_checkpoint_is_jax_checkpoint_with_buffer_updates():
    x = jnp.asarray(_x(2, 3, 5, 5))
    plain, ckpt = _Checkpointed(False), _Checkpointed(True)
    params, buffers = plain.init(jax.random.key(0))

    def loss(model):
        def f(p):
            out, new = model.apply(p, x, buffers=buffers, train=True)
            return jnp.sum(out ** 2), new
        return jax.jit(jax.value_and_grad(f, has_aux=True))(params)

    (l0, b0), g0 = loss(plain)
    (l1, b1), g1 = loss(ckpt)
    np.testing.assert_allclose(l1, l0, rtol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), (g1, b1), (g0, b0))
    assert not np.allclose(b1["bn"]["running_mean"], 0)  # the update made inside the checkpoint arrived
    jaxpr = str(jax.make_jaxpr(lambda p: ckpt.apply(p, x, buffers=buffers, train=True))(params))
    assert "checkpoint" in jaxpr or "remat" in jaxpr
