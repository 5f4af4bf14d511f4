"""``Flatten`` and ``Unflatten``: reshape modules with torch's arguments and ``repr``."""

from __future__ import annotations

from collections.abc import Sequence

import jax

from funcnet.nn.module import Module


def _dim(dim: int, ndim: int) -> int | None:
    """``dim`` wrapped into ``[0, ndim)``, or None when out of range (a 0-d array counts as 1-d, as torch)."""
    ndim = max(ndim, 1)
    d = dim + ndim if dim < 0 else dim
    return d if 0 <= d < ndim else None


class Flatten(Module):
    """``torch.nn.Flatten(start_dim=1, end_dim=-1)``: merge dims ``start_dim..end_dim`` into one.

    ``[N, C, H, W]`` → ``[N, C·H·W]`` with the defaults. A 0-d input counts as 1-d and
    becomes ``[1]`` (with start_dim 0 or -1), as in torch.
    """

    def __init__(self, start_dim: int = 1, end_dim: int = -1) -> None:
        super().__init__()
        self.start_dim = start_dim
        self.end_dim = end_dim

    def forward(self, x: jax.Array) -> jax.Array:
        start, end = _dim(self.start_dim, x.ndim), _dim(self.end_dim, x.ndim)
        if start is None or end is None or start > end:
            raise self.shape_error(
                f"[...] with dims start_dim={self.start_dim} to end_dim={self.end_dim} in order", x.shape
            )
        if x.ndim == 0:
            return x.reshape(1)
        merged = 1
        for s in x.shape[start:end + 1]:
            merged *= s
        return x.reshape(x.shape[:start] + (merged,) + x.shape[end + 1:])

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class Unflatten(Module):
    """``torch.nn.Unflatten(dim, unflattened_size)``: split dim ``dim`` into ``unflattened_size``.

    One entry of ``unflattened_size`` may be -1 (inferred), as in torch.
    """

    def __init__(self, dim: int, unflattened_size: Sequence[int]) -> None:
        super().__init__()
        if not isinstance(unflattened_size, (tuple, list)):
            raise TypeError(
                f"unflattened_size must be a tuple of ints, but found type {type(unflattened_size).__name__}"
            )
        for idx, elem in enumerate(unflattened_size):
            if not isinstance(elem, int):
                raise TypeError(
                    "unflattened_size must be tuple of ints, "
                    f"but found element of type {type(elem).__name__} at pos {idx}"
                )
        self.dim = dim
        self.unflattened_size = unflattened_size

    def forward(self, x: jax.Array) -> jax.Array:
        d = _dim(self.dim, x.ndim)
        sizes = tuple(self.unflattened_size)
        known = 1
        for s in sizes:
            known *= s if s != -1 else 1
        ok = d is not None and x.ndim > 0 and sizes.count(-1) <= 1
        if ok:
            n = x.shape[d]
            ok = (n == known) if -1 not in sizes else (known > 0 and n % known == 0)
        if not ok:
            where = "dim" if d is None else f"dim {d} of size {x.shape[d]}"
            raise self.shape_error(f"a {where} that splits into {sizes}", x.shape)
        if -1 in sizes:
            sizes = tuple(x.shape[d] // known if s == -1 else s for s in sizes)
        return x.reshape(x.shape[:d] + sizes + x.shape[d + 1:])

    def extra_repr(self) -> str:
        return f"dim={self.dim}, unflattened_size={self.unflattened_size}"
