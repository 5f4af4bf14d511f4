"""Callbacks for :func:`funcnet.train.fit`: early stopping, CSV/JSON logs, checkpoints.

A callback sees plain data: the epoch number, the :class:`TrainState`, and the
epoch's log dict (``loss``, ``accuracy``, ``val_loss``, ``lr``, ``time`` …).
Returning ``True`` from ``on_epoch_end`` stops training after that epoch.
"""

from __future__ import annotations

import csv
import json
import math
import os
from typing import Any


class Callback:
    """Base class; override what you need."""

    def on_train_begin(self, state: Any) -> None:
        pass

    def on_epoch_end(self, epoch: int, state: Any, logs: dict[str, Any]) -> bool | None:
        return None

    def on_train_end(self, state: Any, history: list[dict[str, Any]]) -> None:
        pass


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs (Keras/Lightning rule)."""

    def __init__(self, monitor: str = "val_loss", patience: int = 5, mode: str = "min", min_delta: float = 0.0):
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        self.monitor, self.patience, self.mode, self.min_delta = monitor, patience, mode, min_delta
        self.best = math.inf if mode == "min" else -math.inf
        self.bad_epochs = 0

    def on_epoch_end(self, epoch: int, state: Any, logs: dict[str, Any]) -> bool:
        if self.monitor not in logs:
            raise KeyError(f"EarlyStopping monitors {self.monitor!r}, which is not in the logs {sorted(logs)}")
        value = logs[self.monitor]
        better = value < self.best - self.min_delta if self.mode == "min" else value > self.best + self.min_delta
        if better:
            self.best, self.bad_epochs = value, 0
        else:
            self.bad_epochs += 1
        return self.bad_epochs >= self.patience


class CSVLogger(Callback):
    """Append one row per epoch to a CSV file (header from the first epoch's keys)."""

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        self.fields: list[str] | None = None

    def on_epoch_end(self, epoch: int, state: Any, logs: dict[str, Any]) -> None:
        new = self.fields is None
        if new:
            self.fields = list(logs)
        with open(self.path, "w" if new else "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.fields, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow(logs)


class JSONLogger(Callback):
    """Write the whole history as a JSON list after every epoch."""

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        self.history: list[dict[str, Any]] = []

    def on_epoch_end(self, epoch: int, state: Any, logs: dict[str, Any]) -> None:
        self.history.append(dict(logs))
        with open(self.path, "w") as f:
            json.dump(self.history, f, indent=1)


class ModelCheckpoint(Callback):
    """Save the whole training state every ``every`` epochs through a ``CheckpointManager``.

    ``manager`` is a :class:`funcnet.checkpoint.CheckpointManager` (or a directory,
    for which one is made with its defaults). ``extra`` returns more things to
    store with the state, e.g. ``lambda: {"loader": loader.state_dict()}``.
    """

    def __init__(self, manager: Any, every: int = 1, monitor: str | None = None, extra: Any = None):
        if not hasattr(manager, "save"):
            from funcnet.checkpoint import CheckpointManager

            manager = CheckpointManager(manager)
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"ModelCheckpoint: every must be a positive number of epochs, got {every!r}")
        self.manager, self.every, self.monitor, self.extra = manager, every, monitor, extra

    def on_epoch_end(self, epoch: int, state: Any, logs: dict[str, Any]) -> None:
        if (epoch + 1) % self.every:
            return
        payload = {"state": state, "epoch": epoch, "logs": logs}
        if self.extra is not None:
            payload.update(self.extra())
        metrics = {self.monitor: logs[self.monitor]} if self.monitor else None
        self.manager.save(epoch + 1, payload, metrics=metrics)
