"""funcnet.onednn: oneDNN's convolutions as JAX primitives, against torch 2.13 (forward, gradients,
second derivatives, forward mode) and JAX's own convolution (vmap, scan, eager); the CPU rule that
picks them; the shim's build, cache and switches."""

import concurrent.futures
import os
import platform
import subprocess
import sys
import textwrap

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
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PIP_WHEELS = sys.platform.startswith("linux") and platform.machine() == "x86_64"
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")


def test_available_where_the_test_extra_installs_it():
    """The test extra installs oneDNN on Linux x86-64: there it must load (not skip silently)."""
    if not PIP_WHEELS:
        assert not onednn.available() or "available" in onednn.status()
        return
    assert onednn.available(), onednn.status()
    assert onednn.status().startswith("available: oneDNN 3."), onednn.status()


needs_onednn = pytest.mark.skipif(not PIP_WHEELS, reason="oneDNN pip wheels exist for Linux x86-64 only")


def primitives(fn, *args):
    return {str(e.primitive) for e in jax.make_jaxpr(fn)(*args).jaxpr.eqns}


# (C_in, C_out, kernel, kwargs, spatial)
CASES = [
    (16, 24, 3, dict(padding=1), (12, 12)),
    (8, 6, 3, dict(stride=2, padding=1), (9, 8)),
    (4, 6, (3, 2), dict(stride=(2, 1), padding=(1, 0), dilation=(1, 2)), (9, 8)),
    (4, 6, 3, dict(padding="same", dilation=2), (10, 7)),
    (4, 6, (3, 2), dict(padding="same"), (7, 6)),  # asymmetric: torch pads the width 0 left, 1 right
    (3, 8, 7, dict(stride=2, padding=3), (16, 16)),  # an image stem
    (5, 3, 1, dict(stride=(1, 2), padding=1), (6, 5)),  # 1x1
    (6, 4, 3, dict(groups=2, padding="valid"), (6, 6)),  # grouped
    (4, 8, 3, dict(groups=4, stride=(2, 3), padding=(2, 1), dilation=(2, 1)), (9, 8)),  # depthwise, multiplier 2
    (6, 6, 7, dict(groups=6, padding=3), (9, 10)),  # ConvNeXt's 7x7 depthwise
]


def _case_id(case):
    ci, co, k, kw, _ = case
    return f"{ci}to{co}-k{k}-" + "-".join(f"{a}{b}" for a, b in kw.items())


