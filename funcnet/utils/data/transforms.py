"""Batch transforms: plain, composable, jit-able functions ``t(x, key) -> x`` on whole batches.

Each transform acts on one array of a batch (images ``[N, C, H, W]``, labels ``[N]``) and takes a
PRNG key (ignored by deterministic ones). :class:`PerField` routes transforms to the fields of a
``(inputs, targets)`` batch; :class:`Compose` chains transforms, giving each its own key
``fold_in(key, position)``.

The DataLoader calls ``transform(batch, key)`` with ``key = loader.batch_key(epoch, batch_index)``
(a pure function of ``(seed, epoch, batch_index)``), so augmentation is reproducible and is the
same in host iteration and in an on-device ``lax.scan`` that calls ``loader.batch_key`` itself.

torch correspondence: torchvision's ``Normalize``, ``RandomCrop(size, padding)``,
``RandomHorizontalFlip(p)`` and ``torch.nn.functional.one_hot`` — but on batches (every sample gets
its own random crop offset / flip) and driven by an explicit key instead of the global RNG.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp


def _require_key(key: Any, name: str) -> None:
    if key is None:
        raise ValueError(f"{name} is random and needs a PRNG key: call it as t(x, key)")


def _check_nchw(x: jax.Array, name: str) -> None:
    if x.ndim != 4:
        raise ValueError(f"{name}: expected a batch of images [N, C, H, W], got shape {tuple(x.shape)}")


def normalize(x: jax.Array, mean: Sequence[float], std: Sequence[float]) -> jax.Array:
    """``(x − mean[c]) / std[c]`` per channel of ``[N, C, H, W]`` (torchvision ``Normalize``)."""
    x = jnp.asarray(x)
    mean = jnp.asarray(mean, dtype=x.dtype).reshape(1, -1, *([1] * (x.ndim - 2)))
    std = jnp.asarray(std, dtype=x.dtype).reshape(1, -1, *([1] * (x.ndim - 2)))
    return (x - mean) / std


def random_crop(x: jax.Array, key: Any, size: int | tuple[int, int], padding: int = 0,
                fill: float = 0.0) -> jax.Array:
    """Zero-pad ``[N, C, H, W]`` by ``padding`` on each side, then crop each sample to ``size`` at its
    own uniformly random offset (torchvision ``RandomCrop(size, padding, fill)``, constant mode)."""
    _require_key(key, "random_crop")
    x = jnp.asarray(x)
    _check_nchw(x, "random_crop")
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    if padding:
        x = jnp.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)), constant_values=fill)
    n, c, hp, wp = x.shape
    if h > hp or w > wp:
        raise ValueError(f"random_crop: crop size {(h, w)} is larger than the padded image {(hp, wp)}")
    ki, kj = jax.random.split(key)
    top = jax.random.randint(ki, (n,), 0, hp - h + 1)
    left = jax.random.randint(kj, (n,), 0, wp - w + 1)
    crop = lambda img, i, j: jax.lax.dynamic_slice(img, (0, i, j), (c, h, w))
    return jax.vmap(crop)(x, top, left)


def random_horizontal_flip(x: jax.Array, key: Any, p: float = 0.5) -> jax.Array:
    """Flip each sample of ``[N, …, W]`` left-right with probability ``p`` (``RandomHorizontalFlip``)."""
    _require_key(key, "random_horizontal_flip")
    x = jnp.asarray(x)
    flip = jax.random.bernoulli(key, p, (x.shape[0],)).reshape((-1,) + (1,) * (x.ndim - 1))
    return jnp.where(flip, jnp.flip(x, axis=-1), x)


def one_hot(y: jax.Array, num_classes: int, dtype: Any = jnp.float32) -> jax.Array:
    """Labels ``[N]`` -> ``[N, num_classes]`` (``torch.nn.functional.one_hot``, but float32 by default
    since it usually feeds a loss; pass ``dtype=jnp.int32`` for torch's integer result)."""
    return jax.nn.one_hot(jnp.asarray(y), num_classes, dtype=dtype)


class Normalize:
    """``Normalize(mean, std)``: :func:`normalize` as a transform."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        self.mean, self.std = tuple(mean), tuple(std)

    def __call__(self, x: jax.Array, key: Any = None) -> jax.Array:
        return normalize(x, self.mean, self.std)

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean}, std={self.std})"


class RandomCrop:
    """``RandomCrop(size, padding=0, fill=0)``: :func:`random_crop` as a transform."""

    def __init__(self, size: int | tuple[int, int], padding: int = 0, fill: float = 0.0) -> None:
        self.size, self.padding, self.fill = size, padding, fill

    def __call__(self, x: jax.Array, key: Any = None) -> jax.Array:
        return random_crop(x, key, self.size, self.padding, self.fill)

    def __repr__(self) -> str:
        return f"RandomCrop(size={self.size}, padding={self.padding})"


class RandomHorizontalFlip:
    """``RandomHorizontalFlip(p=0.5)``: :func:`random_horizontal_flip` as a transform."""

    def __init__(self, p: float = 0.5) -> None:
        self.p = p

    def __call__(self, x: jax.Array, key: Any = None) -> jax.Array:
        return random_horizontal_flip(x, key, self.p)

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


class OneHot:
    """``OneHot(num_classes)``: :func:`one_hot` as a transform (for the targets field)."""

    def __init__(self, num_classes: int, dtype: Any = jnp.float32) -> None:
        self.num_classes, self.dtype = num_classes, dtype

    def __call__(self, y: jax.Array, key: Any = None) -> jax.Array:
        return one_hot(y, self.num_classes, self.dtype)

    def __repr__(self) -> str:
        return f"OneHot({self.num_classes})"


class Compose:
    """``Compose([t0, t1, …])``: apply in order; ``t_i`` gets ``fold_in(key, i)``."""

    def __init__(self, transforms: Sequence[Callable]) -> None:
        self.transforms = list(transforms)

    def __call__(self, x: Any, key: Any = None) -> Any:
        for i, t in enumerate(self.transforms):
            x = t(x, None if key is None else jax.random.fold_in(key, i))
        return x

    def __repr__(self) -> str:
        inner = "".join(f"\n    {t!r}," for t in self.transforms)
        return f"Compose([{inner}\n])"


class PerField:
    """Apply one transform per field of a batch: ``PerField(image_t, label_t)`` for ``(x, y)``
    tuples, ``PerField(image=…, label=…)`` for dict batches; ``None`` leaves a field unchanged.
    Field ``i`` (or key ``k``) gets ``fold_in(key, i)`` (or ``fold_in(key, i)`` with ``i`` its
    position among the keyword arguments)."""

    def __init__(self, *positional: Callable | None, **named: Callable | None) -> None:
        if positional and named:
            raise ValueError("PerField: give transforms by position (tuple batches) or by name (dict "
                             "batches), not both")
        self.positional, self.named = positional, named

    def _key(self, key: Any, i: int) -> Any:
        return None if key is None else jax.random.fold_in(key, i)

    def __call__(self, batch: Any, key: Any = None) -> Any:
        if self.named:
            if not isinstance(batch, dict):
                raise TypeError(f"PerField(**named) expects a dict batch, got {type(batch).__name__}")
            out = dict(batch)
            for i, (name, t) in enumerate(self.named.items()):
                if name not in batch:
                    raise KeyError(f"PerField: batch has no field {name!r}; fields are {list(batch)}")
                if t is not None:
                    out[name] = t(batch[name], self._key(key, i))
            return out
        if not isinstance(batch, (tuple, list)) or len(batch) < len(self.positional):
            raise TypeError(f"PerField with {len(self.positional)} transforms expects a tuple/list batch "
                            f"with at least that many fields, got {type(batch).__name__}")
        out = list(batch)
        for i, t in enumerate(self.positional):
            if t is not None:
                out[i] = t(batch[i], self._key(key, i))
        return type(batch)(out) if not hasattr(batch, "_fields") else type(batch)(*out)
