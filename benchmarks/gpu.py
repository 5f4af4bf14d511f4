"""Train steps of ResNet-18/50, MobileNetV2, a small ViT and the seed CNN on one accelerator:
funcnet (float32 and ``compute_dtype=bfloat16``) vs PyTorch eager and ``torch.compile`` (float32
and bfloat16 autocast), one markdown table.

Train step = forward + cross-entropy + backward + SGD momentum 0.9, batch ``--batch`` of
3×64×64 images (the seed CNN: 1×28×28), the same weights on both sides (torchvision's model,
its ``state_dict`` loaded into funcnet's definition in ``benchmarks/model_defs.py``; eval
outputs are compared first). Systems are interleaved per round (first system rotating); a
sample is ``--steps`` steps then a device sync; the ratio is the median over rounds of
system / PyTorch eager of the same dtype in the same round. "first step s" is the first call
(funcnet: tracing + XLA compilation; torch.compile: its compilation).

``funcnet fp32 matmul-conv`` forces the slice/matmul convolution lowerings
(``funcnet.backends.conv_impl("matmul")``; the default on GPU is XLA's convolution, i.e. cuDNN):
the row that says whether the GPU default should change.

Needs only the working tree, jax, optax, numpy, torch (+ torchvision if installed, else its
sources through tests/torchvision_wheel.py). Bounded by ``--budget`` seconds (default 420):
what would start after it is skipped and listed.

    PYTHONPATH=. python3 benchmarks/gpu.py --out gpu_results.md
    PYTHONPATH=. python3 benchmarks/gpu.py --quick          # CPU smoke run (a few minutes here)
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from collections.abc import Callable

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # torch shares the device
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import torch  # noqa: E402

from benchmarks import model_bench as mb  # noqa: E402
from benchmarks.timing import interleaved  # noqa: E402
from funcnet import backends, onednn  # noqa: E402

CONV_MODELS = ("resnet18", "resnet50", "mobilenet_v2")


def log(msg: str) -> None:
    print(msg, flush=True)


def systems_for(name: str, args, device: str, deadline: float, skipped: list[str]) -> tuple[dict, dict, dict]:
    """``(runs, first_step_s, base)``: every system of one model, built (and compiled) now."""
    torch.manual_seed(0)
    tmodel, fmodel, shape, classes = mb.build(name)
    mb.randomize_norms(tmodel)
    variables = mb.load_funcnet(tmodel, fmodel)
    tmodel = tmodel.to(device)
    err = mb.check_outputs(tmodel, fmodel, variables, shape, device)
    log(f"  {name}: eval outputs funcnet vs torch: max rel diff {err:.1e}")
    x, y = mb.batch_for(shape, classes, args.batch)
    runs, first, base = {}, {}, {}
    dtypes = ["fp32"] if args.fp32_only else ["fp32", "bf16"]
    for dtype in dtypes:
        bf16 = dtype == "bf16"
        eager = f"torch eager {dtype}"
        runs[eager], first[eager] = mb.torch_runner(tmodel, x, y, args.steps, device, bf16=bf16)
        base[eager] = eager
        fn = f"funcnet {dtype}"
        runs[fn], first[fn] = mb.funcnet_runner(fmodel, variables, x, y, args.steps,
                                                jnp.bfloat16 if bf16 else None)
        base[fn] = eager
        log(f"  {name} {dtype}: torch eager first step {first[eager]:.1f} s, funcnet {first[fn]:.1f} s")
        for impl in args.conv_rows if dtype == "fp32" and name in args.conv_row_models else ():
            key = f"funcnet fp32 {impl}-conv"
            with backends.conv_impl(impl):  # read while tracing, i.e. during the first step
                runs[key], first[key] = mb.funcnet_runner(fmodel, variables, x, y, args.steps)
            base[key] = eager
            log(f"  {name}: {key} first step {first[key]:.1f} s")
        if args.compile:
            key = f"torch.compile {dtype}"
            if time.perf_counter() > deadline - 60:
                skipped.append(f"{name} {key} (budget)")
                continue
            try:
                # A separate copy: the compiled and eager models keep their own optimizer state.
                tcopy, _, _, _ = mb.build(name)
                tcopy.load_state_dict(tmodel.state_dict())
                runs[key], first[key] = mb.torch_runner(tcopy, x, y, args.steps, device, bf16=bf16, compile=True)
                base[key] = eager
                log(f"  {name}: {key} first step {first[key]:.1f} s")
                if first[key] > args.compile_limit:
                    skipped.append(f"{name} {key}: first step {first[key]:.0f} s > --compile-limit")
                    del runs[key], first[key], base[key]
            except Exception as exc:  # noqa: BLE001 - report, do not abort the table
                skipped.append(f"{name} {key}: {type(exc).__name__}: {str(exc).splitlines()[0][:100]}")
    return runs, first, base


def parser_with(defaults: dict) -> argparse.ArgumentParser:
    """The command line of this script; ``benchmarks/models.py`` reuses it with CPU defaults."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=list(mb.MODELS), choices=list(mb.MODELS))
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10, help="train steps per timed call")
    parser.add_argument("--min-sample-ms", type=float, default=100.0,
                        help="repeat the calls so that each timed sample lasts at least this long")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--budget", type=float, default=420.0, help="seconds; later work is skipped")
    parser.add_argument("--no-compile", dest="compile", action="store_false", help="skip torch.compile")
    parser.add_argument("--compile-limit", type=float, default=120.0,
                        help="drop a torch.compile row whose first step took longer (seconds)")
    parser.add_argument("--fp32-only", action="store_true")
    parser.add_argument("--conv-rows", nargs="*", default=["matmul"], choices=["xla", "matmul", "onednn"],
                        help="extra funcnet fp32 rows with this conv lowering forced (for --conv-row-models)")
    parser.add_argument("--conv-row-models", nargs="*", default=["resnet18"], choices=list(CONV_MODELS))
    parser.add_argument("--quick", action="store_true",
                        help="CPU smoke form: seed_cnn, vit, mobilenet_v2 (unless --models), batch 2, 1 step, "
                             "2 rounds, no torch.compile")
    parser.add_argument("--out", default=None, help="also write the table (markdown) to this file")
    parser.set_defaults(**defaults)
    return parser


