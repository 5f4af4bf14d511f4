"""``torchvision.transforms`` for per-sample image pipelines (``ImageFolder(transform=...)``).

Same names, arguments and semantics as torchvision's (v1) transforms, on PIL images and numpy arrays
``[..., C, H, W]`` (see :mod:`funcnet.vision.transforms.functional`). One difference, the JAX way:
**randomness is explicit**. A random transform is called as ``t(img, rng)`` with a
``numpy.random.Generator``; :class:`Compose` passes its ``rng`` to each member that takes one
(``takes_rng = True``) and calls other callables as ``t(img)``. ``ImageFolder`` calls its transform
with ``rng = default_rng((seed, epoch, index))``, so every sample's augmentation is a pure function
of ``(seed, epoch, index)``: reproducible, independent of the number of workers, resumable mid-epoch.
Calling a random transform without ``rng`` raises (there is no hidden global generator).

``get_params`` of each random transform takes the same ``rng`` and returns torchvision's parameters,
so the functional call can be reproduced (this is how the tests compare with torchvision).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from funcnet.vision.transforms import functional as F
from funcnet.vision.transforms.functional import InterpolationMode

__all__ = [
    "CenterCrop", "ColorJitter", "Compose", "InterpolationMode", "Lambda", "Normalize", "PILToTensor",
    "RandomCrop", "RandomHorizontalFlip", "RandomResizedCrop", "RandomRotation", "RandomVerticalFlip", "Resize",
    "ToTensor", "functional",
]

functional = F


def _pair(size: Any, name: str) -> tuple[int, int]:
    if isinstance(size, numbers.Integral):
        return int(size), int(size)
    if isinstance(size, Sequence) and len(size) == 1:
        return int(size[0]), int(size[0])
    if isinstance(size, Sequence) and len(size) == 2:
        return int(size[0]), int(size[1])
    raise ValueError(f"{name}: size should be an int or a sequence of 1 or 2 ints, got {size!r}")


def _require_rng(rng: Any, name: str) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"{name} is random and needs an explicit numpy Generator: call it as t(img, rng) "
                         f"(ImageFolder and Compose pass one); got rng={rng!r}")
    return rng


class Transform:
    """Base: ``t(img, rng=None)``; deterministic transforms ignore ``rng``."""

    takes_rng = True

    def __call__(self, img: Any, rng: np.random.Generator | None = None) -> Any:
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class Compose(Transform):
    """``Compose([t0, t1, …])``: apply in order, passing ``rng`` on to members with ``takes_rng``."""

    def __init__(self, transforms: Sequence[Callable]) -> None:
        self.transforms = list(transforms)

    def _steps(self) -> list[Callable]:
        """The transforms, with ``ToTensor`` + ``Normalize`` run as one step that normalizes the fresh
        array in place (the same arithmetic, one allocation and pass fewer)."""
        steps, ts, i = [], self.transforms, 0
        while i < len(ts):
            if type(ts[i]) is ToTensor and i + 1 < len(ts) and type(ts[i + 1]) is Normalize:
                steps.append(_ToTensorNormalize(ts[i + 1]))
                i += 2
            else:
                steps.append(ts[i])
                i += 1
        return steps

    def __call__(self, img: Any, rng: np.random.Generator | None = None) -> Any:
        steps = self.__dict__.get("_cached_steps")
        if steps is None or len(steps[0]) != len(self.transforms) or any(
                a is not b for a, b in zip(steps[0], self.transforms)):
            steps = (list(self.transforms), self._steps())
            self.__dict__["_cached_steps"] = steps
        for t in steps[1]:
            img = t(img, rng) if getattr(t, "takes_rng", False) else t(img)
        return img

    def __getstate__(self) -> dict:
        return {"transforms": self.transforms}

    def __repr__(self) -> str:
        inner = "".join(f"\n    {t!r}" for t in self.transforms)
        return f"Compose({inner}\n)"


class Lambda(Transform):
    """``Lambda(fn)``: ``fn(img)`` as a transform (``fn`` must be picklable for worker processes)."""

    def __init__(self, lambd: Callable[[Any], Any]) -> None:
        if not callable(lambd):
            raise TypeError(f"Lambda: argument should be callable, got {type(lambd).__name__}")
        self.lambd = lambd

    def __call__(self, img: Any, rng: np.random.Generator | None = None) -> Any:
        return self.lambd(img)


class ToTensor(Transform):
    """PIL image / ``uint8[H, W, C]`` -> ``float32[C, H, W]`` in ``[0, 1]`` (a numpy array)."""

    def __call__(self, pic: Any, rng: np.random.Generator | None = None) -> np.ndarray:
        return F.to_tensor(pic)


class PILToTensor(Transform):
    """PIL image -> ``[C, H, W]`` array of the image's dtype, unscaled."""

    def __call__(self, pic: Any, rng: np.random.Generator | None = None) -> np.ndarray:
        return F.pil_to_tensor(pic)


