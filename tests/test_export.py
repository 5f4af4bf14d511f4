"""``jax.export`` of programs that use funcnet's CPU kernels (oneDNN's convolutions and products,
the column-sum kernel).

Under ``jax.jit`` on CPU these lower to custom calls into funcnet's shim. An exported artifact may
only hold custom calls with a compatibility guarantee and runs where the shim is not loaded, and
a program traced on CPU may be lowered for a GPU or TPU: there the same primitives lower to XLA's
own operations. Checked here without an accelerator: ``jax.export`` lowers for CUDA on any host.
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import assert_close_to_scale
from jax import export

import funcnet
import funcnet.nn as nn
import funcnet.nn.functional as F
from funcnet import backends, onednn
from funcnet.nn.functional.column_sums import column_sums

pytestmark = pytest.mark.skipif(not onednn.available(), reason=f"oneDNN: {onednn.status()}")


def funcnet_custom_calls(mlir_text: str) -> set[str]:
    return {name for name in re.findall(r"custom_call @(\w+)", mlir_text) if name.startswith("funcnet")}


def kernels_program():
    """Every shim primitive, forward and backward, per-slice weights under ``vmap`` included."""
    conv = lambda x, w: onednn.conv2d(x, w, (2, 1), ((1, 0), (2, 1)), (1, 2), groups=2)

    def loss(x, w, xs, ws, a, b, big):
        y = conv(x, w)
        z = jax.vmap(conv)(xs, ws)  # a weight per slice: the primitives get a leading batch dimension
        products = sum(jnp.sum(jnp.sin(onednn.matmul(a if not ta else a.mT, b if not tb else b.mT, ta, tb)))
                       for ta in (False, True) for tb in (False, True))
        return jnp.sum(y * y) + jnp.sum(jnp.cos(z)) + products + jnp.sum(column_sums(jnp.tanh(big)) ** 2)

    rng = np.random.default_rng(0)
    draw = lambda *shape: jnp.asarray(rng.standard_normal(shape), jnp.float32)
    args = (draw(3, 4, 9, 8), draw(6, 2, 3, 2), draw(2, 3, 4, 9, 8), draw(2, 6, 2, 3, 2),
            draw(2, 7, 5), draw(2, 5, 6), draw(520, 128))
    return jax.value_and_grad(loss, argnums=tuple(range(7))), args


def test_jit_uses_the_shim_and_export_uses_xla_with_the_same_values():
    fn, args = kernels_program()
    assert funcnet_custom_calls(jax.jit(fn).lower(*args).as_text()) == {
        "funcnet_onednn_conv_forward", "funcnet_onednn_conv_backward_data", "funcnet_onednn_conv_backward_weights",
        "funcnet_onednn_matmul", "funcnet_column_sums"}
    exported = export.export(jax.jit(fn), platforms=["cpu"])(*args)
    assert funcnet_custom_calls(exported.mlir_module()) == set()
    (value, grads), (expected_value, expected_grads) = exported.call(*args), jax.jit(fn)(*args)
    assert_close_to_scale(value, expected_value, 1e-5)
    for got, want in zip(grads, expected_grads, strict=True):
        assert_close_to_scale(got, want, 1e-5)


@pytest.mark.parametrize("platforms", [["cuda"], ["tpu"], ["cpu", "cuda"]])
def test_traced_on_cpu_lowers_for_accelerators(platforms):
    fn, args = kernels_program()
    exported = export.export(jax.jit(fn), platforms=platforms)(*args)
    assert tuple(exported.platforms) == tuple(platforms)
    assert funcnet_custom_calls(exported.mlir_module()) == set()


class SmallConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(8, 16, 3, padding=1)
        self.bn = nn.BatchNorm2d(16)
        self.fc = nn.Linear(16 * 8 * 8, 10)

    def forward(self, x):
        return self.fc(funcnet.flatten(F.relu(self.bn(self.conv(x))), 1))


def test_model_train_step_exports():
    """A model whose convolution the CPU rule gives to oneDNN: its loss gradient exports for CPU
    (matching jit) and for CUDA."""
    model = SmallConvNet()
    params, buffers = model.init(jax.random.key(0))
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.standard_normal((4, 8, 8, 8)), jnp.float32)
    y = jnp.asarray(rng.integers(0, 10, 4))

    def loss(params, x, y):
        logits, _ = model.apply(params, x, buffers=buffers, train=True)
        return F.cross_entropy(logits, y)

    step = jax.jit(jax.value_and_grad(loss))
    assert backends.get_conv_impl() == "auto"
    assert "funcnet_onednn_conv_forward" in funcnet_custom_calls(step.lower(params, x, y).as_text())
    exported = export.export(step, platforms=["cpu"])(params, x, y)
    assert funcnet_custom_calls(exported.mlir_module()) == set()
    got, want = exported.call(params, x, y), step(params, x, y)
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        assert_close_to_scale(g, w, 1e-5)
    assert funcnet_custom_calls(export.export(step, platforms=["cuda"])(params, x, y).mlir_module()) == set()


def test_accelerator_rules_lower_for_cuda(monkeypatch):
    """Traced as on a GPU host (``jax.default_backend()`` reads "gpu"), a train step takes the
    accelerator rules (XLA's convolution, pooling and dots, none of the shim's primitives) and
    lowers for CUDA, in float32 and with ``compute_dtype=bfloat16``."""
    import optax

    from funcnet.train import TrainState, make_train_step

    class ConvAttentionNet(SmallConvNet):
        def __init__(self):
            super().__init__()
            self.pool = nn.MaxPool2d(2)
            self.attention = nn.MultiheadAttention(16, 2, batch_first=True)

        def forward(self, x):
            x = self.pool(F.relu(self.bn(self.conv(x))))  # [N, 16, 4, 4]
            tokens = funcnet.flatten(x, 2).transpose(0, 2, 1)  # [N, 16 positions, 16]
            tokens, _ = self.attention(tokens, tokens, tokens, need_weights=False)
            return self.fc(jnp.tile(funcnet.flatten(tokens, 1), 4))

    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    model, optimizer = ConvAttentionNet(), optax.sgd(0.1, momentum=0.9)
    rng = np.random.default_rng(2)
    batch = (jnp.asarray(rng.standard_normal((4, 8, 8, 8)), jnp.float32), jnp.asarray(rng.integers(0, 10, 4)))
    state = TrainState.create(model, optimizer, jax.random.key(0))
    for compute_dtype in (None, jnp.bfloat16):
        step = make_train_step(model, F.cross_entropy, optimizer, compute_dtype=compute_dtype)
        exported = export.export(step._step, platforms=["cuda"])(state, batch)
        text = exported.mlir_module()
        assert "convolution" in text and funcnet_custom_calls(text) == set()
        # the accelerator rules picked none of the shim's primitives
        assert "funcnet_onednn" not in str(jax.make_jaxpr(step._step)(state, batch))
