"""Losses: torch.nn.functional's loss functions, with torch's arguments, defaults and numerics.

Every function takes ``reduction`` in ``'none' | 'mean' | 'sum'`` (``kl_div`` also ``'batchmean'``)
and the deprecated ``size_average`` / ``reduce`` at torch's positions (they override ``reduction``
exactly as in torch, with torch's warning). Inputs are JAX arrays (anything ``jnp.asarray`` takes).

Class-index losses (``cross_entropy``, ``nll_loss``) put the **class dim at 1**, as torch:
input ``[C]``, ``[N, C]`` or ``[N, C, d1, ..., dK]``; target ``[]``, ``[N]`` or ``[N, d1, ..., dK]``.

Differences from torch, all deliberate:

* Class-index targets may have any integer dtype (JAX defaults to int32; torch wants int64/uint8).
* Value checks (class index in ``[0, C)``, BCE input/target in ``[0, 1]``) need concrete values, so
  they run only on arrays that are not traced (eager calls; under ``jax.grad`` the labels are
  usually still concrete, the differentiated input is not). On traced values (``jax.jit``,
  ``vmap``) no exception is possible: a non-ignored out-of-range class index makes its loss term,
  and so any 'mean'/'sum', **NaN** (never a silently wrong class); a BCE input outside ``[0, 1]``
  gives NaN (log of a negative); a BCE target outside ``[0, 1]`` is used as is.
* ``binary_cross_entropy`` and ``binary_cross_entropy_with_logits`` use torch's explicit backward
  formulas (``jax.custom_vjp``), so gradients round as torch's and BCE's edge gradients at
  ``x ∈ {0, 1}`` are torch's finite values. torch refuses gradients w.r.t. ``weight`` and
  ``pos_weight`` (constants); funcnet returns their mathematical derivatives.
* ``label_smoothing`` must lie in ``[0, 1]`` for every target kind (torch only checks it for
  probability targets and computes silently with a negative value for index targets).
* Shape/dtype errors are ``funcnet.nn.ShapeError`` / ``TypeError`` / ``ValueError`` with the
  function name, the expected and the actual shape or dtype; torch raises RuntimeError for several.
"""

from __future__ import annotations

import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import xlogy

from funcnet.nn.module import ShapeError

ArrayLike = Any
_REDUCTIONS = ("none", "mean", "sum")
_BCE_EPSILON = 1e-12  # torch's EPSILON in binary_cross_entropy_backward (aten Loss.cpp)


# --------------------------------------------------------------------------- helpers
def _legacy_reduction(size_average: bool | None, reduce: bool | None) -> str:
    """torch's ``_Reduction.legacy_get_string``, with its deprecation warning."""
    size_average = True if size_average is None else size_average
    reduce = True if reduce is None else reduce
    ret = ("mean" if size_average else "sum") if reduce else "none"
    warnings.warn(
        f"size_average and reduce args will be deprecated, please use reduction='{ret}' instead.",
        stacklevel=3,
    )
    return ret


def _resolve_reduction(
    reduction: str, size_average: bool | None = None, reduce: bool | None = None,
    allowed: tuple[str, ...] = _REDUCTIONS,
) -> str:
    if size_average is not None or reduce is not None:
        reduction = _legacy_reduction(size_average, reduce)
    if reduction not in allowed:
        raise ValueError(f"{reduction} is not a valid value for reduction (expected one of {allowed})")
    return reduction


def _reduce(loss: jax.Array, reduction: str) -> jax.Array:
    if reduction == "none":
        return loss
    if reduction == "sum":
        return jnp.sum(loss)
    return jnp.mean(loss)


def _concrete(x: jax.Array) -> np.ndarray | None:
    """The values of ``x`` as numpy when known now (eager), ``None`` under tracing (jit/grad/vmap)."""
    if isinstance(x, jax.core.Tracer):
        return None
    return np.asarray(x)


def _float_array(x: ArrayLike) -> jax.Array:
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.inexact):
        x = x.astype(jnp.result_type(float))
    return x