@needs_onednn
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_forced_onednn_matches_torch(case):
    """Every 2-D float32 convolution with the implementation forced to oneDNN: forward and the
    input, weight and bias gradients, against torch's (itself oneDNN's) ``conv2d``."""
    c_in, c_out, kernel, kwargs, spatial = case
    rng = np.random.default_rng(0)
    kernel = (kernel,) * 2 if isinstance(kernel, int) else kernel
    x = rng.standard_normal((3, c_in, *spatial)).astype(np.float32)
    w = rng.standard_normal((c_out, c_in // kwargs.get("groups", 1), *kernel)).astype(np.float32)
    b = rng.standard_normal(c_out).astype(np.float32)

    def fn(x, w, b):
        return F.conv2d(x, w, b, **kwargs)

    with backends.conv_impl("onednn"):
        assert "funcnet_onednn_conv" in primitives(fn, x, w, b)
        out, vjp = jax.vjp(jax.jit(fn), *map(jnp.asarray, (x, w, b)))
        ct = rng.standard_normal(out.shape).astype(np.float32)
        gx, gw, gb = vjp(jnp.asarray(ct))

    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    tout = TF.conv2d(tx, tw, tb, **kwargs)
    tout.backward(torch.tensor(ct))
    assert_close_to_scale(out, tout)
    assert_close_to_scale(gx, tx.grad)
    assert_close_to_scale(gw, tw.grad)
    assert_close_to_scale(gb, tb.grad)


@needs_onednn
def test_second_derivatives_and_forward_mode_match_torch():
    """The three primitives transpose into each other, so gradients of gradients and JVPs work:
    the gradient of a function of (dL/dx, dL/dw), and a JVP, against torch's double backward and
    ``torch.func.jvp``."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 8, 9, 9)).astype(np.float32)
    w = rng.standard_normal((6, 8, 3, 3)).astype(np.float32) * 0.3
    kw = dict(stride=2, padding=1, dilation=1)

    def loss(x, w):
        return jnp.sum(jnp.tanh(F.conv2d(x, w, **kw)) ** 2)

    def grad_fn(x, w):
        gx, gw = jax.grad(loss, argnums=(0, 1))(x, w)
        return jnp.sum(gw ** 2) + jnp.sum(jnp.sin(gx))

    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    tgx, tgw = torch.autograd.grad((torch.tanh(TF.conv2d(tx, tw, **kw)) ** 2).sum(), (tx, tw), create_graph=True)
    (tgw ** 2).sum().add(torch.sin(tgx).sum()).backward()
    dx, dw = rng.standard_normal(x.shape).astype(np.float32), rng.standard_normal(w.shape).astype(np.float32)
    t_out, t_tangent = torch.func.jvp(lambda x, w: TF.conv2d(x, w, **kw), (torch.tensor(x), torch.tensor(w)),
                                      (torch.tensor(dx), torch.tensor(dw)))
    with backends.conv_impl("onednn"):
        hx, hw = jax.jit(jax.grad(grad_fn, argnums=(0, 1)))(x, w)
        out, tangent = jax.jvp(lambda x, w: F.conv2d(x, w, **kw), (x, w), (dx, dw))
    assert_close_to_scale(hx, tx.grad, rtol=2e-5)
    assert_close_to_scale(hw, tw.grad, rtol=2e-5)
    assert_close_to_scale(out, t_out)
    assert_close_to_scale(tangent, t_tangent)


def _conv(x, w):
    return onednn.conv2d(x, w, (2, 1), ((1, 2), (0, 1)), (1, 2))


def _reference(x, w):
    return jax.lax.conv_general_dilated(x, w, (2, 1), ((1, 2), (0, 1)), rhs_dilation=(1, 2))


@needs_onednn
def test_vmap_scan_and_eager_agree_with_xla():
    """Batched activations with a shared weight fold into N; batched weights loop in the handler;
    per-example gradients, nested vmaps, scan and eager calls all agree with XLA's convolution."""
    rng = np.random.default_rng(3)
    xs = jnp.asarray(rng.standard_normal((3, 5, 8, 9, 9)).astype(np.float32))
    ws = jnp.asarray(rng.standard_normal((3, 4, 8, 3, 3)).astype(np.float32))
    w = ws[0]

    def loss(conv):
        return lambda x, w: jnp.sum(jnp.sin(conv(x, w)))

    pairs = [
        (lambda c: c(xs[0], w)),  # eager
        (lambda c: jax.vmap(c, (0, None))(xs, w)),
        (lambda c: jax.vmap(c)(xs, ws)),
        (lambda c: jax.vmap(c, (1, 0))(jnp.swapaxes(xs, 0, 1)[:, :3], ws)),
        (lambda c: jax.vmap(jax.vmap(c, (0, None)), (None, 0))(xs, ws)),
        (lambda c: jax.vmap(jax.grad(loss(c), argnums=(0, 1)), (0, None))(xs, w)),  # per-example grads
        (lambda c: jax.lax.scan(lambda carry, wi: (carry, c(carry, wi)), xs[0], ws)[1]),
    ]
    for i, run in enumerate(pairs):
        ours, ref = run(_conv), run(_reference)
        for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(ref), strict=True):
            assert a.shape == b.shape, i
            assert_close_to_scale(a, b, rtol=2e-5)


@needs_onednn
def test_concurrent_calls_from_threads():
    """Two compiled convolutions of different shapes running at once from Python threads (the
    handler shares XLA's pool and a primitive cache) give the single-threaded results."""
    rng = np.random.default_rng(4)
    x1, w1, x2, w2 = (rng.standard_normal(s).astype(np.float32)
                      for s in ((8, 16, 16, 16), (16, 16, 3, 3), (4, 8, 12, 12), (8, 8, 5, 5)))
    f = jax.jit(jax.grad(lambda x, w: jnp.sum(onednn.conv2d(x, w, (1, 1), ((1, 1), (1, 1)), (1, 1)) ** 2), (0, 1)))
    g = jax.jit(jax.grad(lambda x, w: jnp.sum(onednn.conv2d(x, w, (2, 2), ((2, 2), (2, 2)), (1, 1)) ** 2), (0, 1)))
    expected = [f(x1, w1), g(x2, w2)]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(f, x1, w1) if i % 2 == 0 else pool.submit(g, x2, w2) for i in range(16)]
        for i, future in enumerate(futures):
            for a, b in zip(future.result(), expected[i % 2], strict=True):
                np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@needs_onednn
