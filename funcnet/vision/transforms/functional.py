"""``torchvision.transforms.functional`` for per-sample image pipelines, on PIL images and numpy arrays.

Two kinds of image, as in torchvision:

- a ``PIL.Image.Image``: geometric and colour operations are the same Pillow calls torchvision's PIL
  path makes, so results are identical to ``torchvision.transforms.functional`` on that image;
- a numpy array ``[..., C, H, W]`` (uint8 or floating): torchvision's *tensor* semantics (uint8
  results are rounded or truncated exactly where torch rounds or truncates). Antialiased
  bilinear/bicubic resizing uses Pillow's float (``"F"``) resampler, the kernel torch's
  ``antialias=True`` path was ported from: uint8 results are within 1 gray level of torch's.

These run on the CPU in the data pipeline (decoding workers), so they use numpy and Pillow, never
JAX. Batch transforms on the device are in :mod:`funcnet.utils.data.transforms`.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from enum import Enum
from typing import Any

import numpy as np

try:
    from PIL import Image, ImageEnhance
except ImportError:  # Pillow is optional: only the PIL path needs it
    Image = ImageEnhance = None


class InterpolationMode(Enum):
    """torchvision's interpolation modes (same names and values)."""

    NEAREST = "nearest"
    NEAREST_EXACT = "nearest-exact"
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"
    BOX = "box"
    HAMMING = "hamming"
    LANCZOS = "lanczos"


def _mode(interpolation: Any) -> InterpolationMode:
    """Accepts funcnet's or torchvision's ``InterpolationMode`` (anything with that ``.value``) or a name."""
    value = getattr(interpolation, "value", interpolation)
    try:
        return InterpolationMode(value)
    except ValueError:
        raise ValueError(f"unknown interpolation {interpolation!r}; expected one of "
                         f"{[m.value for m in InterpolationMode]}") from None


def _pil_filter(mode: InterpolationMode) -> int:
    return {
        InterpolationMode.NEAREST: Image.Resampling.NEAREST,
        InterpolationMode.BILINEAR: Image.Resampling.BILINEAR,
        InterpolationMode.BICUBIC: Image.Resampling.BICUBIC,
        InterpolationMode.BOX: Image.Resampling.BOX,
        InterpolationMode.HAMMING: Image.Resampling.HAMMING,
        InterpolationMode.LANCZOS: Image.Resampling.LANCZOS,
    }[mode]


def is_pil(img: Any) -> bool:
    return Image is not None and isinstance(img, Image.Image)


def _check_image(img: Any, name: str) -> None:
    if is_pil(img):
        return
    if not isinstance(img, np.ndarray):
        raise TypeError(f"{name}: expected a PIL image or a numpy array [..., C, H, W], got {type(img).__name__}")
    if img.ndim < 2:
        raise ValueError(f"{name}: expected an array [..., C, H, W] (or [H, W]), got shape {img.shape}")


def get_dimensions(img: Any) -> list[int]:
    """``[channels, height, width]`` of a PIL image or an array ``[..., C, H, W]``."""
    _check_image(img, "get_dimensions")
    if is_pil(img):
        return [len(img.getbands()), img.height, img.width]
    c = 1 if img.ndim == 2 else img.shape[-3]
    return [c, img.shape[-2], img.shape[-1]]


def _max_value(dtype: np.dtype) -> float:
    return float(np.iinfo(dtype).max) if np.issubdtype(dtype, np.integer) else 1.0


