"""Every convolution lowering (XLA, patches+matmul, channels-last pointwise matmul, depthwise
multiply-adds, matmul+col2im) against torch 2.13, forward and gradients; the selection rule and the
ways to force a lowering."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from conftest import assert_close_to_scale

import funcnet.nn as nn
import funcnet.nn.functional as F
from funcnet import backends, onednn

TF = torch.nn.functional
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")


def lowered_with(impl, fn, *args):
    """``fn(*args)`` and its VJP compiled under the setting ``impl``; also the primitive names used."""
    def run(args, ct):
        out, vjp = jax.vjp(fn, *args)
        return out, vjp(ct)

    with backends.conv_impl(impl):  # the setting is read while tracing
        jaxpr = jax.make_jaxpr(fn)(*args)
        ct = jnp.asarray(np.random.default_rng(1).standard_normal(jaxpr.out_avals[0].shape), jnp.float32)
        out, grads = jax.jit(run)(args, ct)
    prims = {str(e.primitive) for e in jaxpr.jaxpr.eqns}
    return out, grads, prims


# (n, transposed, C_in, C_out, kernel, kwargs, spatial, expected matmul lowering)
CASES = [
    (1, False, 4, 6, 3, dict(stride=2, padding=1), (11,), "patches"),
    (1, False, 4, 6, 3, dict(padding="same", dilation=2), (10,), "patches"),
    (2, False, 3, 8, 3, dict(stride=1, padding=1), (7, 6), "patches"),
    (2, False, 4, 6, (3, 2), dict(stride=(2, 1), padding=(1, 0), dilation=(1, 2)), (9, 8), "patches"),
    (2, False, 4, 6, 1, dict(stride=2), (7, 7), "pointwise"),
    (2, False, 5, 3, 1, dict(stride=(1, 2), padding=1), (6, 5), "pointwise"),
    (1, False, 4, 6, 1, dict(stride=3, padding=2), (10,), "pointwise"),
    (3, False, 3, 4, 1, dict(stride=(2, 1, 1)), (5, 3, 4), "pointwise"),
    # patchify (stride = kernel), the input past the last whole patch dropped
    (2, False, 3, 8, 4, dict(stride=4), (10, 9), "patches"),
    (2, False, 3, 5, (2, 3), dict(stride=(2, 3), padding=(1, 0)), (7, 9), "patches"),
    (1, False, 4, 6, 3, dict(stride=3, padding=1), (10,), "patches"),
    (3, False, 2, 3, 2, dict(stride=2), (4, 5, 5), "patches"),
    (2, False, 6, 4, 1, dict(groups=2), (5, 5), "patches"),  # grouped 1x1: per-group batched matmul
    (2, False, 6, 4, 3, dict(groups=2, padding="valid"), (6, 6), "patches"),
    (2, False, 4, 4, 3, dict(groups=4, stride=2, padding=1), (8, 8), "depthwise"),
    (2, False, 3, 6, 5, dict(groups=3, padding=2, dilation=1), (7, 7), "depthwise"),  # multiplier 2
    (2, False, 4, 8, 3, dict(groups=4, stride=(2, 3), padding=(2, 1), dilation=(2, 1)), (9, 8), "depthwise"),
    (3, False, 2, 3, 2, dict(stride=(1, 2, 1), padding=1), (4, 5, 4), "patches"),
    (3, False, 4, 4, 3, dict(groups=4, padding="same"), (4, 4, 4), "depthwise"),
    (1, True, 4, 6, 3, dict(stride=2, padding=1, output_padding=1), (5,), "col2im"),
    (2, True, 4, 6, 3, dict(stride=2, padding=1, output_padding=1), (4, 5), "col2im"),
    (2, True, 6, 4, (3, 2), dict(stride=(1, 2), padding=(2, 0), groups=2, dilation=(2, 1)), (5, 4), "col2im"),
    (2, True, 4, 4, 4, dict(stride=3, padding=0, output_padding=2, groups=4), (3, 3), "col2im"),
    (3, True, 2, 3, 2, dict(stride=2, padding=1, output_padding=(1, 0, 1)), (3, 3, 2), "col2im"),
]


def _case_id(case):
    n, transposed, ci, co, k, kw, _, _ = case
    return f"{'T' if transposed else ''}{n}d-{ci}to{co}-k{k}-" + "-".join(f"{a}{b}" for a, b in kw.items())


@pytest.mark.parametrize("impl", ["xla", "matmul"])
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_lowering_matches_torch(case, impl):
    n, transposed, c_in, c_out, kernel, kwargs, spatial, matmul_lowering = case
    rng = np.random.default_rng(0)
    kernel = (kernel,) * n if isinstance(kernel, int) else kernel
    groups = kwargs.get("groups", 1)
    w_shape = (c_in, c_out // groups, *kernel) if transposed else (c_out, c_in // groups, *kernel)
    x = rng.standard_normal((2, c_in, *spatial)).astype(np.float32)
    w = rng.standard_normal(w_shape).astype(np.float32)
    b = rng.standard_normal(c_out).astype(np.float32)
    name = f"conv_transpose{n}d" if transposed else f"conv{n}d"
    fn = getattr(F, name)
    out, (gx, gw, gb), prims = lowered_with(impl, lambda x, w, b: fn(x, w, b, **kwargs), *map(jnp.asarray, (x, w, b)))

    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    tout = getattr(TF, name)(tx, tw, tb, **kwargs)
    tout.backward(torch.tensor(np.random.default_rng(1).standard_normal(tuple(tout.shape)).astype(np.float32)))
    assert_close_to_scale(out, tout)
    assert_close_to_scale(gx, tx.grad)
    assert_close_to_scale(gw, tw.grad)
    assert_close_to_scale(gb, tb.grad)

    lowering = F.conv_lowering(x.shape, w.shape, groups=groups, transposed=transposed, impl=impl,
                               **{k: v for k, v in kwargs.items() if k not in ("groups", "output_padding")})
    assert lowering == ("xla" if impl == "xla" else matmul_lowering)
    assert ("conv_general_dilated" in prims) == (impl == "xla"), prims


@pytest.mark.skipif(not onednn.available(), reason="oneDNN is not installed here")
def test_pointwise_products_run_on_onednn(monkeypatch):
    """A 1x1 convolution on a 4x4 map keeps the pointwise lowering and does its products (forward,
    and the data and weight gradients) on oneDNN; same values as torch; with the switch off, XLA's
    dots."""
    from funcnet.nn.functional import conv as conv_module
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 24, 4, 4)).astype(np.float32)
    w = rng.standard_normal((40, 24, 1, 1)).astype(np.float32)
    assert F.conv_lowering(x.shape, w.shape, backend="cpu", impl="auto") == "pointwise"
    fn = lambda x, w: F.conv2d(x, w)  # noqa: E731

    def products(x, w):  # a new function each time: JAX caches traces per function
        def forward_and_backward(x, w):
            out, vjp = jax.vjp(fn, x, w)
            return vjp(out)

        return [str(e.primitive) for e in jax.make_jaxpr(forward_and_backward)(x, w).eqns]

    out, (gx, gw), _ = lowered_with("auto", fn, jnp.asarray(x), jnp.asarray(w))
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    tout = TF.conv2d(tx, tw)
    tout.backward(torch.tensor(np.random.default_rng(1).standard_normal(tuple(tout.shape)).astype(np.float32)))
    assert_close_to_scale(out, tout)
    assert_close_to_scale(gx, tx.grad)
    assert_close_to_scale(gw, tw.grad)
    assert products(jnp.asarray(x), jnp.asarray(w)).count("funcnet_onednn_matmul") == 3
    monkeypatch.setattr(conv_module, "_CPU_ONEDNN_POINTWISE_PRODUCT", False)
    assert "funcnet_onednn_matmul" not in products(jnp.asarray(x), jnp.asarray(w))


@pytest.mark.parametrize("impl", ["xla", "matmul"])
def test_padding_modes_and_unbatched_through_the_module(impl):
    """nn.Conv2d's reflect/circular/replicate padding pads first, then convolves: same lowering."""
    rng = np.random.default_rng(0)
    for mode in ("reflect", "circular", "replicate"):
        tm = torch.nn.Conv2d(3, 4, 3, padding=1, padding_mode=mode)
        m = nn.Conv2d(3, 4, 3, padding=1, padding_mode=mode)
        variables, _ = m.load_state_dict(tm.state_dict())
        x = rng.standard_normal((3, 5, 6)).astype(np.float32)  # unbatched
        with backends.conv_impl(impl):
            out = jax.jit(m.apply)(variables.params, jnp.asarray(x))
        assert_close_to_scale(out, tm(torch.tensor(x)))


