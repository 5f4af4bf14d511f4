"""Per-layer forward+backward time of every convolution shape in ResNet-18/50, MobileNetV2 and
EfficientNet-B0, funcnet vs PyTorch eager, plus the pooling/normalisation layers around them.

The shapes are collected from torchvision's own models (run on torch through
``tests/torchvision_wheel.py``; forward hooks record every ``Conv2d``'s input and
hyper-parameters) at batch 16, 3×64×64 by default. Each shape is timed as one layer's
forward + backward: torch ``autograd.grad(y, (x, w), g)``; funcnet ``jax.jit`` of the VJP of
``F.conv2d`` for the same cotangent, compiled with ``funcnet.backends.compiler_options()`` as
funcnet's train steps are (``FUNCNET_XLA_OPTIONS=off``: XLA's defaults). dX is skipped on both
sides for the image-input stem, as in a train step. Systems are interleaved per round (first
system rotating); the ratio is the median over rounds of funcnet's time / torch's in the same round, with its quartiles.

    python benchmarks/conv_layers.py [--batch 16] [--size 64] [--rounds 9] [--impls auto xla]
        [--models resnet18 resnet50 mobilenet_v2 efficientnet_b0 (the default) convnext_tiny] [--threads N]
        [--no-torch]
        [--match '32→16 | 1/1/0/1 | 32×32'] [--limit N]

``--impls``: funcnet lowerings to time (``funcnet.backends`` settings: auto, xla, matmul).
``--threads N``: torch and XLA:CPU both limited to N threads (on a shared, oversubscribed
machine torch's OpenMP barriers make 2-thread torch 10-100x slower for seconds at a time).
``--no-torch``: compare funcnet's lowerings only (ratios to the first ``--impls``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

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
from benchmarks.timing import interleaved  # noqa: E402
from funcnet import backends  # noqa: E402

TORCHVISION_BUILDERS = {
    "resnet18": ("torchvision.models.resnet", "resnet18"),
    "resnet50": ("torchvision.models.resnet", "resnet50"),
    "mobilenet_v2": ("torchvision.models.mobilenetv2", "mobilenet_v2"),
    "efficientnet_b0": ("torchvision.models.efficientnet", "efficientnet_b0"),
    "convnext_tiny": ("torchvision.models.convnext", "convnext_tiny"),  # not in the default set
}
DEFAULT_MODELS = ["resnet18", "resnet50", "mobilenet_v2", "efficientnet_b0"]


def torchvision_module(module: str):
    """The installed torchvision if it imports (GPU machines), else the wheel's sources."""
    try:
        import importlib

        return importlib.import_module(module)
    except Exception:  # noqa: BLE001 - CPU torch cannot load torchvision's compiled ops
        from tests.torchvision_wheel import import_torchvision

        return import_torchvision(module)


def conv_shapes(models: list[str], batch: int, size: int) -> dict[tuple, list[str]]:
    """``(C_in, H, W, C_out, k, stride, padding, dilation, groups, bias) -> [model, ...]``."""
    shapes: dict[tuple, list[str]] = {}
    for name in models:
        module, builder = TORCHVISION_BUILDERS[name]
        model = getattr(torchvision_module(module), builder)()

        def hook(conv, inputs, _out, name=name):
            x = inputs[0]
            key = (x.shape[1], x.shape[2], x.shape[3], conv.out_channels, conv.kernel_size[0],
                   conv.stride[0], conv.padding[0], conv.dilation[0], conv.groups, conv.bias is not None)
            shapes.setdefault(key, [])
            if name not in shapes[key]:
                shapes[key].append(name)

        handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
        with torch.no_grad():
            model.eval()(torch.zeros(batch, 3, size, size))
        for h in handles:
            h.remove()
    return shapes


