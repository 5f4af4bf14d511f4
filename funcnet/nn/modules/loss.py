"""Loss criteria: torch.nn's loss classes as plain callables ``criterion(input, target)``.

Unlike torch (where losses are ``nn.Module`` s holding ``weight``/``pos_weight`` as buffers), a
funcnet criterion is **not** a ``funcnet.nn.Module``: it has no ``init``/``apply``, no parameters,
no buffers and no ``state_dict`` entries. It is configuration; ``weight`` and ``pos_weight`` are
constants stored as JAX arrays on the object. Call it directly inside a loss function, jitted or
not::

    criterion = nn.CrossEntropyLoss(label_smoothing=0.1)

    def loss_fn(params, x, y):
        return criterion(model.apply(params, x), y)

Constructor arguments, their order and defaults are torch's (including the deprecated
``size_average``/``reduce``, which override ``reduction`` as in torch). Criteria hash by identity,
so they can be static arguments of ``jax.jit``. The shapes, numerics and documented differences
are those of the functions in :mod:`funcnet.nn.functional.loss`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from funcnet.nn.functional import loss as _F

ArrayLike = Any


def _as_array(value: ArrayLike | None) -> jax.Array | None:
    return None if value is None else jnp.asarray(value)


def _format(value: Any) -> str:
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return f"{value.dtype}{list(value.shape)}"
    return repr(value)


class _Loss:
    """Base criterion: ``reduction`` plus the torch legacy arguments; ``__call__`` runs ``forward``."""

    _allowed_reductions: tuple[str, ...] = ("none", "mean", "sum")
    # (attribute, default) pairs shown in the repr when not at their default
    _repr_fields: tuple[tuple[str, Any], ...] = (("reduction", "mean"),)

    def __init__(self, size_average: bool | None = None, reduce: bool | None = None,
                 reduction: str = "mean") -> None:
        if size_average is not None or reduce is not None:
            reduction = _F._legacy_reduction(size_average, reduce)
        if reduction not in self._allowed_reductions:
            raise ValueError(
                f"{type(self).__name__}: {reduction} is not a valid value for reduction "
                f"(expected one of {self._allowed_reductions})"
            )
        self.reduction = reduction

    def forward(self, input: ArrayLike, target: ArrayLike) -> jax.Array:
        raise NotImplementedError

    def __call__(self, input: ArrayLike, target: ArrayLike) -> jax.Array:
        return self.forward(input, target)

    def extra_repr(self) -> str:
        """The non-default arguments (torch's loss reprs are empty: ``CrossEntropyLoss()``)."""
        parts = []
        for name, default in self._repr_fields:
            value = getattr(self, name)
            if value is None and default is None:
                continue
            if default is None or not (value is default or value == default):
                parts.append(f"{name}={_format(value)}")
        return ", ".join(parts)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"


class _WeightedLoss(_Loss):
    _repr_fields = (("weight", None), ("reduction", "mean"))

    def __init__(self, weight: ArrayLike | None = None, size_average: bool | None = None,
                 reduce: bool | None = None, reduction: str = "mean") -> None:
        super().__init__(size_average, reduce, reduction)
        self.weight = _as_array(weight)


class CrossEntropyLoss(_WeightedLoss):
    """``torch.nn.CrossEntropyLoss(weight=None, size_average=None, ignore_index=-100, reduce=None,
    reduction='mean', label_smoothing=0.0)``.

    Input logits ``[C]``, ``[N, C]`` or ``[N, C, d1, ...]`` (class dim 1); target class indices
    ``[]``, ``[N]``, ``[N, d1, ...]`` (integer) or class probabilities (float, input's shape).
    ``weight [C]`` is a constant. See :func:`funcnet.nn.functional.cross_entropy`.
    """

    _repr_fields = (("weight", None), ("ignore_index", -100), ("reduction", "mean"), ("label_smoothing", 0.0))

    def __init__(self, weight: ArrayLike | None = None, size_average: bool | None = None,
                 ignore_index: int = -100, reduce: bool | None = None, reduction: str = "mean",
                 label_smoothing: float = 0.0) -> None:
        super().__init__(weight, size_average, reduce, reduction)
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(
                f"CrossEntropyLoss: label_smoothing must be between 0.0 and 1.0; got {label_smoothing}"
            )
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing

    def forward(self, input: ArrayLike, target: ArrayLike) -> jax.Array:
        return _F.cross_entropy(input, target, weight=self.weight, ignore_index=self.ignore_index,
                                reduction=self.reduction, label_smoothing=self.label_smoothing)


class NLLLoss(_WeightedLoss):
    """``torch.nn.NLLLoss(weight=None, size_average=None, ignore_index=-100, reduce=None, reduction='mean')``.

    Input log-probabilities ``[C]``, ``[N, C]`` or ``[N, C, d1, ...]``; target integer class indices
    ``[]``, ``[N]`` or ``[N, d1, ...]``. See :func:`funcnet.nn.functional.nll_loss`.
    """

    _repr_fields = (("weight", None), ("ignore_index", -100), ("reduction", "mean"))

    def __init__(self, weight: ArrayLike | None = None, size_average: bool | None = None,
                 ignore_index: int = -100, reduce: bool | None = None, reduction: str = "mean") -> None:
        super().__init__(weight, size_average, reduce, reduction)
        self.ignore_index = ignore_index

    def forward(self, input: ArrayLike, target: ArrayLike) -> jax.Array:
        return _F.nll_loss(input, target, weight=self.weight, ignore_index=self.ignore_index,
                           reduction=self.reduction)


class BCELoss(_WeightedLoss):
    """``torch.nn.BCELoss(weight=None, size_average=None, reduce=None, reduction='mean')``.

    Input probabilities and target ``[*]`` of one shape; ``weight`` broadcasts to it.
    See :func:`funcnet.nn.functional.binary_cross_entropy`.
    """

    def forward(self, input: ArrayLike, target: ArrayLike) -> jax.Array:
        return _F.binary_cross_entropy(input, target, weight=self.weight, reduction=self.reduction)


class BCEWithLogitsLoss(_Loss):
    """``torch.nn.BCEWithLogitsLoss(weight=None, size_average=None, reduce=None, reduction='mean',
    pos_weight=None)``.

    Input logits and target ``[*]`` of one shape; ``weight`` and ``pos_weight`` (constants)
    broadcast to it. See :func:`funcnet.nn.functional.binary_cross_entropy_with_logits`.
    """

    _repr_fields = (("weight", None), ("reduction", "mean"), ("pos_weight", None))

    def __init__(self, weight: ArrayLike | None = None, size_average: bool | None = None,
                 reduce: bool | None = None, reduction: str = "mean",
                 pos_weight: ArrayLike | None = None) -> None:
        super().__init__(size_average, reduce, reduction)
        self.weight = _as_array(weight)
        self.pos_weight = _as_array(pos_weight)

    def forward(self, input: ArrayLike, target: ArrayLike) -> jax.Array:
        return _F.binary_cross_entropy_with_logits(input, target, self.weight, pos_weight=self.pos_weight,
                                                   reduction=self.reduction)


class MSELoss(_Loss):
    """``torch.nn.MSELoss(size_average=None, reduce=None, reduction='mean')``: ``(x - y)²``, ``[*]``."""

    def forward(self, input: ArrayLike, target: ArrayLike) -> jax.Array:
        return _F.mse_loss(input, target, reduction=self.reduction)


class L1Loss(_Loss):
    """``torch.nn.L1Loss(size_average=None, reduce=None, reduction='mean')``: ``|x - y|``, shapes ``[*]``."""

    def forward(self, input: ArrayLike, target: ArrayLike) -> jax.Array:
        return _F.l1_loss(input, target, reduction=self.reduction)


class SmoothL1Loss(_Loss):
    """``torch.nn.SmoothL1Loss(size_average=None, reduce=None, reduction='mean', beta=1.0)``; β=0 is L1."""

    _repr_fields = (("reduction", "mean"), ("beta", 1.0))

    def __init__(self, size_average: bool | None = None, reduce: bool | None = None,
                 reduction: str = "mean", beta: float = 1.0) -> None:
        super().__init__(size_average, reduce, reduction)
        if beta < 0:
            raise ValueError(f"SmoothL1Loss does not support negative values for beta; got beta={beta}")
        self.beta = beta

    def forward(self, input: ArrayLike, target: ArrayLike) -> jax.Array:
        return _F.smooth_l1_loss(input, target, reduction=self.reduction, beta=self.beta)


class HuberLoss(_Loss):
    """``torch.nn.HuberLoss(reduction='mean', delta=1.0)``: ``|d| < δ ? 0.5d² : δ(|d| - 0.5δ)``."""

    _repr_fields = (("reduction", "mean"), ("delta", 1.0))

    def __init__(self, reduction: str = "mean", delta: float = 1.0) -> None:
        super().__init__(reduction=reduction)
        if delta <= 0:
            raise ValueError(f"HuberLoss does not support non-positive values for delta; got delta={delta}")
        self.delta = delta

    def forward(self, input: ArrayLike, target: ArrayLike) -> jax.Array:
        return _F.huber_loss(input, target, reduction=self.reduction, delta=self.delta)


class KLDivLoss(_Loss):
    """``torch.nn.KLDivLoss(size_average=None, reduce=None, reduction='mean', log_target=False)``.

    Input log-probabilities, target probabilities (log-probabilities with ``log_target``), ``[*]``.
    ``'batchmean'`` = sum / batch size is the true KL divergence; ``'mean'`` averages over all
    elements (torch's default, with its warning). See :func:`funcnet.nn.functional.kl_div`.
    """

    _allowed_reductions = ("none", "mean", "sum", "batchmean")
    _repr_fields = (("reduction", "mean"), ("log_target", False))

    def __init__(self, size_average: bool | None = None, reduce: bool | None = None,
                 reduction: str = "mean", log_target: bool = False) -> None:
        super().__init__(size_average, reduce, reduction)
        self.log_target = log_target

    def forward(self, input: ArrayLike, target: ArrayLike) -> jax.Array:
        return _F.kl_div(input, target, reduction=self.reduction, log_target=self.log_target)


__all__ = [
    "BCELoss",
    "BCEWithLogitsLoss",
    "CrossEntropyLoss",
    "HuberLoss",
    "KLDivLoss",
    "L1Loss",
    "MSELoss",
    "NLLLoss",
    "SmoothL1Loss",
]
