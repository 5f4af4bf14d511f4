"""Shared pieces of ``benchmarks/models.py`` (CPU) and ``benchmarks/gpu.py`` (accelerator): the
model pairs (torchvision's model on torch, funcnet's definition from ``model_defs.py`` with torch's
weights loaded), an output check, and one train step per system (forward + cross-entropy +
backward + SGD momentum 0.9) that runs ``steps`` steps and waits for the device.

Imports only the working tree, jax, optax, numpy and torch (+ torchvision if installed; otherwise
its sources via ``tests/torchvision_wheel.py``), so it runs from a checkout without installing.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch

import funcnet.nn.functional as F
from benchmarks import model_defs
from funcnet.train import TrainState, make_train_step

LR, MOMENTUM = 0.01, 0.9
MODELS = ("resnet18", "resnet50", "mobilenet_v2", "vit", "seed_cnn")
VIT = dict(image_size=64, patch_size=8, num_layers=4, num_heads=4, hidden_dim=192, mlp_dim=768)


def torchvision_module(module: str):
    """The installed torchvision (GPU machines), else the wheel's Python sources (this CPU box)."""
    try:
        return importlib.import_module(module)
    except Exception:  # noqa: BLE001 - CPU torch cannot load torchvision's compiled ops
        from tests.torchvision_wheel import import_torchvision

        return import_torchvision(module)


class TorchSeedCNN(torch.nn.Module):
    """examples/cnn.py's Net in torch (same keys as ``model_defs.SeedCNN``)."""

    def __init__(self, image_size: int = 28):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(1, 16, 3, padding=1)
        self.bn1 = torch.nn.BatchNorm2d(16)
        self.conv2 = torch.nn.Conv2d(16, 32, 3, padding=1)
        self.bn2 = torch.nn.BatchNorm2d(32)
        self.pool = torch.nn.MaxPool2d(2)
        self.dropout = torch.nn.Dropout(0.25)
        self.fc1 = torch.nn.Linear(32 * (image_size // 4) ** 2, 64)
        self.fc2 = torch.nn.Linear(64, 10)

    def forward(self, x):
        x = self.pool(torch.relu(self.bn1(self.conv1(x))))
        x = self.pool(torch.relu(self.bn2(self.conv2(x))))
        x = self.dropout(torch.flatten(x, 1))
        return self.fc2(torch.relu(self.fc1(x)))


def build(name: str) -> tuple[torch.nn.Module, Any, tuple[int, ...], int]:
    """``(torch model, funcnet model, input shape without batch, classes)``."""
    if name in ("resnet18", "resnet50"):
        tv = getattr(torchvision_module("torchvision.models.resnet"), name)()
        return tv, getattr(model_defs, name)(), (3, 64, 64), 1000
    if name == "mobilenet_v2":
        tv = torchvision_module("torchvision.models.mobilenetv2").mobilenet_v2()
        return tv, model_defs.mobilenet_v2(), (3, 64, 64), 1000
    if name == "vit":
        tv = torchvision_module("torchvision.models.vision_transformer").VisionTransformer(**VIT)
        return tv, model_defs.VisionTransformer(**VIT), (3, 64, 64), 1000
    if name == "seed_cnn":
        return TorchSeedCNN(28), model_defs.SeedCNN(28), (1, 28, 28), 10
    raise ValueError(f"unknown model {name!r}; expected one of {MODELS}")


def randomize_norms(model: torch.nn.Module, seed: int = 0) -> None:
    """Non-trivial BatchNorm affine parameters and running statistics (a fresh model's are identity),
    and random values for all-zero weights (ViT's head), so that the output check means something."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim > 1 and not p.any():
                p.copy_(0.02 * torch.randn(p.shape, generator=g))
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.copy_(1 + 0.2 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.2 * torch.randn(m.bias.shape, generator=g))
                m.running_mean.copy_(0.2 * torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(1 + 0.5 * torch.rand(m.running_var.shape, generator=g))


def load_funcnet(torch_model: torch.nn.Module, model: Any):
    """funcnet variables holding torch's weights (``load_state_dict`` checks keys and shapes)."""
    state = {k: v.detach().cpu().numpy() for k, v in torch_model.state_dict().items()}
    variables, _ = model.load_state_dict(state)
    return variables


def check_outputs(torch_model, model, variables, shape, device) -> float:
    """Max |funcnet − torch| / max |torch| of eval-mode outputs on one random batch."""
    x = np.random.default_rng(0).standard_normal((4, *shape)).astype(np.float32)
    torch_model.eval()
    with torch.no_grad():
        expected = torch_model(torch.from_numpy(x).to(device)).float().cpu().numpy()
    actual = np.asarray(jax.jit(lambda v, x: model.apply(v, x))(variables, jnp.asarray(x)))
    torch_model.train()
    return float(np.abs(actual - expected).max() / max(np.abs(expected).max(), 1e-12))


def funcnet_runner(model, variables, x: np.ndarray, y: np.ndarray, steps: int,
                   compute_dtype: Any = None) -> tuple[Callable[[], None], float]:
    """``(run, compile_s)``: ``run()`` does ``steps`` jitted train steps and waits for them."""
    optimizer = optax.sgd(LR, momentum=MOMENTUM)  # torch.optim.SGD(lr, momentum) (no dampening)
    step = make_train_step(model, F.cross_entropy, optimizer, compute_dtype=compute_dtype)
    variables = jax.tree.map(jnp.array, variables)  # a copy: the step donates (deletes) its input state
    holder = [TrainState.create(model, optimizer, jax.random.key(0), variables=variables)]
    batch = (jnp.asarray(x), jnp.asarray(y))

    def run():
        state = holder[0]
        for _ in range(steps):
            state, _metrics = step(state, batch)
        jax.block_until_ready(state.params)
        holder[0] = state

    start = time.perf_counter()
    holder[0], _ = step(holder[0], batch)
    jax.block_until_ready(holder[0].params)
    return run, time.perf_counter() - start


def torch_runner(model: torch.nn.Module, x: np.ndarray, y: np.ndarray, steps: int, device: str,
                 bf16: bool = False, compile: bool = False) -> tuple[Callable[[], None], float]:
    """``(run, first_step_s)``: eager or ``torch.compile``d model, autocast to bfloat16 if asked."""
    model = model.to(device).train()
    forward = torch.compile(model) if compile else model
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    tx, ty = torch.from_numpy(x).to(device), torch.from_numpy(y).long().to(device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

    def one():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16, enabled=bf16):
            loss = torch.nn.functional.cross_entropy(forward(tx), ty)
        loss.backward()
        opt.step()

    def run():
        for _ in range(steps):
            one()
        sync()

    start = time.perf_counter()
    one()
    sync()
    return run, time.perf_counter() - start


def batch_for(shape: tuple[int, ...], classes: int, batch: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((batch, *shape)).astype(np.float32),
            rng.integers(0, classes, batch).astype(np.int32))