def _cast_out(x: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Float result -> ``dtype``: integers are rounded (half to even, as ``torch.round``) first."""
    if np.issubdtype(dtype, np.integer):
        return np.round(x).astype(dtype)
    return x.astype(dtype, copy=False)


# ---------------------------------------------------------------------------------- conversion
def to_tensor(pic: Any) -> np.ndarray:
    """PIL image or ``uint8[H, W, C]`` array -> ``float32[C, H, W]`` in ``[0, 1]`` (``ToTensor``).

    Non-uint8 arrays keep their values and dtype (as torchvision)."""
    if is_pil(pic):
        if pic.mode in ("I", "I;16", "F"):
            raise TypeError(f"to_tensor: PIL mode {pic.mode!r} is not supported; convert to 'L' or 'RGB'")
        arr = np.asarray(pic)
        if pic.mode == "1":
            arr = arr.astype(np.uint8) * 255
    elif isinstance(pic, np.ndarray):
        if pic.ndim not in (2, 3):
            raise ValueError(f"to_tensor: pic should be 2 or 3 dimensional [H, W(, C)], got {pic.ndim} dimensions")
        arr = pic
    else:
        raise TypeError(f"to_tensor: pic should be a PIL image or a numpy array, got {type(pic).__name__}")
    if arr.ndim == 2:
        arr = arr[:, :, None]
    chw = arr.transpose(2, 0, 1)
    if chw.dtype == np.uint8:  # one pass: cast and scale into a C-contiguous [C, H, W] (same bits as two)
        return np.divide(chw, np.float32(255), out=np.empty(chw.shape, np.float32), dtype=np.float32)
    return np.ascontiguousarray(chw)


def pil_to_tensor(pic: Any) -> np.ndarray:
    """PIL image -> array ``[C, H, W]`` of its own dtype (``PILToTensor``: no scaling)."""
    if not is_pil(pic):
        raise TypeError(f"pil_to_tensor: pic should be a PIL image, got {type(pic).__name__}")
    arr = np.asarray(pic)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


def to_pil_image(pic: np.ndarray) -> Any:
    """``uint8[C, H, W]`` (C in 1, 3, 4) or ``[H, W]`` -> PIL image (the uint8 case of ``ToPILImage``)."""
    if not isinstance(pic, np.ndarray) or pic.dtype != np.uint8:
        raise TypeError(f"to_pil_image: expected a uint8 numpy array, got "
                        f"{type(pic).__name__} {getattr(pic, 'dtype', '')}")
    hwc = pic if pic.ndim == 2 else np.ascontiguousarray(pic.transpose(1, 2, 0))
    if hwc.ndim == 3 and hwc.shape[2] == 1:
        hwc = hwc[:, :, 0]
    return Image.fromarray(hwc)


def normalize(tensor: np.ndarray, mean: Sequence[float], std: Sequence[float], inplace: bool = False) -> np.ndarray:
    """``(x − mean[c]) / std[c]`` per channel of a float array ``[..., C, H, W]`` (``Normalize``)."""
    if not isinstance(tensor, np.ndarray) or not np.issubdtype(tensor.dtype, np.floating):
        raise TypeError(f"normalize: expected a float numpy array [..., C, H, W] (use ToTensor first), got "
                        f"{type(tensor).__name__} {getattr(tensor, 'dtype', '')}")
    if tensor.ndim < 3:
        raise ValueError(f"normalize: expected an array [..., C, H, W], got shape {tensor.shape}")
    mean = np.asarray(mean, dtype=tensor.dtype)
    std = np.asarray(std, dtype=tensor.dtype)
    if (std == 0).any():
        raise ValueError(f"normalize: std evaluated to zero after conversion to {tensor.dtype}, leading to "
                         f"division by zero.")
    mean = mean.reshape(-1, 1, 1) if mean.ndim == 1 else mean
    std = std.reshape(-1, 1, 1) if std.ndim == 1 else std
    out = tensor if inplace else np.empty_like(tensor)
    np.subtract(tensor, mean, out=out)
    return np.divide(out, std, out=out)


# ---------------------------------------------------------------------------------- geometry
def _output_size(h: int, w: int, size: Any, max_size: int | None) -> tuple[int, int]:
    """torchvision's rule: an int (or 1-list) sets the shorter edge, keeping the aspect ratio."""
    if isinstance(size, numbers.Integral):
        size = [int(size)]
    size = list(size)
    if len(size) not in (1, 2):
        raise ValueError(f"Size must be an int or a 1 or 2 element tuple/list, not a {len(size)} element tuple/list")
    if max_size is not None and len(size) != 1:
        raise ValueError("max_size should only be passed if size specifies the length of the smaller edge, "
                         "i.e. size should be an int or a sequence of length 1")
    if len(size) == 2:
        return int(size[0]), int(size[1])
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = size[0], int(size[0] * long / short)
    if max_size is not None:
        if max_size <= size[0]:
            raise ValueError(f"max_size = {max_size} must be strictly greater than the requested size for the "
                             f"smaller edge size = {size}")
        if new_long > max_size:
            new_short, new_long = int(max_size * new_short / new_long), max_size
    new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    return new_h, new_w


def _nearest_index(out: int, inp: int) -> np.ndarray:
    """torch's legacy ``mode="nearest"`` source index: ``min(floor(i * (in / out)), in − 1)`` in float32."""
    if out == inp:
        return np.arange(out)
    if out == 2 * inp:
        return np.arange(out) >> 1
    scale = np.float32(inp) / np.float32(out)
    return np.minimum(np.floor(np.arange(out, dtype=np.float32) * scale).astype(np.int64), inp - 1)


def _linear_taps(out: int, inp: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """torch's ``align_corners=False`` bilinear taps (no antialias): ``(i0, i1, weight of i1)``."""
    scale = np.float32(inp) / np.float32(out)
    src = np.maximum(scale * (np.arange(out, dtype=np.float32) + np.float32(0.5)) - np.float32(0.5), np.float32(0))
    i0 = np.minimum(src.astype(np.int64), inp - 1)
    i1 = np.minimum(i0 + 1, inp - 1)
    return i0, i1, (src - i0).astype(np.float32)


def _resize_array(img: np.ndarray, oh: int, ow: int, mode: InterpolationMode, antialias: bool) -> np.ndarray:
    *lead, h, w = img.shape
    if mode == InterpolationMode.NEAREST:
        return img[..., _nearest_index(oh, h)[:, None], _nearest_index(ow, w)[None, :]]
    if mode not in (InterpolationMode.BILINEAR, InterpolationMode.BICUBIC):
        raise ValueError(f"resize: interpolation {mode.value!r} is not supported for arrays (torchvision's tensor "
                         f"path supports nearest, bilinear, bicubic)")
    compute = np.float64 if img.dtype == np.float64 else np.float32
    planes = img.reshape(-1, h, w).astype(np.float32, copy=False)
    if antialias:
        # torch's antialiased kernels are a port of Pillow's resampler; Pillow's "F" mode runs it in float.
        resample = _pil_filter(mode)
        out = np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(p)).resize((ow, oh), resample))
                        for p in planes]) if len(planes) else np.zeros((0, oh, ow), np.float32)
    elif mode == InterpolationMode.BILINEAR:
        y0, y1, wy = _linear_taps(oh, h)
        x0, x1, wx = _linear_taps(ow, w)
        rows = planes[:, y0] * (1 - wy)[:, None] + planes[:, y1] * wy[:, None]
        out = rows[:, :, x0] * (1 - wx) + rows[:, :, x1] * wx
    else:
        raise NotImplementedError("resize: bicubic without antialias (torch's a=-0.75 kernel) is not implemented "
                                  "for arrays; use antialias=True or a PIL image")
    out = out.reshape(*lead, oh, ow).astype(compute, copy=False)
    if mode == InterpolationMode.BICUBIC and img.dtype == np.uint8:
        out = np.clip(out, 0, 255)
    return _cast_out(out, img.dtype)


