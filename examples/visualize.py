"""Pictures: train the seed MLP on the built-in digits, then save a grid of test digits
labelled with the model's predictions and the training curves.

    python examples/visualize.py                    # writes runs/visualize/{predictions,history}.png
    python examples/visualize.py --out /tmp/pics --epochs 5

Green labels are correct predictions, red ones mistakes (the true label follows in
brackets). About 10 s on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from PIL import Image, ImageDraw, ImageFont

import funcnet
import funcnet.nn as nn
from funcnet.datasets import Digits
from funcnet.vision import make_grid, plot_history, to_uint8_hwc


class Net(nn.Module):
    def __init__(self, in_features: int = 64):
        super().__init__()
        self.fc1 = nn.Linear(in_features, 128)
        self.fc2 = nn.Linear(128, 64)
        self.fc3 = nn.Linear(64, 10)

    def forward(self, x):
        x = funcnet.flatten(x, 1)
        x = jax.nn.relu(self.fc1(x))
        x = jax.nn.relu(self.fc2(x))
        return self.fc3(x)


def train(model, params, train_x, train_y, test_x, test_y, epochs, batch_size=16, lr=0.01, seed=0):
    """SGD with momentum over shuffled mini-batches; returns params and a per-epoch history."""
    optimizer = optax.sgd(lr, momentum=0.9)
    opt_state = optimizer.init(params)

    def loss_fn(params, x, y):
        logits = model.apply(params, x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), logits

    @jax.jit
    def step(params, opt_state, x, y):
        (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, x, y)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss, jnp.sum(jnp.argmax(logits, -1) == y)

    evaluate = jax.jit(loss_fn)
    rng = np.random.default_rng(seed)
    history = []
    for _ in range(epochs):
        order = rng.permutation(len(train_x))
        losses, correct = [], 0
        for i in range(0, len(order), batch_size):
            idx = order[i:i + batch_size]
            params, opt_state, loss, right = step(params, opt_state, train_x[idx], train_y[idx])
            losses.append(loss)
            correct += right
        val_loss, logits = evaluate(params, test_x, test_y)
        history.append({
            "loss": float(np.mean(jax.device_get(losses))),
            "accuracy": float(correct) / len(train_x),
            "val_loss": float(val_loss),
            "val_accuracy": float(np.mean(np.asarray(jnp.argmax(logits, -1)) == test_y)),
        })
        print("epoch {}: loss {loss:.4f}, accuracy {accuracy:.3f}, val_loss {val_loss:.4f}, "
              "val_accuracy {val_accuracy:.3f}".format(len(history), **history[-1]))
    return params, history


def labelled_grid(images: np.ndarray, predicted: np.ndarray, labels: np.ndarray, nrow: int = 8,
                  padding: int = 2, zoom: int = 8) -> Image.Image:
    """make_grid of the images, upscaled ``zoom`` times, each cell labelled with its prediction."""
    grid = Image.fromarray(to_uint8_hwc(make_grid(images, nrow=nrow, padding=padding, pad_value=0.3)))
    grid = grid.resize((grid.width * zoom, grid.height * zoom), Image.NEAREST)
    draw = ImageDraw.Draw(grid)
    try:
        font = ImageFont.load_default(size=max(10, 2 * zoom))
    except TypeError:  # Pillow < 10.1: one fixed-size bitmap font
        font = ImageFont.load_default()
    cell_h, cell_w = images.shape[2] + padding, images.shape[3] + padding
    for k, (pred, true) in enumerate(zip(predicted, labels)):
        y, x = divmod(k, nrow)
        left, top = (x * cell_w + padding) * zoom + 2, (y * cell_h + padding) * zoom + 1
        ok = pred == true
        text = f"{pred}" if ok else f"{pred} ({true})"
        draw.text((left, top), text, fill=(0, 220, 0) if ok else (255, 50, 50), font=font)
    return grid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="runs/visualize", help="output folder")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--count", type=int, default=48, help="test digits in the picture")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    start = time.perf_counter()

    train_x, train_y = Digits(train=True).tensors
    test_x, test_y = Digits(train=False).tensors
    model = Net()
    params = model.init(funcnet.manual_seed(args.seed)).params
    params, history = train(model, params, train_x, train_y, test_x, test_y, args.epochs, seed=args.seed)

    os.makedirs(args.out, exist_ok=True)
    images, labels = test_x[:args.count], test_y[:args.count]
    predicted = np.asarray(jnp.argmax(jax.jit(model.apply)(params, images), -1))
    labelled_grid(images, predicted, labels).save(os.path.join(args.out, "predictions.png"))
    plot_history(history, os.path.join(args.out, "history.png"), title="seed MLP on digits")
    wrong = int(np.sum(predicted != labels))
    print(f"saved {args.out}/predictions.png ({args.count} test digits, {wrong} wrong) and "
          f"{args.out}/history.png in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
