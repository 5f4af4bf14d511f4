"""``funcnet.parallel``: data-parallel training on several devices (torch's DataParallel/DDP).

Two engines, same numbers as single-device training:

- :mod:`~funcnet.parallel.pmap` — ``PmapTrainStep``: ``jax.pmap`` over the local devices,
  replicated state with a leading device axis, per-device batch slices, ``lax.pmean`` of the
  gradients, ``nn.SyncBatchNorm`` for global BatchNorm statistics.
- :mod:`~funcnet.parallel.sharding` — ``ShardedTrainStep``: ``jax.jit`` over a device ``Mesh``,
  batch sharded on ``'data'``, parameters replicated (or FSDP-sharded with
  ``shard_params=True``); XLA inserts the all-reduce. Spans hosts (``funcnet.distributed``).

See docs/parallel.md for the global batch size, learning rates and GPU/TPU notes.
"""

from funcnet.parallel._inflight import CPU_MAX_INFLIGHT, InflightLimiter
from funcnet.parallel.pmap import (
    PerDeviceSplit,
    PmapEvalStep,
    PmapTrainStep,
    make_pmap_train_step,
    pmap_train_step_fn,
    replicate,
    shard_batch,
    unreplicate,
)
from funcnet.parallel.sharding import (
    ShardedEvalStep,
    ShardedTrainStep,
    data_sharding,
    gather,
    make_mesh,
    make_sharded_train_step,
    place,
    place_batch,
    replicated_sharding,
    state_shardings,
)

__all__ = [
    "CPU_MAX_INFLIGHT", "InflightLimiter", "PerDeviceSplit", "PmapEvalStep", "PmapTrainStep",
    "ShardedEvalStep", "ShardedTrainStep", "data_sharding", "gather", "make_mesh", "make_pmap_train_step",
    "make_sharded_train_step", "place", "place_batch", "pmap_train_step_fn", "replicate",
    "replicated_sharding", "shard_batch", "state_shardings", "unreplicate",
]
