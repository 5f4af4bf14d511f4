"""Train step of ResNet-18, ResNet-50, MobileNetV2, a small ViT and the seed CNN on this CPU:
funcnet vs PyTorch eager (and ``torch.compile`` where it compiles within ``--compile-limit``).

The same harness as ``benchmarks/gpu.py`` (see there and ``benchmarks/model_bench.py``) with
CPU defaults: float32, batch 16 of 3×64×64 (seed CNN 1×28×28), 3 steps per sample, interleaved
rounds, median of per-round ratios to PyTorch eager; images/s and first-step (compile) time.
funcnet's models are the native definitions in ``benchmarks/model_defs.py`` (torchvision's
architectures and ``state_dict`` keys; torch's weights are loaded and the eval outputs compared
before timing). ``--threads 1`` runs torch and XLA single-threaded (a comparison that does not
depend on the neighbours' load on a shared machine).

    PYTHONPATH=. python benchmarks/models.py [--threads 1] [--models ...] [--rounds 7]
        [--conv-rows xla matmul] [--no-compile] [--out FILE]
"""

from __future__ import annotations

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
from benchmarks.threads import limit_threads  # noqa: E402

threads = limit_threads(sys.argv)  # before jax initialises its CPU client
from benchmarks import gpu  # noqa: E402

CPU_DEFAULTS = dict(batch=16, steps=3, rounds=7, fp32_only=True, conv_rows=[], budget=3000.0, compile_limit=60.0)


def main() -> None:
    parser = gpu.parser_with(CPU_DEFAULTS)
    parser.add_argument("--threads", type=int, default=None, help="torch and XLA:CPU threads (default: theirs)")
    args = parser.parse_args()
    gpu.run(args, title=f"CPU train step, threads: {args.threads or 'default'}")


if __name__ == "__main__":
    main()
