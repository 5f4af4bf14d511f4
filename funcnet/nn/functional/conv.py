"""Convolutions: torch.nn.functional's ``conv1d/2d/3d`` and ``conv_transpose1d/2d/3d``.

Layouts are torch's: inputs ``[N, C, *spatial]`` (or unbatched ``[C, *spatial]``),
weights ``[out, in/groups, *k]`` for convolutions and ``[in, out/groups, *k]`` for
transposed convolutions. Everything lowers to one ``lax.conv_general_dilated``.
Hyper-parameters (stride, padding, ...) are Python ints/tuples: static under ``jit``.

Differences from torch: mixed input/weight dtypes are promoted (torch raises); the
precision is JAX's default for float32 convolutions (exact on CPU; on GPUs XLA may use
TF32, as torch's cuDNN does by default — set ``jax_default_matmul_precision`` to
``'highest'`` for full float32).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

IntOrTuple = int | Sequence[int]

_SPATIAL = {1: "H", 2: "HW", 3: "DHW"}


def _dimension_numbers(n: int) -> tuple[str, str, str]:
    s = _SPATIAL[n]
    return ("NC" + s, "OI" + s, "NC" + s)


def _ntuple(value: Any, n: int, name: str) -> tuple[int, ...]:
    """torch's ``_single/_pair/_triple`` plus its expansion of a 1-element list."""
    if isinstance(value, (int, np.integer)):
        return (int(value),) * n
    values = tuple(int(v) for v in value)
    if len(values) == 1:
        return values * n
    if len(values) != n:
        raise ValueError(f"{name} must be an int or a sequence of {n} ints, got {value!r}")
    return values


def _batched(input: jax.Array, n: int, name: str) -> tuple[jax.Array, bool]:
    """Add the batch dim to an unbatched ``[C, *spatial]`` input, as torch does."""
    if input.ndim == n + 2:
        return input, True
    if input.ndim == n + 1:
        return input[None], False
    raise ValueError(
        f"{name}: expected {n + 1}D (unbatched) or {n + 2}D (batched) input, "
        f"but got input of shape {tuple(input.shape)}"
    )


def _common_dtype(*arrays: jax.Array | None) -> Any:
    return jnp.result_type(*(a for a in arrays if a is not None))


def _check_output_size(name: str, in_size: Sequence[int], pads: Sequence[tuple[int, int]],
                       kernel: Sequence[int], dilation: Sequence[int]) -> None:
    padded = [i + lo + hi for i, (lo, hi) in zip(in_size, pads, strict=True)]
    effective = [d * (k - 1) + 1 for k, d in zip(kernel, dilation, strict=True)]
    if any(p < e for p, e in zip(padded, effective, strict=True)):
        raise ValueError(
            f"{name}: calculated padded input size per channel: {tuple(padded)}. Kernel size "
            f"(dilated): {tuple(effective)}. Kernel size can't be greater than actual input size"
        )


