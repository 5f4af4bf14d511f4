"""DataLoader throughput: funcnet vs torch.utils.data vs a hand-written numpy loop.

Run from the repository root:  python benchmarks/dataloader.py  [--epochs 7] [--batch-size 64]

Dataset: 60,000 × 784 float32 inputs + int labels (MNIST-sized), batch 64, shuffled.
All host methods are run interleaved (one epoch of each per round, ``--epochs`` rounds) and the
median epoch is reported as samples/s, with ratios. Then, with a small MLP training step on the
JAX default device, the time per epoch of
  - step only, batches pre-staged on the device (the floor),
  - numpy loop + synchronous ``jax.device_put`` per batch + step,
  - funcnet DataLoader(device=True) (transfers in a background thread, double-buffered) + step,
  - funcnet on-device mode: one jit-compiled ``lax.scan`` over ``epoch_indices`` gathering from
    ``device_arrays()``,
and the time the training loop spent waiting for the next batch.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.utils.data as tud  # noqa: E402

from funcnet.utils.data import DataLoader, TensorDataset  # noqa: E402

N, D = 60_000, 784


def numpy_loop(x, y, bs, epoch):
    perm = np.random.default_rng(epoch).permutation(len(x))
    for i in range(0, len(x), bs):
        idx = perm[i : i + bs]
        bx, by = x[idx], y[idx]
    return bx, by


def numpy_loop_device_put(x, y, bs, epoch):
    perm = np.random.default_rng(epoch).permutation(len(x))
    for i in range(0, len(x), bs):
        idx = perm[i : i + bs]
        batch = jax.device_put((x[idx], y[idx]))
        jax.block_until_ready(batch)
    return batch


def consume(loader):
    batch = None
    for batch in loader:  # noqa: B007 - the last batch is returned
        pass
    return batch


def time_epoch(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def host_throughput(x, y, bs, epochs):
    tx, ty = torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))
    torch_loader = tud.DataLoader(tud.TensorDataset(tx, ty), batch_size=bs, shuffle=True)
    ours = DataLoader(TensorDataset(x, y), batch_size=bs, shuffle=True)
    methods = {
        "torch DataLoader": lambda e: consume(torch_loader),
        "numpy loop (bare)": lambda e: numpy_loop(x, y, bs, e),
        "funcnet DataLoader": lambda e: consume(ours),
        "numpy loop + sync device_put": lambda e: numpy_loop_device_put(x, y, bs, e),
    }
    times = {k: [] for k in methods}
    for fn in methods.values():  # warm-up
        fn(99)
    for e in range(epochs):
        for name, fn in methods.items():
            times[name].append(time_epoch(lambda fn=fn, e=e: fn(e)))
    return {k: N / statistics.median(v) for k, v in times.items()}


def mlp_step():
    k1, k2 = jax.random.split(jax.random.PRNGKey(0))
    params = {"w1": jax.random.normal(k1, (D, 256)) * 0.03, "w2": jax.random.normal(k2, (256, 10)) * 0.06}

    def loss(p, x, y):
        logits = jax.nn.relu(x @ p["w1"]) @ p["w2"]
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=1))

    @jax.jit
    def step(p, x, y):
        g = jax.grad(loss)(p, x, y)
        return jax.tree.map(lambda a, b: a - 0.01 * b, p, g)

    return params, step, loss


def training_loop_times(x, y, bs, epochs):
    params, step, loss = mlp_step()
    nb = N // bs
    ours_dev = DataLoader(TensorDataset(x, y), batch_size=bs, shuffle=True, drop_last=True, device=True)
    staged_loader = DataLoader(TensorDataset(x, y), batch_size=bs, shuffle=True, drop_last=True)
    staged = [jax.device_put(b) for b in staged_loader]
    jax.block_until_ready(staged)
    xs, ys = ours_dev.device_arrays()

    @jax.jit
    def scan_epoch(p, idx):
        def body(p, ind):
            return step(p, xs[ind], ys[ind]), None
        return jax.lax.scan(body, p, idx)[0]

    def run_staged():
        p = params
        for bx, by in staged:
            p = step(p, bx, by)
        return jax.block_until_ready(p), 0.0

    def run_sync():
        p, wait = params, 0.0
        perm = np.random.default_rng(0).permutation(N)
        for i in range(nb):
            t0 = time.perf_counter()
            idx = perm[i * bs : (i + 1) * bs]
            bx, by = jax.block_until_ready(jax.device_put((x[idx], y[idx])))
            wait += time.perf_counter() - t0
            p = step(p, bx, by)
        return jax.block_until_ready(p), wait

    def run_prefetch():
        p, wait = params, 0.0
        it = iter(ours_dev)
        while True:
            t0 = time.perf_counter()
            try:
                bx, by = next(it)
            except StopIteration:
                break
            wait += time.perf_counter() - t0
            p = step(p, bx, by)
        return jax.block_until_ready(p), wait

    def run_scan(epoch=[0]):  # noqa: B006 - a counter
        t0 = time.perf_counter()
        idx = ours_dev.epoch_indices(epoch[0])
        wait = time.perf_counter() - t0
        epoch[0] += 1
        return jax.block_until_ready(scan_epoch(params, idx)), wait

    methods = {
        "step only, batches pre-staged on device": run_staged,
        "numpy loop + sync device_put + step": run_sync,
        "funcnet DataLoader(device=True) + step": run_prefetch,
        "funcnet on-device lax.scan epoch": run_scan,
    }
    for fn in methods.values():
        fn()  # compile / warm up
    times = {k: [] for k in methods}
    waits = {k: [] for k in methods}
    for _ in range(epochs):
        for name, fn in methods.items():
            t0 = time.perf_counter()
            _, wait = fn()
            times[name].append(time.perf_counter() - t0)
            waits[name].append(wait)
    return {k: (statistics.median(times[k]), statistics.median(waits[k])) for k in methods}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=7)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--skip-training", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    x = rng.random((N, D), dtype=np.float32)
    y = rng.integers(0, 10, N).astype(np.int32)
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, jax {jax.__version__} "
          f"({jax.devices()[0].platform}), torch {torch.__version__}, numpy {np.__version__}")
    print(f"# {N}x{D} float32, batch {args.batch_size}, shuffle, "
          f"median of {args.epochs} interleaved epochs\n")
    host = host_throughput(x, y, args.batch_size, args.epochs)
    t, b = host["torch DataLoader"], host["numpy loop (bare)"]
    print(f"{'host iteration':34s} {'M samples/s':>12s} {'vs torch':>9s} {'vs numpy':>9s}")
    for name, v in host.items():
        print(f"{name:34s} {v / 1e6:12.3f} {v / t:8.2f}x {v / b:8.0%}")
    if args.skip_training:
        return
    print(f"\n{'training loop (MLP 784-256-10)':42s} {'epoch s':>8s} {'waiting s':>10s} {'M samples/s':>12s}")
    for name, (sec, wait) in training_loop_times(x, y, args.batch_size, args.epochs).items():
        print(f"{name:42s} {sec:8.3f} {wait:10.3f} {N / sec / 1e6:12.3f}")


if __name__ == "__main__":
    main()