class Normalize(Transform):
    """``(x − mean[c]) / std[c]`` on a float ``[..., C, H, W]`` array."""

    def __init__(self, mean: Sequence[float], std: Sequence[float], inplace: bool = False) -> None:
        self.mean, self.std, self.inplace = list(mean), list(std), inplace

    def __call__(self, tensor: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        return F.normalize(tensor, self.mean, self.std, self.inplace)


class _ToTensorNormalize(Transform):
    def __init__(self, normalize: Normalize) -> None:
        self.normalize = normalize

    def __call__(self, pic: Any, rng: np.random.Generator | None = None) -> np.ndarray:
        fresh = F.is_pil(pic) or getattr(pic, "dtype", None) == np.uint8  # to_tensor made a new array
        return F.normalize(F.to_tensor(pic), self.normalize.mean, self.normalize.std, inplace=fresh)


class Resize(Transform):
    """Resize to ``size`` (``(h, w)``, or an int for the shorter edge)."""

    def __init__(self, size: Any, interpolation: Any = InterpolationMode.BILINEAR, max_size: int | None = None,
                 antialias: bool | None = True) -> None:
        if not isinstance(size, (int, Sequence)):
            raise TypeError(f"Resize: size should be int or sequence, got {type(size).__name__}")
        self.size, self.interpolation, self.max_size, self.antialias = size, F._mode(interpolation), max_size, antialias

    def __call__(self, img: Any, rng: np.random.Generator | None = None) -> Any:
        return F.resize(img, self.size, self.interpolation, self.max_size, self.antialias)


class CenterCrop(Transform):
    """The central ``size`` region (zero-padded when the image is smaller)."""

    def __init__(self, size: Any) -> None:
        self.size = _pair(size, "CenterCrop")

    def __call__(self, img: Any, rng: np.random.Generator | None = None) -> Any:
        return F.center_crop(img, self.size)


class RandomCrop(Transform):
    """A crop of ``size`` at a uniform position, after optional ``padding`` (modes as :func:`F.pad`)."""

    def __init__(self, size: Any, padding: Any = None, pad_if_needed: bool = False, fill: Any = 0,
                 padding_mode: str = "constant") -> None:
        self.size = _pair(size, "RandomCrop")
        self.padding, self.pad_if_needed, self.fill, self.padding_mode = padding, pad_if_needed, fill, padding_mode

    @staticmethod
    def get_params(img: Any, output_size: tuple[int, int], rng: np.random.Generator) -> tuple[int, int, int, int]:
        """``(top, left, height, width)`` of a random crop (torchvision's rule)."""
        _, h, w = F.get_dimensions(img)
        th, tw = output_size
        if h < th or w < tw:
            raise ValueError(f"Required crop size {(th, tw)} is larger than input image size {(h, w)}")
        if w == tw and h == th:
            return 0, 0, h, w
        return int(rng.integers(0, h - th + 1)), int(rng.integers(0, w - tw + 1)), th, tw

    def __call__(self, img: Any, rng: np.random.Generator | None = None) -> Any:
        rng = _require_rng(rng, "RandomCrop")
        if self.padding is not None:
            img = F.pad(img, self.padding, self.fill, self.padding_mode)
        _, h, w = F.get_dimensions(img)
        if self.pad_if_needed and w < self.size[1]:
            img = F.pad(img, [self.size[1] - w, 0], self.fill, self.padding_mode)
        if self.pad_if_needed and h < self.size[0]:
            img = F.pad(img, [0, self.size[0] - h], self.fill, self.padding_mode)
        top, left, th, tw = self.get_params(img, self.size, rng)
        return F.crop(img, top, left, th, tw)


class RandomResizedCrop(Transform):
    """A crop of random area fraction in ``scale`` and aspect ratio in ``ratio``, resized to ``size``."""

    def __init__(self, size: Any, scale: tuple[float, float] = (0.08, 1.0),
                 ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0),
                 interpolation: Any = InterpolationMode.BILINEAR, antialias: bool | None = True) -> None:
        self.size = _pair(size, "RandomResizedCrop")
        if scale[0] > scale[1] or ratio[0] > ratio[1]:
            raise ValueError(f"RandomResizedCrop: scale and ratio should be of kind (min, max), got "
                             f"scale={scale}, ratio={ratio}")
        self.scale, self.ratio = tuple(scale), tuple(ratio)
        self.interpolation, self.antialias = F._mode(interpolation), antialias

    @staticmethod
    def get_params(img: Any, scale: Sequence[float], ratio: Sequence[float],
                   rng: np.random.Generator) -> tuple[int, int, int, int]:
        """``(top, left, height, width)``: up to 10 draws of (area, log-uniform ratio); else the
        central crop clamped to ``ratio`` (torchvision's fallback)."""
        _, height, width = F.get_dimensions(img)
        area = height * width
        log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
        for _ in range(10):
            target_area = area * rng.uniform(scale[0], scale[1])
            aspect = math.exp(rng.uniform(log_lo, log_hi))
            w = int(round(math.sqrt(target_area * aspect)))
            h = int(round(math.sqrt(target_area / aspect)))
            if 0 < w <= width and 0 < h <= height:
                return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
        in_ratio = float(width) / float(height)
        if in_ratio < min(ratio):
            w, h = width, int(round(width / min(ratio)))
        elif in_ratio > max(ratio):
            h, w = height, int(round(height * max(ratio)))
        else:
            w, h = width, height
        return (height - h) // 2, (width - w) // 2, h, w

    def __call__(self, img: Any, rng: np.random.Generator | None = None) -> Any:
        rng = _require_rng(rng, "RandomResizedCrop")
        top, left, h, w = self.get_params(img, self.scale, self.ratio, rng)
        return F.resized_crop(img, top, left, h, w, self.size, self.interpolation, self.antialias)


