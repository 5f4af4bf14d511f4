"""The seed program, translated line for line from PyTorch to funcnet.

An MLP (input → 128 → 64 → 10), cross-entropy, SGD, a DataLoader, the running loss
printed per epoch, then evaluation on the validation and test sets. By default it
trains on the built-in 8×8 digits (no download); ``--data-dir`` reads real MNIST IDX
files from a folder. It saves a checkpoint and a PNG of the loss curve, and its last
line is ``test accuracy: <fraction>``.

    python examples/mnist.py                      # digits, ~10 s on 2 CPU cores
    python examples/mnist.py --data-dir ~/mnist   # train-images-idx3-ubyte(.gz), ...
"""

from __future__ import annotations

import argparse
import os
import time

import funcnet
import funcnet.nn as nn
import funcnet.nn.functional as F
import funcnet.optim as optim
from funcnet.datasets import MNIST, Digits
from funcnet.train import TrainState, make_eval_step, make_train_step, metrics
from funcnet.utils.data import DataLoader, random_split
from funcnet.utils.data import transforms as T


class Net(nn.Module):
    def __init__(self, in_features: int = 784):
        super().__init__()
        self.fc1 = nn.Linear(in_features, 128)
        self.fc2 = nn.Linear(128, 64)
        self.fc3 = nn.Linear(64, 10)

    def forward(self, x):
        x = funcnet.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


def evaluate(eval_step, state, loader) -> float:
    running = metrics.empty()
    for images, labels in loader:
        running = eval_step.accumulate(state, running, (images, labels))
    return metrics.compute(running)["accuracy"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", help="folder with the MNIST IDX files (default: built-in digits)")
    parser.add_argument("--epochs", type=int, default=15, help="10 in the seed (60k MNIST images); digits has 1.3k")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/mnist", help="where the checkpoint and the plot go")
    args = parser.parse_args()
    start = time.perf_counter()

    if args.data_dir:
        train_data, test_set = MNIST(args.data_dir, train=True), MNIST(args.data_dir, train=False)
    else:
        train_data, test_set = Digits(train=True), Digits(train=False)
    images = train_data.tensors[0]
    # torchvision's transforms.Normalize(mean, std), with the training set's statistics.
    normalize = T.PerField(T.Normalize((float(images.mean()),), (float(images.std()),)), None)
    train_set, val_set = random_split(train_data, [0.9, 0.1], seed=args.seed)
    train_loader = DataLoader(train_set, batch_size=args.batch_size, shuffle=True, seed=args.seed, transform=normalize)
    val_loader = DataLoader(val_set, batch_size=256, transform=normalize)
    test_loader = DataLoader(test_set, batch_size=256, transform=normalize)
    in_features = images[0].size

    model = Net(in_features)
    criterion = nn.CrossEntropyLoss()
    optimizer = optim.SGD(lr=args.lr, momentum=args.momentum)
    state = TrainState.create(model, optimizer, funcnet.manual_seed(args.seed))
    train_step = make_train_step(model, criterion, optimizer)
    eval_step = make_eval_step(model, criterion)

    losses = []
    for epoch in range(args.epochs):
        running_loss = metrics.empty()
        for images, labels in train_loader:
            state, running_loss = train_step.accumulate(state, running_loss, (images, labels))
        losses.append(metrics.compute(running_loss)["loss"])
        print(f"Epoch {epoch + 1}, loss: {losses[-1]:.4f}")

    print(f"validation accuracy: {evaluate(eval_step, state, val_loader):.4f}")
    os.makedirs(args.out, exist_ok=True)
    funcnet.save({"model": model.state_dict(state.variables), "state": state}, os.path.join(args.out, "model.pkl"))
    plot_loss(losses, os.path.join(args.out, "loss.png"))
    print(f"saved {args.out}/model.pkl and {args.out}/loss.png in {time.perf_counter() - start:.1f} s")
    print(f"test accuracy: {evaluate(eval_step, state, test_loader):.4f}")


def plot_loss(losses: list[float], path: str) -> None:
    """The loss curve as a PNG (matplotlib when installed, else a plain Pillow line chart)."""
    try:
        from funcnet.vision.plot import plot_history

        plot_history({"loss": losses}, path)
    except ImportError:
        print("(matplotlib not installed: no loss plot; pip install 'funcnet[train]')")


if __name__ == "__main__":
    main()
