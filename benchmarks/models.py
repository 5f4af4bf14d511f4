"""Train step of ResNet-18, ResNet-50, MobileNetV2, a small ViT and the seed CNN on this CPU:
funcnet vs PyTorch eager (and ``torch.compile`` where it compiles within ``--compile-limit``).

The same harness as ``benchmarks/gpu.py`` (see there and ``benchmarks/model_bench.py``) with
CPU defaults: float32, batch 16 of 3×64×64 (seed CNN 1×28×28), 3 steps per call, calls repeated
to samples of at least 100 ms (``--min-sample-ms``: the seed CNN's 4 ms steps had been timed 3 at a
time, and right after torch's sample its OpenMP threads still spin: funcnet / torch read 1.08–1.18
at 3 steps a sample and 0.93–0.95 at 30), interleaved rounds, median of per-round ratios to
PyTorch eager; images/s and first-step (compile) time.
funcnet's models are the native definitions in ``benchmarks/model_defs.py`` (torchvision's
architectures and ``state_dict`` keys; torch's weights are loaded and the eval outputs compared
before timing). ``--threads 1`` runs torch and XLA single-threaded (a comparison that does not
depend on the neighbours' load on a shared machine).

Each model runs in a fresh process (``--one-process``: all in this one, one after the other). A
training script builds one model; in a process that had first trained the other models, funcnet's
later steps measured 3-15% slower (the ViT's: 94.7 ms first, 109 ms after ResNet-18/50 and
MobileNetV2, with no page faults; torch's did not move), an artefact of the harness.

    PYTHONPATH=. python benchmarks/models.py [--threads 1] [--models ...] [--rounds 7]
        [--conv-rows xla matmul onednn] [--no-compile] [--one-process] [--out FILE]
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
from benchmarks.threads import limit_threads  # noqa: E402

threads = limit_threads(sys.argv)  # before jax initialises its CPU client
from benchmarks import gpu  # noqa: E402

CPU_DEFAULTS = dict(batch=16, steps=3, rounds=7, fp32_only=True, conv_rows=[], budget=3000.0, compile_limit=60.0)


def _without(argv: list[str], flag: str) -> list[str]:
    """``argv`` without ``flag`` and the values that follow it."""
    out, skipping = [], False
    for arg in argv:
        if arg.startswith("--"):
            skipping = arg == flag
        if not skipping:
            out.append(arg)
    return out


def run_each_in_own_process(args, argv: list[str]) -> str:
    """One fresh ``--one-process`` run per model; their rows joined into one table."""
    base = _without(_without(argv, "--models"), "--out")
    columns = "| model | system | ms/step | images/s | vs torch eager | first step s |"
    header, rows = None, []
    for name in args.models:
        with tempfile.NamedTemporaryFile("r", suffix=".md") as out:
            subprocess.run([sys.executable, os.path.abspath(__file__), *base, "--one-process", "--models", name,
                            "--out", out.name], check=True)
            lines = out.read().splitlines()  # the child wrote this path; the handle reads it
        header = header or lines[: lines.index(columns)]
        rows += [line for line in lines if line.startswith(f"| {name} |")]
    table = "\n".join([*header, columns, "|---|---|---|---|---|---|", *rows, "", "each model in its own process"])
    gpu.log("\n" + table)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(table + "\n")
    return table


def main() -> None:
    parser = gpu.parser_with(CPU_DEFAULTS)
    parser.add_argument("--threads", type=int, default=None, help="torch and XLA:CPU threads (default: theirs)")
    parser.add_argument("--one-process", action="store_true",
                        help="all models in this process, one after the other (default: a process each)")
    args = parser.parse_args()
    if args.one_process or len(args.models) == 1 or args.quick:
        gpu.run(args, title=f"CPU train step, threads: {args.threads or 'default'}")
    else:
        run_each_in_own_process(args, sys.argv[1:])


if __name__ == "__main__":
    main()
