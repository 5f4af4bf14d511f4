"""Transfer learning: load a pretrained backbone into a new model and say what was loaded.

The torch recipe ::

    new = NewNet()                                    # same backbone, new head
    sd = {k: v for k, v in old.state_dict().items() if k.startswith("backbone.")}
    missing, unexpected = new.load_state_dict(sd, strict=False)
    new.backbone.requires_grad_(False)                # freeze
    optimizer = torch.optim.SGD(new.head.parameters(), lr=0.05)

becomes, in funcnet ::

    variables, report = load_backbone(new, old_state_dict, new.init(key))  # prefix="backbone."
    print(report)                                     # loaded / missing / unexpected / ignored keys
    state = TrainState.create(new, optimizer, key, variables=variables, trainable="head")
    train_step = make_train_step(new, criterion, optimizer, trainable="head")

``trainable="head"`` splits the parameters inside the step (``funcnet.nn.utils.split_trainable``):
``jax.grad`` differentiates the head only, and the optimizer state holds nothing for the backbone.
To unfreeze later with a smaller backbone lr, make a new optimizer with
``funcnet.optim.param_groups(SGD, [{"params": "backbone", "lr": lr / 10}], lr=lr)``, initialise
it on all of ``state.params`` and build a step without ``trainable``.

As in torch, freezing parameters does not freeze BatchNorm running statistics: a train-mode
step still updates the backbone's buffers (funcnet has no per-submodule ``.eval()``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import numpy as np

from funcnet.nn.module import IncompatibleKeys, Module, Variables, as_variables


class LoadReport(NamedTuple):
    """What :func:`load_backbone` did, key by key (dotted torch ``state_dict`` names).

    Attributes:
        loaded: model keys that received a value from the state dict (model order).
        missing: model keys the state dict did not provide; they keep the ``into`` values.
        unexpected: state-dict keys under the source prefix that the model does not have.
        ignored: state-dict keys outside the source prefix (e.g. the old head).
        loaded_values: number of scalar values loaded.
    """

    loaded: list[str]
    missing: list[str]
    unexpected: list[str]
    ignored: list[str]
    loaded_values: int

    @property
    def incompatible_keys(self) -> IncompatibleKeys:
        """torch's ``load_state_dict(strict=False)`` return value, for the selected keys."""
        return IncompatibleKeys(list(self.missing), list(self.unexpected))

    def summary(self, max_names: int = 8) -> str:
        """A readable multi-line account: counts, then up to ``max_names`` names per list."""

        def names(keys: list[str]) -> str:
            if not keys:
                return "none"
            shown = ", ".join(keys[:max_names])
            return shown + (f", ... (+{len(keys) - max_names} more)" if len(keys) > max_names else "")

        return "\n".join([
            f"loaded {len(self.loaded)} tensors ({self.loaded_values:,} values): {names(self.loaded)}",
            f"missing {len(self.missing)} (kept from init): {names(self.missing)}",
            f"unexpected {len(self.unexpected)} (not in the model): {names(self.unexpected)}",
            f"ignored {len(self.ignored)} (outside the prefix): {names(self.ignored)}",
        ])

    def __str__(self) -> str:
        return self.summary()


def _as_prefix(prefix: str) -> str:
    if not isinstance(prefix, str):
        raise TypeError(f"load_backbone: prefix must be a string, got {type(prefix).__name__}")
    return prefix if prefix == "" or prefix.endswith(".") else prefix + "."


def load_backbone(
    model: Module,
    state_dict: Mapping[str, Any],
    into: Variables | jax.Array,
    *,
    prefix: str = "backbone.",
    source_prefix: str | None = None,
    strict: bool = True,
) -> tuple[Variables, LoadReport]:
    """Load the ``source_prefix`` part of a pretrained ``state_dict`` under ``prefix`` of ``model``.

    Args:
        model: the new model (e.g. the same backbone submodule with a new head).
        state_dict: the pretrained flat state dict (funcnet's ``model.state_dict(variables)``,
            torch's, or any ``{dotted name: array}``), parameters and buffers.
        into: the new model's fresh ``Variables`` (``model.init(key)``), or a PRNG key to make
            them; every key not loaded keeps this value.
        prefix: where the backbone lives in ``model`` (``"backbone."``; ``""`` for the root).
        source_prefix: where it lives in ``state_dict`` (default: ``prefix``). Keys are renamed
            ``source_prefix + rest -> prefix + rest``, e.g. ``source_prefix="features."`` loads a
            torchvision-style ``features.*`` into ``backbone.*``, ``source_prefix=""`` loads the
            state dict of a bare backbone.
        strict: require that every model key under ``prefix`` is loaded and that no selected key
            is unexpected (catches a wrong prefix, which would otherwise load nothing). Keys outside
            ``prefix`` (the new head) are never required.

    Returns:
        ``(variables, report)``: the new model's ``Variables`` and a :class:`LoadReport`
        (``print(report)`` for a summary of loaded / missing / unexpected / ignored keys).
        The keys not loaded hold the very arrays of ``into`` (as ``load_state_dict``): a train
        step that donates its state deletes them, so do not reuse ``into`` afterwards.

    Raises:
        RuntimeError: a shape mismatch (always, as torch), or, with ``strict``, backbone keys
            missing or unexpected; the message names the keys.
    """
    prefix = _as_prefix(prefix)
    source = prefix if source_prefix is None else _as_prefix(source_prefix)
    if isinstance(into, jax.Array):  # a PRNG key
        into = model.init(into)
    into = as_variables(model, into, where="load_backbone(into=...)")
    renamed = {prefix + k[len(source):]: k for k in state_dict if k.startswith(source)}
    selected = {target: state_dict[k] for target, k in renamed.items()}
    ignored = [k for k in state_dict if not k.startswith(source)]
    variables, keys = model.load_state_dict(selected, strict=False, into=into)
    unexpected = [renamed[k] for k in keys.unexpected_keys]
    loaded = [k for k in model.state_dict(variables) if k in selected]
    if strict:
        lacking = [k for k in keys.missing_keys if k.startswith(prefix)]
        errors = []
        if lacking:
            errors.append(
                f"Missing key(s) under '{prefix}': " + ", ".join(f'"{k}"' for k in lacking)
                + f" (looked for them as '{source}...' in the state dict)"
            )
        if unexpected:
            errors.append("Unexpected key(s) in state_dict: " + ", ".join(f'"{k}"' for k in unexpected))
        if errors:
            raise RuntimeError(
                f"Error(s) in loading the backbone for {type(model).__name__} "
                f"(prefix='{prefix}', source_prefix='{source}'):\n\t" + "\n\t".join(errors)
            )
    loaded_values = int(sum(np.size(selected[k]) for k in loaded))
    report = LoadReport(loaded, list(keys.missing_keys), unexpected, ignored, loaded_values)
    return variables, report
