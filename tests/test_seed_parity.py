"""The seed program's translation trains like the real PyTorch program.

Both start from the same weights and see the same batches; the loss of every one
of 50 SGD steps must agree within 1e-4.
"""

from collections import OrderedDict

import jax
import numpy as np
import torch
from conftest import TorchSeedNet, load_example

import funcnet
import funcnet.nn as nn
import funcnet.optim as optim
from funcnet.train import TrainState, make_train_step

# The translation under test is the example's own Net (examples/mnist.py), not a copy.
Net = load_example("mnist").Net
TorchNet = TorchSeedNet


def test_seed_translation_follows_torch_loss_curve():
    rng = np.random.default_rng(0)
    images = rng.random((50 * 32, 1, 28, 28), dtype=np.float32)
    labels = rng.integers(0, 10, len(images))

    model = Net()
    variables = model.init(jax.random.key(0))
    reference = TorchNet()
    reference.load_state_dict(
        OrderedDict((k, torch.tensor(np.asarray(v))) for k, v in model.state_dict(variables).items()), strict=True
    )
    criterion, torch_criterion = nn.CrossEntropyLoss(), torch.nn.CrossEntropyLoss()
    optimizer = optim.SGD(lr=0.01)
    torch_optimizer = torch.optim.SGD(reference.parameters(), lr=0.01)
    state = TrainState.create(model, optimizer, jax.random.key(1), variables=variables)
    train_step = make_train_step(model, criterion, optimizer)

    for step in range(50):
        batch = slice(32 * step, 32 * (step + 1))
        x, y = images[batch], labels[batch]
        state, metrics = train_step(state, (x, y.astype(np.int32)))
        torch_optimizer.zero_grad()
        loss = torch_criterion(reference(torch.tensor(x)), torch.tensor(y))
        loss.backward()
        torch_optimizer.step()
        ours = funcnet.train.metrics.compute(metrics)["loss"]
        np.testing.assert_allclose(ours, loss.item(), rtol=1e-4, atol=1e-6, err_msg=f"step {step}")
    final = model.state_dict(state.variables)
    for name, tensor in reference.state_dict().items():
        np.testing.assert_allclose(final[name], tensor.numpy(), rtol=1e-4, atol=1e-5, err_msg=name)
