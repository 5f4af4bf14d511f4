"""Pure metric accumulators: sums kept on the device, combined without host syncs.

A metric state is a dict of scalar arrays (``loss_sum``, ``correct``, ``count``…);
``accumulate`` adds one batch, ``merge`` adds two states, ``compute`` turns sums
into values on the host once, at the end of an epoch or a log interval.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

Metrics = dict[str, jax.Array]


def empty(topk: tuple[int, ...] = ()) -> Metrics:
    """Zeroed sums: loss, accuracy, optional top-k, and the first non-finite step (−1: none)."""
    state = {
        "loss_sum": jnp.zeros((), jnp.float32),
        "correct": jnp.zeros((), jnp.int32),
        "count": jnp.zeros((), jnp.int32),
        "batches": jnp.zeros((), jnp.int32),
        "classified": jnp.zeros((), jnp.int32),
        "nonfinite_step": jnp.full((), -1, jnp.int32),
    }
    for k in topk:
        state[f"top{k}"] = jnp.zeros((), jnp.int32)
    return state


def batch_metrics(loss: jax.Array, logits: jax.Array, target: jax.Array, step: jax.Array,
                  topk: tuple[int, ...] = ()) -> Metrics:
    """Sums for one batch. ``logits [N, C]`` with class scores, ``target [N]`` class indices.

    Accuracy is counted only for integer class targets of shape ``[N]``; other
    targets (regression, probabilities) count samples for the mean loss only.
    """
    n = logits.shape[0] if logits.ndim else 1
    state = empty(topk)
    state["loss_sum"] = loss.astype(jnp.float32) * n
    state["count"] = jnp.asarray(n, jnp.int32)
    state["batches"] = jnp.ones((), jnp.int32)
    state["nonfinite_step"] = jnp.where(jnp.isfinite(loss), -1, step).astype(jnp.int32)
    classify = logits.ndim == 2 and target.ndim == 1 and jnp.issubdtype(target.dtype, jnp.integer)
    if classify:
        state["classified"] = jnp.asarray(n, jnp.int32)
        state["correct"] = jnp.sum(jnp.argmax(logits, axis=-1) == target).astype(jnp.int32)
        for k in topk:
            top = jax.lax.top_k(logits, k)[1]
            state[f"top{k}"] = jnp.sum(jnp.any(top == target[:, None], axis=-1)).astype(jnp.int32)
    return state


def merge(a: Metrics, b: Metrics) -> Metrics:
    """Add two metric states; the first non-finite step seen wins."""
    out = {k: a[k] + b[k] for k in a if k != "nonfinite_step"}
    first = a["nonfinite_step"]
    out["nonfinite_step"] = jnp.where(first >= 0, first, b["nonfinite_step"])
    return out


def compute(state: Metrics) -> dict[str, Any]:
    """Host values: ``loss`` (mean per sample), ``accuracy``, ``top{k}``, ``samples``."""
    host = jax.device_get(state)
    count = max(int(host["count"]), 1)
    out = {"loss": float(host["loss_sum"]) / count, "samples": int(host["count"])}
    classified = int(host["classified"])
    if classified:
        out["accuracy"] = int(host["correct"]) / classified
        for k in host:
            if k.startswith("top"):
                out[f"{k}_accuracy"] = int(host[k]) / classified
    return out