def test_no_openmp_threads_started():
    """oneDNN runs single-threaded inside XLA's pool: planning and running new convolutions and
    products starts no OpenMP team, i.e. no thread beyond XLA's own (a team started from XLA's
    threads made every OpenMP barrier in the process sleep: torch's CPU ops ran 33-80% slower).
    In a fresh process, so that no earlier test's team exists."""
    script = textwrap.dedent("""
        import os
        import jax, jax.numpy as jnp
        from funcnet import onednn
        assert onednn.available(), onednn.status()
        threads = lambda: len(os.listdir("/proc/self/task"))
        jnp.ones(4).block_until_ready()
        before = threads()
        for size in (8, 12):
            x, w = jnp.ones((16, 32, size, size)), jnp.ones((64, 32, 3, 3))
            loss = lambda x, w: jnp.sum(onednn.conv2d(x, w, (1, 1), ((1, 1), (1, 1)), (1, 1)) ** 2)
            jax.block_until_ready(jax.jit(jax.grad(loss, (0, 1)))(x, w))
            a = jnp.ones((8, size * 16, 256))
            jax.block_until_ready(jax.jit(lambda a: onednn.matmul(a, a, transpose_b=True))(a))
        print("threads", before, threads())
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "OMP_NUM_THREADS": "2"})
    assert result.returncode == 0, result.stderr[-3000:]
    before, after = map(int, result.stdout.split()[-2:])
    assert after == before, f"threads before/after the oneDNN calls: {before}/{after}"


def test_bad_operands_raise():
    with pytest.raises(ValueError, match=r"expected x \[N, C, H, W\].*\(3, 8, 8\)"):
        onednn.conv2d(jnp.ones((3, 8, 8)), jnp.ones((4, 3, 3, 3)), (1, 1), ((0, 0), (0, 0)), (1, 1))
    if onednn.available():
        with pytest.raises(TypeError, match="float32 only, got bfloat16"):
            onednn.conv2d(jnp.ones((1, 3, 8, 8), jnp.bfloat16), jnp.ones((4, 3, 3, 3), jnp.bfloat16),
                          (1, 1), ((0, 0), (0, 0)), (1, 1))


# -- the rule -------------------------------------------------------------------------------
@needs_onednn
def test_auto_rule_gives_dense_convolutions_to_onednn():
    rule = lambda *a, **k: F.conv_lowering(*a, backend="cpu", impl="auto", **k)  # noqa: E731
    assert rule((16, 64, 16, 16), (64, 64, 3, 3), padding=1) == "onednn"  # ResNet layer1
    assert rule((16, 128, 8, 8), (128, 128, 3, 3), padding=1) == "onednn"
    assert rule((16, 3, 64, 64), (64, 3, 7, 7), stride=2, padding=3) == "onednn"  # the stem
    assert rule((16, 256, 4, 4), (256, 256, 3, 3), padding=1) == "patches"  # 4x4 outputs
    assert rule((16, 3, 64, 64), (192, 3, 8, 8), stride=8) == "patches"  # patchify (ViT): a reshape + matmul
    assert rule((16, 96, 16, 16), (192, 96, 2, 2), stride=2) == "patches"
    assert rule((16, 256, 16, 16), (64, 256, 1, 1)) == "onednn"  # 1x1 on 16x16: oneDNN's
    assert rule((16, 256, 8, 8), (512, 256, 1, 1)) == "onednn"  # 8x8 outputs: from here
    assert rule((16, 256, 8, 8), (512, 256, 1, 1), stride=2) == "pointwise"  # 4x4 outputs
    assert rule((16, 1024, 4, 4), (256, 1024, 1, 1)) == "pointwise"
    assert rule((16, 96, 16, 16), (96, 1, 3, 3), padding=1, groups=96) == "depthwise"
    assert rule((16, 576, 4, 4), (576, 1, 3, 3), stride=2, padding=1, groups=576) == "onednn"  # 3x3 dw, 4x4..8x8
    assert rule((16, 192, 8, 8), (192, 1, 3, 3), padding=1, groups=192) == "onednn"
    assert rule((16, 960, 2, 2), (960, 1, 3, 3), padding=1, groups=960) == "depthwise"  # 2x2 maps
    for side in (2, 16, 32):  # 5x5 (EfficientNet) and 7x7 (ConvNeXt) depthwise: oneDNN at every map size
        assert rule((16, 480, side, side), (480, 1, 5, 5), padding=2, groups=480) == "onednn"
        assert rule((16, 96, side, side), (96, 1, 7, 7), padding=3, groups=96) == "onednn"
    assert rule((16, 96, 16, 16), (96, 1, 3, 5), padding=(1, 2), groups=96) == "depthwise"  # 15 taps
    assert rule((16, 256, 8, 8), (256, 8, 3, 3), padding=1, groups=32) == "onednn"  # ResNeXt's grouped 3x3
    assert rule((16, 1024, 2, 2), (1024, 32, 3, 3), padding=1, groups=32) == "onednn"  # at every map size
    assert rule((16, 96, 16), (96, 1, 7), padding=3, groups=96) == "depthwise"  # 1-D: 7 taps
    assert rule((16, 64, 16, 16), (64, 64, 3, 3), padding=1, dtype=jnp.bfloat16) == "xla"  # float32 only
    assert rule((16, 64, 64), (64, 64, 3), padding=1) == "xla"  # 2-D only
    assert F.conv_lowering((16, 64, 16, 16), (64, 64, 3, 3), padding=1, backend="gpu", impl="auto") == "xla"
    with pytest.raises(RuntimeError, match="forced to 'onednn', which runs on CPU only, but the backend is 'gpu'"):
        F.conv_lowering((16, 64, 16, 16), (64, 64, 3, 3), padding=1, backend="gpu", impl="onednn")


@needs_onednn
def test_resnet_block_trains_the_same_with_and_without_onednn():
    """A torchvision-style basic block's train-step gradients through ``nn.Conv2d``: oneDNN (auto
    rule) against XLA's convolution."""
    block = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
                          nn.Conv2d(16, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16))
    params, buffers = block.init(jax.random.key(0))
    x = jnp.asarray(np.random.default_rng(5).standard_normal((4, 16, 10, 10)).astype(np.float32))

    def make_loss():  # a new function per setting: JAX caches traces per function, not per setting
        def loss(params):
            out, _ = block.apply(params, x, buffers=buffers, train=True)
            return jnp.sum(jax.nn.relu(out + x) ** 2)
        return loss

    results = {}
    for impl in ("auto", "xla"):
        loss = make_loss()
        with backends.conv_impl(impl):
            assert ("funcnet_onednn_conv" in primitives(loss, params)) == (impl == "auto")
            results[impl] = jax.jit(jax.value_and_grad(loss))(params)
    for a, b in zip(jax.tree.leaves(results["auto"]), jax.tree.leaves(results["xla"]), strict=True):
        assert_close_to_scale(a, b, rtol=2e-5)