def _warn_size_mismatch(input: jax.Array, target: jax.Array) -> None:
    if target.shape != input.shape:
        warnings.warn(
            f"Using a target size ({target.shape}) that is different to the input size ({input.shape}). "
            "This will likely lead to incorrect results due to broadcasting. "
            "Please ensure they have the same size.",
            stacklevel=3,
        )


def _broadcast_pair(name: str, input: jax.Array, target: jax.Array) -> tuple[jax.Array, jax.Array]:
    _warn_size_mismatch(input, target)
    try:
        shape = jnp.broadcast_shapes(input.shape, target.shape)
    except ValueError:
        raise ShapeError(
            f"{name}: target of shape {target.shape} does not broadcast with input of shape {input.shape} "
            "(expected the same shape)"
        ) from None
    return jnp.broadcast_to(input, shape), jnp.broadcast_to(target, shape)


def _check_elementwise_weight(name: str, arg: str, weight: jax.Array, shape: tuple[int, ...]) -> None:
    """``weight`` must broadcast to ``shape`` without changing it (torch multiplies in place)."""
    try:
        ok = jnp.broadcast_shapes(shape, weight.shape) == tuple(shape)
    except ValueError:
        ok = False
    if not ok:
        raise ShapeError(
            f"{name}: {arg} of shape {weight.shape} must broadcast to the input shape {tuple(shape)}"
        )


# --------------------------------------------------------------------------- class-index losses
def _class_weight(name: str, weight: ArrayLike | None, n_classes: int) -> jax.Array | None:
    if weight is None:
        return None
    weight = _float_array(weight)
    if weight.ndim != 1 or weight.shape[0] != n_classes:
        raise ShapeError(
            f"{name}: weight should be defined either for all {n_classes} classes or no classes "
            f"(expected shape ({n_classes},)), got weight of shape {weight.shape}"
        )
    return weight


def _index_target_shape(input_shape: tuple[int, ...]) -> tuple[int, ...]:
    return () if len(input_shape) == 1 else (input_shape[0],) + tuple(input_shape[2:])


def _check_input_rank(name: str, input: jax.Array) -> None:
    if input.ndim == 0:
        raise ShapeError(f"{name}: expected input of shape [C], [N, C] or [N, C, d1, ...]; got shape ()")


def _check_index_target(name: str, input: jax.Array, target: jax.Array, allow_probs: bool) -> None:
    expected = _index_target_shape(input.shape)
    if target.shape != expected:
        also = f" or {input.shape} (class probabilities, float)" if allow_probs else ""
        raise ShapeError(
            f"{name}: for input of shape {input.shape} (class dim {0 if input.ndim == 1 else 1}) expected "
            f"target of shape {expected} (class indices){also}; got target of shape {target.shape}"
        )
    if not jnp.issubdtype(target.dtype, jnp.integer):
        also = f"; class-probability targets must have the input's shape {input.shape}" if allow_probs else ""
        raise TypeError(
            f"{name}: class-index target must have an integer dtype; got {target.dtype}{also}"
        )


def _check_index_values(name: str, target: jax.Array, n_classes: int, ignore_index: int) -> None:
    values = _concrete(target)
    if values is None:
        return
    bad = (values != ignore_index) & ((values < 0) | (values >= n_classes))
    if bad.any():
        first = values[bad].flat[0]
        raise IndexError(
            f"{name}: target {first} is out of bounds for {n_classes} classes "
            f"(expected 0 <= target < {n_classes}, or ignore_index={ignore_index})"
        )


