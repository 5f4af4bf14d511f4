"""Two code paths of funcnet in one process: a model's train step traced once per value of a
module-level switch that funcnet reads at trace time, then timed in interleaved rounds.

Comparing funcnet with itself removes torch's run-to-run drift (±15% on a shared 2-core machine)
from the question "did this lowering help?". Switches (True/False), under ``funcnet.nn.functional``:
``linear._FLATTEN_LEADING``, ``conv._POINTWISE_LOWERING``, ``conv._DEPTHWISE_ONE_REDUCTION``,
``normalization._BN_CUSTOM_JVP``, ``normalization._CPU_TRAILING_MEAN_AS_DOT``, ``activation._GELU_ERF``.

    PYTHONPATH=. python benchmarks/variant_ab.py --model vit --switch linear._FLATTEN_LEADING
    PYTHONPATH=. python benchmarks/variant_ab.py --model resnet50 --switch conv._POINTWISE_LOWERING
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import time

from benchmarks import model_bench as mb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="resnet18, resnet50, mobilenet_v2, vit, seed_cnn")
    parser.add_argument("--switch", required=True, help="module.attribute under funcnet.nn.functional")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--steps", type=int, default=3, help="train steps per sample")
    args = parser.parse_args()
    module_name, attr = args.switch.rsplit(".", 1)
    module = importlib.import_module(f"funcnet.nn.functional.{module_name}")
    original = getattr(module, attr)

    torch_model, model, shape, classes = mb.build(args.model)
    variables = mb.load_funcnet(torch_model, model)
    x, y = mb.batch_for(shape, classes, 16)
    runs = {}
    for value in (True, False):  # each runner traces (and compiles) on its first step
        setattr(module, attr, value)
        runs[value], _ = mb.funcnet_runner(model, variables, x, y, args.steps)
    setattr(module, attr, original)

    times: dict[bool, list[float]] = {True: [], False: []}
    for r in range(args.rounds):
        for value in ((True, False) if r % 2 == 0 else (False, True)):
            start = time.perf_counter()
            runs[value]()
            times[value].append((time.perf_counter() - start) / args.steps * 1e3)
    ratio = statistics.median(a / b for a, b in zip(times[True], times[False], strict=True))
    print(f"{args.model}: {args.switch}=True {statistics.median(times[True]):.1f} ms/step, "
          f"=False {statistics.median(times[False]):.1f} ms/step; True/False (median of per-round ratios) "
          f"{ratio:.3f}")


if __name__ == "__main__":
    main()
