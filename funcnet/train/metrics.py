"""Pure metric accumulators: sums kept on the device, combined without host syncs.

A :class:`Metrics` value holds two arrays — the loss sum and a vector of integer
counts — so a compiled step returns two small buffers, not one per metric.
``batch_metrics`` makes one batch's sums, ``merge`` adds two, ``compute`` turns the
sums into values on the host once, at the end of an epoch or a log interval.

Reading them (each read waits for the step that produced them)::

    state, m = train_step(state, (x, y))
    m["loss"], m["accuracy"]    # mean loss per sample, accuracy (classification)
    float(m)                    # the mean loss, as torch's loss.item()
    metrics.compute(m)          # {'loss': ..., 'samples': ..., 'accuracy': ...}
    running = metrics.empty()   # sums over many steps: step.accumulate(state, running, batch)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp

# Positions in Metrics.counts; top-k counts follow at _TOPK onwards.
_SAMPLES, _BATCHES, _CLASSIFIED, _CORRECT, _NONFINITE, _TOPK = range(6)


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class Metrics:
    """Loss sum (float32 scalar) and integer counts: samples, batches, classified samples,
    correct predictions, the first step whose loss was not finite (−1: none), and top-k hits.

    Read as ``m["loss"]`` / ``m["accuracy"]`` / ``float(m)`` (mean loss) or ``compute(m)``;
    ``loss_sum`` is a *sum* over samples, kept so that merged values average correctly."""

    loss_sum: jax.Array
    counts: jax.Array
    topk: tuple[int, ...] = field(default=(), metadata=dict(static=True))

    @property
    def nonfinite_step(self) -> jax.Array:
        return self.counts[_NONFINITE]

    def compute(self) -> dict[str, Any]:
        """Host values: see :func:`compute`."""
        return compute(self)

    def __getitem__(self, name: str) -> Any:
        """``m["loss"]`` (mean per sample), ``m["accuracy"]``, ``m["samples"]``, ``m["top5_accuracy"]``."""
        values = compute(self)
        if name not in values:
            raise KeyError(f"Metrics has {sorted(values)}, not {name!r}"
                           + (" (accuracy is counted for integer class targets only)" if "accuracy" in name else ""))
        return values[name]

    def keys(self) -> list[str]:
        return list(compute(self))

    def __float__(self) -> float:
        """The mean loss per sample (torch's ``loss.item()`` for one batch)."""
        return compute(self)["loss"]

    def __repr__(self) -> str:
        if isinstance(self.loss_sum, jax.core.Tracer):  # inside jit: no values to show
            return f"Metrics(loss_sum={self.loss_sum}, counts={self.counts})"
        values = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in compute(self).items())
        return f"Metrics({values})"


def empty(topk: tuple[int, ...] = ()) -> Metrics:
    """Zeroed sums (no non-finite step seen)."""
    counts = jnp.zeros((_TOPK + len(topk),), jnp.int32).at[_NONFINITE].set(-1)
    return Metrics(jnp.zeros((), jnp.float32), counts, tuple(topk))


def batch_metrics(loss: jax.Array, logits: jax.Array, target: jax.Array, step: jax.Array,
                  topk: tuple[int, ...] = ()) -> Metrics:
    """Sums for one batch with mean loss ``loss``, ``logits [N, C]`` and ``target [N]``.

    Accuracy is counted only for integer class targets of shape ``[N]`` with 2-D
    logits; other targets (regression, probabilities) count samples for the mean loss.
    """
    n = logits.shape[0] if logits.ndim else 1
    classify = logits.ndim == 2 and target.ndim == 1 and jnp.issubdtype(target.dtype, jnp.integer)
    counts = [jnp.asarray(n, jnp.int32), jnp.ones((), jnp.int32)]
    if classify:
        correct = jnp.sum(_first_argmax(logits) == target)
        counts += [jnp.asarray(n, jnp.int32), correct.astype(jnp.int32)]
    else:
        counts += [jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32)]
    counts.append(jnp.where(jnp.isfinite(loss), -1, step).astype(jnp.int32))
    for k in topk:
        if classify:
            top = jax.lax.top_k(logits, k)[1]
            counts.append(jnp.sum(jnp.any(top == target[:, None], axis=-1)).astype(jnp.int32))
        else:
            counts.append(jnp.zeros((), jnp.int32))
    return Metrics(loss.astype(jnp.float32) * n, jnp.stack(counts), tuple(topk))


def _first_argmax(logits: jax.Array) -> jax.Array:
    """``argmax`` over the last axis (first index of the maximum), as two plain reductions:
    XLA:CPU vectorises max/min well but not the (value, index) reduction of ``jnp.argmax``."""
    classes = jnp.arange(logits.shape[-1], dtype=jnp.int32)
    is_max = logits == jnp.max(logits, axis=-1, keepdims=True)
    return jnp.min(jnp.where(is_max, classes, logits.shape[-1]), axis=-1)


def merge(a: Metrics, b: Metrics) -> Metrics:
    """Add two metric values; the first non-finite step seen wins."""
    counts = a.counts + b.counts
    first = a.counts[_NONFINITE]
    counts = counts.at[_NONFINITE].set(jnp.where(first >= 0, first, b.counts[_NONFINITE]))
    return Metrics(a.loss_sum + b.loss_sum, counts, a.topk)


def to_host(m: Metrics) -> Metrics:
    """The same sums as numpy values (one transfer; waits for the step that produced them)."""
    loss_sum, counts = jax.device_get((m.loss_sum, m.counts))
    return Metrics(loss_sum, counts, m.topk)


def compute(m: Metrics) -> dict[str, Any]:
    """Host values: ``loss`` (mean per sample), ``samples``, and for classification
    ``accuracy`` and ``top{k}_accuracy``."""
    loss_sum, counts = jax.device_get((m.loss_sum, m.counts))
    samples = int(counts[_SAMPLES])
    out: dict[str, Any] = {"loss": float(loss_sum) / max(samples, 1), "samples": samples}
    classified = int(counts[_CLASSIFIED])
    if classified:
        out["accuracy"] = int(counts[_CORRECT]) / classified
        for i, k in enumerate(m.topk):
            out[f"top{k}_accuracy"] = int(counts[_TOPK + i]) / classified
    return out
