"""How much do features learned on digits 0–4 help on 5–9? Linear probes, trained to convergence.

The backbone of ``examples/transfer_learning.py`` is pretrained on 0–4 (10 epochs, as the
example does); then a logistic-regression head (standardised inputs, Adam, 300 full-batch steps,
small L2) is fitted on k labelled samples per class of 5–9 over three inputs: the raw 64 pixels,
the features of a randomly initialised backbone, and the pretrained features. Test accuracy on
5–9, mean over 5 draws of the k samples. Deterministic (fixed seeds).

    python -m benchmarks.transfer_probe
"""

from __future__ import annotations

import importlib.util
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax

import funcnet
import funcnet.nn as nn
import funcnet.optim as optim
from funcnet.train import TrainState, make_train_step
from funcnet.utils.data import DataLoader

SHOTS = (1, 3, 10, None)  # None: every training sample of 5-9


def example():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    spec = importlib.util.spec_from_file_location("transfer_example", os.path.join(root, "examples",
                                                                                   "transfer_learning.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def probe_accuracy(train_x, train_y, test_x, test_y, shots, seed, steps=300, lr=0.1) -> float:
    """Fit a standardised linear softmax classifier on ``shots`` samples per class; test accuracy."""
    rng = np.random.default_rng(seed)
    classes = np.unique(train_y)
    idx = (np.arange(len(train_y)) if shots is None else
           np.concatenate([rng.choice(np.flatnonzero(train_y == c), shots, replace=False) for c in classes]))
    x, y = jnp.asarray(train_x[idx]), jnp.asarray(train_y[idx])
    mean, std = x.mean(0), x.std(0) + 1e-6
    params = (jnp.zeros((x.shape[1], len(classes))), jnp.zeros(len(classes)))
    opt = optax.adam(lr)

    def loss(p):
        logits = ((x - mean) / std) @ p[0] + p[1]
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean() + 1e-3 * jnp.sum(p[0] ** 2)

    @jax.jit
    def fit(params):
        def body(carry, _):
            p, s = carry
            updates, s = opt.update(jax.grad(loss)(p), s)
            return (optax.apply_updates(p, updates), s), None

        return jax.lax.scan(body, (params, opt.init(params)), None, length=steps)[0][0]

    w, b = fit(params)
    pred = (((jnp.asarray(test_x) - mean) / std) @ w + b).argmax(1)
    return float((pred == jnp.asarray(test_y)).mean())


def main() -> None:
    ex = example()
    crit, adam = nn.CrossEntropyLoss(), optim.Adam(lr=1e-2)
    source = ex.Net()
    loader = DataLoader(ex.digits_subset(True, range(0, 5)), batch_size=32, shuffle=True, seed=0)
    state = ex.run(make_train_step(source, crit, adam), TrainState.create(source, adam, funcnet.manual_seed(0)),
                   ex.first_batches(loader, 10 * len(loader)))
    random_init = source.init(funcnet.manual_seed(5))
    train_x, train_y = ex.digits_subset(True, range(5, 10)).tensors
    test_x, test_y = ex.digits_subset(False, range(5, 10)).tensors

    def features(variables):
        def apply(x):
            out = source.backbone.apply(variables.params["backbone"], x, buffers=variables.buffers["backbone"])
            return np.asarray(out)
        return apply

    inputs = {
        "raw pixels (64)": lambda x: x.reshape(len(x), -1),
        "random backbone (128)": features(random_init),
        "pretrained on 0-4 (128)": features(state.variables),
    }
    print("linear probe on digits 5-9: test accuracy, mean of 5 draws")
    print(f"{'input':26s}" + "".join(f"{'all' if k is None else f'{k}/class':>10s}" for k in SHOTS))
    for name, f in inputs.items():
        ftr, fte = f(train_x), f(test_x)
        accs = [np.mean([probe_accuracy(ftr, train_y, fte, test_y, k, s) for s in range(5)]) for k in SHOTS]
        print(f"{name:26s}" + "".join(f"{a:10.3f}" for a in accs))


if __name__ == "__main__":
    main()
