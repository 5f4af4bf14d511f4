"""Pieces shared by the pmap and sharding steps: cross-device metrics, the in-flight token."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from funcnet.train import metrics as M

_NONFINITE, _BATCHES = M._NONFINITE, M._BATCHES  # positions in Metrics.counts


def allreduce_metrics(m: M.Metrics, axis_name: str) -> M.Metrics:
    """Sum one step's per-device metrics over the mapped axis: the metrics of the global batch.

    Counts and loss sums add; the non-finite entry (−1 or this step) is the max, so a NaN on
    any device is reported. ``batches`` is counted once per step, not once per device.
    """
    counts = jax.lax.psum(m.counts, axis_name)
    counts = counts.at[_NONFINITE].set(jax.lax.pmax(m.counts[_NONFINITE], axis_name))
    counts = counts.at[_BATCHES].set(m.counts[_BATCHES])  # one global batch
    return M.Metrics(jax.lax.psum(m.loss_sum, axis_name), counts, m.topk)


def token(m: M.Metrics) -> jax.Array:
    """A small fresh output to wait on (never donated, never aliased to the metrics)."""
    return jnp.stack([m.loss_sum, m.loss_sum])


def is_float(a: Any) -> bool:
    return jnp.issubdtype(jnp.result_type(a), jnp.floating)
