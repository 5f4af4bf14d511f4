"""``make_grid`` and ``save_image``: torchvision.utils' picture helpers, on numpy/JAX arrays.

Same arguments, defaults and pixels as torchvision (current version, vision PR #2967:
normalisation divides by ``max(high - low, 1e-5)``). Inputs are NCHW float arrays
(JAX or numpy, or a list of CHW arrays); the grid is returned as a numpy array
(torchvision returns a tensor). These run eagerly in numpy: they are for
looking at data, not for ``jit``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import IO, Any

import numpy as np


def _as_array(tensor: Any) -> np.ndarray:
    if isinstance(tensor, (list, tuple)):
        tensor = np.stack([_as_array(t) for t in tensor], axis=0)
    if hasattr(tensor, "detach"):  # a torch tensor
        tensor = tensor.detach().cpu().numpy()
    array = np.array(tensor, copy=True)
    if not np.issubdtype(array.dtype, np.floating):
        array = array.astype(np.float32)
    return array


def _normalize(img: np.ndarray, low: float, high: float) -> np.ndarray:
    """torchvision's ``norm_ip``: clamp to [low, high], then ``(x - low) / max(high - low, 1e-5)``."""
    dtype = img.dtype.type
    img = np.clip(img, dtype(low), dtype(high))
    return ((img - dtype(low)) / dtype(max(high - low, 1e-5))).astype(img.dtype)


def make_grid(
    tensor: Any,
    nrow: int = 8,
    padding: int = 2,
    normalize: bool = False,
    value_range: tuple[float, float] | None = None,
    scale_each: bool = False,
    pad_value: float = 0.0,
) -> np.ndarray:
    """``torchvision.utils.make_grid``: tile a batch of images into one ``[C, H', W']`` image.

    Args:
        tensor: ``[B, C, H, W]``, ``[C, H, W]``, ``[H, W]`` or a list of ``[C, H, W]``.
            Single-channel images are repeated to 3 channels.
        nrow: images per row of the grid.
        padding: pixels between images and around the grid.
        normalize: shift to [0, 1] by ``value_range`` (a tuple) or by the min/max of
            the batch (of each image when ``scale_each``).
        pad_value: the value of the padding.

    Returns:
        float numpy array ``[C, (H + padding) * rows + padding, (W + padding) * cols + padding]``;
        a single image (B == 1) is returned as ``[C, H, W]`` with no padding, as in torchvision.
    """
    array = _as_array(tensor)
    if array.ndim == 2:
        array = array[None]
    if array.ndim == 3:
        if array.shape[0] == 1:
            array = np.concatenate([array, array, array], axis=0)
        array = array[None]
    if array.ndim != 4:
        raise ValueError(f"make_grid: expected [B, C, H, W], [C, H, W] or [H, W], got shape {array.shape}")
    if array.shape[1] == 1:
        array = np.concatenate([array, array, array], axis=1)

    if normalize:
        if value_range is not None and not isinstance(value_range, tuple):
            raise TypeError("value_range has to be a tuple (min, max) if specified. min and max are numbers")

        def norm_range(t: np.ndarray) -> np.ndarray:
            if value_range is not None:
                return _normalize(t, value_range[0], value_range[1])
            return _normalize(t, float(t.min()), float(t.max()))

        if scale_each:
            array = np.stack([norm_range(t) for t in array], axis=0)
        else:
            array = norm_range(array)

    if array.shape[0] == 1:
        return array[0]
    nmaps, channels, h, w = array.shape
    xmaps = min(nrow, nmaps)
    ymaps = int(math.ceil(float(nmaps) / xmaps))
    height, width = h + padding, w + padding
    grid = np.full((channels, height * ymaps + padding, width * xmaps + padding), pad_value, dtype=array.dtype)
    for k in range(nmaps):
        y, x = divmod(k, xmaps)
        grid[:, y * height + padding : y * height + padding + h, x * width + padding : x * width + padding + w] = (
            array[k]
        )
    return grid


def to_uint8_hwc(grid: Any) -> np.ndarray:
    """torchvision's conversion to pixels: ``(x * 255 + 0.5).clamp(0, 255)`` truncated to uint8, HWC."""
    grid = np.asarray(grid)
    dtype = grid.dtype.type if np.issubdtype(grid.dtype, np.floating) else np.float32
    pixels = np.clip(grid.astype(dtype) * dtype(255) + dtype(0.5), 0, 255)
    return np.ascontiguousarray(pixels.transpose(1, 2, 0).astype(np.uint8))


def save_image(
    tensor: Any,
    fp: str | os.PathLike | IO[bytes],
    format: str | None = None,
    nrow: int = 8,
    padding: int = 2,
    normalize: bool = False,
    value_range: tuple[float, float] | None = None,
    scale_each: bool = False,
    pad_value: float = 0.0,
) -> None:
    """``torchvision.utils.save_image``: ``make_grid``, then pixels, then Pillow.

    Pixels are ``uint8(clamp(x * 255 + 0.5, 0, 255))`` (values in [0, 1] expected),
    saved as HWC (RGB for 3 channels). The format comes from ``format`` or the
    file extension (``.png``, ``.jpg``, ...), as ``PIL.Image.save``.
    """
    from PIL import Image  # optional dependency: pip install 'funcnet[vision]'

    grid = make_grid(
        tensor, nrow=nrow, padding=padding, normalize=normalize, value_range=value_range,
        scale_each=scale_each, pad_value=pad_value,
    )
    Image.fromarray(to_uint8_hwc(grid)).save(fp, format=format)


__all__: Sequence[str] = ["make_grid", "save_image", "to_uint8_hwc"]