def resize(img: Any, size: Any, interpolation: Any = InterpolationMode.BILINEAR, max_size: int | None = None,
           antialias: bool | None = True) -> Any:
    """Resize to ``size`` (``(h, w)``, or an int for the shorter edge) (``torchvision ... resize``).

    PIL images use Pillow's resampler (always antialiased, as torchvision). Arrays follow the tensor
    path: ``antialias`` applies to bilinear/bicubic; nearest is torch's legacy ``"nearest"``."""
    _check_image(img, "resize")
    mode = _mode(interpolation)
    _, h, w = get_dimensions(img)
    oh, ow = _output_size(h, w, size, max_size)
    if (oh, ow) == (h, w):
        return img
    if is_pil(img):
        return img.resize((ow, oh), _pil_filter(mode))
    return _resize_array(img, oh, ow, mode, bool(antialias))


def _parse_padding(padding: Any) -> list[int]:
    """torchvision padding -> ``[left, top, right, bottom]``."""
    if isinstance(padding, numbers.Integral):
        return [int(padding)] * 4
    if not isinstance(padding, (list, tuple)) or len(padding) not in (1, 2, 4):
        raise ValueError(f"Padding must be an int or a 1, 2, or 4 element tuple, not {padding!r}")
    p = [int(v) for v in padding]
    if len(p) == 1:
        return p * 4
    if len(p) == 2:
        return [p[0], p[1], p[0], p[1]]
    return p


