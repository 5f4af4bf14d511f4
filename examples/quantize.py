"""Dynamic int8 quantization: float vs int8 accuracy, bytes and CPU latency of the seed MLP.

Trains the seed MLP (64 -> 128 -> 64 -> 10) on the built-in digits, quantizes its
Linear layers with ``funcnet.quantization.quantize_dynamic`` (torch's
``quantize_dynamic`` arithmetic: int8 weights, per-call uint8 activations, int32
matmul), and compares the two models. Latency is the median of ``--repeats`` calls
of the jitted forward, after compilation.

    python examples/quantize.py                   # about 15 s on 2 CPU cores
    python examples/quantize.py --per-channel --hidden 1024
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
from visualize import Net, train  # the seed MLP and a short optax loop (examples/visualize.py)

import funcnet
import funcnet.nn as nn
from funcnet.datasets import Digits
from funcnet.quantization import quantize_dynamic, size_report


def median_latency(fn, *args, repeats: int) -> float:
    """Median wall time of ``fn(*args)`` in microseconds, compiled and warmed up first."""
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--per-channel", action="store_true", help="one weight scale per output row")
    parser.add_argument("--hidden", type=int, default=0,
                        help="also time a wider MLP 64 -> H -> H -> 10 (untrained; latency and bytes only)")
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    train_x, train_y = Digits(train=True).tensors
    test_x, test_y = Digits(train=False).tensors
    model = Net()
    params = model.init(funcnet.manual_seed(args.seed)).params
    params, _ = train(model, params, train_x, train_y, test_x, test_y, args.epochs, seed=args.seed)

    qmodel, qvariables = quantize_dynamic(model, params, per_channel=args.per_channel)
    float_fn, int8_fn = jax.jit(model.apply), jax.jit(qmodel.apply)
    float_acc = float(np.mean(np.asarray(jnp.argmax(float_fn(params, test_x), -1)) == test_y))
    int8_acc = float(np.mean(np.asarray(jnp.argmax(int8_fn(qvariables, test_x), -1)) == test_y))
    print(f"\ntest accuracy: float {float_acc:.4f}, int8 {int8_acc:.4f} "
          f"(drop {100 * (float_acc - int8_acc):+.2f} points)")
    print(qmodel)
    print(size_report(model, params, qmodel, qvariables))

    models = [("seed MLP 64-128-64-10", model, params, qmodel, qvariables)]
    if args.hidden:
        h = args.hidden
        wide = nn.Sequential(nn.Linear(64, h), nn.Linear(h, h), nn.Linear(h, 10))
        wide_params = wide.init(jax.random.key(1)).params
        models.append((f"MLP 64-{h}-{h}-10", wide, wide_params, *quantize_dynamic(wide, wide_params)))

    print(f"\nCPU latency of the jitted forward, median of {args.repeats} calls "
          f"({jax.devices()[0].platform}, {jax.device_count()} device):")
    print(f"{'model':<24} {'batch':>6} {'float32 (us)':>13} {'int8 (us)':>10} {'int8/float':>10}")
    for name, fmodel, fparams, qm, qv in models:
        f_fn, q_fn = jax.jit(fmodel.apply), jax.jit(qm.apply)
        for batch in (1, 64, len(test_x)):
            x = jnp.asarray(test_x[:batch].reshape(batch, -1))
            t_float = median_latency(f_fn, fparams, x, repeats=args.repeats)
            t_int8 = median_latency(q_fn, qv, x, repeats=args.repeats)
            print(f"{name:<24} {batch:>6} {t_float:>13.1f} {t_int8:>10.1f} {t_int8 / t_float:>10.2f}")


if __name__ == "__main__":
    main()
