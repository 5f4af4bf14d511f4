"""Transfer learning on the built-in digits: reuse a pretrained CNN backbone with a new head.

1. Pretrain a small CNN (Conv2d, BatchNorm2d, ReLU, MaxPool2d, Dropout, Linear) on digits 0–4
   and save its state dict.
2. Load it back, build a new model with the same backbone and a fresh 5-way head, load only
   the backbone (``funcnet.nn.transfer.load_backbone`` prints what was and was not loaded),
   freeze it and fine-tune the head on a few labelled digits 5–9 (``--shots`` per class).
   The frozen backbone gets no gradient and no optimizer state (``trainable="head"``).
3. Train the same architecture from scratch on the same samples, with the same optimizer and
   the same number of steps, and compare test accuracies on digits 5–9.
4. Optionally unfreeze the backbone with a 10× smaller lr (``param_groups``) for a few more
   steps; the scratch model gets the same extra steps.

The torch equivalent of step 2 is ``new.load_state_dict(backbone_sd, strict=False)``,
``new.backbone.requires_grad_(False)`` and ``SGD(new.head.parameters(), ...)``.

    python examples/transfer_learning.py              # ~15 s on 2 CPU cores
    python examples/transfer_learning.py --quick      # one epoch per phase, smoke run

The last line is ``test accuracy: fine-tuned <fraction>, scratch <fraction>``: the frozen-backbone
model and the scratch model at the same step budget, mean test accuracy over ``--draws`` few-shot sets.
On these easy 8×8 digits the pretrained backbone does not reliably beat scratch: with 1
labelled sample per class and 16 steps the two are on par, and with 10 per class or after more
steps training from scratch is ahead (see benchmarks/RESULTS.md, "Transfer learning").
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

import funcnet
import funcnet.nn as nn
import funcnet.optim as optim
from funcnet.datasets import Digits
from funcnet.nn.transfer import load_backbone
from funcnet.train import TrainState, evaluate, make_eval_step, make_train_step
from funcnet.utils.data import DataLoader, TensorDataset


class Backbone(nn.Module):
    """``[N, 1, 8, 8] -> [N, 128]`` features: two conv/BN/ReLU/max-pool blocks, then dropout."""

    def __init__(self, dropout: float = 0.25):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(32)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        x = self.pool(self.relu(self.bn1(self.conv1(x))))  # [N, 16, 4, 4]
        x = self.pool(self.relu(self.bn2(self.conv2(x))))  # [N, 32, 2, 2]
        return self.dropout(funcnet.flatten(x, 1))  # [N, 128]


class Net(nn.Module):
    """A backbone and a linear head; state-dict keys ``backbone.*`` and ``head.*``."""

    def __init__(self, num_classes: int = 5):
        super().__init__()
        self.backbone = Backbone()
        self.head = nn.Linear(128, num_classes)

    def forward(self, x):
        return self.head(self.backbone(x))


def digits_subset(train: bool, classes: range, shots: int | None = None, seed: int = 0) -> TensorDataset:
    """The Digits samples of ``classes``, labels renumbered from 0; ``shots`` per class if given."""
    images, labels = Digits(train=train).tensors
    keep = []
    rng = np.random.default_rng(seed)
    for c in classes:
        idx = np.flatnonzero(labels == c)
        keep.append(idx if shots is None else rng.choice(idx, shots, replace=False))
    keep = np.sort(np.concatenate(keep))
    return TensorDataset(images[keep], (labels[keep] - classes.start).astype(np.int32))


def train(train_step, state: TrainState, loader, epochs: int) -> TrainState:
    """``epochs`` passes of ``train_step`` over ``loader``; returns the new state."""
    for _ in range(epochs):
        for batch in loader:
            state, _ = train_step(state, batch)
    return state


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pretrain-epochs", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=16, help="fine-tuning epochs (scratch gets the same)")
    parser.add_argument("--unfreeze-epochs", type=int, default=16, help="then unfrozen, backbone lr / 10")
    parser.add_argument("--shots", type=int, default=1, help="labelled samples per class of 5-9")
    parser.add_argument("--draws", type=int, default=5, help="random few-shot sets to average over")
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/transfer", help="where the pretrained checkpoint goes")
    parser.add_argument("--quick", action="store_true", help="one epoch per phase (smoke test)")
    args = parser.parse_args()
    if args.quick:
        args.pretrain_epochs, args.epochs, args.unfreeze_epochs, args.draws = 1, 1, 1, 1
    start = time.perf_counter()
    criterion = nn.CrossEntropyLoss()
    optimizer = optim.Adam(lr=args.lr)

    # 1. Pretrain on digits 0-4 and save the state dict.
    source = Net(num_classes=5)
    state = TrainState.create(source, optimizer, funcnet.manual_seed(args.seed))
    loader = DataLoader(digits_subset(True, range(0, 5)), batch_size=32, shuffle=True, seed=args.seed)
    state = train(make_train_step(source, criterion, optimizer), state, loader, args.pretrain_epochs)
    test_a = DataLoader(digits_subset(False, range(0, 5)), batch_size=512)
    acc = evaluate(make_eval_step(source, criterion), state, test_a)["accuracy"]
    print(f"pretrained on 0-4 ({args.pretrain_epochs} epochs): test accuracy {acc:.4f}")
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "pretrained.pkl")
    funcnet.save(source.state_dict(state.variables), path)

    # 2.-4. on several random few-shot draws of digits 5-9 (the accuracy of one draw is noisy).
    model = Net(num_classes=5)
    # torch: backbone.requires_grad_(False); backbone.eval() — no gradients, BatchNorm statistics kept.
    frozen_step = make_train_step(model, criterion, optimizer, trainable="head", eval_modules=("backbone",))
    full_step = make_train_step(model, criterion, optimizer)
    groups = optim.param_groups(optim.Adam, [{"params": "backbone", "lr": args.lr / 10}], lr=args.lr)
    unfrozen_step = make_train_step(model, criterion, groups)
    eval_step = make_eval_step(model, criterion)
    test_b = DataLoader(digits_subset(False, range(5, 10)), batch_size=512)
    pretrained = funcnet.load(path)
    results = []
    for draw in range(args.draws):
        seed = args.seed + draw
        few_shot = digits_subset(True, range(5, 10), shots=args.shots, seed=seed)
        loader = DataLoader(few_shot, batch_size=args.batch_size, shuffle=True, seed=seed)
        steps, extra = args.epochs * len(loader), args.unfreeze_epochs * len(loader)
        init_key, run_key = funcnet.manual_seed(1000 + seed), funcnet.manual_seed(2000 + seed)

        # 2. New model, same backbone, fresh head: load the backbone only, freeze it, train the head.
        variables, report = load_backbone(model, pretrained, model.init(init_key))
        if draw == 0:
            print(report)
            print(f"{args.draws} draws of {len(few_shot)} samples of 5-9; {steps} steps of batch "
                  f"{args.batch_size}, then {extra} unfrozen")
        tuned = TrainState.create(model, optimizer, run_key, variables=variables, trainable="head")
        tuned = train(frozen_step, tuned, loader, args.epochs)

        # 3. The same architecture from scratch: same head init, optimizer, samples and steps.
        # (a fresh init: the steps donate their state, and `variables` shares the init's head arrays)
        scratch = TrainState.create(model, optimizer, run_key, variables=model.init(init_key))
        scratch = train(full_step, scratch, loader, args.epochs)
        row = [evaluate(eval_step, tuned, test_b)["accuracy"], evaluate(eval_step, scratch, test_b)["accuracy"]]

        # 4. Unfreeze everything, backbone lr 10x smaller; scratch gets the same extra steps.
        if args.unfreeze_epochs > 0:
            tuned = tuned.replace(opt_state=groups.init(tuned.params))
            tuned = train(unfrozen_step, tuned, loader, args.unfreeze_epochs)
            scratch = train(full_step, scratch, loader, args.unfreeze_epochs)
            row += [evaluate(eval_step, tuned, test_b)["accuracy"], evaluate(eval_step, scratch, test_b)["accuracy"]]
        results.append(row)
        print(f"draw {draw}: frozen backbone {row[0]:.4f}, scratch {row[1]:.4f}"
              + (f" | unfrozen {row[2]:.4f}, scratch {row[3]:.4f}" if len(row) > 2 else ""))

    mean = np.mean(results, axis=0)
    print(f"mean over {args.draws} draws, {steps} steps: frozen backbone {mean[0]:.4f}, scratch {mean[1]:.4f}")
    if len(mean) > 2:
        print(f"mean after {extra} more steps: unfrozen (backbone lr/10) {mean[2]:.4f}, scratch {mean[3]:.4f}")
    print(f"done in {time.perf_counter() - start:.1f} s")
    print(f"test accuracy: fine-tuned {mean[0]:.4f}, scratch {mean[1]:.4f}")

if __name__ == "__main__":
    main()