_NP_PAD_MODES = {"constant": "constant", "edge": "edge", "reflect": "reflect", "symmetric": "symmetric"}


def pad(img: Any, padding: Any, fill: float | Sequence[float] = 0, padding_mode: str = "constant") -> Any:
    """Pad the borders (``[left, top, right, bottom]`` rule) with ``padding_mode`` in
    ``constant``/``edge``/``reflect``/``symmetric`` (``torchvision ... pad``); negative padding crops."""
    _check_image(img, "pad")
    if padding_mode not in _NP_PAD_MODES:
        raise ValueError(f"Padding mode should be either constant, edge, reflect or symmetric, got {padding_mode!r}")
    left, top, right, bottom = _parse_padding(padding)
    pil = is_pil(img)
    arr = np.asarray(img)
    if pil:  # HWC or HW -> work as [..., H, W] with channels last moved first
        arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    h, w = arr.shape[-2:]
    crop_t, crop_l, crop_b, crop_r = (max(-v, 0) for v in (top, left, bottom, right))
    arr = arr[..., crop_t:h - crop_b, crop_l:w - crop_r]
    widths = [(0, 0)] * (arr.ndim - 2) + [(max(top, 0), max(bottom, 0)), (max(left, 0), max(right, 0))]
    if padding_mode == "constant":
        if isinstance(fill, (list, tuple)) and len(fill) > 1:
            out = np.stack([np.pad(arr[..., c, :, :], widths[1:] if arr.ndim > 2 else widths, constant_values=f)
                            for c, f in enumerate(fill)], axis=-3)
        else:
            f = fill[0] if isinstance(fill, (list, tuple)) else (0 if fill is None else fill)
            out = np.pad(arr, widths, constant_values=f)
    else:
        out = np.pad(arr, widths, mode=_NP_PAD_MODES[padding_mode])
    if pil:
        out = out[0] if img.mode in ("L", "1", "P", "I", "F") else out.transpose(1, 2, 0)
        result = Image.fromarray(np.ascontiguousarray(out))
        if img.mode == "P":
            result.putpalette(img.getpalette())
        return result
    return out


def crop(img: Any, top: int, left: int, height: int, width: int) -> Any:
    """The ``height × width`` region at ``(top, left)``; outside the image is zero (``crop``)."""
    _check_image(img, "crop")
    if is_pil(img):
        return img.crop((left, top, left + width, top + height))
    _, h, w = get_dimensions(img)
    right, bottom = left + width, top + height
    if left < 0 or top < 0 or right > w or bottom > h:
        ltrb = [max(-left + min(0, right), 0), max(-top + min(0, bottom), 0),
                max(right - max(w, left), 0), max(bottom - max(h, top), 0)]
        return pad(img[..., max(top, 0):bottom, max(left, 0):right], ltrb, fill=0)
    return img[..., top:bottom, left:right]


