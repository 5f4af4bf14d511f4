"""Compile time of a TransformerEncoder train step: scan over layers vs the unrolled Python loop.

For each depth and each mode this measures, in one process, the time from calling
``jax.jit(step).lower(...)`` to a compiled executable (tracing + lowering + XLA
compilation, i.e. everything the first call pays before running), as wall time and
as this process's CPU time (robust on a shared machine: compilation is mostly
single-threaded), then one steady-state step; each cell is the minimum over ``--repeats`` fresh compiles
(new model objects, so nothing is cached). The step is a train-mode ``value_and_grad`` with dropout, the
case of equinox #1132 (a BERT taking 200 s to compile).

    python benchmarks/compile_time.py                    # depths 2 and 12
    python benchmarks/compile_time.py --layers 2 6 12 24 --d-model 256

Prints a Markdown table (the one in benchmarks/RESULTS.md).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import jax
import jax.numpy as jnp

# the checkout this script lives in, not an installed copy
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import funcnet.nn as nn  # noqa: E402


def build_step(num_layers: int, scan: bool, args: argparse.Namespace):
    layer = nn.TransformerEncoderLayer(args.d_model, args.heads, args.d_model * 4, dropout=0.1,
                                       batch_first=True, activation="gelu")
    model = nn.TransformerEncoder(layer, num_layers, scan_layers=scan)
    params = jax.jit(model.init)(jax.random.key(0)).params

    def loss(params, x, key):
        out, _ = model.apply(params, x, key=key, train=True)
        return jnp.mean(out ** 2)

    step = jax.jit(jax.value_and_grad(loss))
    x = jnp.ones((args.batch, args.seq, args.d_model))
    return step, params, x


def build_prestacked_step(num_layers: int, args: argparse.Namespace):
    """Reference: the same scan with the parameters already stacked ``[L, ...]`` by the caller.

    Not funcnet's layout (its params stay torch's ``layers.0.…`` tree); it shows the cost of
    the layer body alone, without the per-layer stack/unstack copies.
    """
    layer = nn.TransformerEncoderLayer(args.d_model, args.heads, args.d_model * 4, dropout=0.1,
                                       batch_first=True, activation="gelu")
    one = jax.jit(layer.init)(jax.random.key(0)).params
    stacked = jax.tree.map(lambda a: jnp.stack([a] * num_layers), one)

    def loss(stacked, x, key):
        def body(h, inputs):
            index, p = inputs
            out, _ = layer.apply(p, h, key=jax.random.fold_in(key, index), train=True)
            return out, None

        h, _ = jax.lax.scan(body, x, (jnp.arange(num_layers, dtype=jnp.uint32), stacked))
        return jnp.mean(h ** 2)

    x = jnp.ones((args.batch, args.seq, args.d_model))
    return jax.jit(jax.value_and_grad(loss)), stacked, x


def measure(num_layers: int, scan: bool | str, args: argparse.Namespace) -> tuple[float, float, float]:
    """(compile wall s, compile CPU s of this process, one step wall s)."""
    if scan == "prestacked":
        step, params, x = build_prestacked_step(num_layers, args)
    else:
        step, params, x = build_step(num_layers, scan, args)
    key = jax.random.key(1)
    start, cpu_start = time.perf_counter(), time.process_time()
    compiled = step.lower(params, x, key).compile()
    compile_s, compile_cpu = time.perf_counter() - start, time.process_time() - cpu_start
    jax.block_until_ready(compiled(params, x, key))
    start = time.perf_counter()
    jax.block_until_ready(compiled(params, x, key))
    return compile_s, compile_cpu, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, nargs="+", default=[2, 12])
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--seq", type=int, default=64)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2, help="fresh compiles per cell (minimum shown)")
    args = parser.parse_args()
    print(f"jax {jax.__version__}, {jax.default_backend()}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cpus; d_model={args.d_model}, heads={args.heads}, ff={4 * args.d_model}, "
          f"batch={args.batch}, seq={args.seq}; train-mode value_and_grad with dropout\n")
    measure(1, False, args)  # warm-up: JAX start-up costs are paid once, outside the table
    print("| layers | scan_layers | compile wall (s) | compile CPU (s) | step (ms) |")
    print("|---:|:---:|---:|---:|---:|")
    for num_layers in args.layers:
        for scan in (True, False, "prestacked"):
            runs = [measure(num_layers, scan, args) for _ in range(args.repeats)]
            compile_s, compile_cpu, step_s = (min(r[i] for r in runs) for i in range(3))
            print(f"| {num_layers} | {scan} | {compile_s:.2f} | {compile_cpu:.2f} | {1000 * step_s:.1f} |",
                  flush=True)


if __name__ == "__main__":
    main()