def test_matmul_lowering_under_jit_vmap_grad_scan():
    """The slice/matmul formulation composes with JAX's transformations like XLA's convolution."""
    rng = np.random.default_rng(0)
    xs = jnp.asarray(rng.standard_normal((3, 2, 4, 6, 6)).astype(np.float32))  # [steps, vmap, C, H, W]
    w = jnp.asarray(rng.standard_normal((4, 1, 3, 3)).astype(np.float32))
    w2 = jnp.asarray(rng.standard_normal((5, 4, 3, 3)).astype(np.float32))

    def loss(w, w2, x):  # unbatched x [C, H, W]: depthwise, then a dense conv
        h = F.conv2d(x, w, padding=1, groups=4)
        return jnp.sum(F.conv2d(jnp.tanh(h), w2, stride=2) ** 2)

    def run(w, w2):
        def body(carry, x):
            g = jax.vmap(jax.grad(loss, argnums=(0, 1)), in_axes=(None, None, 0))(w, w2, x)
            return carry + sum(jnp.sum(a) for a in g), None
        return jax.lax.scan(body, 0.0, xs)[0]

    results = {}
    for impl in ("xla", "matmul"):
        with backends.conv_impl(impl):
            results[impl] = jax.jit(run)(w, w2)
    np.testing.assert_allclose(results["matmul"], results["xla"], rtol=1e-5)


