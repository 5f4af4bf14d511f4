"""``CheckpointManager``: periodic, atomic, safe checkpoints of a whole training state.

A checkpoint is one :func:`funcnet.save` file (atomic, checksummed, safe to
load) per saved step, ``<prefix>_<step:08d>.ckpt`` in ``directory``, plus a
small ``checkpoints.json`` index (written atomically too) with each step's
metrics. Save *everything* a run depends on and a resumed run is bit-identical
to one that never stopped::

    mgr = CheckpointManager("runs/exp1", keep=3, save_every=500, best_metric="val_loss", mode="min")
    state = {"params": params, "buffers": buffers, "opt_state": tx.init(params),
             "key": jax.random.key(0), "step": 0, "loader": loader.state_dict()}
    if mgr.latest() is not None:
        state = mgr.restore()              # exactly the dict given to save; arrays as jax arrays
        loader.load_state_dict(state["loader"])
    while state["step"] < total_steps:
        state = train_step(state, next(batches))   # your jitted step; updates step and key
        state["loader"] = loader.state_dict()
        mgr.save(state["step"], state, metrics={"val_loss": val_loss})  # writes every 500th step

``step`` is whatever counter you save by (steps or epochs). Retention keeps
the ``keep`` most recent checkpoints plus, with ``best_metric``, the best one
by that metric (``mode="min"`` or ``"max"``). In a multi-process run
(``jax.process_count() > 1``) every process calls ``save`` (arrays sharded
across processes are all-gathered, a collective) and only process 0 writes,
unless ``primary_only=False``; the processes then meet at a barrier.

torch has no checkpoint manager; this follows Orbax/Objax (temp file + rename,
keep the last N) with funcnet's single-file format.
"""

from __future__ import annotations

import json
import math
import operator
import os
import re
from typing import Any, NamedTuple

import jax

from funcnet.serialization import atomic_write_bytes, gather_for_save, load, save

__all__ = ["CheckpointInfo", "CheckpointManager"]

_INDEX = "checkpoints.json"
_INDEX_VERSION = 1


class CheckpointInfo(NamedTuple):
    """One saved checkpoint: its step, file path and the metrics given to ``save``."""

    step: int
    path: str
    metrics: dict


def _plain_metrics(metrics: dict | None) -> dict:
    """Metrics as JSON-able Python floats/ints (jax/numpy scalars are converted)."""
    out = {}
    for name, value in (metrics or {}).items():
        if not isinstance(name, str):
            raise TypeError(f"CheckpointManager.save: metric names must be str, got {name!r}")
        if isinstance(value, (bool, int, float)):
            out[name] = value
        else:
            try:
                out[name] = float(value)
            except (TypeError, ValueError):
                raise TypeError(
                    f"CheckpointManager.save: metric {name!r} must be a number (or a scalar array), "
                    f"got {type(value).__name__}"
                ) from None
    return out


