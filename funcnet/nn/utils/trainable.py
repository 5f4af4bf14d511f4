"""Parameter freezing helpers: dotted names, predicates, ``split_trainable`` and ``merge``.

torch freezes a parameter with ``p.requires_grad_(False)``: autograd skips it and the optimizer
never sees a gradient. JAX differentiates whatever argument you pass to ``jax.grad``, so the
funcnet way is to split the parameter tree into a trainable part (differentiated, given to the
optimizer) and a frozen part (closed over, constant)::

    trainable, frozen = split_trainable(params, lambda name: name.startswith("fc."))
    def loss_fn(trainable):
        return loss(model.apply(merge(trainable, frozen), x), y)
    grads = jax.grad(loss_fn)(trainable)          # no gradient is computed for `frozen`
    opt_state = optimizer.init(trainable)         # no optimizer state for `frozen`

Names are the dotted torch ``state_dict`` keys (``features.0.weight``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import jax

NameSpec = Callable[[str], bool] | str | Iterable[str]


def _key_str(k: Any) -> str:
    for attr in ("key", "idx", "name"):
        if hasattr(k, attr):
            return str(getattr(k, attr))
    return str(k)


def tree_names(tree: Any) -> Any:
    """A tree of the same structure whose leaves are the dotted names (``"fc1.weight"``)."""
    return jax.tree_util.tree_map_with_path(lambda path, _: ".".join(_key_str(k) for k in path), tree)


def named_leaves(tree: Any) -> list[tuple[str, Any]]:
    """``[(dotted_name, leaf), ...]`` in tree order — the analogue of ``module.named_parameters()``."""
    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    return [(".".join(_key_str(k) for k in path), leaf) for path, leaf in flat]


def as_predicate(spec: NameSpec) -> Callable[[str], bool]:
    """Turn a name selector into ``predicate(dotted_name) -> bool``.

    ``spec`` is a callable on the dotted name, or a string / iterable of strings each of which
    selects the parameter of that exact name or every parameter under that module prefix
    (``"backbone"`` selects ``backbone.0.weight``).
    """
    if callable(spec):
        return spec
    names = (spec,) if isinstance(spec, str) else tuple(spec)
    for n in names:
        if not isinstance(n, str):
            raise TypeError(f"parameter selector: expected dotted-name strings or a callable, got {n!r}")

    def predicate(name: str) -> bool:
        return any(name == n or name.startswith(n + ".") for n in names)

    return predicate


def _split(tree: Mapping, prefix: str, pred: Callable[[str], bool]) -> tuple[dict, dict]:
    yes: dict = {}
    no: dict = {}
    for k, v in tree.items():
        name = f"{prefix}{k}"
        if isinstance(v, Mapping):
            a, b = _split(v, name + ".", pred)
            if a:
                yes[k] = a
            if b:
                no[k] = b
        elif pred(name):
            yes[k] = v
        else:
            no[k] = v
    return yes, no


def split_trainable(params: Mapping, trainable: NameSpec) -> tuple[dict, dict]:
    """Split nested-dict ``params`` into ``(trainable, frozen)`` nested dicts.

    ``trainable`` selects the parameters that keep ``requires_grad=True`` (see ``as_predicate``);
    everything else is frozen. Each output keeps only its own leaves (empty sub-dicts are
    dropped), so both keep the torch dotted names. Inverse: ``merge(trainable, frozen)``.
    """
    if not isinstance(params, Mapping):
        raise TypeError(f"split_trainable: params must be a nested dict, got {type(params).__name__}")
    return _split(params, "", as_predicate(trainable))


def merge(trainable: Mapping, frozen: Mapping) -> dict:
    """Deep-merge two nested dicts produced by ``split_trainable`` back into one parameter tree.

    Raises ``ValueError`` naming the dotted key if both parts hold the same parameter. The dotted
    names are preserved; within a dict the frozen keys come after the trainable ones, so the key
    order may differ from torch's ``state_dict`` order (jit and ``apply`` do not depend on it).
    """

    def _merge(a: Mapping, b: Mapping, prefix: str) -> dict:
        out = dict(a)
        for k, v in b.items():
            if k in out:
                if isinstance(out[k], Mapping) and isinstance(v, Mapping):
                    out[k] = _merge(out[k], v, f"{prefix}{k}.")
                else:
                    raise ValueError(
                        f"merge: parameter '{prefix}{k}' is in both the trainable and frozen parts"
                    )
            else:
                out[k] = v
        return out

    return _merge(trainable, frozen, "")