def samples_of_at_least(run: Callable[[], None], min_ms: float) -> int:
    """How many calls of ``run`` (timed once, warm) make a sample of at least ``min_ms``."""
    start = time.perf_counter()
    run()
    return max(1, math.ceil(min_ms / ((time.perf_counter() - start) * 1e3)))


def run(args: argparse.Namespace, title: str = "Train step") -> str:
    """Build, compile and time every model's systems; print progress and return the table."""
    if args.quick:
        args.batch, args.steps, args.rounds, args.compile, args.min_sample_ms = 2, 1, 2, False, 0.0
        if "--models" not in sys.argv:
            args.models = ["seed_cnn", "vit", "mobilenet_v2"]
    start = time.perf_counter()
    deadline = start + args.budget
    device = "cuda" if torch.cuda.is_available() else "cpu"
    jax_device = jax.devices()[0]
    torch_name = torch.cuda.get_device_name(0) if device == "cuda" else "cpu"
    header = (f"# {title} on {jax_device.device_kind} (jax {jax.__version__}, {jax.default_backend()}) / "
              f"{torch_name} (torch {torch.__version__})\n\nbatch {args.batch}, {args.steps} steps per call, calls "
              f"repeated to samples of at least {args.min_sample_ms:g} ms, "
              f"{args.rounds} interleaved rounds; ratio = median per-round time / torch eager of the same "
              f"dtype; conv lowering (auto) on this backend: "
              f"{'xla' if jax.default_backend() != 'cpu' else 'per-shape CPU rule; oneDNN ' + onednn.status()}\n")
    log(header)
    rows, skipped = [], []
    for name in args.models:
        if time.perf_counter() > deadline:
            skipped.append(f"{name} (budget)")
            continue
        log(f"[{time.perf_counter() - start:.0f}s] {name}: building and compiling")
        runs, first, base = systems_for(name, args, device, deadline, skipped)
        for run in runs.values():  # warm-up
            run()
        # Each timed sample lasts at least --min-sample-ms: right after one system's sample the other's
        # threads are still spinning (OpenMP, XLA's pool), which a few-millisecond sample would feel.
        repeat = samples_of_at_least(runs[next(iter(base.values()))], args.min_sample_ms)
        runs = {key: (lambda run=run, repeat=repeat: [run() for _ in range(repeat)]) for key, run in runs.items()}
        samples = interleaved(runs, args.rounds, scale=1e3 / (args.steps * repeat))
        for key, times in samples.items():
            ms = statistics.median(times)
            ratio = statistics.median(t / b for t, b in zip(times, samples[base[key]], strict=True))
            rows.append(f"| {name} | {key} | {ms:.2f} | {args.batch * 1e3 / ms:,.0f} | {ratio:.2f} | "
                        f"{first[key]:.1f} |")
        log(f"[{time.perf_counter() - start:.0f}s] {name} done")
        log("\n".join(rows[-len(samples):]))
        # Free the accelerator memory of this model's systems before the next.
        del runs, samples
        if device == "cuda":
            torch.cuda.empty_cache()
    table = "\n".join([header, "| model | system | ms/step | images/s | vs torch eager | first step s |",
                       "|---|---|---|---|---|---|", *rows])
    if skipped:
        table += "\n\nskipped: " + "; ".join(skipped)
    table += f"\n\ntotal {time.perf_counter() - start:.0f} s\n"
    log("\n" + table)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(table)
    return table


if __name__ == "__main__":
    run(parser_with({}).parse_args())