def test_unavailable_onednn_falls_back_or_raises_when_forced(monkeypatch):
    monkeypatch.setattr(onednn, "available", lambda: False)
    monkeypatch.setattr(onednn, "status", lambda: "unavailable: test")
    assert F.conv_lowering((16, 64, 16, 16), (64, 64, 3, 3), padding=1, backend="cpu", impl="auto") == "xla"
    with pytest.raises(RuntimeError, match="forced to 'onednn', but oneDNN is unavailable: test"):
        F.conv_lowering((16, 64, 16, 16), (64, 64, 3, 3), padding=1, backend="cpu", impl="onednn")
    with pytest.raises(RuntimeError, match="oneDNN is unavailable: test"):
        onednn.conv2d(jnp.ones((1, 3, 8, 8)), jnp.ones((4, 3, 3, 3)), (1, 1), ((0, 0), (0, 0)), (1, 1))
    x, w = jnp.ones((2, 16, 8, 8)), jnp.ones((16, 16, 3, 3))
    assert "conv_general_dilated" in primitives(lambda x, w: F.conv2d(x, w, padding=1), x, w)


# -- the shim: switches, build cache ----------------------------------------------------------
def _status_in_subprocess(env_update: dict, code: str = "import funcnet.onednn as o; print(o.status())"):
    env = {**os.environ, "JAX_PLATFORMS": "cpu", **env_update}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=300)