class RandomHorizontalFlip(Transform):
    """Mirror left-right with probability ``p``."""

    def __init__(self, p: float = 0.5) -> None:
        self.p = p

    def __call__(self, img: Any, rng: np.random.Generator | None = None) -> Any:
        return F.hflip(img) if _require_rng(rng, "RandomHorizontalFlip").random() < self.p else img


class RandomVerticalFlip(Transform):
    """Mirror top-bottom with probability ``p``."""

    def __init__(self, p: float = 0.5) -> None:
        self.p = p

    def __call__(self, img: Any, rng: np.random.Generator | None = None) -> Any:
        return F.vflip(img) if _require_rng(rng, "RandomVerticalFlip").random() < self.p else img


def _jitter_range(value: Any, name: str, center: float = 1.0, bound: tuple[float, float] = (0, float("inf")),
                  clip_first_on_zero: bool = True) -> tuple[float, float] | None:
    """torchvision's ``ColorJitter._check_input``: a number ``v`` -> ``[center − v, center + v]``."""
    if isinstance(value, numbers.Number):
        if value < 0:
            raise ValueError(f"If {name} is a single number, it must be non negative.")
        value = [center - float(value), center + float(value)]
        if clip_first_on_zero:
            value[0] = max(value[0], 0.0)
    elif isinstance(value, (tuple, list)) and len(value) == 2:
        value = [float(value[0]), float(value[1])]
    else:
        raise TypeError(f"{name} should be a single number or a list/tuple with length 2.")
    if not bound[0] <= value[0] <= value[1] <= bound[1]:
        raise ValueError(f"{name} values should be between {bound}, but got {value}.")
    return None if value[0] == value[1] == center else (value[0], value[1])


