"""Transfer learning on the built-in digits: reuse a pretrained CNN backbone with a new head.

1. Pretrain a small CNN (Conv2d, BatchNorm2d, ReLU, MaxPool2d, Dropout, Linear) on digits 0–4
   and save its state dict.
2. Load it back, build a new model with the same backbone and a fresh 5-way head, load only
   the backbone (``funcnet.nn.transfer.load_backbone`` prints what was and was not loaded),
   freeze it and train the head for a few steps on a few labelled digits 5–9 (``--shots`` per
   class). The frozen backbone gets no gradient and no optimizer state (``trainable="head"``)
   and keeps its BatchNorm statistics (``eval_modules=("backbone",)``).
3. Unfreeze everything (``param_groups``: backbone lr × ``--backbone-lr-scale``) and fine-tune
   for the rest of the step budget.
4. Train the same architecture from scratch on the same batches, with the same optimizer, head
   init and number of steps; also train the frozen-backbone model for the whole budget (a linear
   probe of the pretrained features). Compare test accuracies on digits 5–9.

The torch equivalent of step 2 is ``new.load_state_dict(backbone_sd, strict=False)``,
``new.backbone.requires_grad_(False)``, ``new.backbone.eval()`` and
``Adam(new.head.parameters(), ...)``; of step 3, ``requires_grad_(True)`` and a new optimizer
over parameter groups.

    python examples/transfer_learning.py              # ~7 s on 2 CPU cores
    python examples/transfer_learning.py --quick      # a few steps per phase, smoke run

The last line is ``test accuracy: fine-tuned <fraction>, scratch <fraction>``: mean test
accuracy over ``--draws`` few-shot sets of the fine-tuned model (steps 2–3) and the scratch model
at the same step budget. On these 8×8 digits the pretrained backbone pays off once it is
fine-tuned: the frozen backbone alone (a linear head on the features of 0–4) stays below scratch
(see benchmarks/RESULTS.md, "Transfer learning").
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


def run(train_step, state: TrainState, batches: list) -> TrainState:
    """One ``train_step`` per batch; returns the new state."""
    for batch in batches:
        state, _ = train_step(state, batch)
    return state


def first_batches(loader: DataLoader, n: int) -> list:
    """The first ``n`` batches of ``loader``, through as many epochs as that takes."""
    out: list = []
    while len(out) < n:
        out.extend(loader)
    return out[:n]


class Comparison:
    """Steps 2–4 for one few-shot set: ``(fine_tuned, scratch, frozen_only)`` train states.

    All three see the same batches (the step budget), the same optimizer (Adam), head init and
    run key. ``fine_tuned``: backbone loaded and frozen for ``head_steps``, then everything
    unfrozen with the backbone lr scaled by ``backbone_lr_scale``. ``scratch``: the same net
    from its init. ``frozen_only``: the loaded backbone frozen for all the steps.
    """

    def __init__(self, model: Net, criterion, lr: float, backbone_lr_scale: float = 1.0):
        self.model, self.optimizer = model, optim.Adam(lr=lr)
        # torch: backbone.requires_grad_(False); backbone.eval() — no gradients, BatchNorm statistics kept.
        self.frozen_step = make_train_step(model, criterion, self.optimizer, trainable="head",
                                           eval_modules=("backbone",))
        self.full_step = make_train_step(model, criterion, self.optimizer)
        self.groups = optim.param_groups(optim.Adam, [{"params": "backbone", "lr": lr * backbone_lr_scale}], lr=lr)
        self.unfrozen_step = make_train_step(model, criterion, self.groups)
        self.eval_step = make_eval_step(model, criterion)

    def __call__(self, pretrained: dict, batches: list, head_steps: int, seed: int):
        model, optimizer = self.model, self.optimizer
        init_key, run_key = funcnet.manual_seed(1000 + seed), funcnet.manual_seed(2000 + seed)

        # New model, same backbone, fresh head: load the backbone only (strict=False) and freeze it.
        # Each state gets its own init: the steps donate their state, and states would share arrays.
        def transferred() -> TrainState:
            variables, _ = load_backbone(model, pretrained, model.init(init_key))
            return TrainState.create(model, optimizer, run_key, variables=variables, trainable="head")

        tuned = run(self.frozen_step, transferred(), batches[:head_steps])
        # Unfreeze: a new optimizer state over all parameters, in two groups.
        tuned = run(self.unfrozen_step, tuned.replace(opt_state=self.groups.init(tuned.params)), batches[head_steps:])
        scratch = run(self.full_step, TrainState.create(model, optimizer, run_key, variables=model.init(init_key)),
                      batches)
        frozen_only = run(self.frozen_step, transferred(), batches)
        return tuned, scratch, frozen_only


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pretrain-epochs", type=int, default=10)
    parser.add_argument("--steps", type=int, default=20, help="step budget on 5-9, the same for every model")
    parser.add_argument("--head-steps", type=int, default=3, help="of those, steps with the backbone frozen")
    parser.add_argument("--backbone-lr-scale", type=float, default=1.0, help="backbone lr / head lr once unfrozen")
    parser.add_argument("--shots", type=int, default=10, help="labelled samples per class of 5-9")
    parser.add_argument("--draws", type=int, default=10, help="random few-shot sets to average over")
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/transfer", help="where the pretrained checkpoint goes")
    parser.add_argument("--quick", action="store_true", help="a few steps per phase (smoke test)")
    args = parser.parse_args()
    if args.quick:
        args.pretrain_epochs, args.steps, args.head_steps, args.draws = 1, 4, 1, 1
    if not 0 <= args.head_steps <= args.steps:
        parser.error(f"--head-steps must be between 0 and --steps ({args.steps}); got {args.head_steps}")
    start = time.perf_counter()
    criterion = nn.CrossEntropyLoss()
    optimizer = optim.Adam(lr=args.lr)

    # 1. Pretrain on digits 0-4 and save the state dict.
    source = Net(num_classes=5)
    state = TrainState.create(source, optimizer, funcnet.manual_seed(args.seed))
    loader = DataLoader(digits_subset(True, range(0, 5)), batch_size=32, shuffle=True, seed=args.seed)
    state = run(make_train_step(source, criterion, optimizer), state,
                first_batches(loader, args.pretrain_epochs * len(loader)))
    test_a = DataLoader(digits_subset(False, range(0, 5)), batch_size=512)
    acc = evaluate(make_eval_step(source, criterion), state, test_a)["accuracy"]
    print(f"pretrained on 0-4 ({args.pretrain_epochs} epochs): test accuracy {acc:.4f}")
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "pretrained.pkl")
    funcnet.save(source.state_dict(state.variables), path)

    # 2.-4. on several random few-shot draws of digits 5-9 (the accuracy of one draw is noisy).
    model = Net(num_classes=5)
    compare = Comparison(model, criterion, args.lr, args.backbone_lr_scale)
    test_b = DataLoader(digits_subset(False, range(5, 10)), batch_size=512)
    pretrained = funcnet.load(path)
    results = []
    for draw in range(args.draws):
        seed = args.seed + draw
        few_shot = digits_subset(True, range(5, 10), shots=args.shots, seed=seed)
        batches = first_batches(DataLoader(few_shot, batch_size=args.batch_size, shuffle=True, seed=seed),
                                args.steps)
        if draw == 0:
            print(load_backbone(model, pretrained, model.init(funcnet.manual_seed(0)))[1])
            print(f"{args.draws} draws of {len(few_shot)} samples of 5-9; {args.steps} steps of batch "
                  f"{args.batch_size}: {args.head_steps} with the backbone frozen, then all unfrozen")
        states = compare(pretrained, batches, args.head_steps, seed)
        row = [evaluate(compare.eval_step, s, test_b)["accuracy"] for s in states]
        results.append(row)
        print(f"draw {draw}: fine-tuned {row[0]:.4f}, scratch {row[1]:.4f}, frozen backbone only {row[2]:.4f}")

    mean = np.mean(results, axis=0)
    wins = sum(r[0] > r[1] for r in results)
    print(f"mean over {args.draws} draws, {args.steps} steps each: fine-tuned {mean[0]:.4f} (ahead of scratch in "
          f"{wins} of {args.draws} draws), scratch {mean[1]:.4f}, frozen backbone only {mean[2]:.4f}")
    print(f"done in {time.perf_counter() - start:.1f} s")
    print(f"test accuracy: fine-tuned {mean[0]:.4f}, scratch {mean[1]:.4f}")


if __name__ == "__main__":
    main()
