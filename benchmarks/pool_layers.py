"""Per-layer forward+backward time of max pooling, funcnet vs PyTorch eager, on the pooling shapes
of real models (batch 16; 3×64×64 images, the seed CNN's 1×28×28).

Each shape is timed as one layer's forward + backward on ReLU outputs (so windows of tied zeros
occur, as in the models): torch ``autograd.grad(max_pool2d(x), x, g)``; funcnet ``jax.jit`` of the
VJP of ``F.max_pool2d`` for the same cotangent. Systems are interleaved per round; the ratio is
the median (quartiles) over rounds of funcnet's time / torch's in the same round.

    PYTHONPATH=. python benchmarks/pool_layers.py [--rounds 9] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
from benchmarks.threads import limit_threads  # noqa: E402

limit_threads(sys.argv)  # before jax initialises its CPU client
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

import funcnet.nn.functional as F  # noqa: E402
from benchmarks.conv_layers import spread, time_runs  # noqa: E402

# (input [N, C, H, W], kernel, stride, padding, where)
SHAPES = [
    ((16, 64, 32, 32), 3, 2, 1, "ResNet stem pool (3/2/1)"),
    ((16, 16, 28, 28), 2, 2, 0, "seed CNN pool 1 (2/2)"),
    ((16, 32, 14, 14), 2, 2, 0, "seed CNN pool 2 (2/2)"),
    ((16, 64, 64, 64), 2, 2, 0, "VGG block 1 pool (2/2)"),
    ((16, 256, 16, 16), 2, 2, 0, "VGG block 3 pool (2/2)"),
    ((16, 64, 31, 31), 3, 2, 0, "AlexNet/SqueezeNet pool (3/2/0)"),
]


def pool_runs(shape, k: int, s: int, p: int) -> dict:
    rng = np.random.default_rng(0)
    x = np.maximum(rng.standard_normal(shape), 0).astype(np.float32)  # ReLU outputs: tied zeros
    y_shape = torch.nn.functional.max_pool2d(torch.from_numpy(x), k, s, p).shape
    g = rng.standard_normal(tuple(y_shape)).astype(np.float32)
    tx, tg = torch.from_numpy(x).requires_grad_(True), torch.from_numpy(g)

    def torch_run():
        return torch.autograd.grad(torch.nn.functional.max_pool2d(tx, k, s, p), tx, tg)

    fn = jax.jit(lambda x, g: jax.vjp(lambda x: F.max_pool2d(x, k, s, p), x)[1](g))
    jx, jg = jnp.asarray(x), jnp.asarray(g)
    expected = torch_run()[0].numpy()
    np.testing.assert_allclose(np.asarray(fn(jx, jg)[0]), expected, rtol=1e-6, atol=1e-6)  # same gradient first
    return {"torch": torch_run, "funcnet": lambda: jax.block_until_ready(fn(jx, jg))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--threads", type=int, default=None, help="torch and XLA:CPU threads (default: theirs)")
    args = parser.parse_args()
    print(f"# max_pool2d forward+backward; jax {jax.__version__} ({jax.default_backend()}), torch "
          f"{torch.__version__}, {args.rounds} interleaved rounds; threads: {args.threads or 'default'}\n")
    print("| input | k/s/p | where | torch ms | funcnet ms | ratio (quartiles) |")
    print("|---|---|---|---|---|---|")
    for shape, k, s, p, where in SHAPES:
        ms, ratios = time_runs(pool_runs(shape, k, s, p), args.rounds)
        print(f"| {list(shape)} | {k}/{s}/{p} | {where} | {ms['torch']:.2f} | {ms['funcnet']:.2f} | "
              f"{spread(ratios['funcnet'])} |", flush=True)


if __name__ == "__main__":
    main()