class ColorJitter(Transform):
    """Random brightness, contrast, saturation and hue factors, applied in a random order."""

    def __init__(self, brightness: Any = 0, contrast: Any = 0, saturation: Any = 0, hue: Any = 0) -> None:
        self.brightness = _jitter_range(brightness, "brightness")
        self.contrast = _jitter_range(contrast, "contrast")
        self.saturation = _jitter_range(saturation, "saturation")
        self.hue = _jitter_range(hue, "hue", center=0, bound=(-0.5, 0.5), clip_first_on_zero=False)

    @staticmethod
    def get_params(brightness: Any, contrast: Any, saturation: Any, hue: Any,
                   rng: np.random.Generator) -> tuple[np.ndarray, float | None, float | None, float | None,
                                                      float | None]:
        """``(order, brightness, contrast, saturation, hue)``: a permutation of the four adjustments
        and each factor (``None`` where that jitter is off)."""
        order = rng.permutation(4)
        draw = lambda r: None if r is None else float(rng.uniform(r[0], r[1]))
        return order, draw(brightness), draw(contrast), draw(saturation), draw(hue)

    def __call__(self, img: Any, rng: np.random.Generator | None = None) -> Any:
        order, b, c, s, h = self.get_params(self.brightness, self.contrast, self.saturation, self.hue,
                                            _require_rng(rng, "ColorJitter"))
        ops = ((F.adjust_brightness, b), (F.adjust_contrast, c), (F.adjust_saturation, s), (F.adjust_hue, h))
        for i in order:
            fn, factor = ops[i]
            if factor is not None:
                img = fn(img, factor)
        return img


class RandomRotation(Transform):
    """Rotate by a uniform angle in ``degrees`` (``d`` means ``(−d, d)``); nearest or bilinear."""

    def __init__(self, degrees: Any, interpolation: Any = InterpolationMode.NEAREST, expand: bool = False,
                 center: Sequence[int] | None = None, fill: Any = 0) -> None:
        if isinstance(degrees, numbers.Number):
            if degrees < 0:
                raise ValueError("RandomRotation: if degrees is a single number, it must be positive.")
            degrees = (-float(degrees), float(degrees))
        elif not (isinstance(degrees, Sequence) and len(degrees) == 2):
            raise ValueError(f"RandomRotation: degrees should be a number or a sequence of 2, got {degrees!r}")
        self.degrees = (float(degrees[0]), float(degrees[1]))
        self.interpolation, self.expand, self.center, self.fill = F._mode(interpolation), expand, center, fill

    @staticmethod
    def get_params(degrees: Sequence[float], rng: np.random.Generator) -> float:
        return float(rng.uniform(degrees[0], degrees[1]))

    def __call__(self, img: Any, rng: np.random.Generator | None = None) -> Any:
        angle = self.get_params(self.degrees, _require_rng(rng, "RandomRotation"))
        fill = self.fill
        if isinstance(img, np.ndarray):  # torchvision: a fill colour per channel on the tensor path
            c = F.get_dimensions(img)[0]
            fill = [float(fill)] * c if isinstance(fill, (int, float)) else [float(f) for f in fill]
        return F.rotate(img, angle, self.interpolation, self.expand, self.center, fill)
