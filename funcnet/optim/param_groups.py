"""Parameter groups: torch's ``param_groups`` (per-group hyperparameters) on ``optax.multi_transform``."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import optax

from funcnet.nn.utils.trainable import as_predicate, tree_names


def _group_kwargs(defaults: dict, overrides: Mapping) -> dict:
    kwargs = {**defaults, **{k: v for k, v in overrides.items() if k not in ("params", "frozen")}}
    base = defaults.get("lr")
    group_lr = overrides.get("lr")
    # torch: one scheduler drives every group from that group's own initial lr.
    if group_lr is not None and not callable(group_lr) and hasattr(base, "with_lr"):
        kwargs["lr"] = base.with_lr(group_lr)
    return kwargs


def param_groups(
    optimizer: Callable[..., optax.GradientTransformation],
    groups: Sequence[Mapping] | Mapping[str, Mapping],
    *,
    labels: Any = None,
    **defaults: Any,
) -> optax.GradientTransformation:
    """torch's per-parameter options, ``torch.optim.SGD([{'params': ..., 'lr': ...}, ...], lr=..., ...)``.

    ``optimizer`` is a funcnet optimizer factory (``funcnet.optim.SGD``…) or any callable taking
    keyword hyperparameters; ``defaults`` are its keyword arguments for every group. Two ways to
    select parameters:

    - ``groups`` a list of dicts, each with ``"params"``: a predicate on the dotted torch name
      (``lambda n: n.endswith(".bias")``), a name, or a list of names / module prefixes
      (``"backbone"`` selects ``backbone.*``), plus the overridden hyperparameters. A parameter
      matching several groups is an error (as in torch); parameters matching none form a final
      default group with ``defaults`` (torch requires listing them; this is a convenience).
    - ``labels``: a label tree (same structure as the params, or a function params → labels, as
      ``optax.multi_transform``) and ``groups`` a dict ``label -> overrides``.

    A group may say ``"frozen": True`` (no update, no state; see ``freeze``). If the default ``lr``
    is a funcnet schedule and a group gives a float ``lr``, the group gets the same schedule
    rebased on its lr — torch's schedulers also act on every group from its ``initial_lr``.

    Example — no weight decay on biases and norm weights, smaller lr for a pretrained backbone::

        no_decay = lambda n: n.endswith("bias") or ".bn" in n
        opt = param_groups(SGD, [{"params": no_decay, "weight_decay": 0.0},
                                 {"params": "backbone", "lr": 1e-3}],
                           lr=0.1, momentum=0.9, weight_decay=5e-4)

    ``get_lrs(opt_state)`` lists the group lrs in group order (default group last).
    Built on ``optax.multi_transform``: each group only holds state for its own parameters.
    """

    def build(overrides: Mapping) -> optax.GradientTransformation:
        if overrides.get("frozen", False):
            return optax.set_to_zero()
        return optimizer(**_group_kwargs(defaults, overrides))

    if labels is not None:
        if not isinstance(groups, Mapping):
            raise TypeError(
                "param_groups: with labels=, groups must be a dict label -> hyperparameter overrides"
            )
        transforms = {label: build(ov) for label, ov in groups.items()}
        return optax.multi_transform(transforms, labels)

    if isinstance(groups, Mapping):
        raise TypeError(
            "param_groups: groups must be a list of dicts with a 'params' selector (or pass labels=)"
        )
    groups = list(groups)
    for i, g in enumerate(groups):
        if "params" not in g:
            raise ValueError(f"param_groups: group {i} has no 'params' selector; keys: {sorted(g)}")
    width = len(str(len(groups)))
    names = [f"group_{i:0{width}d}" for i in range(len(groups) + 1)]
    predicates = [as_predicate(g["params"]) for g in groups]

    def label_fn(params: Any) -> Any:
        def label(name: str) -> str:
            hits = [i for i, p in enumerate(predicates) if p(name)]
            if len(hits) > 1:
                raise ValueError(
                    f"param_groups: parameter '{name}' appears in more than one parameter group: {hits}"
                )
            return names[hits[0]] if hits else names[-1]

        return jax.tree_util.tree_map(label, tree_names(params))

    transforms = {names[i]: build(g) for i, g in enumerate(groups)}
    transforms[names[-1]] = build({})
    return optax.multi_transform(transforms, label_fn)