@pytest.mark.parametrize("groups,out_channels,stride", [(4, 4, 1), (3, 6, 2)])  # multiplier 1 and 2
def test_depthwise_second_derivatives_match_xla(groups, out_channels, stride):
    """Gradients of gradients through the depthwise lowering (its weight gradient is one variadic
    reduction with a VJP of its own) equal those through XLA's convolution. In float64: float32
    rounding, amplified by two differentiations, reaches 6e-5; float64 agrees to ~1e-15."""
    rng = np.random.default_rng(1)

    def loss(w, x):
        return jnp.sum(jnp.tanh(F.conv2d(x, w, stride=stride, padding=1, groups=groups)) ** 2)

    def grad_norm(w, x):  # differentiates the weight and input gradients once more
        gw, gx = jax.grad(loss, argnums=(0, 1))(w, x)
        return jnp.sum(gw ** 2) + jnp.sum(jnp.sin(gx))

    results = {}
    with jax.enable_x64(True):
        x = jnp.asarray(rng.standard_normal((2, groups, 7, 6)))
        w = jnp.asarray(rng.standard_normal((out_channels, 1, 3, 3)))
        for impl, lowering in (("xla", "xla"), ("matmul", "depthwise")):
            with backends.conv_impl(impl):
                assert F.conv_lowering(x.shape, w.shape, stride, 1, groups=groups) == lowering
                results[impl] = jax.jit(jax.grad(grad_norm, argnums=(0, 1)))(w, x)
    for ours, ref in zip(results["matmul"], results["xla"], strict=True):
        assert ours.dtype == np.float64
        np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=1e-12)