@pytest.mark.subprocess
def test_switch_and_missing_installation_say_why():
    off = _status_in_subprocess({"FUNCNET_ONEDNN": "off"})
    assert off.stdout.strip() == "unavailable: $FUNCNET_ONEDNN=off", off.stderr
    bad = _status_in_subprocess({"FUNCNET_ONEDNN": "sometimes"})
    assert bad.returncode != 0 and "FUNCNET_ONEDNN must be on or off, got 'sometimes'" in bad.stderr
    missing = _status_in_subprocess({"FUNCNET_ONEDNN_ROOT": "/nonexistent/onednn"})
    assert "unavailable: $FUNCNET_ONEDNN_ROOT=/nonexistent/onednn has no include/oneapi/dnnl/dnnl.hpp" \
        in missing.stdout, missing.stderr


@needs_onednn
@pytest.mark.slow
@pytest.mark.subprocess
def test_shim_is_built_once_into_the_cache(tmp_path):
    """A fresh cache directory gets one compiled shim (written atomically: no partial files left);
    a second process loads that file instead of compiling again."""
    env = {"FUNCNET_CACHE_DIR": str(tmp_path)}
    code = textwrap.dedent("""
        import funcnet.onednn as o, jax, numpy as np
        print(o.status())
        x = np.random.default_rng(0).standard_normal((1, 2, 5, 5)).astype(np.float32)
        w = np.random.default_rng(1).standard_normal((3, 2, 3, 3)).astype(np.float32)
        ref = jax.lax.conv_general_dilated(x, w, (1, 1), ((1, 1), (1, 1)))
        print(float(abs(o.conv2d(x, w, (1, 1), ((1, 1), (1, 1)), (1, 1)) - ref).max()) < 1e-5)
    """)
    first = _status_in_subprocess(env, code)
    assert first.returncode == 0, first.stderr
    built = list(tmp_path.rglob("*"))
    shims = [p for p in built if p.is_file()]
    assert len(shims) == 1 and shims[0].name == "libfuncnet_onednn.so", built
    assert str(shims[0]) in first.stdout
    assert first.stdout.split()[-1] == "True"
    mtime = shims[0].stat().st_mtime_ns
    second = _status_in_subprocess(env, code)
    assert second.returncode == 0 and second.stdout == first.stdout, second.stderr
    assert shims[0].stat().st_mtime_ns == mtime


