"""Freezing inside the optimizer: torch's ``requires_grad_(False)`` for part of the tree."""

from __future__ import annotations

import jax
import optax

from funcnet.nn.utils.trainable import NameSpec, as_predicate, tree_names


def freeze(optimizer: optax.GradientTransformation, frozen: NameSpec) -> optax.GradientTransformation:
    """Wrap ``optimizer`` so that the parameters selected by ``frozen`` get no update and no state.

    ``frozen``: a predicate on the dotted torch name, a name, or a list of names / module prefixes
    (``"features"`` freezes ``features.*``). Equivalent to torch's ``p.requires_grad_(False)`` for
    the optimizer (no step, no weight decay, no momentum buffer). Built on
    ``optax.multi_transform`` with ``optax.set_to_zero`` for the frozen part.

    This still lets ``jax.grad`` compute gradients for frozen parameters (they are discarded). To
    avoid computing them at all, split the tree instead:
    ``trainable, frozen = funcnet.nn.utils.split_trainable(params, ...)``, differentiate with
    respect to ``trainable`` only and initialise the optimizer on ``trainable``.
    """
    pred = as_predicate(frozen)

    def labels(params):
        return jax.tree_util.tree_map(lambda n: "frozen" if pred(n) else "trainable", tree_names(params))

    return optax.multi_transform({"trainable": optimizer, "frozen": optax.set_to_zero()}, labels)
