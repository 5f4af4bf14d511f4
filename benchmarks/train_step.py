"""Seed-MLP train step, side by side: funcnet vs raw JAX+optax vs PyTorch eager vs Flax/Equinox.

Every system trains the seed model (784→128→64→10, ReLU, cross-entropy, SGD lr 0.01,
float32) on the same random batch. Rounds are interleaved (each round times every
system once, the starting system rotating) in each of several fresh processes; reported are
the median µs per step over all rounds and the median over all rounds of the ratio to raw JAX
in the same round. Peers that are not installed are skipped; nothing is installed here.

Also measured: time from process start to the first finished step, each system in a
fresh interpreter (import, model build, compile, one step).

    python benchmarks/train_step.py [--processes 3] [--rounds 15] [--steps 100] [--batch 64 512]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import time

import jax
import numpy as np
import optax

if not __package__:  # run as `python benchmarks/train_step.py`: the repository root is not on sys.path
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.timing import interleaved, median_ratios  # noqa: E402

SIZES = (784, 128, 64, 10)
LR = 0.01


def batch(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 784)).astype(np.float32), rng.integers(0, 10, n).astype(np.int32)


# -- shared pieces (benchmarks/epoch.py uses them too) -------------------------------------------
def raw_params():
    """The seed MLP's parameters as a list of (W [out, in], b) with torch's U(±1/√fan_in) init."""
    key = jax.random.key(0)
    params = []
    for i, (fan_in, fan_out) in enumerate(zip(SIZES[:-1], SIZES[1:])):
        k1, k2 = jax.random.split(jax.random.fold_in(key, i))
        bound = 1 / np.sqrt(fan_in)
        params.append((jax.random.uniform(k1, (fan_out, fan_in), minval=-bound, maxval=bound),
                       jax.random.uniform(k2, (fan_out,), minval=-bound, maxval=bound)))
    return params


def raw_step_fn():
    """``(optimizer, step)``: the hand-written JAX+optax step ``(params, opt_state, x, y) -> (..., loss)``."""
    opt = optax.sgd(LR)

    def forward(params, x):
        for i, (w, b) in enumerate(params):
            x = x @ w.T + b
            if i < len(params) - 1:
                x = jax.nn.relu(x)
        return x

    def step(params, opt_state, x, y):
        def loss_fn(p):
            return optax.softmax_cross_entropy_with_integer_labels(forward(p, x), y).mean()

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return opt, step


def seed_net():
    """The seed program's model, written with funcnet (imported here, so raw JAX start-up does not pay for it)."""
    import funcnet
    import funcnet.nn as nn
    import funcnet.nn.functional as F

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(784, 128)
            self.fc2 = nn.Linear(128, 64)
            self.fc3 = nn.Linear(64, 10)

        def forward(self, x):
            x = funcnet.flatten(x, 1)
            x = F.relu(self.fc1(x))
            x = F.relu(self.fc2(x))
            return self.fc3(x)

    return Net()


def optax_runner(step, params, opt_state, x, y):
    """``run(steps)`` for a jitted ``step(params, opt_state, x, y) -> (params, opt_state, loss)``."""
    state = [params, opt_state]

    def run(steps):
        p, o = state
        for _ in range(steps):
            p, o, loss = step(p, o, x, y)
        loss.block_until_ready()
        state[:] = [p, o]

    return run


# -- systems: each returns run(steps) that performs `steps` updates and blocks ------------------
def raw_jax(x, y):
    opt, step = raw_step_fn()
    step = jax.jit(step, donate_argnums=(0, 1))
    params = raw_params()
    return optax_runner(step, params, opt.init(params), x, y)


def funcnet_step(x, y):
    import funcnet
    import funcnet.nn as nn
    from funcnet.train import TrainState, make_train_step

    model = seed_net()
    optimizer = funcnet.optim.SGD(lr=LR)
    step = make_train_step(model, nn.CrossEntropyLoss(), optimizer)
    state = [TrainState.create(model, optimizer, jax.random.key(0))]

    def run(steps):
        s = state[0]
        for _ in range(steps):
            s, metrics = step(s, (x, y))
        metrics.loss_sum.block_until_ready()
        state[0] = s

    return run