# -- the selection rule and forcing --------------------------------------------------------
def test_auto_rule_on_cpu_picks_matmul_where_xla_cpu_is_slow():
    dense = "onednn" if onednn.available() else "xla"  # the larger dense convolutions (tests/test_onednn.py)
    # ResNet's deep layers (small maps, many channels): XLA:CPU's convolution is 10-100x slower.
    assert F.conv_lowering((16, 512, 2, 2), (512, 512, 3, 3), padding=1, backend="cpu", impl="auto") == "patches"
    assert F.conv_lowering((16, 256, 4, 4), (512, 256, 3, 3), stride=2, padding=1, backend="cpu",
                           impl="auto") == "patches"
    # 4x4 outputs (16 positions) still take patches; 8x8 (64) oneDNN's (else XLA's Eigen) convolution.
    assert F.conv_lowering((16, 256, 4, 4), (256, 256, 3, 3), padding=1, backend="cpu", impl="auto") == "patches"
    assert F.conv_lowering((16, 256, 8, 8), (256, 256, 3, 3), stride=2, padding=1, backend="cpu",
                           impl="auto") == "patches"
    assert F.conv_lowering((16, 128, 8, 8), (128, 128, 3, 3), padding=1, backend="cpu", impl="auto") == dense
    # Bottleneck 1x1s: a channels-last matmul whose weight gradient needs no transposing copy (oneDNN's
    # from 8x8 outputs when available).
    assert F.conv_lowering((16, 256, 16, 16), (64, 256, 1, 1), backend="cpu", impl="auto") == dense
    assert F.conv_lowering((16, 256, 8, 8), (512, 256, 1, 1), stride=2, backend="cpu", impl="auto") == "pointwise"
    # The ResNet stem (3 channels, 7x7 on a large map): a direct convolution, not patches.
    assert F.conv_lowering((16, 3, 64, 64), (64, 3, 7, 7), stride=2, padding=3, backend="cpu", impl="auto") == dense
    # Depthwise (MobileNet): shifted multiply-adds.
    assert F.conv_lowering((16, 96, 16, 16), (96, 1, 3, 3), padding=1, groups=96, backend="cpu",
                           impl="auto") == "depthwise"
    assert F.conv_lowering((16, 64, 4, 4), (64, 32, 4, 4), stride=2, transposed=True, backend="cpu",
                           impl="auto") == "col2im"


def test_auto_rule_on_accelerators_is_xla():
    for backend in ("gpu", "cuda", "tpu"):
        assert F.conv_lowering((16, 512, 2, 2), (512, 512, 3, 3), padding=1, backend=backend, impl="auto") == "xla"
        assert F.conv_lowering((16, 96, 8, 8), (96, 1, 3, 3), groups=96, backend=backend, impl="auto") == "xla"
    # forced matmul applies on any backend
    assert F.conv_lowering((16, 512, 2, 2), (512, 512, 3, 3), backend="gpu", impl="matmul") == "patches"


def test_setting_env_var_and_context_manager(monkeypatch):
    shape = ((16, 512, 2, 2), (512, 512, 3, 3))
    monkeypatch.delenv(backends.ENV_VAR, raising=False)
    assert backends.get_conv_impl() == "auto"
    monkeypatch.setenv(backends.ENV_VAR, "xla")
    assert backends.get_conv_impl() == "xla"
    assert F.conv_lowering(*shape, backend="cpu") == "xla"
    monkeypatch.setenv(backends.ENV_VAR, "MatMul")
    assert F.conv_lowering(*shape, backend="gpu") == "patches"
    try:
        backends.set_conv_impl("xla")  # an explicit setting wins over the environment
        assert F.conv_lowering(*shape, backend="gpu") == "xla"
        with backends.conv_impl("auto"):
            assert F.conv_lowering(*shape, backend="cpu") == "patches"
        assert backends.get_conv_impl() == "xla"
    finally:
        backends.set_conv_impl(None)
    assert backends.get_conv_impl() == "matmul"
    monkeypatch.setenv(backends.ENV_VAR, "cudnn")
    with pytest.raises(ValueError, match="FUNCNET_CONV_IMPL.*'auto', 'xla', 'matmul'.*'cudnn'"):
        backends.get_conv_impl()
    with pytest.raises(ValueError, match="set_conv_impl"):
        backends.set_conv_impl("fast")


def test_forcing_changes_the_traced_program(monkeypatch):
    x = jnp.ones((2, 8, 4, 4))
    w = jnp.ones((8, 8, 3, 3))
    for impl, has_conv in (("xla", True), ("matmul", False)):
        monkeypatch.setenv(backends.ENV_VAR, impl)
        prims = {str(e.primitive) for e in jax.make_jaxpr(lambda x, w: F.conv2d(x, w, padding=1))(x, w).jaxpr.eqns}
        assert ("conv_general_dilated" in prims) == has_conv