def _nll_terms(
    logp: jax.Array, target: jax.Array, weight: jax.Array | None, ignore_index: int,
    log_normalizer: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Per-position ``-w_y·logp[y]`` (0 where ignored, NaN where out of range), ``w_y`` (0 where
    ignored) and the ignore mask. ``logp`` is ``[N, C, d...]``, ``target`` ``[N, d...]``.

    With ``log_normalizer`` (``logsumexp`` over the class dim), ``logp`` may be the raw logits:
    ``logp[y] = logits[y] - log_normalizer``, without materialising the log-softmax."""
    n_classes = logp.shape[1]
    ignored = target == ignore_index
    invalid = ~ignored & ((target < 0) | (target >= n_classes))
    index = jnp.clip(jnp.where(ignored, 0, target), 0, n_classes - 1)
    # A dense select rather than a gather: same values, and its backward is a select instead of
    # a scatter, which XLA:CPU runs markedly faster (the loss is in every training step).
    chosen = jnp.expand_dims(index, 1) == jnp.arange(n_classes).reshape((1, n_classes) + (1,) * (logp.ndim - 2))
    picked = jnp.sum(jnp.where(chosen, logp, jnp.zeros((), logp.dtype)), axis=1)
    if log_normalizer is not None:
        picked = picked - log_normalizer
    w_y = jnp.ones((), logp.dtype) if weight is None else weight.astype(logp.dtype)[index]
    w_y = jnp.where(ignored, jnp.zeros((), logp.dtype), jnp.broadcast_to(w_y, picked.shape))
    terms = jnp.where(ignored, jnp.zeros((), logp.dtype), -w_y * picked)
    terms = jnp.where(invalid, jnp.full((), jnp.nan, logp.dtype), terms)
    return terms, w_y, ignored


def _nll_reduce(terms: jax.Array, w_y: jax.Array, reduction: str) -> jax.Array:
    if reduction == "none":
        return terms
    if reduction == "sum":
        return jnp.sum(terms)
    return jnp.sum(terms) / jnp.sum(w_y)  # all ignored: 0/0 = NaN, as torch


def _batched(input: jax.Array, target: jax.Array) -> tuple[jax.Array, jax.Array, bool]:
    if input.ndim == 1:
        return input[None], target[None], True
    return input, target, False


def _unbatch(loss: jax.Array, unbatched: bool, reduction: str) -> jax.Array:
    return loss[0] if unbatched and reduction == "none" else loss


def nll_loss(
    input: ArrayLike,
    target: ArrayLike,
    weight: ArrayLike | None = None,
    size_average: bool | None = None,
    ignore_index: int = -100,
    reduce: bool | None = None,
    reduction: str = "mean",
) -> jax.Array:
    """``torch.nn.functional.nll_loss``: ``l_n = -w_{y_n}·input[n, y_n]``, 0 where ``y_n == ignore_index``.

    Shapes: input (log-probabilities) ``[C]``, ``[N, C]`` or ``[N, C, d1, ..., dK]``; target integer
    class indices ``[]``, ``[N]`` or ``[N, d1, ..., dK]``; ``weight`` ``[C]``. ``'none'`` returns the
    target's shape. ``'mean'`` divides by ``Σ w_{y_n}`` over non-ignored positions (the count when
    unweighted); everything ignored gives NaN, as torch.
    """
    reduction = _resolve_reduction(reduction, size_average, reduce)
    input, target = _float_array(input), jnp.asarray(target)
    _check_input_rank("nll_loss", input)
    _check_index_target("nll_loss", input, target, allow_probs=False)
    n_classes = input.shape[0 if input.ndim == 1 else 1]
    weight = _class_weight("nll_loss", weight, n_classes)
    _check_index_values("nll_loss", target, n_classes, ignore_index)
    logp, target, unbatched = _batched(input, target)
    terms, w_y, _ = _nll_terms(logp, target, weight, ignore_index)
    return _unbatch(_nll_reduce(terms, w_y, reduction), unbatched, reduction)


def _soft_cross_entropy(
    logp: jax.Array, target: jax.Array, weight: jax.Array | None, reduction: str, label_smoothing: float
) -> jax.Array:
    """torch's ``cross_entropy_loss_prob_target``; ``logp``/``target`` are ``[N, C, d...]``."""
    n_classes = logp.shape[1]
    if label_smoothing > 0.0:
        target = target * (1 - label_smoothing) + label_smoothing / n_classes
    prod = logp * target
    if weight is not None:
        prod = prod * weight.astype(logp.dtype).reshape((1, n_classes) + (1,) * (logp.ndim - 2))
    if reduction == "none":
        return -jnp.sum(prod, axis=1)
    if reduction == "sum":
        return -jnp.sum(prod)
    return -jnp.sum(prod) / (prod.size // n_classes)  # mean over samples, not over the weights


def cross_entropy(
    input: ArrayLike,
    target: ArrayLike,
    weight: ArrayLike | None = None,
    size_average: bool | None = None,
    ignore_index: int = -100,
    reduce: bool | None = None,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> jax.Array:
    """``torch.nn.functional.cross_entropy``: ``log_softmax`` over the class dim (1) then NLL.

    Shapes: input logits ``[C]``, ``[N, C]`` or ``[N, C, d1, ..., dK]``. The target is either

    * class indices (integer) ``[]``, ``[N]`` or ``[N, d1, ..., dK]``: the ``nll_loss`` rules
      (``weight[y]``, ``ignore_index``, weighted mean ``Σ l_n / Σ w_{y_n}``, all ignored → NaN).
      With ``label_smoothing = ε``: ``(1-ε)·nll + ε/C·smooth`` where
      ``smooth_n = -Σ_c w_c·logp_{n,c}`` (0 where ignored), reduced by the same denominator; or
    * class probabilities (float, the input's shape): targets become ``t(1-ε) + ε/C``,
      ``l_n = -Σ_c w_c·t_{n,c}·logp_{n,c}``; ``'mean'`` divides by the number of samples
      ``N·d1···dK``, not by the weights; ``ignore_index`` must be negative.

    ``'none'`` returns the target's shape without the class dim. Exactly torch's semantics
    (torch's ``cross_entropy_loss`` in aten ``LossNLL.cpp``); see the module docstring for the
    jit behaviour of out-of-range indices.
    """
    reduction = _resolve_reduction(reduction, size_average, reduce)
    input, target = _float_array(input), jnp.asarray(target)
    _check_input_rank("cross_entropy", input)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be between 0.0 and 1.0; got {label_smoothing}")
    n_classes = input.shape[0 if input.ndim == 1 else 1]
    weight = _class_weight("cross_entropy", weight, n_classes)
    probabilities = target.shape == input.shape
    if probabilities:
        if not jnp.issubdtype(target.dtype, jnp.floating):
            raise TypeError(
                "cross_entropy: expected a floating point target for class probabilities "
                f"(target shape {target.shape} equals the input shape); got {target.dtype}"
            )
        if ignore_index >= 0:
            raise ValueError(
                f"cross_entropy: ignore_index is not supported for class-probability targets; "
                f"got ignore_index={ignore_index}"
            )
    else:
        _check_index_target("cross_entropy", input, target, allow_probs=True)
        _check_index_values("cross_entropy", target, n_classes, ignore_index)
    x, target, unbatched = _batched(input, target)
    if not probabilities and label_smoothing == 0.0:
        # The common case: -logp[y] = logsumexp(x) - x[y], no [N, C] log-softmax materialised.
        terms, w_y, _ = _nll_terms(x, target, weight, ignore_index, jax.nn.logsumexp(x, axis=1))
        return _unbatch(_nll_reduce(terms, w_y, reduction), unbatched, reduction)
    logp = jax.nn.log_softmax(x, axis=1)
    if probabilities:
        return _unbatch(_soft_cross_entropy(logp, target.astype(logp.dtype), weight, reduction,
                                            label_smoothing), unbatched, reduction)
    terms, w_y, ignored = _nll_terms(logp, target, weight, ignore_index)
    nll = _nll_reduce(terms, w_y, reduction)
    if label_smoothing > 0.0:
        lw = logp if weight is None else logp * weight.astype(logp.dtype).reshape(
            (1, n_classes) + (1,) * (logp.ndim - 2))
        smooth = jnp.where(ignored, jnp.zeros((), logp.dtype), -jnp.sum(lw, axis=1))
        if reduction == "sum":
            smooth = jnp.sum(smooth)
        elif reduction == "mean":
            denom = jnp.sum(~ignored).astype(logp.dtype) if weight is None else jnp.sum(w_y)
            smooth = jnp.sum(smooth) / denom
        nll = (1 - label_smoothing) * nll + smooth * (label_smoothing / n_classes)
    return _unbatch(nll, unbatched, reduction)


# --------------------------------------------------------------------------- binary losses
@jax.custom_vjp
def _bce_terms(x: jax.Array, t: jax.Array) -> jax.Array:
    # aten Loss.cpp: (t - 1)·max(log1p(-x), -100) - t·max(log(x), -100)
    return (t - 1) * jnp.maximum(jnp.log1p(-x), -100.0) - t * jnp.maximum(jnp.log(x), -100.0)


def _bce_fwd(x: jax.Array, t: jax.Array) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    return _bce_terms(x, t), (x, t)


def _bce_bwd(res: tuple[jax.Array, jax.Array], g: jax.Array) -> tuple[jax.Array, jax.Array]:
    # torch's binary_cross_entropy_backward / _target_backward formulas, so the edges x ∈ {0, 1}
    # give torch's finite values instead of 0·inf.
    x, t = res
    grad_x = g * (x - t) / jnp.maximum((1 - x) * x, _BCE_EPSILON)
    grad_t = -g * (jnp.log(x) - jnp.log1p(-x))
    return grad_x, grad_t


_bce_terms.defvjp(_bce_fwd, _bce_bwd)


def _check_same_size(name: str, input: jax.Array, target: jax.Array) -> None:
    if target.shape != input.shape:
        raise ShapeError(
            f"{name}: target must have the same shape as the input; "
            f"expected {input.shape}, got {target.shape}"
        )


def binary_cross_entropy(
    input: ArrayLike,
    target: ArrayLike,
    weight: ArrayLike | None = None,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: str = "mean",
) -> jax.Array:
    """``torch.nn.functional.binary_cross_entropy``: ``-w·[t·log x + (1-t)·log(1-x)]``, logs clamped at -100.

    ``input`` (probabilities) and ``target`` share any shape ``[*]``; ``weight`` broadcasts to it.
    Gradients use torch's backward formulas: input ``(x-t)/max(x(1-x), 1e-12)``, target ``-logit(x)``.
    """
    reduction = _resolve_reduction(reduction, size_average, reduce)
    input, target = _float_array(input), _float_array(target)
    _check_same_size("binary_cross_entropy", input, target)
    dtype = jnp.result_type(input, target)
    input, target = input.astype(dtype), target.astype(dtype)
    for arg, value in (("input", input), ("target", target)):
        concrete = _concrete(value)
        if concrete is not None and not ((concrete >= 0) & (concrete <= 1)).all():
            raise ValueError(f"binary_cross_entropy: all elements of {arg} should be between 0 and 1")
    loss = _bce_terms(input, target)
    if weight is not None:
        weight = _float_array(weight)
        _check_elementwise_weight("binary_cross_entropy", "weight", weight, input.shape)
        loss = loss * weight.astype(dtype)
    return _reduce(loss, reduction)


# BCE with logits: torch's forward ((1-t)·x - (1+(pw-1)·t)·logσ(x)) and its explicit backward
# formulas (aten binary_cross_entropy_with_logits_backward / _target_backward), which round
# differently from the autodiff of the forward where terms cancel.
@jax.custom_vjp
def _bce_logits_terms(x: jax.Array, t: jax.Array) -> jax.Array:
    return (1 - t) * x - jax.nn.log_sigmoid(x)


def _bce_logits_fwd(x: jax.Array, t: jax.Array) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    return _bce_logits_terms(x, t), (x, t)


def _bce_logits_bwd(res: tuple[jax.Array, jax.Array], g: jax.Array) -> tuple[jax.Array, jax.Array]:
    x, t = res
    return g * (jax.nn.sigmoid(x) - t), g * -x


_bce_logits_terms.defvjp(_bce_logits_fwd, _bce_logits_bwd)


@jax.custom_vjp
def _bce_logits_pos_terms(x: jax.Array, t: jax.Array, pw: jax.Array) -> jax.Array:
    return (1 - t) * x - ((pw - 1) * t + 1) * jax.nn.log_sigmoid(x)


def _bce_logits_pos_fwd(x: jax.Array, t: jax.Array, pw: jax.Array) -> tuple[jax.Array, tuple]:
    return _bce_logits_pos_terms(x, t, pw), (x, t, pw)


def _bce_logits_pos_bwd(res: tuple, g: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    x, t, pw = res
    pt = pw * t
    log_sig = jax.nn.log_sigmoid(x)
    grad_x = (pt + 1 - t) * jax.nn.sigmoid(x) - pt
    grad_t = jax.nn.log_sigmoid(-x) - log_sig * pw
    return g * grad_x, g * grad_t, g * -(t * log_sig)


_bce_logits_pos_terms.defvjp(_bce_logits_pos_fwd, _bce_logits_pos_bwd)


def binary_cross_entropy_with_logits(
    input: ArrayLike,
    target: ArrayLike,
    weight: ArrayLike | None = None,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: str = "mean",
    pos_weight: ArrayLike | None = None,
) -> jax.Array:
    """``torch.nn.functional.binary_cross_entropy_with_logits``, in torch's stable form.

    ``ℓ = (1-t)·x - (1 + (pw-1)·t)·logσ(x)``, times ``weight``; equal to
    ``-w·[pw·t·logσ(x) + (1-t)·log(1-σ(x))]``. ``input`` (logits) and ``target`` share a shape;
    ``weight`` and ``pos_weight`` broadcast to it (``pos_weight [C]`` over the last dim of
    ``[N, C]``; ``[C, 1, 1]`` for ``[N, C, H, W]``), as torch.
    """
    name = "binary_cross_entropy_with_logits"
    reduction = _resolve_reduction(reduction, size_average, reduce)
    input, target = _float_array(input), _float_array(target)
    _check_same_size(name, input, target)
    dtype = jnp.result_type(input, target)
    input, target = input.astype(dtype), target.astype(dtype)
    if pos_weight is None:
        loss = _bce_logits_terms(input, target)
    else:
        pos_weight = _float_array(pos_weight)
        _check_elementwise_weight(name, "pos_weight", pos_weight, input.shape)
        loss = _bce_logits_pos_terms(input, target, jnp.broadcast_to(pos_weight.astype(dtype), input.shape))
    if weight is not None:
        weight = _float_array(weight)
        _check_elementwise_weight(name, "weight", weight, input.shape)
        loss = loss * weight.astype(dtype)
    return _reduce(loss, reduction)


# --------------------------------------------------------------------------- regression losses
def _weighted(name: str, loss: jax.Array, weight: ArrayLike | None, input: jax.Array,
              reduction: str, mean_by_weight: bool) -> jax.Array:
    """torch 2.13's optional per-element ``weight`` of mse/l1/huber (same shape as the input)."""
    if weight is None:
        return _reduce(loss, reduction)
    weight = _float_array(weight)
    if weight.shape != input.shape:
        raise ShapeError(
            f"{name}: weight must have the same shape as the input; "
            f"expected {input.shape}, got {weight.shape}"
        )
    loss = loss * weight
    if reduction == "mean" and mean_by_weight:
        return jnp.sum(loss) / jnp.sum(weight)
    return _reduce(loss, reduction)


def _abs(d: jax.Array) -> jax.Array:
    # |d| whose gradient is sign(d) (0 at d = 0), as torch's l1/smooth-l1 backward
    return d * jnp.sign(d)


def mse_loss(
    input: ArrayLike,
    target: ArrayLike,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: str = "mean",
    weight: ArrayLike | None = None,
) -> jax.Array:
    """``torch.nn.functional.mse_loss``: ``(x - y)²``; 'mean' over all elements.

    ``input``/``target`` ``[*]``, broadcast together (with torch's warning when their shapes
    differ). Optional ``weight`` (input's shape): weighted 'mean' = ``Σ w·l / Σ w``, as torch 2.13.
    """
    reduction = _resolve_reduction(reduction, size_average, reduce)
    input, target = _broadcast_pair("mse_loss", _float_array(input), _float_array(target))
    return _weighted("mse_loss", jnp.square(input - target), weight, input, reduction, mean_by_weight=True)


def l1_loss(
    input: ArrayLike,
    target: ArrayLike,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: str = "mean",
    weight: ArrayLike | None = None,
) -> jax.Array:
    """``torch.nn.functional.l1_loss``: ``|x - y|``; 'mean' over all elements.

    Broadcasting, warning and optional ``weight`` as :func:`mse_loss` (weighted 'mean' = ``Σ w·l / Σ w``).
    The gradient at ``x == y`` is 0, as torch's ``sign``.
    """
    reduction = _resolve_reduction(reduction, size_average, reduce)
    input, target = _broadcast_pair("l1_loss", _float_array(input), _float_array(target))
    return _weighted("l1_loss", _abs(input - target), weight, input, reduction, mean_by_weight=True)


def smooth_l1_loss(
    input: ArrayLike,
    target: ArrayLike,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: str = "mean",
    beta: float = 1.0,
) -> jax.Array:
    """``torch.nn.functional.smooth_l1_loss``: ``|d| < β ? 0.5·d²/β : |d| - 0.5·β``; ``β = 0`` is L1.

    ``input``/``target`` ``[*]``, broadcast together (with torch's warning). ``β < 0`` raises.
    """
    reduction = _resolve_reduction(reduction, size_average, reduce)
    if beta < 0:
        raise ValueError(f"smooth_l1_loss does not support negative values for beta; got beta={beta}")
    input, target = _broadcast_pair("smooth_l1_loss", _float_array(input), _float_array(target))
    z = _abs(input - target)
    if beta == 0.0:
        return _reduce(z, reduction)
    return _reduce(jnp.where(z < beta, 0.5 * z * z / beta, z - 0.5 * beta), reduction)


def huber_loss(
    input: ArrayLike,
    target: ArrayLike,
    reduction: str = "mean",
    delta: float = 1.0,
    weight: ArrayLike | None = None,
) -> jax.Array:
    """``torch.nn.functional.huber_loss``: ``|d| < δ ? 0.5·d² : δ·(|d| - 0.5·δ)`` (= δ·smooth_l1 with β=δ).

    ``input``/``target`` ``[*]``, broadcast together (with torch's warning). ``δ <= 0`` raises.
    Optional ``weight`` (input's shape): note torch 2.13's weighted 'mean' is ``mean(w·l)``
    (unlike mse/l1, not divided by ``Σ w``); reproduced as is.
    """
    reduction = _resolve_reduction(reduction)
    if delta <= 0:
        raise ValueError(f"huber_loss does not support non-positive values for delta; got delta={delta}")
    input, target = _broadcast_pair("huber_loss", _float_array(input), _float_array(target))
    z = _abs(input - target)
    loss = jnp.where(z < delta, 0.5 * z * z, delta * (z - 0.5 * delta))
    return _weighted("huber_loss", loss, weight, input, reduction, mean_by_weight=False)


def kl_div(
    input: ArrayLike,
    target: ArrayLike,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: str = "mean",
    log_target: bool = False,
) -> jax.Array:
    """``torch.nn.functional.kl_div``: pointwise ``t·(log t - input)`` (0 where t = 0); with
    ``log_target``, ``exp(t)·(t - input)``. ``input`` is log-probabilities.

    Shapes ``[*]``, broadcast together. ``'mean'`` averages over **all elements** (torch warns, and
    so does funcnet); ``'batchmean'`` is ``sum / input.shape[0]`` (the KL divergence per sample).
    """
    reduction = _resolve_reduction(reduction, size_average, reduce, allowed=_REDUCTIONS + ("batchmean",))
    if reduction == "mean" and size_average is None and reduce is None:
        warnings.warn(
            "reduction: 'mean' divides the total loss by both the batch size and the support size."
            "'batchmean' divides only by the batch size, and aligns with the KL div math definition."
            "'mean' will be changed to behave the same as 'batchmean' in the next major release.",
            stacklevel=2,
        )
    input, target = _float_array(input), _float_array(target)
    batch = input.shape[0] if input.ndim else 1
    try:
        shape = jnp.broadcast_shapes(input.shape, target.shape)
    except ValueError:
        raise ShapeError(
            f"kl_div: target of shape {target.shape} does not broadcast with input of shape {input.shape}"
        ) from None
    input, target = jnp.broadcast_to(input, shape), jnp.broadcast_to(target, shape)
    if log_target:
        loss = jnp.exp(target) * (target - input)
    else:
        loss = xlogy(target, target) - target * input
    if reduction == "batchmean":
        return jnp.sum(loss) / batch
    return _reduce(loss, reduction)


__all__ = [
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "cross_entropy",
    "huber_loss",
    "kl_div",
    "l1_loss",
    "mse_loss",
    "nll_loss",
    "smooth_l1_loss",
]
