"""The apply context: what a module sees of the arrays while ``Module.apply`` runs.

Modules hold no arrays. ``Module.apply`` opens an :class:`ApplyContext` in a
``contextvars.ContextVar`` (so it is per thread and never leaks between calls),
and every attribute read of a declared parameter or buffer inside ``forward``
is answered from it. The context lives only for the duration of one (traced)
call, so nothing survives between calls.
"""

from __future__ import annotations

import contextvars
import zlib
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp

_ACTIVE: contextvars.ContextVar[ApplyContext | None] = contextvars.ContextVar(
    "funcnet_apply_context", default=None
)


def current() -> ApplyContext | None:
    """The context of the ``apply`` running in this thread, or None."""
    return _ACTIVE.get()


def path_hash(path: str) -> int:
    """A stable 31-bit integer for a dotted path (used to fold PRNG keys)."""
    return zlib.crc32(path.encode()) & 0x7FFFFFFF


def _lookup(tree: dict | None, path: tuple[str, ...]) -> dict:
    node = tree or {}
    for part in path:
        node = node.get(part, {}) if isinstance(node, dict) else {}
    return node


def _assign(tree: dict, path: tuple[str, ...], name: str, value: Any) -> None:
    node = tree
    for part in path:
        node = node.setdefault(part, {})
    node[name] = value


@dataclass
class ApplyContext:
    """State of one ``Module.apply`` call.

    ``paths`` maps ``id(module)`` to its path (a tuple of attribute names) from
    the root, so a module may be called from anywhere inside the root's forward.
    """

    root_name: str
    paths: dict[int, tuple[str, ...]]
    aliases: dict[tuple[tuple[str, ...], str], tuple[tuple[str, ...], str]]  # shared declarations
    params: dict
    buffers: dict | None
    key: jax.Array | None
    train: bool
    compute_dtype: Any = None
    eval_paths: tuple[tuple[str, ...], ...] = ()
    new_buffers: dict = field(default_factory=dict)
    rng_counts: dict[str, int] = field(default_factory=dict)
    stack: list = field(default_factory=list)

    def is_training(self, module) -> bool:
        """The train flag for ``module``: False inside a subtree listed in ``eval_paths``."""
        if not self.train or not self.eval_paths:
            return self.train
        path = self.path_of(module)
        return not any(path[: len(prefix)] == prefix for prefix in self.eval_paths)

    def display_path(self, path: tuple[str, ...]) -> str:
        return ".".join((self.root_name, *path))

    def path_of(self, module) -> tuple[str, ...]:
        try:
            return self.paths[id(module)]
        except KeyError:
            raise RuntimeError(
                f"{type(module).__name__} was called inside {self.root_name}.apply but is not "
                f"a submodule of {self.root_name}; assign it as an attribute in __init__ "
                f"(self.name = {type(module).__name__}(...)) so its parameters have a name"
            ) from None

    def _location(self, module, name: str) -> tuple[tuple[str, ...], str]:
        """Where ``module.name`` lives in the trees: a tied parameter lives at its first name."""
        path = self.path_of(module)
        return self.aliases.get((path, name), (path, name)) if self.aliases else (path, name)

    def param(self, module, name: str) -> jax.Array:
        path, name = self._location(module, name)
        node = _lookup(self.params, path)
        if name not in node:
            where = ".".join((*path, name))
            raise KeyError(
                f"{self.display_path(path)} ({type(module).__name__}) needs parameter "
                f"'{where}', which is not in the params passed to apply; "
                f"pass the params returned by {self.root_name}.init(key)"
            )
        value = node[name]
        if self.compute_dtype is not None and jnp.issubdtype(value.dtype, jnp.floating):
            value = value.astype(self.compute_dtype)
        return value

    def buffer(self, module, name: str) -> jax.Array | None:
        path, name = self._location(module, name)
        updated = _lookup(self.new_buffers, path)
        if name in updated:
            return updated[name]
        node = _lookup(self.buffers, path)
        if name not in node:
            where = ".".join((*path, name))
            raise KeyError(
                f"{self.display_path(path)} ({type(module).__name__}) needs buffer "
                f"'{where}'; pass buffers=... to apply (the second value of "
                f"{self.root_name}.init(key))"
            )
        return node[name]

    def set_buffer(self, module, name: str, value: jax.Array) -> None:
        path, name = self._location(module, name)
        _assign(self.new_buffers, path, name, value)

    def make_rng(self, module) -> jax.Array:
        path = ".".join(self.path_of(module))
        if self.key is None:
            raise ValueError(
                f"{self.display_path(self.path_of(module))} ({type(module).__name__}) needs "
                f"randomness in train mode: pass key=jax.random.key(...) to apply"
            )
        if callable(self.key):  # a lazily derived key: build it only when randomness is used
            self.key = self.key()
        count = self.rng_counts.get(path, 0)
        self.rng_counts[path] = count + 1
        site = jax.random.fold_in(self.key, path_hash(path))
        return jax.random.fold_in(site, count)

    def merged_buffers(self) -> dict:
        """The buffers after this call: the inputs with every update applied."""
        return _merge(self.buffers or {}, self.new_buffers)


def _merge(old: dict, new: dict) -> dict:
    out = dict(old)
    for k, v in new.items():
        out[k] = _merge(old.get(k, {}), v) if isinstance(v, dict) else v
    return out


class activate:
    """Context manager that makes ``ctx`` the active apply context of this thread."""

    def __init__(self, ctx: ApplyContext):
        self.ctx = ctx

    def __enter__(self) -> ApplyContext:
        self.token = _ACTIVE.set(self.ctx)
        return self.ctx

    def __exit__(self, *exc) -> None:
        _ACTIVE.reset(self.token)
