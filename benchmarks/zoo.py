"""Train step of torchvision's classification models ported by ``funcnet.port``, against the same
models on PyTorch eager: what a user gets by converting torchvision's own model files.

Each model is built from torchvision 0.28's source, converted at run time (``tests/zoo_harness.py``:
the wheel's files, nothing copied into this repository), with torch's initial weights loaded into
the funcnet model. Train step = forward + cross-entropy + backward + SGD momentum 0.9 (the models'
own dropout and stochastic depth on), batch 16, 3×64×64 images, 1000 classes; funcnet's step is
``funcnet.train.make_train_step``. Systems interleaved in one process per model, ``--rounds`` rounds
of ``--steps`` steps; ratio = median of per-round funcnet / torch times (< 1: funcnet faster).

    PYTHONPATH=. python benchmarks/zoo.py [--models convnext_tiny vgg11_bn ...] [--rounds 7]

The ResNet-18/50, MobileNetV2 and ViT rows of ``benchmarks/models.py`` use funcnet-native
definitions instead; GoogLeNet and Inception are left out (their train-mode outputs carry the
auxiliary logits).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for path in (ROOT, os.path.join(ROOT, "tests")):
    if path not in sys.path:
        sys.path.insert(0, path)

# model -> torchvision module (family) holding its builder
MODELS = {
    "alexnet": "alexnet", "vgg11_bn": "vgg", "resnext50_32x4d": "resnet", "densenet121": "densenet",
    "squeezenet1_1": "squeezenet", "shufflenet_v2_x1_0": "shufflenetv2", "mnasnet1_0": "mnasnet",
    "mobilenet_v3_large": "mobilenetv3", "efficientnet_b0": "efficientnet", "efficientnet_v2_s": "efficientnet",
    "regnet_y_400mf": "regnet", "convnext_tiny": "convnext", "swin_t": "swin_transformer",
}


def measure(name: str, rounds: int, steps: int) -> str:
    """One table row for ``name`` (run in this process)."""
    import zoo_harness as zh

    from benchmarks import model_bench as mb

    family = MODELS[name]
    root = tempfile.mkdtemp(prefix="funcnet-zoo-")
    zh.build_package(root, [family])
    ported, original = zh.load(root, family)
    torch_model, model = getattr(original, name)(), getattr(ported, name)()
    variables, _ = model.load_state_dict(zh.torch_state(torch_model))
    x, y = mb.batch_for((3, 64, 64), 1000, 16)
    ours, compile_s = mb.funcnet_runner(model, variables, x, y, steps)
    theirs, _ = mb.torch_runner(torch_model, x, y, steps, "cpu")
    times: dict[str, list[float]] = {"funcnet": [], "torch": []}
    for r in range(rounds):
        order = [("funcnet", ours), ("torch", theirs)]
        for system, run in order if r % 2 == 0 else order[::-1]:
            run()  # warm: the other system's threads have just run
            start = time.perf_counter()
            run()
            times[system].append((time.perf_counter() - start) / steps * 1e3)
    ratio = statistics.median(a / b for a, b in zip(times["funcnet"], times["torch"], strict=True))
    return (f"| {name} | {statistics.median(times['torch']):.1f} | {statistics.median(times['funcnet']):.1f} | "
            f"{ratio:.2f} | {compile_s:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=2, help="train steps per timed sample")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # the child process: one model's row
    args = parser.parse_args()
    if args.one:
        print(measure(args.one, args.rounds, args.steps), flush=True)
        return
    print(f"# ported torchvision models, train step vs PyTorch eager (batch 16, 3×64×64; {args.rounds} "
          f"interleaved rounds of {args.steps} steps; a process per model)\n")
    print("| model | torch eager ms | funcnet ms | funcnet / torch | funcnet first step s |")
    print("|---|---|---|---|---|")
    for name in args.models:
        child = subprocess.run([sys.executable, __file__, "--one", name, "--rounds", str(args.rounds),
                                "--steps", str(args.steps)], capture_output=True, text=True)
        rows = [line for line in child.stdout.splitlines() if line.startswith("|")]
        print(rows[-1] if child.returncode == 0 and rows else
              f"| {name} | failed: {child.stderr.strip().splitlines()[-1] if child.stderr.strip() else '?'} |",
              flush=True)


if __name__ == "__main__":
    main()