def center_crop(img: Any, output_size: int | Sequence[int]) -> Any:
    """The central ``output_size`` region, zero-padding first when the image is smaller (``center_crop``)."""
    if isinstance(output_size, numbers.Integral):
        output_size = (int(output_size), int(output_size))
    elif len(output_size) == 1:
        output_size = (output_size[0], output_size[0])
    _, h, w = get_dimensions(img)
    ch, cw = output_size
    if cw > w or ch > h:
        ltrb = [(cw - w) // 2 if cw > w else 0, (ch - h) // 2 if ch > h else 0,
                (cw - w + 1) // 2 if cw > w else 0, (ch - h + 1) // 2 if ch > h else 0]
        img = pad(img, ltrb, fill=0)
        _, h, w = get_dimensions(img)
        if cw == w and ch == h:
            return img
    return crop(img, int(round((h - ch) / 2.0)), int(round((w - cw) / 2.0)), ch, cw)


def resized_crop(img: Any, top: int, left: int, height: int, width: int, size: Any,
                 interpolation: Any = InterpolationMode.BILINEAR, antialias: bool | None = True) -> Any:
    """:func:`crop` then :func:`resize` (``resized_crop``)."""
    return resize(crop(img, top, left, height, width), size, interpolation, antialias=antialias)


def hflip(img: Any) -> Any:
    """Mirror left-right (``hflip``)."""
    _check_image(img, "hflip")
    if is_pil(img):
        return img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return img[..., ::-1]


def vflip(img: Any) -> Any:
    """Mirror top-bottom (``vflip``)."""
    _check_image(img, "vflip")
    if is_pil(img):
        return img.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
    return img[..., ::-1, :]


def _inverse_rotation_matrix(center: Sequence[float], angle: float) -> list[float]:
    """torchvision's ``_get_inverse_affine_matrix(center, angle, [0, 0], 1, [0, 0])`` (no shear)."""
    rot = math.radians(angle)
    a, b, c, d = math.cos(rot), -math.sin(rot), math.sin(rot), math.cos(rot)
    cx, cy = center
    m = [d, -b, 0.0, -c, a, 0.0]
    m[2] += m[0] * -cx + m[1] * -cy + cx
    m[5] += m[3] * -cx + m[4] * -cy + cy
    return m


def _rotated_size(m: list[float], w: int, h: int) -> tuple[int, int]:
    pts = np.array([[-0.5 * w, -0.5 * h, 1.0], [-0.5 * w, 0.5 * h, 1.0], [0.5 * w, 0.5 * h, 1.0],
                    [0.5 * w, -0.5 * h, 1.0]], np.float32)
    new = pts @ np.array(m, np.float32).reshape(2, 3).T
    lo = new.min(axis=0) + np.array([w * 0.5, h * 0.5], np.float32)
    hi = new.max(axis=0) + np.array([w * 0.5, h * 0.5], np.float32)
    tol = 1e-4  # as torchvision: drop float noise before ceil/floor
    size = np.ceil(np.trunc(hi / tol) * tol) - np.floor(np.trunc(lo / tol) * tol)
    return int(size[0]), int(size[1])


def _grid_sample(img: np.ndarray, gx: np.ndarray, gy: np.ndarray, nearest: bool) -> np.ndarray:
    """torch ``grid_sample(align_corners=False, padding_mode="zeros")`` of ``[P, H, W]`` at normalized
    coordinates ``gx, gy`` ``[oh, ow]``."""
    _, h, w = img.shape
    ix = ((gx + 1) * w - 1) / 2
    iy = ((gy + 1) * h - 1) / 2
    if nearest:
        xn, yn = np.rint(ix).astype(np.int64), np.rint(iy).astype(np.int64)
        ok = (xn >= 0) & (xn < w) & (yn >= 0) & (yn < h)
        return np.where(ok, img[:, np.clip(yn, 0, h - 1), np.clip(xn, 0, w - 1)], 0).astype(img.dtype)
    x0, y0 = np.floor(ix), np.floor(iy)
    out = np.zeros((img.shape[0], *gx.shape), img.dtype)
    for dy in (0, 1):
        for dx in (0, 1):
            xs, ys = x0 + dx, y0 + dy
            wgt = (1 - np.abs(ix - xs)) * (1 - np.abs(iy - ys))
            ok = (xs >= 0) & (xs < w) & (ys >= 0) & (ys < h)
            xi, yi = np.clip(xs, 0, w - 1).astype(np.int64), np.clip(ys, 0, h - 1).astype(np.int64)
            out += np.where(ok, img[:, yi, xi] * wgt.astype(img.dtype), 0)
    return out


def rotate(img: Any, angle: float, interpolation: Any = InterpolationMode.NEAREST, expand: bool = False,
           center: Sequence[int] | None = None, fill: float | Sequence[float] | None = None) -> Any:
    """Rotate counter-clockwise by ``angle`` degrees about ``center`` (``rotate``; nearest or bilinear)."""
    _check_image(img, "rotate")
    mode = _mode(interpolation)
    if mode not in (InterpolationMode.NEAREST, InterpolationMode.BILINEAR):
        raise ValueError(f"rotate: interpolation must be nearest or bilinear, got {mode.value!r}")
    if not isinstance(angle, (int, float)):
        raise TypeError(f"rotate: angle should be int or float, got {type(angle).__name__}")
    if is_pil(img):
        bands = len(img.getbands())
        f = 0 if fill is None else fill
        if isinstance(f, (list, tuple)):
            f = tuple(f) * bands if len(f) == 1 else tuple(f)
        elif bands > 1:
            f = (f,) * bands
        if img.mode != "F":
            f = tuple(int(v) for v in f) if isinstance(f, tuple) else int(f)
        return img.rotate(angle, _pil_filter(mode), expand, center, fillcolor=f)
    c, h, w = get_dimensions(img)
    center_f = [0.0, 0.0] if center is None else [1.0 * (cc - s * 0.5) for cc, s in zip(center, [w, h])]
    m = _inverse_rotation_matrix(center_f, -angle)
    ow, oh = _rotated_size(m, w, h) if expand else (w, h)
    dtype = img.dtype if np.issubdtype(img.dtype, np.floating) else np.float32
    theta = np.array(m, dtype).reshape(2, 3)
    xs = np.linspace(-ow * 0.5 + 0.5, ow * 0.5 - 0.5, ow).astype(dtype)
    ys = np.linspace(-oh * 0.5 + 0.5, oh * 0.5 - 0.5, oh).astype(dtype)
    scale = np.array([0.5 * w, 0.5 * h], dtype)
    rt = theta.T / scale  # [3, 2]
    gx = xs[None, :] * rt[0, 0] + ys[:, None] * rt[1, 0] + rt[2, 0]
    gy = xs[None, :] * rt[0, 1] + ys[:, None] * rt[1, 1] + rt[2, 1]
    *lead, _, _ = img.shape
    planes = img.reshape(-1, h, w).astype(dtype, copy=False)
    nearest = mode == InterpolationMode.NEAREST
    if fill is None:
        out = _grid_sample(planes, gx, gy, nearest)
    else:  # torchvision samples a ones-mask alongside and blends the fill colour in where it falls off
        mask = _grid_sample(np.ones((1, h, w), dtype), gx, gy, nearest)
        out = _grid_sample(planes, gx, gy, nearest).reshape(-1, c, oh, ow)
        fills = np.asarray(fill if isinstance(fill, (list, tuple)) else [fill], dtype)
        fills = np.broadcast_to(fills.reshape(-1, 1, 1), (c, 1, 1)) if fills.size in (1, c) else fills
        if nearest:
            out = np.where(mask < 0.5, fills, out)
        else:
            out = out * mask + (1.0 - mask) * fills
    return _cast_out(out.reshape(*lead, oh, ow), img.dtype)


# ---------------------------------------------------------------------------------- colour
def _check_factor(name: str, value: float) -> None:
    if value < 0:
        raise ValueError(f"{name} ({value}) is not non-negative.")


def _blend(img1: np.ndarray, img2: Any, ratio: float) -> np.ndarray:
    """torch's ``(r·a + (1−r)·b).clamp(0, max).to(dtype)`` (float32 compute; uint8 truncates)."""
    dtype = img1.dtype
    f = np.float64 if dtype == np.float64 else np.float32
    out = f(ratio) * img1.astype(f, copy=False) + f(1.0 - ratio) * np.asarray(img2, f)
    return np.clip(out, 0, _max_value(dtype)).astype(dtype)


def rgb_to_grayscale(img: Any, num_output_channels: int = 1) -> Any:
    """ITU-R 601 luma ``0.2989 R + 0.587 G + 0.114 B`` (``rgb_to_grayscale``)."""
    _check_image(img, "rgb_to_grayscale")
    if is_pil(img):
        gray = img.convert("L")
        return gray if num_output_channels == 1 else Image.merge("RGB", [gray] * 3)
    if img.shape[-3] == 3:
        f = np.float64 if img.dtype == np.float64 else np.float32
        r, g, b = (img[..., i, :, :].astype(f, copy=False) for i in range(3))
        gray = (f(0.2989) * r + f(0.587) * g + f(0.114) * b).astype(img.dtype)[..., None, :, :]
    else:
        gray = img.copy()
    return np.broadcast_to(gray, img.shape).copy() if num_output_channels == 3 else gray


def adjust_brightness(img: Any, brightness_factor: float) -> Any:
    """Multiply by ``brightness_factor`` (``adjust_brightness``)."""
    _check_factor("brightness_factor", brightness_factor)
    if is_pil(img):
        return ImageEnhance.Brightness(img).enhance(brightness_factor)
    return _blend(img, 0.0, brightness_factor)


def adjust_contrast(img: Any, contrast_factor: float) -> Any:
    """Blend with the mean gray level (``adjust_contrast``)."""
    _check_factor("contrast_factor", contrast_factor)
    if is_pil(img):
        return ImageEnhance.Contrast(img).enhance(contrast_factor)
    f = img.dtype if np.issubdtype(img.dtype, np.floating) else np.float32
    gray = rgb_to_grayscale(img) if img.shape[-3] == 3 else img
    mean = gray.astype(f).mean(axis=(-3, -2, -1), keepdims=True, dtype=f)
    return _blend(img, mean, contrast_factor)


def adjust_saturation(img: Any, saturation_factor: float) -> Any:
    """Blend with the grayscale image (``adjust_saturation``)."""
    _check_factor("saturation_factor", saturation_factor)
    if is_pil(img):
        return ImageEnhance.Color(img).enhance(saturation_factor)
    if img.shape[-3] == 1:
        return img
    return _blend(img, rgb_to_grayscale(img), saturation_factor)


def _rgb2hsv(img: np.ndarray) -> np.ndarray:
    r, g, b = img[..., 0, :, :], img[..., 1, :, :], img[..., 2, :, :]
    maxc, minc = img.max(axis=-3), img.min(axis=-3)
    eqc = maxc == minc
    cr = maxc - minc
    s = cr / np.where(eqc, 1, maxc)
    div = np.where(eqc, 1, cr)
    rc, gc, bc = (maxc - r) / div, (maxc - g) / div, (maxc - b) / div
    hr = (maxc == r) * (bc - gc)
    hg = ((maxc == g) & (maxc != r)) * (2.0 + rc - bc)
    hb = ((maxc != g) & (maxc != r)) * (4.0 + gc - rc)
    h = np.fmod((hr + hg + hb) / 6.0 + 1.0, 1.0)
    return np.stack((h, s, maxc), axis=-3).astype(img.dtype)


def _hsv2rgb(img: np.ndarray) -> np.ndarray:
    h, s, v = img[..., 0, :, :], img[..., 1, :, :], img[..., 2, :, :]
    i = np.floor(h * 6.0)
    f = h * 6.0 - i
    i = i.astype(np.int32) % 6
    p = np.clip(v * (1.0 - s), 0.0, 1.0)
    q = np.clip(v * (1.0 - s * f), 0.0, 1.0)
    t = np.clip(v * (1.0 - s * (1.0 - f)), 0.0, 1.0)
    table = np.stack([np.stack(c, axis=0) for c in ((v, q, p, p, t, v), (t, v, v, q, p, p), (p, p, t, v, v, q))])
    return np.take_along_axis(table, i[None, None], axis=1)[:, 0].astype(img.dtype).reshape(img.shape)


def _to_float(img: np.ndarray) -> np.ndarray:
    return img.astype(np.float32) / np.float32(255) if img.dtype == np.uint8 else img


def _from_float(img: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """torchvision ``convert_image_dtype`` float -> uint8: ``(x · 255.999).to(uint8)``."""
    if dtype == np.uint8:
        return (img * np.float32(255 + 1.0 - 1e-3)).astype(np.uint8)
    return img


def adjust_hue(img: Any, hue_factor: float) -> Any:
    """Rotate the hue by ``hue_factor`` turns, ``hue_factor`` in ``[-0.5, 0.5]`` (``adjust_hue``)."""
    if not -0.5 <= hue_factor <= 0.5:
        raise ValueError(f"hue_factor ({hue_factor}) is not in [-0.5, 0.5].")
    if is_pil(img):
        if img.mode in {"L", "1", "I", "F"}:
            return img
        h, s, v = img.convert("HSV").split()
        np_h = np.array(h, dtype=np.uint8)
        np_h += np.int32(hue_factor * 255).astype(np.uint8)  # wraps around, as intended
        return Image.merge("HSV", (Image.fromarray(np_h), s, v)).convert(img.mode)
    if img.shape[-3] == 1:
        return img
    lead = img.shape[:-3]
    x = _to_float(img).reshape(-1, *img.shape[-3:])
    hsv = np.stack([_rgb2hsv(p) for p in x])
    hsv[:, 0] = np.fmod(hsv[:, 0] + np.float32(hue_factor), 1.0)
    hsv[:, 0] = np.where(hsv[:, 0] < 0, hsv[:, 0] + 1.0, hsv[:, 0])  # Python-style modulo, as torch's %
    rgb = np.stack([_hsv2rgb(p) for p in hsv]).reshape(*lead, *img.shape[-3:])
    return _from_float(rgb, img.dtype)
