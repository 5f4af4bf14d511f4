"""End-to-end epochs of the seed MLP (data loading included), side by side.

60,000 × 784 float32 samples, batch 64, SGD lr 0.01. Systems, interleaved over rounds:
  * funcnet fit loop (DataLoader on host → jitted step),
  * funcnet compiled epoch (``fit(compiled=True)``: one ``lax.scan`` per epoch),
  * hand-written JAX: numpy permutation + fancy index → jitted step,
  * hand-written JAX: the whole epoch in one ``lax.scan`` gathering batches on device,
  * PyTorch: ``DataLoader(TensorDataset, shuffle=True)`` + eager step.
Reports median seconds per epoch and the median over rounds of the ratio to the hand-written
JAX loop in the same round (the first system of a round rotates).

    python -m benchmarks.epoch [--rounds 9] [--samples 60000]
"""

from __future__ import annotations

import argparse
import os
import statistics

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.timing import interleaved, median_ratios
from benchmarks.train_step import LR, raw_params, raw_step_fn, seed_net

BATCH = 64


def dataset(n: int):
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, 784)).astype(np.float32), rng.integers(0, 10, n).astype(np.int32)


def raw_loop(x, y):
    opt, step = raw_step_fn()
    step = jax.jit(step, donate_argnums=(0, 1))
    params = raw_params()
    state = [params, opt.init(params), 0]

    def epoch():
        p, o, e = state
        order = np.random.default_rng(e).permutation(len(x))
        for i in range(len(x) // BATCH):
            idx = order[i * BATCH:(i + 1) * BATCH]
            p, o, loss = step(p, o, x[idx], y[idx])
        loss.block_until_ready()
        state[:] = [p, o, e + 1]

    return epoch


def raw_scan(x, y):
    opt, step = raw_step_fn()
    xd, yd = jax.device_put(x), jax.device_put(y)

    @jax.jit
    def run(params, opt_state, idx):
        def body(carry, i):
            p, o = carry
            p, o, loss = step(p, o, xd[i], yd[i])
            return (p, o), loss

        (params, opt_state), losses = jax.lax.scan(body, (params, opt_state), idx)
        return params, opt_state, losses.mean()

    params = raw_params()
    state = [params, opt.init(params), 0]

    def epoch():
        p, o, e = state
        nb = len(x) // BATCH
        idx = np.random.default_rng(e).permutation(len(x))[: nb * BATCH].reshape(nb, BATCH)
        p, o, loss = run(p, o, jnp.asarray(idx))
        loss.block_until_ready()
        state[:] = [p, o, e + 1]

    return epoch


def _funcnet(x, y, compiled: bool):
    import funcnet
    import funcnet.nn as nn
    from funcnet.train import TrainState, fit
    from funcnet.utils.data import DataLoader, TensorDataset

    model, optimizer, criterion = seed_net(), funcnet.optim.SGD(lr=LR), nn.CrossEntropyLoss()
    loader = DataLoader(TensorDataset(x, y), batch_size=BATCH, shuffle=True, drop_last=True)
    state = [TrainState.create(model, optimizer, jax.random.key(0)), 0]

    def epoch():
        s, e = state
        s, _ = fit(model, s, loader, loss_fn=criterion, optimizer=optimizer, epochs=e + 1, start_epoch=e,
                   progress=False, compiled=compiled)
        jax.block_until_ready(s.params)
        state[:] = [s, e + 1]

    return epoch


def funcnet_fit(x, y):
    return _funcnet(x, y, compiled=False)


def funcnet_compiled(x, y):
    return _funcnet(x, y, compiled=True)


def torch_loader(x, y):
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    model = torch.nn.Sequential(torch.nn.Linear(784, 128), torch.nn.ReLU(), torch.nn.Linear(128, 64),
                                torch.nn.ReLU(), torch.nn.Linear(64, 10))
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    criterion = torch.nn.CrossEntropyLoss()
    data = torch.utils.data.TensorDataset(torch.tensor(x), torch.tensor(y, dtype=torch.long))
    loader = torch.utils.data.DataLoader(data, batch_size=BATCH, shuffle=True, drop_last=True)

    def epoch():
        for xb, yb in loader:
            opt.zero_grad()
            loss = criterion(model(xb), yb)
            loss.backward()
            opt.step()
        loss.item()

    return epoch


SYSTEMS = {
    "hand-written JAX loop": raw_loop,
    "hand-written JAX scan": raw_scan,
    "funcnet fit": funcnet_fit,
    "funcnet compiled epoch": funcnet_compiled,
    "PyTorch DataLoader+eager": torch_loader,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--samples", type=int, default=60_000)
    args = parser.parse_args()
    x, y = dataset(args.samples)
    epochs = {name: make(x, y) for name, make in SYSTEMS.items()}
    for run in epochs.values():  # compile + warm up
        run()
    times = interleaved(epochs, args.rounds)
    base = "hand-written JAX loop"
    print(f"jax {jax.__version__}, {os.cpu_count()} cores; {args.samples} samples, batch {BATCH}; "
          f"medians of {args.rounds} interleaved rounds (ratio: per round, to the JAX loop)")
    print(f"{'system':28s} {'s/epoch':>8s} {'vs JAX loop':>12s}")
    ratios = median_ratios(times, base)
    for name, samples in times.items():
        print(f"{name:28s} {statistics.median(samples):8.3f} {ratios[name]:12.3f}")


if __name__ == "__main__":
    main()