class CheckpointManager:
    """Save a training state every ``save_every`` steps, keep the last ``keep`` and the best.

    Args:
        directory: folder of the checkpoints (created if missing).
        keep: how many of the most recent checkpoints to keep; ``None`` keeps all.
        save_every: ``save(step, ...)`` writes only when ``step % save_every == 0``
            (``force=True`` writes anyway).
        best_metric: a metric name given to ``save(..., metrics=...)``; the best checkpoint by
            it is kept in addition to the last ``keep`` and is what ``best()`` returns.
        mode: ``"min"`` or ``"max"``: whether a lower or higher ``best_metric`` is better.
            NaN is never best.
        primary_only: in a multi-process run only ``jax.process_index() == 0`` writes
            (default). ``False``: every process writes (each to its own ``directory``).
        prefix: file-name prefix, ``<prefix>_<step:08d>.ckpt``.
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        keep: int | None = 3,
        *,
        save_every: int = 1,
        best_metric: str | None = None,
        mode: str = "min",
        primary_only: bool = True,
        prefix: str = "ckpt",
    ) -> None:
        if keep is not None and (not isinstance(keep, int) or keep < 1):
            raise ValueError(f"CheckpointManager: keep must be a positive int or None, got {keep!r}")
        if not isinstance(save_every, int) or save_every < 1:
            raise ValueError(f"CheckpointManager: save_every must be a positive int, got {save_every!r}")
        if mode not in ("min", "max"):
            raise ValueError(f"CheckpointManager: mode must be 'min' or 'max', got {mode!r}")
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", prefix):
            raise ValueError(f"CheckpointManager: prefix must be a plain file-name part, got {prefix!r}")
        self.directory = os.path.abspath(os.fspath(directory))
        self.keep = keep
        self.save_every = save_every
        self.best_metric = best_metric
        self.mode = mode
        self.primary_only = primary_only
        self.prefix = prefix
        self._pattern = re.compile(rf"{re.escape(prefix)}_(\d+)\.ckpt")
        if self._is_writer():
            os.makedirs(self.directory, exist_ok=True)
            self._remove_stale_temp_files()

    # -- where things are -------------------------------------------------------------
    def path_for(self, step: int) -> str:
        """The file of checkpoint ``step``."""
        return os.path.join(self.directory, f"{self.prefix}_{step:08d}.ckpt")

    def _is_writer(self) -> bool:
        return not self.primary_only or jax.process_index() == 0

    def _remove_stale_temp_files(self) -> None:
        # Left by a process killed in the middle of a write; the target file itself is intact.
        for name in os.listdir(self.directory):
            if name.startswith((f".{self.prefix}_", f".{_INDEX}.")) and name.endswith(".tmp"):
                try:
                    os.unlink(os.path.join(self.directory, name))
                except OSError:
                    pass

    # -- the index --------------------------------------------------------------------
    def _read_index(self) -> dict[int, dict]:
        """step -> metrics of the checkpoint files present (the files are the truth)."""
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return {}
        present = {int(m.group(1)) for n in names if (m := self._pattern.fullmatch(n))}
        recorded: dict[int, dict] = {}
        try:
            with open(os.path.join(self.directory, _INDEX), encoding="utf-8") as f:
                for entry in json.load(f)["checkpoints"]:
                    recorded[int(entry["step"])] = dict(entry["metrics"])
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            pass  # no or unreadable index: rebuilt from the files below
        index = {}
        for step in sorted(present):
            if step in recorded:
                index[step] = recorded[step]
            else:  # written, then the process died before the index was updated
                try:
                    index[step] = dict(load(self.path_for(step), as_numpy=True).get("metrics", {}))
                except Exception:
                    continue  # not a readable funcnet checkpoint: ignore it
        return index

    def _write_index(self, index: dict[int, dict]) -> None:
        entries = [
            {"step": s, "file": os.path.basename(self.path_for(s)), "metrics": m}
            for s, m in sorted(index.items())
        ]
        text = json.dumps({"version": _INDEX_VERSION, "checkpoints": entries}, indent=1)
        atomic_write_bytes(os.path.join(self.directory, _INDEX), text.encode("utf-8"))

    # -- queries ----------------------------------------------------------------------
    def checkpoints(self) -> list[CheckpointInfo]:
        """All checkpoints on disk, oldest first."""
        return [CheckpointInfo(s, self.path_for(s), m) for s, m in self._read_index().items()]

    def steps(self) -> list[int]:
        """The saved steps, ascending."""
        return [c.step for c in self.checkpoints()]

    def latest(self) -> CheckpointInfo | None:
        """The checkpoint with the highest step, or ``None`` when there is none."""
        found = self.checkpoints()
        return found[-1] if found else None

    def best(self) -> CheckpointInfo | None:
        """The checkpoint with the best ``best_metric`` (ties: the earliest), or ``None``."""
        if self.best_metric is None:
            raise ValueError("CheckpointManager.best(): no best_metric was given to the manager")
        return self._best_of(self._read_index())

    def _best_of(self, index: dict[int, dict]) -> CheckpointInfo | None:
        sign = 1.0 if self.mode == "min" else -1.0
        scored = [
            (sign * float(m[self.best_metric]), s)
            for s, m in index.items()
            if self.best_metric in m and not math.isnan(float(m[self.best_metric]))
        ]
        if not scored:
            return None
        _, step = min(scored)
        return CheckpointInfo(step, self.path_for(step), index[step])

    def should_save(self, step: int) -> bool:
        """Whether ``save(step, ...)`` writes (``step % save_every == 0``)."""
        return step % self.save_every == 0

    # -- save / restore ---------------------------------------------------------------
    def save(self, step: int, state: Any, metrics: dict | None = None, *, force: bool = False) -> str | None:
        """Write ``state`` as checkpoint ``step`` if ``should_save(step)`` (or ``force``).

        Args:
            step: the step (or epoch) counter, an int or 0-d integer array; a second save of
                the same step replaces it.
            state: any tree :func:`funcnet.save` accepts — params, buffers, optax state,
                PRNG key, counters, ``loader.state_dict()``.
            metrics: numbers stored with the checkpoint (must hold ``best_metric`` if set).
            force: write even when ``step`` is not a multiple of ``save_every``.

        Returns:
            The file written, or ``None`` when nothing was written (not a save step, or
            not the writing process). Old checkpoints beyond ``keep`` are deleted after.
        """
        try:  # also numpy ints and 0-d integer jax arrays (TrainState.step)
            index = -1 if isinstance(step, bool) else operator.index(step)
        except TypeError:
            index = -1
        if index < 0:
            raise TypeError(f"CheckpointManager.save: step must be a non-negative int, got {step!r}")
        step = index
        if not (force or self.should_save(step)):
            return None
        metrics = _plain_metrics(metrics)
        if self.best_metric is not None and self.best_metric not in metrics:
            raise KeyError(
                f"CheckpointManager.save(step={step}): best_metric {self.best_metric!r} is missing from "
                f"metrics (got {sorted(metrics)})"
            )
        state = gather_for_save(state)  # a collective in multi-process runs: every process
        path = None
        if self._is_writer():
            os.makedirs(self.directory, exist_ok=True)
            path = self.path_for(step)
            save({"step": step, "metrics": metrics, "state": state}, path)
            index = self._read_index()
            index[step] = metrics
            doomed = self._to_delete(index)
            for s in doomed:
                del index[s]
            self._write_index(index)  # first the index, then the files: never an entry without a file
            for s in doomed:
                try:
                    os.unlink(self.path_for(s))
                except FileNotFoundError:
                    pass
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices(f"funcnet.CheckpointManager.save:{self.directory}:{step}")
        return path

    def _to_delete(self, index: dict[int, dict]) -> list[int]:
        if self.keep is None:
            return []
        keep = set(sorted(index)[-self.keep:])
        if self.best_metric is not None and (best := self._best_of(index)) is not None:
            keep.add(best.step)
        return [s for s in index if s not in keep]

    def restore(
        self,
        step: int | None = None,
        *,
        best: bool = False,
        target: Any = None,
        as_numpy: bool = False,
        weights_only: bool = True,
    ) -> Any:
        """Load the state saved at ``step`` (default: the latest; ``best=True``: the best).

        Args:
            step: which checkpoint; ``None`` is ``latest()``.
            best: restore ``best()`` instead (needs ``best_metric``).
            target: optional tree of the same structure (e.g. the freshly initialised
                state): each restored array is checked against the target's shape and
                dtype and placed with the target array's sharding.
            as_numpy, weights_only: as in :func:`funcnet.load`.

        Returns:
            The ``state`` given to ``save``, exactly (NamedTuples, keys, counters included).
        """
        if best:
            if step is not None:
                raise ValueError("CheckpointManager.restore: give either step or best=True, not both")
            info = self.best()
        elif step is None:
            info = self.latest()
        else:
            info = CheckpointInfo(step, self.path_for(step), {})
            if not os.path.exists(info.path):
                raise FileNotFoundError(
                    f"CheckpointManager.restore: no checkpoint for step {step} in {self.directory} "
                    f"(saved steps: {self.steps()})"
                )
        if info is None:
            raise FileNotFoundError(f"CheckpointManager.restore: no checkpoint in {self.directory}")
        payload = load(info.path, weights_only=weights_only, as_numpy=as_numpy)
        if not (isinstance(payload, dict) and payload.get("step") == info.step and "state" in payload):
            raise ValueError(f"CheckpointManager.restore: {info.path} is not a CheckpointManager checkpoint")
        state = payload["state"]
        return state if target is None else _place_like(state, target)


def _place_like(state: Any, target: Any) -> Any:
    """``state`` with each array checked against and placed like the matching ``target`` leaf."""
    flat, treedef = jax.tree_util.tree_flatten_with_path(state)
    target_leaves, target_def = jax.tree.flatten(target)
    if treedef != target_def:
        raise ValueError(
            f"CheckpointManager.restore: the checkpoint's tree structure differs from target:\n"
            f"  checkpoint: {treedef}\n  target:     {target_def}"
        )
    out = []
    for (path, value), like in zip(flat, target_leaves, strict=True):
        if isinstance(like, jax.Array):
            name = jax.tree_util.keystr(path)
            if tuple(value.shape) != tuple(like.shape) or value.dtype != like.dtype:
                raise ValueError(
                    f"CheckpointManager.restore: {name}: checkpoint has {value.dtype}{list(value.shape)}, "
                    f"target has {like.dtype}{list(like.shape)}"
                )
            value = jax.device_put(value, like.sharding)
        out.append(value)
    return jax.tree.unflatten(treedef, out)
