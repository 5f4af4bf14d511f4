"""``funcnet.backends.compiler_options``: the XLA options funcnet's compiled steps use on CPU
(convolutions on Eigen instead of YNNPACK), and the CPU train step that keeps its parameters apart
from the donated state. Both change which kernels run and which buffers are reused, never the
numbers: convolutions still match torch to 1e-5, a donated step gives the same state as a
non-donated one."""

import re
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

import funcnet.nn as nn
import funcnet.nn.functional as F
from funcnet import backends
from funcnet.train import TrainState, make_train_step
from funcnet.train import step as step_module

pytestmark = pytest.mark.skipif(jax.default_backend() != "cpu", reason="XLA:CPU options")

YNN_OPTION = "xla_cpu_experimental_ynn_fusion_type"


def ynn_fused_ops(compiled_text: str) -> list[list[str]]:
    """The HLO op kinds inside each ``__ynn_fusion`` of a compiled module, e.g. ``[["dot"], ["reduce"]]``."""
    bodies, current = {}, None
    for line in compiled_text.splitlines():
        header = re.match(r"%(\S+) \(.*\{$", line)
        if header:
            current = bodies.setdefault(header.group(1), [])
        elif line.strip() == "}":
            current = None
        elif current is not None:
            op = re.search(r"= \S+ ([a-z\-]+)\(", line)
            if op and op.group(1) not in ("parameter", "constant", "bitcast", "broadcast"):
                current.append(op.group(1))
    return sorted(sorted(set(bodies.get(m.group(1), [])))
                  for m in re.finditer(r"calls=%(\S+?),.*__ynn_fusion", compiled_text))


def mixed(x, w, a, b):
    """A convolution, a matmul and two reductions big enough for YNNPACK (≥ 32k elements)."""
    y = jax.lax.conv_general_dilated(x, w, (1, 1), ((1, 1), (1, 1)), dimension_numbers=("NCHW", "OIHW", "NCHW"))
    return y, a @ b, jnp.tanh(a).sum(1), (a * 2).sum()


MIXED_ARGS = (jnp.ones((4, 32, 16, 16)), jnp.ones((32, 32, 3, 3)), jnp.ones((512, 64)), jnp.ones((64, 512)))


def test_cpu_options_take_only_convolutions_off_ynnpack():
    options = backends.compiler_options()
    assert options == {YNN_OPTION: "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_REDUCE"}
    default = ynn_fused_ops(jax.jit(mixed).lower(*MIXED_ARGS).compile().as_text())
    with_options = ynn_fused_ops(jax.jit(mixed, compiler_options=options).lower(*MIXED_ARGS).compile().as_text())
    assert ["convolution"] in default, default  # XLA's default: the convolution is a YNNPACK fusion
    assert with_options == [ops for ops in default if ops != ["convolution"]], (default, with_options)


def test_off_switch_user_flags_and_accelerators(monkeypatch):
    monkeypatch.setenv("FUNCNET_XLA_OPTIONS", "off")
    assert backends.compiler_options() is None
    monkeypatch.setenv("FUNCNET_XLA_OPTIONS", "sometimes")
    with pytest.raises(ValueError, match="FUNCNET_XLA_OPTIONS must be on or off, got 'sometimes'"):
        backends.compiler_options()
    monkeypatch.setenv("FUNCNET_XLA_OPTIONS", "on")
    assert backends.compiler_options() is not None
    monkeypatch.setenv("XLA_FLAGS", f"--xla_backend_optimization_level=0 --{YNN_OPTION}=")  # the user's own wins
    assert backends.compiler_options() is None
    assert backends.compiler_options("gpu") is None


def test_an_option_this_jaxlib_rejects_warns_once_and_is_dropped(monkeypatch):
    monkeypatch.setattr(backends, "_CPU_OPTIONS", {YNN_OPTION: "LIBRARY_FUSION_TYPE_NO_SUCH_THING"})
    backends._accepted.cache_clear()
    try:
        with pytest.warns(RuntimeWarning, match="rejected compiler options"):
            assert backends.compiler_options() is None
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert backends.compiler_options() is None  # decided once per process
    finally:
        backends._accepted.cache_clear()


