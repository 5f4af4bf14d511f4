"""``TrainState``: everything a training step reads and writes, as one registered pytree.

torch keeps this state inside ``model``, ``optimizer`` and the global RNG; funcnet
keeps it in one value that the compiled step takes and returns (and donates), and
that ``funcnet.save`` writes as a whole so a resumed run is bit-identical.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import jax
import jax.numpy as jnp
import optax

from funcnet.nn.utils.trainable import split_trainable


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class TrainState:
    """Parameters, buffers, optimizer state, PRNG key and step counter.

    Attributes:
        params: trainable parameters (nested dict, torch ``state_dict`` names).
        buffers: non-trainable state such as BatchNorm statistics.
        opt_state: the optax optimizer state.
        key: the run's base PRNG key; step ``k`` uses ``fold_in(key, k)``.
        step: number of updates applied so far (int32 scalar).
    """

    params: Any
    buffers: Any
    opt_state: Any
    key: jax.Array
    step: jax.Array

    @classmethod
    def create(
        cls,
        model: Any,
        optimizer: optax.GradientTransformation,
        key: jax.Array,
        variables: Any = None,
        trainable: Any = None,
    ) -> TrainState:
        """Initialise ``model`` (unless ``variables`` is given) and the optimizer.

        ``key`` is split in two: one half initialises the parameters, the other
        becomes the run key for dropout and augmentation. ``trainable`` (a name
        selector, as in ``make_train_step(..., trainable=...)``) initialises the
        optimizer on that part of the parameters only: no state for the frozen rest.
        """
        init_key, run_key = jax.random.split(key)
        if variables is None:
            variables = model.init(init_key)
        params, buffers = variables
        return cls(
            params=params,
            buffers=buffers,
            opt_state=optimizer.init(params if trainable is None else split_trainable(params, trainable)[0]),
            key=run_key,
            step=jnp.zeros((), jnp.int32),
        )

    def replace(self, **changes: Any) -> TrainState:
        return replace(self, **changes)

    @property
    def variables(self):
        """``Variables(params, buffers)``, ready for ``model.apply`` or ``model.state_dict``."""
        from funcnet.nn.module import Variables

        return Variables(self.params, self.buffers)
