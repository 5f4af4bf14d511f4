"""A small CNN on the built-in digits: Conv2d, BatchNorm2d, ReLU, MaxPool2d, Dropout, Linear.

The same program shape as ``examples/mnist.py`` (a ``Net`` class, ``criterion``, ``optimizer``,
the running loss printed per epoch, a checkpoint), with a convolutional network. The 8×8 digits
need no download; ``--data-dir`` reads real 28×28 MNIST IDX files from a folder (the head adapts
to the image size). The last line is ``test accuracy: <fraction>``.

    python examples/cnn.py                        # digits, ~10 s on 2 CPU cores
    python examples/cnn.py --epochs 1             # quick smoke run
    python examples/cnn.py --data-dir ~/mnist     # train-images-idx3-ubyte(.gz), ...
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


class Net(nn.Module):
    """``[N, 1, H, W] -> [N, 10]``: two conv/BN/ReLU/max-pool blocks, dropout, two linear layers."""

    def __init__(self, image_size: int = 8):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, kernel_size=3, padding=1)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 32, kernel_size=3, padding=1)
        self.bn2 = nn.BatchNorm2d(32)
        self.pool = nn.MaxPool2d(2)
        self.dropout = nn.Dropout(0.25)
        side = image_size // 4  # two 2x2 poolings
        self.fc1 = nn.Linear(32 * side * side, 64)
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x):
        x = self.pool(F.relu(self.bn1(self.conv1(x))))  # [N, 16, H/2, W/2]
        x = self.pool(F.relu(self.bn2(self.conv2(x))))  # [N, 32, H/4, W/4]
        x = self.dropout(funcnet.flatten(x, 1))
        x = F.relu(self.fc1(x))
        return self.fc2(x)


def evaluate(eval_step, state, loader) -> float:
    running = metrics.empty()
    for images, labels in loader:
        running = eval_step.accumulate(state, running, (images, labels))
    return metrics.compute(running)["accuracy"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", help="folder with the MNIST IDX files (default: built-in digits)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/cnn", help="where the checkpoint goes")
    args = parser.parse_args()
    start = time.perf_counter()

    if args.data_dir:
        train_data, test_set = MNIST(args.data_dir, train=True), MNIST(args.data_dir, train=False)
    else:
        train_data, test_set = Digits(train=True), Digits(train=False)
    train_set, val_set = random_split(train_data, [0.9, 0.1], seed=args.seed)
    train_loader = DataLoader(train_set, batch_size=args.batch_size, shuffle=True, seed=args.seed)
    val_loader = DataLoader(val_set, batch_size=256)
    test_loader = DataLoader(test_set, batch_size=256)
    image_size = train_data.tensors[0].shape[-1]

    model = Net(image_size)
    criterion = nn.CrossEntropyLoss()
    optimizer = optim.SGD(lr=args.lr, momentum=args.momentum)
    state = TrainState.create(model, optimizer, funcnet.manual_seed(args.seed))
    train_step = make_train_step(model, criterion, optimizer)
    eval_step = make_eval_step(model, criterion)

    for epoch in range(args.epochs):
        running_loss = metrics.empty()
        for images, labels in train_loader:
            state, running_loss = train_step.accumulate(state, running_loss, (images, labels))
        print(f"Epoch {epoch + 1}, loss: {metrics.compute(running_loss)['loss']:.4f}")

    print(f"validation accuracy: {evaluate(eval_step, state, val_loader):.4f}")
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "model.pkl")
    funcnet.save({"model": model.state_dict(state.variables), "state": state}, path)
    print(f"saved {path} in {time.perf_counter() - start:.1f} s")
    print(f"test accuracy: {evaluate(eval_step, state, test_loader):.4f}")


if __name__ == "__main__":
    main()