def torch_eager(x, y, threads: int | None = None):
    import torch

    threads = threads or os.cpu_count() or 1
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 128), torch.nn.ReLU(),
                                torch.nn.Linear(128, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    criterion = torch.nn.CrossEntropyLoss()
    tx, ty = torch.tensor(x), torch.tensor(y, dtype=torch.long)

    def run(steps):
        torch.set_num_threads(threads)  # per run: the 1-thread and all-core variants share a process
        for _ in range(steps):
            opt.zero_grad()
            loss = criterion(model(tx), ty)
            loss.backward()
            opt.step()
        loss.item()

    return run


def torch_eager_1thread(x, y):
    return torch_eager(x, y, threads=1)


def flax_linen(x, y):
    import flax.linen as linen

    class MLP(linen.Module):
        @linen.compact
        def __call__(self, x):
            x = jax.nn.relu(linen.Dense(128)(x))
            x = jax.nn.relu(linen.Dense(64)(x))
            return linen.Dense(10)(x)

    model = MLP()
    params = model.init(jax.random.key(0), x)
    opt = optax.sgd(LR)

    def step(params, opt_state, x, y):
        def loss_fn(p):
            return optax.softmax_cross_entropy_with_integer_labels(model.apply(p, x), y).mean()

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    step = jax.jit(step, donate_argnums=(0, 1))
    return optax_runner(step, params, opt.init(params), x, y)


def flax_nnx(x, y):
    from flax import nnx

    class MLP(nnx.Module):
        def __init__(self, rngs):
            self.fc1 = nnx.Linear(784, 128, rngs=rngs)
            self.fc2 = nnx.Linear(128, 64, rngs=rngs)
            self.fc3 = nnx.Linear(64, 10, rngs=rngs)

        def __call__(self, x):
            return self.fc3(jax.nn.relu(self.fc2(jax.nn.relu(self.fc1(x)))))

    model = MLP(nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, optax.sgd(LR), wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer, x, y):
        def loss_fn(model):
            return optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean()

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        return loss

    def run(steps):
        for _ in range(steps):
            loss = step(model, optimizer, x, y)
        loss.block_until_ready()

    return run


def equinox(x, y):
    import equinox as eqx

    model = eqx.nn.MLP(784, 10, 128, 2, activation=jax.nn.relu, key=jax.random.key(0))
    model = eqx.nn.Sequential([eqx.nn.Linear(784, 128, key=jax.random.key(1)), eqx.nn.Lambda(jax.nn.relu),
                               eqx.nn.Linear(128, 64, key=jax.random.key(2)), eqx.nn.Lambda(jax.nn.relu),
                               eqx.nn.Linear(64, 10, key=jax.random.key(3))])
    opt = optax.sgd(LR)

    @eqx.filter_jit(donate="all-except-first")
    def step(x, model, opt_state, y):
        def loss_fn(model):
            logits = jax.vmap(model)(x)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

        loss, grads = eqx.filter_value_and_grad(loss_fn)(model)
        updates, opt_state = opt.update(grads, opt_state, eqx.filter(model, eqx.is_array))
        return eqx.apply_updates(model, updates), opt_state, loss

    state = [model, opt.init(eqx.filter(model, eqx.is_array))]

    def run(steps):
        m, o = state
        for _ in range(steps):
            m, o, loss = step(x, m, o, y)
        loss.block_until_ready()
        state[:] = [m, o]

    return run


SYSTEMS = {
    "raw JAX+optax": raw_jax,
    "funcnet": funcnet_step,
    "PyTorch eager": torch_eager,
    "PyTorch eager (1 thread)": torch_eager_1thread,
    "Flax Linen": flax_linen,
    "Flax NNX (nnx.jit)": flax_nnx,
    "Equinox (filter_jit)": equinox,
}


def available(name: str) -> bool:
    module = {"PyTorch eager": "torch", "PyTorch eager (1 thread)": "torch", "Flax Linen": "flax",
              "Flax NNX (nnx.jit)": "flax",
              "Equinox (filter_jit)": "equinox"}.get(name)
    if module is None:
        return True
    try:
        __import__(module)
        return True
    except ImportError:
        return False


def step_samples(batch_size: int, rounds: int, steps: int) -> dict[str, list[float]]:
    """µs per step of every system, one sample per interleaved round (see ``benchmarks.timing``)."""
    x, y = batch(batch_size)
    runs = {name: make(x, y) for name, make in SYSTEMS.items() if available(name)}
    for run in runs.values():  # compile and warm up
        run(20)
    return interleaved({name: functools.partial(run, steps) for name, run in runs.items()}, rounds, 1e6 / steps)


def step_samples_in_processes(batch_size: int, rounds: int, steps: int, processes: int) -> dict[str, list[float]]:
    """:func:`step_samples` in ``processes`` fresh interpreters, one after another, samples pooled.

    A process keeps its memory layout and thread placement for its whole life, which can put
    one system a percent or two ahead for that process; pooling processes averages this out.
    """
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = ("import json, benchmarks.train_step as B; "
            f"print(json.dumps(B.step_samples({batch_size}, {rounds}, {steps})))")
    pooled: dict[str, list[float]] = {}
    for _ in range(processes):
        out = subprocess.run([sys.executable, "-c", code], cwd=root, check=True, capture_output=True, text=True)
        for name, v in json.loads(out.stdout.strip().splitlines()[-1]).items():
            pooled.setdefault(name, []).extend(v)
    return pooled


def step_times(batch_size: int, rounds: int, steps: int) -> dict[str, float]:
    """Median µs per step of every system over interleaved rounds."""
    return {name: statistics.median(v) for name, v in step_samples(batch_size, rounds, steps).items()}


STARTUP = {
    "raw JAX+optax": "from benchmarks.train_step import raw_jax, batch; raw_jax(*batch(64))(1)",
    "funcnet": "from benchmarks.train_step import funcnet_step, batch; funcnet_step(*batch(64))(1)",
    "PyTorch eager": "from benchmarks.train_step import torch_eager, batch; torch_eager(*batch(64))(1)",
    "Flax NNX (nnx.jit)": "from benchmarks.train_step import flax_nnx, batch; flax_nnx(*batch(64))(1)",
    "Equinox (filter_jit)": "from benchmarks.train_step import equinox, batch; equinox(*batch(64))(1)",
}


def startup_times(repeats: int) -> dict[str, float]:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    samples: dict[str, list[float]] = {name: [] for name in STARTUP if available(name)}
    for _ in range(repeats):
        for name in samples:
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", STARTUP[name]], cwd=root, check=True)
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(v) for name, v in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=15, help="interleaved rounds per process")
    parser.add_argument("--processes", type=int, default=3, help="fresh interpreters, samples pooled")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch", type=int, nargs="+", default=[64, 512])
    parser.add_argument("--startup-repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"jax {jax.__version__}, {os.cpu_count()} CPU cores, backend {jax.default_backend()}")
    for bs in args.batch:
        samples = step_samples_in_processes(bs, args.rounds, args.steps, args.processes)
        ratios = median_ratios(samples, "raw JAX+optax")
        print(f"\nbatch {bs}: medians over {args.processes} processes × {args.rounds} interleaved rounds "
              f"of {args.steps} steps")
        print(f"{'system':26s} {'µs/step':>9s} {'vs raw JAX':>11s}")
        for name, v in samples.items():
            print(f"{name:26s} {statistics.median(v):9.1f} {ratios[name]:11.3f}")
    if args.startup_repeats:
        print(f"\nprocess start → first finished step (median of {args.startup_repeats}, fresh interpreter)")
        for name, t in startup_times(args.startup_repeats).items():
            print(f"{name:24s} {t:6.2f} s")


if __name__ == "__main__":
    main()
