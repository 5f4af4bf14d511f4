"""A whole epoch as one compiled call: shuffle, gather, forward, backward, update, metrics.

For array datasets that fit in device memory. The arrays are placed on the
device once; each epoch is a ``lax.scan`` over batch indices inside one
``jax.jit`` call, with no Python per step. It runs the very same step function
as the step-by-step loop, so with the same batch order the results are the same.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from funcnet import backends
from funcnet.train import metrics as M
from funcnet.train.state import TrainState
from funcnet.train.step import LossFn, train_step_fn


def make_epoch_fn(
    model: Any,
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    *,
    topk: tuple[int, ...] = (),
    compute_dtype: Any = None,
    donate: bool = True,
    trainable: Any = None,
    eval_modules: tuple[str, ...] = (),
) -> Callable[[TrainState, tuple[jax.Array, jax.Array], jax.Array], tuple[TrainState, M.Metrics]]:
    """A jitted ``(state, (inputs, targets), batch_indices) -> (state, metrics)``.

    Args (of the returned function):
        state: the :class:`TrainState` (donated).
        (inputs, targets): the whole dataset, already on the device (``jax.device_put`` once).
        batch_indices: ``int32 [num_batches, batch_size]``, e.g. from
            ``DataLoader.epoch_indices(epoch)``; a final partial batch may be passed
            separately as ``tail_indices`` (``int32 [r]``) and runs after the scan.

    ``trainable``, ``eval_modules``: as in ``make_train_step``.
    """
    step = train_step_fn(model, loss_fn, optimizer, topk, compute_dtype, trainable, eval_modules)

    def gather(data, idx):
        return jax.tree.map(lambda a: jnp.take(a, idx, axis=0), data)

    def run_epoch(state, data, batch_indices, tail_indices=None):
        def body(carry, idx):
            state, running = carry
            state, batch_metrics = step(state, gather(data, idx))
            return (state, M.merge(running, batch_metrics)), None

        (state, running), _ = jax.lax.scan(body, (state, M.empty(topk)), batch_indices)
        if tail_indices is not None:
            state, batch_metrics = step(state, gather(data, tail_indices))
            running = M.merge(running, batch_metrics)
        return state, running

    return jax.jit(run_epoch, donate_argnums=(0,) if donate else (), compiler_options=backends.compiler_options())
