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
import numpy as np
import optax

from funcnet.nn import _rng
from funcnet.nn.module import as_variables
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
        key: jax.Array | int,
        variables: Any = None,
        trainable: Any = None,
    ) -> TrainState:
        """Initialise ``model`` (unless ``variables`` is given) and the optimizer.

        ``key``: a ``jax.random.key`` (``funcnet.manual_seed(0)``) or an int seed, which is
        ``jax.random.key(seed)`` as ``manual_seed`` makes it.
        Two keys are derived from ``key``: one initialises the parameters, the other
        becomes the run key for dropout and augmentation. ``trainable`` (a name
        selector, as in ``make_train_step(..., trainable=...)``) initialises the
        optimizer on that part of the parameters only: no state for the frozen rest.
        """
        key = _as_key(key)
        # Host-side derivation (no compilation): start-up time matters for short scripts.
        init_key, run_key = _rng.derive_key(key, 1), _rng.derive_key(key, 2)
        if variables is None:
            variables = model.init(init_key)
        params, buffers = as_variables(model, variables, where="TrainState.create(variables=...)")
        return cls(
            params=params,
            buffers=buffers,
            # One compiled init for the whole tree instead of an eager op per leaf shape.
            opt_state=jax.jit(optimizer.init)(params if trainable is None else split_trainable(params, trainable)[0]),
            key=run_key,
            step=jnp.asarray(np.int32(0)),
        )

    def replace(self, **changes: Any) -> TrainState:
        return replace(self, **changes)

    @property
    def variables(self):
        """``Variables(params, buffers)``, ready for ``model.apply`` or ``model.state_dict``."""
        from funcnet.nn.module import Variables

        return Variables(self.params, self.buffers)


def _as_key(key: Any) -> jax.Array:
    """An int seed becomes ``jax.random.key(seed)`` (torch users write ``create(model, opt, 0)``)."""
    if isinstance(key, (bool, np.bool_)):
        raise TypeError(f"TrainState.create: key must be a jax.random.key or an int seed, got {key!r}")
    if isinstance(key, (int, np.integer)):
        return jax.random.key(int(key))
    if not hasattr(key, "dtype"):
        raise TypeError(
            f"TrainState.create: key must be a jax.random.key (funcnet.manual_seed(0)) or an int seed, "
            f"got a {type(key).__name__}"
        )
    return key