# (C_in, C_out, kernel, stride, padding, dilation, groups, spatial): shapes that reach XLA's
# convolution under the auto rule (> 16 output positions, not 1×1, not depthwise), and two forced.
CONV_CASES = [
    (16, 24, 3, 1, 1, 1, 1, 10),
    (3, 20, 7, 2, 3, 1, 1, 20),
    (20, 18, 3, 2, 1, 1, 1, 12),
    (18, 20, (3, 1), (1, 2), (1, 0), (2, 1), 1, 11),
    (24, 36, 3, 1, 2, 2, 2, 9),
]


@pytest.mark.parametrize("case", CONV_CASES)
@pytest.mark.parametrize("impl", ["auto", "xla"])
def test_convolutions_under_the_options_match_torch(case, impl):
    c_in, c_out, k, s, p, d, g, size = case
    rng = np.random.default_rng(sum(map(hash, map(str, case))) % 2**32)
    x = rng.standard_normal((3, c_in, size, size)).astype(np.float32)
    kernel = (k, k) if isinstance(k, int) else k
    w = (rng.standard_normal((c_out, c_in // g, *kernel)) / np.sqrt(c_in * 9)).astype(np.float32)
    b = rng.standard_normal(c_out).astype(np.float32)

    def loss(x, w, b):
        y = F.conv2d(x, w, b, stride=s, padding=p, dilation=d, groups=g)
        return (y * jnp.cos(y)).sum(), y

    with backends.conv_impl(impl):
        fn = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True),
                     compiler_options=backends.compiler_options())
        (_, y), grads = fn(x, w, b)
        text = fn.lower(x, w, b).compile().as_text()
    assert not any("convolution" in ops for ops in ynn_fused_ops(text))
    if impl == "xla":
        assert " convolution(" in text  # XLA's own convolution, on Eigen

    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    ty = torch.nn.functional.conv2d(tx, tw, tb, stride=s, padding=p, dilation=d, groups=g)
    (ty * torch.cos(ty)).sum().backward()
    for actual, expected in zip((y, *grads), (ty, tx.grad, tw.grad, tb.grad), strict=True):
        expected = expected.detach().numpy()
        scale = max(1.0, float(np.abs(expected).max()))
        np.testing.assert_allclose(np.asarray(actual), expected, rtol=1e-5, atol=1e-5 * scale)


class SmallNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, padding=1)
        self.bn = nn.BatchNorm2d(16)
        self.fc = nn.Linear(16 * 8 * 8, 5)

    def forward(self, x):
        h = F.relu(self.bn(self.conv(x)))
        return self.fc(h.reshape(h.shape[0], -1))


@pytest.mark.parametrize("keep_params_from", [0, 2**40])
def test_cpu_train_step_donates_all_but_sizeable_parameters_and_agrees_with_no_donation(monkeypatch,
                                                                                        keep_params_from):
    monkeypatch.setattr(step_module, "_KEEP_PARAMS_FROM_BYTES", keep_params_from)
    keep = keep_params_from == 0  # this model's parameters are "sizeable" only at threshold 0
    model, opt = SmallNet(), optax.sgd(0.1, momentum=0.9)
    rng = np.random.default_rng(0)
    batch = (jnp.asarray(rng.standard_normal((8, 3, 8, 8)), jnp.float32), jnp.asarray(rng.integers(0, 5, 8)))
    donating = make_train_step(model, F.cross_entropy, opt)
    keeping = make_train_step(model, F.cross_entropy, opt, donate=False)
    a = b = TrainState.create(model, opt, 0)
    b = jax.tree.map(jnp.array, b)  # a separate copy: `a` is consumed
    for _ in range(3):
        old = a
        a, _ = donating(a, batch)
        b, _ = keeping(b, batch)
        assert all(leaf.is_deleted() for leaf in jax.tree.leaves((old.opt_state, old.buffers, old.step)))
        assert all(leaf.is_deleted() != keep for leaf in jax.tree.leaves(old.params))
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        if jnp.issubdtype(u.dtype, jax.dtypes.prng_key):
            u, v = jax.random.key_data(u), jax.random.key_data(v)
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=1e-6, atol=1e-7)
    assert donating._step._cache_size() == 1


def test_a_resnet_sized_cpu_step_keeps_its_parameters():
    assert step_module._KEEP_PARAMS_FROM_BYTES <= 4 * 11_689_512  # ResNet-18's float32 parameters
    assert step_module._KEEP_PARAMS_FROM_BYTES > 4 * 109_386  # the seed MLP's: donated whole
