"""int8 quantization, dynamic and static: float vs int8 accuracy, bytes and CPU latency.

1. Dynamic: trains the seed MLP (64 -> 128 -> 64 -> 10) on the built-in digits and quantizes
   its Linear layers with ``funcnet.quantization.quantize_dynamic`` (torch's arithmetic:
   int8 weights, per-call uint8 activations, int32 matmul).
2. Static (``torch.ao.quantization``'s eager post-training flow): trains the seed CNN
   (examples/cnn.py's ``Net``), then QuantStub -> fuse Conv+BN+ReLU -> prepare with
   ``get_default_qconfig("x86")`` -> calibrate on training batches -> convert, so that
   activations are int8 too; and, when torch is installed, does the same in torch from the
   same float weights and calibration batches, side by side.

Latency is the median of ``--repeats`` calls of the jitted forward, after compilation.

    python examples/quantize.py                   # about 40 s on 2 CPU cores
    python examples/quantize.py --per-channel --hidden 1024 --skip-static
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from cnn import Net as CNN  # the seed CNN (examples/cnn.py)
from visualize import Net, train  # the seed MLP and a short optax loop (examples/visualize.py)

import funcnet
import funcnet.nn as nn
from funcnet import quantization as Q
from funcnet.datasets import Digits
from funcnet.quantization import quantize_dynamic, size_report

FUSE = [["conv1", "bn1", "relu1"], ["conv2", "bn2", "relu2"], ["fc1", "relu3"]]


class QuantizableCNN(CNN):
    """The seed CNN with torch's eager-mode edits: a QuantStub/DeQuantStub around it and ReLU
    modules (so they can be fused). Same parameters and keys as ``CNN``: its weights load as is."""

    def __init__(self, image_size: int = 8):
        super().__init__(image_size)
        self.quant = Q.QuantStub()
        self.relu1, self.relu2, self.relu3 = nn.ReLU(), nn.ReLU(), nn.ReLU()
        self.dequant = Q.DeQuantStub()

    def forward(self, x):
        x = self.quant(x)
        x = self.pool(self.relu1(self.bn1(self.conv1(x))))
        x = self.pool(self.relu2(self.bn2(self.conv2(x))))
        x = self.dropout(funcnet.flatten(x, 1))
        x = self.relu3(self.fc1(x))
        return self.dequant(self.fc2(x))


def train_cnn(model, variables, train_x, train_y, epochs, seed, batch_size=32, lr=0.05):
    """SGD with momentum (BatchNorm statistics and dropout in train mode)."""
    optimizer = optax.sgd(lr, momentum=0.9)
    opt_state = optimizer.init(variables.params)

    def loss_fn(params, buffers, x, y, key):
        logits, buffers = model.apply(params, x, buffers=buffers, key=key, train=True)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), buffers

    @jax.jit
    def step(params, buffers, opt_state, x, y, key):
        (loss, buffers), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, buffers, x, y, key)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), buffers, opt_state, loss

    params, buffers = variables
    rng, key = np.random.default_rng(seed), jax.random.key(seed)
    for epoch in range(epochs):
        order = rng.permutation(len(train_x) - len(train_x) % batch_size)
        losses = []
        for i in range(0, len(order), batch_size):
            key, sub = jax.random.split(key)
            idx = order[i:i + batch_size]
            params, buffers, opt_state, loss = step(params, buffers, opt_state, train_x[idx], train_y[idx], sub)
            losses.append(loss)
        print(f"CNN epoch {epoch + 1}: loss {float(np.mean(jax.device_get(losses))):.4f}")
    return funcnet.nn.Variables(params, buffers)


def torch_static(state_dict, calibration, image_size=8):
    """torch.ao.quantization's eager static int8 model from the same float weights and batches."""
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import torch.ao.quantization as tq

    class TorchCNN(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.quant, self.dequant = tq.QuantStub(), tq.DeQuantStub()
            self.conv1 = torch.nn.Conv2d(1, 16, 3, padding=1)
            self.bn1 = torch.nn.BatchNorm2d(16)
            self.conv2 = torch.nn.Conv2d(16, 32, 3, padding=1)
            self.bn2 = torch.nn.BatchNorm2d(32)
            self.pool, self.dropout = torch.nn.MaxPool2d(2), torch.nn.Dropout(0.25)
            self.fc1 = torch.nn.Linear(32 * (image_size // 4) ** 2, 64)
            self.fc2 = torch.nn.Linear(64, 10)
            self.relu1, self.relu2, self.relu3 = torch.nn.ReLU(), torch.nn.ReLU(), torch.nn.ReLU()

        def forward(self, x):
            x = self.pool(self.relu1(self.bn1(self.conv1(self.quant(x)))))
            x = self.pool(self.relu2(self.bn2(self.conv2(x))))
            x = self.dropout(torch.flatten(x, 1))
            return self.dequant(self.fc2(self.relu3(self.fc1(x))))

    model = TorchCNN()
    model.load_state_dict({k: torch.tensor(np.asarray(v)) for k, v in state_dict.items()})
    model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.backends.quantized.engine = "x86"
        model.qconfig = tq.get_default_qconfig("x86")
        prepared = tq.prepare(tq.fuse_modules(model, FUSE))
        with torch.no_grad():
            for x in calibration:
                prepared(torch.tensor(np.asarray(x)))
        return model, tq.convert(prepared)


def torch_latency(fn, x, repeats):
    import torch

    with torch.no_grad():
        fn(x)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn(x)
            times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1e6


def static_section(args, train_x, train_y, test_x, test_y) -> None:
    print("\n== static int8 (QuantStub, fuse, prepare, calibrate, convert) on the seed CNN ==")
    train_x4, test_x4 = train_x.reshape(-1, 1, 8, 8), test_x.reshape(-1, 1, 8, 8)
    model = QuantizableCNN()
    variables = train_cnn(model, model.init(funcnet.manual_seed(args.seed)), train_x4, train_y,
                          args.epochs, args.seed)
    fused, v = Q.fuse_modules(model, variables, FUSE)
    prepared, v = Q.prepare(fused, v, Q.get_default_qconfig("x86"))
    calibration = [train_x4[i:i + 64] for i in range(0, 64 * args.calibration_batches, 64)]
    v = Q.calibrate(prepared, v, calibration)
    qmodel, qv = Q.convert(prepared, v)
    print(qmodel.conversion_report)

    float_fn, int8_fn = jax.jit(model.apply), jax.jit(qmodel.apply)
    float_logits, int8_logits = float_fn(variables, test_x4), int8_fn(qv, test_x4)
    acc = {"funcnet float32": np.mean(np.asarray(jnp.argmax(float_logits, -1)) == test_y),
           "funcnet static int8": np.mean(np.asarray(jnp.argmax(int8_logits, -1)) == test_y)}
    size = {"funcnet float32": Q.dynamic._nbytes(variables), "funcnet static int8": Q.dynamic._nbytes(qv)}
    rows = {}
    try:
        import io

        import torch
    except ImportError:
        torch = None
    if torch is not None:
        tfloat, tint8 = torch_static(model.state_dict(variables), calibration)
        with torch.no_grad():
            t_logits = tint8(torch.tensor(test_x4)).numpy()
            acc["torch float32"] = np.mean(tfloat(torch.tensor(test_x4)).argmax(-1).numpy() == test_y)
        acc["torch static int8"] = np.mean(t_logits.argmax(-1) == test_y)
        for name, m in (("torch float32", tfloat), ("torch static int8", tint8)):
            buf = io.BytesIO()
            torch.save(m.state_dict(), buf)
            size[name] = buf.getbuffer().nbytes
        step = float(tint8.fc2.scale)
        diff = np.abs(np.asarray(int8_logits) - t_logits) / step
        print(f"funcnet vs torch int8 logits: {np.mean(diff < 1e-3):.4f} of values identical, "
              f"max difference {diff.max():.2f} quantization steps; predictions agree on "
              f"{np.mean(np.asarray(jnp.argmax(int8_logits, -1)) == t_logits.argmax(-1)):.4f}")
    print(f"test accuracy: funcnet float {acc['funcnet float32']:.4f}, static int8 "
          f"{acc['funcnet static int8']:.4f} "
          f"(drop {100 * (acc['funcnet float32'] - acc['funcnet static int8']):+.2f} points)")
    for batch in (1, 256):
        x = jnp.asarray(test_x4[:batch])
        rows[("funcnet float32", batch)] = median_latency(float_fn, variables, x, repeats=args.repeats)
        rows[("funcnet static int8", batch)] = median_latency(int8_fn, qv, x, repeats=args.repeats)
        if torch is not None:
            tx = torch.tensor(test_x4[:batch])
            rows[("torch float32", batch)] = torch_latency(tfloat, tx, args.repeats)
            rows[("torch static int8", batch)] = torch_latency(tint8, tx, args.repeats)
    print(f"\n{'system':<20} {'accuracy':>9} {'bytes':>9} {'batch 1 (us)':>13} {'batch 256 (us)':>15}")
    for name in acc:
        print(f"{name:<20} {acc[name]:>9.4f} {size[name]:>9,} {rows[(name, 1)]:>13.1f} {rows[(name, 256)]:>15.1f}")
    print("(latency: median of --repeats calls; on a shared machine compare within one run; "
          "benchmarks/quantization.py interleaves them)")


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
    parser.add_argument("--calibration-batches", type=int, default=8, help="static: batches of 64 to calibrate on")
    parser.add_argument("--skip-static", action="store_true", help="only the dynamic MLP part")
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

    if not args.skip_static:
        static_section(args, train_x, train_y, test_x, test_y)


if __name__ == "__main__":
    main()