# -- matrix products ------------------------------------------------------------------------------
def _op(x, transposed):
    return jnp.swapaxes(x, -1, -2) if transposed else x


@needs_onednn
@pytest.mark.parametrize("transpose_a", [False, True])
@pytest.mark.parametrize("transpose_b", [False, True])
def test_matmul_values_gradients_and_transforms(transpose_a, transpose_b):
    """``op(a) @ op(b)`` for every transpose combination against XLA's dot: values, gradients,
    gradients of gradients, a JVP, vmap with a shared and a batched right operand, eager."""
    rng = np.random.default_rng(6)
    a = jnp.asarray(rng.standard_normal((3, 7, 5) if transpose_a else (3, 5, 7)).astype(np.float32))
    b = jnp.asarray(rng.standard_normal((3, 4, 7) if transpose_b else (3, 7, 4)).astype(np.float32))

    def ours(a, b):
        return onednn.matmul(a, b, transpose_a, transpose_b)

    def ref(a, b):
        return _op(a, transpose_a) @ _op(b, transpose_b)

    def second(mm):  # differentiates both gradients once more
        def grads_norm(a, b):
            ga, gb = jax.grad(lambda a, b: jnp.sum(jnp.sin(mm(a, b))), argnums=(0, 1))(a, b)
            return jnp.sum(ga ** 2) + jnp.sum(jnp.cos(gb))
        return jax.grad(grads_norm, argnums=(0, 1))

    checks = [
        lambda mm: mm(a, b),
        lambda mm: jax.jit(mm)(a[0], b[0]),
        lambda mm: jax.grad(lambda a, b: jnp.sum(jnp.tanh(mm(a, b))), argnums=(0, 1))(a, b),
        lambda mm: jax.jit(second(mm))(a, b),
        lambda mm: jax.jvp(mm, (a, b), (jnp.cos(a), jnp.sin(b))),
        lambda mm: jax.vmap(mm, (0, None))(a, b[0]),
        lambda mm: jax.vmap(mm, (None, 0))(a[0], b),
        lambda mm: jax.vmap(mm, (1, 0))(jnp.stack([a, a + 1], 1), jnp.stack([b, 2 * b])),  # both batched
    ]
    for i, check in enumerate(checks):
        for x, y in zip(jax.tree.leaves(check(ours)), jax.tree.leaves(check(ref)), strict=True):
            assert x.shape == y.shape, i
            assert_close_to_scale(x, y, rtol=2e-5)
    assert "funcnet_onednn_matmul" in primitives(ours, a, b)


@pytest.fixture
def small_products_to_onednn(monkeypatch):
    """The rule's size thresholds at 0, so small test products take oneDNN."""
    from funcnet.nn.functional import matmul as matmul_module

    monkeypatch.setattr(matmul_module, "_CPU_ONEDNN_MIN_BATCHED", 0)
    monkeypatch.setattr(matmul_module, "_CPU_ONEDNN_MIN_SINGLE", 0)


