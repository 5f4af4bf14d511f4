"""``pad``: torch.nn.functional.pad with torch's argument order (last dimension first).

``pad=(left, right)`` pads the last dim; ``(left, right, top, bottom)`` the last
two, and so on. Negative amounts crop, as in torch. Modes: ``'constant'`` (any
number of dims), and ``'reflect'``, ``'replicate'``, ``'circular'`` with torch's
restriction to the last 1–3 dims of a batched or unbatched input.
One deviation: ``'circular'`` with a crop on one side of a dim and, on the
other, a pad larger than what is left after the crop raises (torch returns
an odd multiple wrap there).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

_NUMPY_MODE = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def _pairs(pad: Sequence[int], ndim: int) -> list[tuple[int, int]]:
    """Per-dimension (before, after) in array order, from torch's last-dim-first list."""
    pairs = [(0, 0)] * ndim
    for i in range(len(pad) // 2):
        pairs[ndim - 1 - i] = (int(pad[2 * i]), int(pad[2 * i + 1]))
    return pairs


def _check_output_sizes(shape: tuple[int, ...], pairs: Sequence[tuple[int, int]], mode: str) -> None:
    """torch's rule for negative pads: the output may be empty, except in 'reflect'/'replicate'."""
    smallest = 1 if mode in ("reflect", "replicate") else 0
    for d, ((lo, hi), size) in enumerate(zip(pairs, shape, strict=True)):
        if size + lo + hi < smallest:
            raise ValueError(
                f"pad: input size {size} at dimension {d} is too small for padding ({lo}, {hi}) in mode "
                f"{mode!r}: the output size would be {size + lo + hi} (at least {smallest} is needed)"
            )


def pad(
    input: jax.Array, pad: Sequence[int], mode: str = "constant", value: float | None = None
) -> jax.Array:
    """Pad ``input`` by ``pad`` (torch order: last dim first); see the module docstring."""
    pad = tuple(pad)
    if len(pad) % 2:
        raise ValueError(f"pad: Padding length must be divisible by 2, got pad={pad}")
    k = len(pad) // 2
    if k > input.ndim:
        raise ValueError(f"pad: Padding length too large: pad={pad} for input of shape {tuple(input.shape)}")
    pairs = _pairs(pad, input.ndim)
    _check_output_sizes(input.shape, pairs, mode)
    if mode == "constant":
        fill = jnp.asarray(0 if value is None else value, input.dtype)
        return jax.lax.pad(input, fill, [(lo, hi, 0) for lo, hi in pairs])
    if mode not in _NUMPY_MODE:
        raise ValueError(f"pad: mode must be one of constant, reflect, replicate, circular; got {mode!r}")
    if value:
        raise ValueError(f"pad: padding mode {mode!r} doesn't take in value argument")
    if k not in (1, 2, 3) or input.ndim not in (k + 1, k + 2):
        raise NotImplementedError(
            f"pad: padding size {len(pad)} is not supported for {input.ndim}D input tensor in mode "
            f"{mode!r}: pads of size 2/4/6 need 2D-3D/3D-4D/4D-5D inputs (batched or not)"
        )
    # torch's order: 'circular' crops the negative amounts first and wraps what is left;
    # 'reflect'/'replicate' pad the original and then crop.
    def crop(x: jax.Array) -> jax.Array:
        return x[tuple(slice(max(-lo, 0), x.shape[d] - max(-hi, 0)) for d, (lo, hi) in enumerate(pairs))]

    for d, (lo, hi) in enumerate(pairs):
        size = input.shape[d]
        if mode == "reflect" and (lo >= size or hi >= size):
            raise ValueError(
                f"pad: Padding size should be less than the corresponding input dimension, but got "
                f"padding ({lo}, {hi}) at dimension {d} of input {list(input.shape)}"
            )
        if mode == "circular" and (lo > size or hi > size):
            raise ValueError(
                f"pad: Padding value causes wrapping around more than once: padding ({lo}, {hi}) at "
                f"dimension {d} of input {list(input.shape)}"
            )
    if mode == "circular":
        input = crop(input)
        for d, (lo, hi) in enumerate(pairs):
            if max(lo, 0) > input.shape[d] or max(hi, 0) > input.shape[d]:
                raise ValueError(
                    f"pad: circular padding ({lo}, {hi}) at dimension {d} wraps more than once around "
                    f"the {input.shape[d]} element(s) left after cropping; funcnet does not support this"
                )
    grown = jnp.pad(input, [(max(lo, 0), max(hi, 0)) for lo, hi in pairs], mode=_NUMPY_MODE[mode])
    return grown if mode == "circular" else crop(grown)