def _conv_padding(padding: str | IntOrTuple, n: int, stride: tuple[int, ...], kernel: Sequence[int],
                  dilation: tuple[int, ...]) -> list[tuple[int, int]]:
    if isinstance(padding, str):
        if padding == "valid":
            return [(0, 0)] * n
        if padding == "same":
            if any(s != 1 for s in stride):
                raise ValueError("padding='same' is not supported for strided convolutions")
            totals = [d * (k - 1) for k, d in zip(kernel, dilation, strict=True)]
            return [(t // 2, t - t // 2) for t in totals]  # torch puts the extra on the right
        raise ValueError(f"Invalid padding string {padding!r}, should be one of {{'valid', 'same'}}")
    return [(p, p) for p in _ntuple(padding, n, "padding")]


def _conv_with_bias(n: int, x: jax.Array, weight: jax.Array, bias: jax.Array | None, batched: bool,
                    pads: Any, window_strides: tuple[int, ...], lhs_dilation: tuple[int, ...],
                    rhs_dilation: tuple[int, ...], groups: int) -> jax.Array:
    """The one ``lax.conv_general_dilated`` (NC*-layout, grouped) every convolution lowers to,
    plus the bias over the channel axis; drops the batch axis again for unbatched input."""
    dtype = _common_dtype(x, weight, bias)
    y = lax.conv_general_dilated(
        x.astype(dtype),
        weight.astype(dtype),
        window_strides=window_strides,
        padding=pads,
        lhs_dilation=lhs_dilation,
        rhs_dilation=rhs_dilation,
        dimension_numbers=_dimension_numbers(n),
        feature_group_count=groups,
    )
    if bias is not None:
        y = y + bias.astype(dtype).reshape((1, -1) + (1,) * n)
    return y if batched else y[0]


def _convnd(n: int, name: str, input: jax.Array, weight: jax.Array, bias: jax.Array | None,
            stride: IntOrTuple, padding: str | IntOrTuple, dilation: IntOrTuple, groups: int) -> jax.Array:
    x, batched = _batched(input, n, name)
    if weight.ndim != n + 2:
        raise ValueError(
            f"{name}: expected a {n + 2}D weight [out, in/groups, *k], got {tuple(weight.shape)}"
        )
    out_channels, in_per_group = weight.shape[:2]
    if groups < 1 or out_channels % groups:
        raise ValueError(f"{name}: groups={groups} must be positive and divide out_channels={out_channels}")
    if x.shape[1] != in_per_group * groups:
        raise ValueError(
            f"{name}: given groups={groups}, weight of size {list(weight.shape)}, expected "
            f"input{list(input.shape)} to have {in_per_group * groups} channels, but got "
            f"{x.shape[1]} channels instead"
        )
    stride_t = _ntuple(stride, n, "stride")
    dilation_t = _ntuple(dilation, n, "dilation")
    kernel = weight.shape[2:]
    pads = _conv_padding(padding, n, stride_t, kernel, dilation_t)
    _check_output_size(name, x.shape[2:], pads, kernel, dilation_t)
    return _conv_with_bias(n, x, weight, bias, batched, pads, stride_t, (1,) * n, dilation_t, groups)


def conv1d(input: jax.Array, weight: jax.Array, bias: jax.Array | None = None, stride: IntOrTuple = 1,
           padding: str | IntOrTuple = 0, dilation: IntOrTuple = 1, groups: int = 1) -> jax.Array:
    """``torch.nn.functional.conv1d``: input ``[N, C_in, L]`` or ``[C_in, L]``, weight
    ``[C_out, C_in/groups, k]``, bias ``[C_out]`` → ``[N, C_out, L_out]`` (or ``[C_out, L_out]``).

    ``padding`` is an int/tuple or ``'valid'``/``'same'`` ('same' puts the odd extra
    padding on the right, as torch; it requires stride 1).
    """
    return _convnd(1, "conv1d", input, weight, bias, stride, padding, dilation, groups)


def conv2d(input: jax.Array, weight: jax.Array, bias: jax.Array | None = None, stride: IntOrTuple = 1,
           padding: str | IntOrTuple = 0, dilation: IntOrTuple = 1, groups: int = 1) -> jax.Array:
    """``torch.nn.functional.conv2d``: input ``[N, C_in, H, W]`` or ``[C_in, H, W]``, weight
    ``[C_out, C_in/groups, kh, kw]`` (OIHW), bias ``[C_out]`` → ``[N, C_out, H_out, W_out]``.

    ``H_out = ⌊(H + 2·p − d·(k−1) − 1)/s⌋ + 1``; ``padding`` may be ``'valid'``/``'same'``.
    """
    return _convnd(2, "conv2d", input, weight, bias, stride, padding, dilation, groups)


def conv3d(input: jax.Array, weight: jax.Array, bias: jax.Array | None = None, stride: IntOrTuple = 1,
           padding: str | IntOrTuple = 0, dilation: IntOrTuple = 1, groups: int = 1) -> jax.Array:
    """``torch.nn.functional.conv3d``: input ``[N, C_in, D, H, W]`` or ``[C_in, D, H, W]``,
    weight ``[C_out, C_in/groups, kd, kh, kw]``, bias ``[C_out]``."""
    return _convnd(3, "conv3d", input, weight, bias, stride, padding, dilation, groups)


def _conv_transposend(n: int, name: str, input: jax.Array, weight: jax.Array, bias: jax.Array | None,
                      stride: IntOrTuple, padding: IntOrTuple, output_padding: IntOrTuple, groups: int,
                      dilation: IntOrTuple) -> jax.Array:
    x, batched = _batched(input, n, name)
    if weight.ndim != n + 2:
        raise ValueError(
            f"{name}: expected a {n + 2}D weight [in, out/groups, *k], got {tuple(weight.shape)}"
        )
    in_channels, out_per_group = weight.shape[:2]
    kernel = weight.shape[2:]
    if groups < 1 or in_channels % groups:
        raise ValueError(f"{name}: groups={groups} must be positive and divide in_channels={in_channels}")
    if x.shape[1] != in_channels:
        raise ValueError(
            f"{name}: given transposed=1, weight of size {list(weight.shape)}, expected "
            f"input{list(input.shape)} to have {in_channels} channels, but got {x.shape[1]} "
            f"channels instead"
        )
    stride_t = _ntuple(stride, n, "stride")
    padding_t = _ntuple(padding, n, "padding")
    out_pad_t = _ntuple(output_padding, n, "output_padding")
    dilation_t = _ntuple(dilation, n, "dilation")
    for op, s, d in zip(out_pad_t, stride_t, dilation_t, strict=True):
        if op >= s and op >= d:
            raise ValueError(
                f"{name}: output padding must be smaller than either stride or dilation, "
                f"but got output_padding={out_pad_t}, stride={stride_t}, dilation={dilation_t}"
            )
    # A transposed convolution is the convolution of the stride-dilated input with the
    # spatially flipped kernel whose in/out axes are swapped within each group.
    w = weight.reshape((groups, in_channels // groups, out_per_group) + tuple(kernel))
    w = jnp.swapaxes(w, 1, 2).reshape((groups * out_per_group, in_channels // groups) + tuple(kernel))
    w = jnp.flip(w, axis=tuple(range(2, n + 2)))
    pads = [
        (d * (k - 1) - p, d * (k - 1) - p + op)
        for k, d, p, op in zip(kernel, dilation_t, padding_t, out_pad_t, strict=True)
    ]
    out_size = [
        (i - 1) * s - 2 * p + d * (k - 1) + op + 1
        for i, s, p, d, k, op in zip(
            x.shape[2:], stride_t, padding_t, dilation_t, kernel, out_pad_t, strict=True
        )
    ]
    if any(o <= 0 for o in out_size):
        raise ValueError(f"{name}: output size {tuple(out_size)} is too small for input {tuple(input.shape)}")
    return _conv_with_bias(n, x, w, bias, batched, pads, (1,) * n, stride_t, dilation_t, groups)


def conv_transpose1d(input: jax.Array, weight: jax.Array, bias: jax.Array | None = None,
                     stride: IntOrTuple = 1, padding: IntOrTuple = 0, output_padding: IntOrTuple = 0,
                     groups: int = 1, dilation: IntOrTuple = 1) -> jax.Array:
    """``torch.nn.functional.conv_transpose1d``: input ``[N, C_in, L]`` or ``[C_in, L]``,
    weight ``[C_in, C_out/groups, k]`` (torch's transposed layout), bias ``[C_out]``.

    ``L_out = (L − 1)·s − 2·p + d·(k − 1) + output_padding + 1``.
    """
    return _conv_transposend(1, "conv_transpose1d", input, weight, bias, stride, padding,
                             output_padding, groups, dilation)


def conv_transpose2d(input: jax.Array, weight: jax.Array, bias: jax.Array | None = None,
                     stride: IntOrTuple = 1, padding: IntOrTuple = 0, output_padding: IntOrTuple = 0,
                     groups: int = 1, dilation: IntOrTuple = 1) -> jax.Array:
    """``torch.nn.functional.conv_transpose2d``: input ``[N, C_in, H, W]`` or ``[C_in, H, W]``,
    weight ``[C_in, C_out/groups, kh, kw]``, bias ``[C_out]``.

    ``H_out = (H − 1)·s − 2·p + d·(k − 1) + output_padding + 1``.
    """
    return _conv_transposend(2, "conv_transpose2d", input, weight, bias, stride, padding,
                             output_padding, groups, dilation)


def conv_transpose3d(input: jax.Array, weight: jax.Array, bias: jax.Array | None = None,
                     stride: IntOrTuple = 1, padding: IntOrTuple = 0, output_padding: IntOrTuple = 0,
                     groups: int = 1, dilation: IntOrTuple = 1) -> jax.Array:
    """``torch.nn.functional.conv_transpose3d``: input ``[N, C_in, D, H, W]`` or unbatched,
    weight ``[C_in, C_out/groups, kd, kh, kw]``, bias ``[C_out]``."""
    return _conv_transposend(3, "conv_transpose3d", input, weight, bias, stride, padding,
                             output_padding, groups, dilation)