@needs_onednn
def test_linear_and_attention_through_onednn_match_torch(small_products_to_onednn):
    """``F.linear`` (2-D and flattened [N, L, in]) and ``F.scaled_dot_product_attention`` with
    their products on oneDNN: forward and gradients against torch."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 5, 6)).astype(np.float32)
    w = rng.standard_normal((4, 6)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    q, k, v = (rng.standard_normal((2, 3, 5, 8)).astype(np.float32) for _ in range(3))
    mask = rng.standard_normal((5, 5)).astype(np.float32)
    cases = [
        (lambda x, w, b: F.linear(x, w, b), lambda x, w, b: TF.linear(x, w, b), (x, w, b)),
        (lambda x, w, b: F.linear(x[0], w, b), lambda x, w, b: TF.linear(x[0], w, b), (x, w, b)),
        (lambda q, k, v: F.scaled_dot_product_attention(q, k, v, jnp.asarray(mask)),
         lambda q, k, v: TF.scaled_dot_product_attention(q, k, v, torch.tensor(mask)), (q, k, v)),
    ]
    for fn, torch_fn, args in cases:
        assert "funcnet_onednn_matmul" in primitives(fn, *args)
        out, vjp = jax.vjp(jax.jit(fn), *map(jnp.asarray, args))
        ct = rng.standard_normal(out.shape).astype(np.float32)
        grads = vjp(jnp.asarray(ct))
        targs = [torch.tensor(a, requires_grad=True) for a in args]
        tout = torch_fn(*targs)
        tout.backward(torch.tensor(ct))
        assert_close_to_scale(out, tout)
        for g, t in zip(grads, targs, strict=True):
            assert_close_to_scale(g, t.grad)


@needs_onednn
def test_matmul_rule():
    from funcnet.nn.functional.matmul import matmul_lowering

    assert matmul_lowering((1040, 192), (576, 192), transpose_b=True, backend="cpu") == "onednn"  # ViT qkv, 115M
    assert matmul_lowering((512, 784), (128, 784), transpose_b=True, backend="cpu") == "xla"  # seed MLP, 51M
    assert matmul_lowering((64, 65, 48), (64, 48, 65), backend="cpu") == "onednn"  # attention scores, 13M
    assert matmul_lowering((4, 65, 48), (4, 48, 65), backend="cpu") == "xla"  # 0.8M
    assert matmul_lowering((1040, 192), (576, 192), jnp.bfloat16, transpose_b=True, backend="cpu") == "xla"
    assert matmul_lowering((64, 65, 48), (1, 48, 65), backend="cpu") == "xla"  # broadcasting: XLA's
    assert matmul_lowering((1040, 192), (576, 192), transpose_b=True, backend="gpu") == "xla"


@needs_onednn
def test_products_large_enough_to_split_over_the_pool():
    """Above 8M multiply-adds a call is cut into blocks on XLA's pool (images for convolutions, with
    the weight gradient summed over blocks; rows, columns or batch entries for products): the results
    still equal XLA's."""
    rng = np.random.default_rng(8)
    x = jnp.asarray(rng.standard_normal((9, 32, 16, 16)).astype(np.float32))  # 21M multiply-adds
    w = jnp.asarray(rng.standard_normal((32, 32, 3, 3)).astype(np.float32))
    pads = ((1, 1), (1, 1))
    ours = jax.jit(jax.value_and_grad(lambda x, w: jnp.sum(jnp.sin(onednn.conv2d(x, w, (1, 1), pads, (1, 1)))),
                                      argnums=(0, 1)))
    ref = jax.jit(jax.value_and_grad(
        lambda x, w: jnp.sum(jnp.sin(jax.lax.conv_general_dilated(x, w, (1, 1), pads))), argnums=(0, 1)))
    for a, b in zip(jax.tree.leaves(ours(x, w)), jax.tree.leaves(ref(x, w)), strict=True):
        assert_close_to_scale(a, b, rtol=1e-4)
    for transpose_a in (False, True):
        for transpose_b in (False, True):
            # 1041x520x96: 52M multiply-adds, rows split; two entries: entries split; 17x520x1043: fewer rows
            # than columns, columns split (ragged)
            for lead, (m, n) in (((), (1041, 96)), ((2,), (1041, 96)), ((), (17, 1043))):
                a_shape = lead + ((520, m) if transpose_a else (m, 520))
                b_shape = lead + ((n, 520) if transpose_b else (520, n))
                a, b = (jnp.asarray(rng.standard_normal(s).astype(np.float32)) for s in (a_shape, b_shape))
                expected = _op(a, transpose_a) @ _op(b, transpose_b)
                assert_close_to_scale(onednn.matmul(a, b, transpose_a, transpose_b), expected, rtol=1e-4)