def conv_runs(shape: tuple, batch: int, impls: list[str], with_torch: bool = True) -> dict:
    c_in, h, w, c_out, k, stride, padding, dilation, groups, _bias = shape
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, c_in, h, w)).astype(np.float32)
    wt = (rng.standard_normal((c_out, c_in // groups, k, k)) / np.sqrt(c_in // groups * k * k)).astype(np.float32)
    y_shape = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(wt), None, stride, padding,
                                         dilation, groups).shape
    g = rng.standard_normal(tuple(y_shape)).astype(np.float32)
    need_dx = c_in != 3  # the stem's input is the image: no dX in a train step

    tx = torch.from_numpy(x).requires_grad_(need_dx)
    tw = torch.from_numpy(wt).requires_grad_(True)
    tg = torch.from_numpy(g)

    def torch_run():
        y = torch.nn.functional.conv2d(tx, tw, None, stride, padding, dilation, groups)
        return torch.autograd.grad(y, (tx, tw) if need_dx else (tw,), tg)

    runs = {"torch": torch_run} if with_torch else {}
    jx, jw, jg = jnp.asarray(x), jnp.asarray(wt), jnp.asarray(g)
    for impl in impls:
        with backends.conv_impl(impl):
            def f(x, w):
                return F.conv2d(x, w, None, stride, padding, dilation, groups)

            options = backends.compiler_options()
            if need_dx:
                fn = jax.jit(lambda x, w, g: jax.vjp(f, x, w)[1](g), compiler_options=options)
            else:
                fn = jax.jit(lambda x, w, g: jax.vjp(lambda w: f(x, w), w)[1](g), compiler_options=options)
            jax.block_until_ready(fn(jx, jw, jg))  # compile under the setting

        runs[f"funcnet[{impl}]"] = lambda fn=fn: jax.block_until_ready(fn(jx, jw, jg))
    return runs


def time_runs(runs: dict, rounds: int, base: str = "torch") -> tuple[dict[str, float], dict[str, list[float]]]:
    """Median ms per system and the per-round ratios to ``base`` (after one warm-up round)."""
    for run in runs.values():
        run()
    # A few repetitions per sample keep sub-millisecond layers above timer noise.
    start = time.perf_counter()
    runs[base]()
    reps = max(1, int(0.02 / max(time.perf_counter() - start, 1e-5)))
    samples = interleaved({k: (lambda r=r: [r() for _ in range(reps)]) for k, r in runs.items()}, rounds,
                          scale=1e3 / reps)
    ms = {k: statistics.median(v) for k, v in samples.items()}
    ratios = {k: [a / b for a, b in zip(v, samples[base], strict=True)] for k, v in samples.items()}
    return ms, ratios


def spread(ratios: list[float]) -> str:
    """``median (q1–q3)`` of per-round ratios: on a shared host one layer's ratio moves by ±20% between
    runs, so a single median says little about a 1.5x threshold."""
    if len(ratios) < 4:
        return f"{statistics.median(ratios):.2f}"
    q1, q2, q3 = statistics.quantiles(ratios, n=4)
    return f"{q2:.2f} ({q1:.2f}–{q3:.2f})"


def _row_key(shape: tuple) -> str:
    """A shape's first three table cells: ``C_in→C_out | k/s/p/g | map`` (``dw``: depthwise)."""
    c_in, h, w, c_out, k, stride, padding, _dilation, groups, _ = shape
    g = "dw" if groups == c_in and groups > 1 else str(groups)
    return f"{c_in}→{c_out} | {k}/{stride}/{padding}/{g} | {h}×{w}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--impls", nargs="+", default=["auto"], choices=backends.CONV_IMPLS)
    parser.add_argument("--models", nargs="+", default=DEFAULT_MODELS, choices=list(TORCHVISION_BUILDERS))
    parser.add_argument("--limit", type=int, default=0, help="time only the first N shapes (0: all)")
    parser.add_argument("--match", default=None,
                        help="time only shapes whose 'C_in→C_out | k/s/p/g | map' text contains this, "
                             "e.g. '32→16 | 1/1/0/1 | 32×32'")
    parser.add_argument("--threads", type=int, default=None, help="torch and XLA:CPU threads (default: theirs)")
    parser.add_argument("--no-torch", action="store_true", help="funcnet's lowerings only, vs the first --impls")
    args = parser.parse_args()
    torch.manual_seed(0)
    shapes = conv_shapes(args.models, args.batch, args.size)
    items = sorted(shapes.items(), key=lambda kv: (-kv[0][1], kv[0][0], kv[0][3]))
    if args.match:
        items = [(shape, models) for shape, models in items if args.match in _row_key(shape)]
    if args.limit:
        items = items[:args.limit]
    print(f"# conv2d forward+backward, batch {args.batch}, input 3x{args.size}x{args.size}; "
          f"jax {jax.__version__} ({jax.default_backend()}), torch {torch.__version__}, "
          f"{args.rounds} interleaved rounds; ratio = median (quartiles) of per-round funcnet/torch\n", flush=True)
    cols = [f"funcnet[{i}]" for i in args.impls]
    base = cols[0] if args.no_torch else "torch"
    if args.no_torch:
        cols = cols[1:]
    print(f"threads: {args.threads or 'default'}; ratio base: {base}\n")
    print(f"| C_in→C_out | k/s/p/g | map | models | lowering | {base} ms | "
          + " | ".join(f"{c} ms | ratio" for c in cols) + " |")
    print("|---|---|---|---|---|---|" + "---|---|" * len(cols))
    worst: dict[str, float] = {c: 0.0 for c in cols}
    for shape, models in items:
        c_in, h, w, c_out, k, stride, padding, dilation, groups, _ = shape
        lowering = F.conv_lowering((args.batch, c_in, h, w), (c_out, c_in // groups, k, k), stride, padding,
                                   dilation, groups)
        ms, ratios = time_runs(conv_runs(shape, args.batch, args.impls, not args.no_torch), args.rounds, base)
        cells = " | ".join(f"{ms[c]:.2f} | {spread(ratios[c])}" for c in cols)
        for c in cols:
            worst[c] = max(worst[c], statistics.median(ratios[c]))
        c_in_out, ksp, size = _row_key(shape).split(" | ")
        print(f"| {c_in_out} | {ksp} | {size} | {','.join(models)} | {lowering} | "
              f"{ms[base]:.2f} | {cells} |", flush=True)
    print("\nworst ratio: " + ", ".join(f"{c} {v:.2f}" for c, v in worst.items()), flush=True)


if __name__ == "__main__":
    main()
