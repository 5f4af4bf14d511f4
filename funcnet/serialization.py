"""``funcnet.save`` / ``funcnet.load``: torch.save's ease, without pickle's two failures.

Plain pickle (what ``torch.save`` wrote before 2.6) runs arbitrary code when a
file is loaded, and a crash in the middle of a write destroys the only copy.
funcnet's files avoid both:

* **Safe by default.** Before pickling, the tree is rewritten into a handful of
  funcnet record types (``_Array``, ``_Key``, ``_NamedTuple``, ...). ``load``
  uses an unpickler that admits *only* those records plus pickle's built-in
  containers and scalars; any other global (``os.system``, ``builtins.open``,
  ``numpy.core.multiarray._reconstruct`` ...) raises :class:`UnsafeCheckpointError`
  before anything is executed. NamedTuples are rebuilt only for classes
  defined under the ``optax.`` or ``funcnet.`` module namespaces (all optax
  optimizer states, ``funcnet.nn.Variables``, funcnet's optimizer states),
  dataclasses only under ``funcnet.``. ``weights_only=False`` (named as in
  ``torch.load``) unpickles anything, for files you trust.
* **Atomic.** The file is written to a temporary file in the same folder,
  flushed, fsync'ed and renamed over the target, then the folder is fsync'ed:
  a crash at any moment leaves the old file or the new one, never a mix.
* **Checked.** A 60-byte header precedes the pickle: 12 magic bytes, then
  little-endian uint32 format version, uint32 flags, uint64 payload length,
  and the SHA-256 of the payload followed by those first 28 header bytes. A truncated or
  corrupted file raises :class:`CorruptCheckpointError` naming what is wrong,
  never a partial object.
* **Portable.** Arrays are brought to host numpy first (sharded arrays are
  gathered), so a checkpoint written on GPU/TPU, or from sharded arrays, loads
  on a CPU-only machine. Data is stored little-endian with the dtype's name
  (``bfloat16`` and the other ml_dtypes included).

What can be saved (any nesting): ``dict`` (any of the key types below),
``OrderedDict``, ``list``, ``tuple``, NamedTuples (optax states, ``Variables``),
``set``/``frozenset``, ``str``, ``bytes``, ``int``, ``float``, ``complex``,
``bool``, ``None``, numpy arrays and scalars, ``numpy.dtype``, jax arrays, typed
PRNG key arrays (``jax.random.key``: stored as ``key_data`` + impl name),
and dataclasses defined under ``funcnet.`` (other NamedTuple/dataclass classes
once registered with :func:`add_safe_classes`). Anything else raises ``TypeError``
naming its path in the tree, unless ``save(..., weights_only=False)`` which
pickles it as-is (loading such a file then needs ``weights_only=False``).

Loading returns **jax arrays** by default (on JAX's default device; a typed
key comes back as a typed key) and numpy arrays with ``as_numpy=True``. Two
exceptions keep values exact: a 64-bit array when ``jax_enable_x64`` is off
stays a numpy array (JAX would silently narrow it), and typed PRNG keys are
always jax arrays (numpy cannot hold them). Weakly typed jax arrays keep their
weak type. Differences from torch: the file is not torch's zip format and
``map_location`` does not exist (everything is host data until ``load``
returns).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import io
import os
import pickle
import struct
import sys
import uuid
import warnings
from collections import OrderedDict
from typing import Any, NamedTuple

import numpy as np

__all__ = [
    "CorruptCheckpointError",
    "FORMAT_VERSION",
    "UnsafeCheckpointError",
    "add_safe_classes",
    "atomic_write_bytes",
    "load",
    "save",
    "gather_for_save",
]

MAGIC = b"\x89FUNCNET\r\n\x1a\n"  # PNG-style: catches text-mode and truncation mangling
FORMAT_VERSION = 1
# magic, version, flags, payload length, sha256(payload + the header's first 28 bytes)
_HEADER = struct.Struct("<12sIIQ32s")
_PREFIX = struct.Struct("<12sIIQ")
HEADER_SIZE = _HEADER.size
_FLAG_ARBITRARY_PICKLE = 1  # written with save(..., weights_only=False)
_PICKLE_PROTOCOL = 5
_TRUSTED_NAMEDTUPLE_ROOTS = ("optax", "funcnet")
_TRUSTED_DATACLASS_ROOTS = ("funcnet",)
_EXTRA_SAFE: set[tuple[str, str]] = set()  # (module, qualname) from add_safe_classes


class UnsafeCheckpointError(pickle.UnpicklingError):
    """The file refers to code funcnet does not load by default; nothing was executed."""


class CorruptCheckpointError(ValueError):
    """The file is truncated, corrupted or not a funcnet checkpoint."""


# -- records: the only classes the safe unpickler admits --------------------------------
class _Array(NamedTuple):
    """A numpy/jax array: dtype name, shape, little-endian C-order bytes."""

    dtype: str
    shape: tuple
    data: Any  # bytes when loaded; a PickleBuffer when written
    kind: str  # "numpy" | "numpy_scalar" | "jax"
    weak_type: bool


class _Key(NamedTuple):
    """A typed ``jax.random.key`` array: the impl name and its ``key_data``."""

    impl: str
    data: _Array


class _NamedTuple(NamedTuple):
    module: str
    qualname: str
    values: tuple


class _Dataclass(NamedTuple):
    module: str
    qualname: str
    fields: tuple  # ((name, value), ...)


class _OrderedDict(NamedTuple):
    items: list


class _Complex(NamedTuple):
    real: float
    imag: float


class _DType(NamedTuple):
    name: str
    as_type: bool  # np.float32 (a scalar type) rather than np.dtype('float32')


_RECORDS = {
    cls.__name__: cls for cls in (_Array, _Key, _NamedTuple, _Dataclass, _OrderedDict, _Complex, _DType)
}
_PLAIN = (str, bytes, int, float, bool, type(None))


# -- saving -------------------------------------------------------------------------------
def _path_str(path: tuple) -> str:
    return "".join(f"[{p!r}]" for p in path) or "<root>"


def _little_endian(arr: np.ndarray) -> np.ndarray:
    if not arr.flags.c_contiguous:
        arr = arr.copy(order="C")  # (np.ascontiguousarray would turn a 0-d array into 1-d)
    if arr.dtype.byteorder == ">" or (arr.dtype.byteorder == "=" and sys.byteorder == "big"):
        arr = arr.byteswap().view(arr.dtype.newbyteorder("<"))
    return arr


def _encode_numpy(arr: np.ndarray, kind: str, weak_type: bool, path: tuple) -> _Array:
    if arr.dtype.hasobject or arr.dtype.fields is not None:
        raise TypeError(
            f"funcnet.save: the array at {_path_str(path)} has dtype {arr.dtype}; only numeric, "
            f"bool and ml_dtypes arrays can be saved (object and structured dtypes cannot)"
        )
    arr = _little_endian(arr)
    raw = arr.reshape(-1).view(np.uint8)
    raw.flags.writeable = False  # so pickle writes it as bytes, without an extra copy
    return _Array(arr.dtype.name, tuple(int(d) for d in arr.shape), pickle.PickleBuffer(raw), kind, weak_type)


def _is_namedtuple(x: Any) -> bool:
    return isinstance(x, tuple) and hasattr(type(x), "_fields")


def _jax():
    """jax if it is already imported (saving numpy-only trees never imports it)."""
    return sys.modules.get("jax")


def _encode(x: Any, path: tuple, allow_pickle: bool) -> Any:
    t = type(x)
    if t in _PLAIN:
        return x
    if t is complex:
        return _Complex(x.real, x.imag)
    if t is dict:
        return {_encode(k, path, allow_pickle): _encode(v, (*path, k), allow_pickle) for k, v in x.items()}
    if t is OrderedDict:
        return _OrderedDict([(_encode(k, path, allow_pickle), _encode(v, (*path, k), allow_pickle))
                             for k, v in x.items()])
    if t is list:
        return [_encode(v, (*path, i), allow_pickle) for i, v in enumerate(x)]
    if t is tuple:
        return tuple(_encode(v, (*path, i), allow_pickle) for i, v in enumerate(x))
    if t in (set, frozenset):
        return t(_encode(v, path, allow_pickle) for v in x)
    if _is_namedtuple(x):
        if not (allow_pickle or _is_safe_class(t, _TRUSTED_NAMEDTUPLE_ROOTS)):
            raise _unsafe_class_error(t, "NamedTuple", _TRUSTED_NAMEDTUPLE_ROOTS, path)
        values = tuple(_encode(v, (*path, f), allow_pickle) for f, v in zip(t._fields, x, strict=True))
        return _NamedTuple(t.__module__, t.__qualname__, values)
    if isinstance(x, np.ndarray):
        return _encode_numpy(x, "numpy", False, path)
    if isinstance(x, np.generic):
        return _encode_numpy(np.asarray(x), "numpy_scalar", False, path)
    if isinstance(x, np.dtype):
        return _DType(x.name, False)
    if isinstance(x, type) and issubclass(x, np.generic):
        return _DType(np.dtype(x).name, True)
    jax = _jax()
    if jax is not None and isinstance(x, jax.Array):
        if isinstance(x, jax.core.Tracer):
            raise TypeError(
                f"funcnet.save: the value at {_path_str(path)} is a traced array (inside jit/grad/vmap); "
                f"save concrete arrays outside the transformed function"
            )
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            impl = str(jax.random.key_impl(x))
            return _Key(impl, _encode(jax.random.key_data(x), (*path, "key_data"), allow_pickle))
        return _encode_numpy(_host_array(x), "jax", bool(getattr(x, "weak_type", False)), path)
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        if not (allow_pickle or _is_safe_class(t, _TRUSTED_DATACLASS_ROOTS)):
            raise _unsafe_class_error(t, "dataclass", _TRUSTED_DATACLASS_ROOTS, path)
        return _Dataclass(t.__module__, t.__qualname__, tuple(
            (f.name, _encode(getattr(x, f.name), (*path, f.name), allow_pickle))
            for f in dataclasses.fields(x)))
    if allow_pickle:
        return x
    raise TypeError(
        f"funcnet.save: cannot store {t.__module__}.{t.__qualname__} at {_path_str(path)}. A safe funcnet "
        f"file holds dicts, lists, tuples, NamedTuples, str/bytes/int/float/complex/bool/None, numpy and "
        f"jax arrays, PRNG keys, and dataclasses defined under funcnet. Convert it (e.g. to a dict), or "
        f"pass weights_only=False to pickle it as-is (loading then needs weights_only=False too)."
    )


def _is_safe_class(cls: type, roots: tuple[str, ...]) -> bool:
    return _under(cls.__module__, roots) or (cls.__module__, cls.__qualname__) in _EXTRA_SAFE


def _unsafe_class_error(cls: type, what: str, roots: tuple[str, ...], path: tuple) -> TypeError:
    return TypeError(
        f"funcnet.save: the {what} {cls.__module__}.{cls.__qualname__} at {_path_str(path)} would not load "
        f"safely: only {what} classes under {', '.join(r + '.' for r in roots)} are rebuilt by default. "
        f"Register it with funcnet.serialization.add_safe_classes({cls.__qualname__}) (before save and "
        f"load), convert it to a dict, or pass weights_only=False."
    )


def add_safe_classes(*classes: type) -> None:
    """Allow NamedTuple or dataclass ``classes`` in safe files (torch's ``add_safe_globals``).

    By default only NamedTuples under ``optax.``/``funcnet.`` and dataclasses under
    ``funcnet.`` are written and rebuilt. Registering a class lets ``save`` write it
    and ``load`` rebuild it (NamedTuples via ``cls._make(values)``, dataclasses by
    setting their fields, without running ``__init__``). Register it in every process
    that loads such a file.
    """
    for cls in classes:
        if not isinstance(cls, type) or not (
            (issubclass(cls, tuple) and hasattr(cls, "_fields")) or dataclasses.is_dataclass(cls)
        ):
            raise TypeError(f"add_safe_classes: {cls!r} is not a NamedTuple or dataclass class")
        _EXTRA_SAFE.add((cls.__module__, cls.__qualname__))


def _host_array(x: Any) -> np.ndarray:
    """A jax array as a host numpy array; non-addressable (multi-process) arrays are all-gathered."""
    if not getattr(x, "is_fully_addressable", True):
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)


def gather_for_save(tree: Any) -> Any:
    """All-gather the jax arrays of ``tree`` that span several processes; other leaves unchanged.

    A collective: in a multi-process run every process must call it with the same
    tree; afterwards any single process can :func:`save` the result.
    :class:`funcnet.checkpoint.CheckpointManager` does this for you. In a
    single-process run it returns ``tree`` unchanged.
    """
    jax = _jax()
    if jax is None or jax.process_count() == 1:
        return tree

    def convert(x):
        if isinstance(x, jax.Array) and not getattr(x, "is_fully_addressable", True):
            if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
                data = _host_array(jax.random.key_data(x))
                return jax.random.wrap_key_data(data, impl=str(jax.random.key_impl(x)))
            return _host_array(x)
        return x

    return jax.tree.map(convert, tree)


def _header_prefix(version: int, flags: int, payload_len: int) -> bytes:
    return _PREFIX.pack(MAGIC, version, flags, payload_len)


class _HashingWriter(io.RawIOBase):
    """A write-only stream that hashes and counts what passes through to ``f``."""

    def __init__(self, f):
        self.f, self.sha, self.n = f, hashlib.sha256(), 0

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        self.sha.update(b)
        self.n += len(memoryview(b).cast("B"))
        return self.f.write(b)


def _fsync_dir(folder: str) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. Windows: folders cannot be opened; rename is durable enough there
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _atomic_write(path: str | os.PathLike, write_body) -> None:
    """Create ``path`` atomically: temp file in the same folder, fsync, rename, fsync folder.

    ``write_body(f)`` writes the content into the open binary file ``f``.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"cannot write {path!r}: the folder {folder!r} does not exist")
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{uuid.uuid4().hex[:12]}.tmp")
    # os.open with 0o666 lets the umask decide the permissions, as for a plain open().
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            write_body(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(folder)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (the old file or the new one survives a crash)."""
    _atomic_write(path, lambda f: f.write(data))


def save(obj: Any, path: str | os.PathLike, *, weights_only: bool = True) -> None:
    """Write ``obj`` (a pytree of arrays, numbers, strings, containers) to ``path`` atomically.

    ``torch.save(obj, f)`` for funcnet: any nesting of the types listed in the
    module docstring, e.g. ``{"params": ..., "opt_state": ..., "key": ..., "step": 10}``.
    Arrays are copied to host memory first, so the file loads on any machine.

    Args:
        obj: the tree to save.
        path: the target file; its folder must exist. Replaced atomically.
        weights_only: ``True`` (default) refuses types outside funcnet's safe set with a
            ``TypeError`` naming the path in the tree. ``False`` pickles such objects as-is;
            the file then loads only with ``load(..., weights_only=False)``.

    In a multi-process run with arrays sharded across processes, every process must
    call ``save`` (the arrays are all-gathered); use ``CheckpointManager`` to write once.
    """
    encoded = _encode(obj, (), allow_pickle=not weights_only)
    flags = 0 if weights_only else _FLAG_ARBITRARY_PICKLE

    def body(f):
        f.write(b"\0" * HEADER_SIZE)  # placeholder, rewritten once the digest is known
        writer = _HashingWriter(f)
        pickle.Pickler(writer, protocol=_PICKLE_PROTOCOL).dump(encoded)
        f.seek(0)
        prefix = _header_prefix(FORMAT_VERSION, flags, writer.n)
        writer.sha.update(prefix)  # the digest covers the header fields too
        f.write(prefix + writer.sha.digest())
        f.seek(0, os.SEEK_END)

    _atomic_write(path, body)


# -- loading ------------------------------------------------------------------------------
def _under(module: str, roots: tuple[str, ...]) -> bool:
    return any(module == r or module.startswith(r + ".") for r in roots)


class _SafeUnpickler(pickle.Unpickler):
    """Admits funcnet's records and pickle's built-in types only; resolves no other global."""

    def __init__(self, file, name: str):
        super().__init__(file)
        self._name = name

    def find_class(self, module: str, name: str) -> Any:
        if module == __name__ and name in _RECORDS:
            return _RECORDS[name]
        raise UnsafeCheckpointError(
            f"funcnet.load({self._name!r}): the file refers to {module}.{name}, which is not one of the "
            f"types funcnet writes; refusing to load it (nothing was executed). If you trust the file, "
            f"load it with weights_only=False."
        )

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafeCheckpointError(
            f"funcnet.load({self._name!r}): the file uses a pickle persistent id ({type(pid).__name__}), "
            f"which funcnet never writes (a torch.save file? use funcnet.interop.torch.from_torch)"
        )


def _dtype_from_name(name: str) -> np.dtype:
    try:
        return np.dtype(name)
    except TypeError:
        import ml_dtypes  # ships with jaxlib: bfloat16, float8_*, int4, ...

        if not hasattr(ml_dtypes, name):
            raise
        return np.dtype(getattr(ml_dtypes, name))


def _make_weak(x: Any) -> Any:
    try:  # no public API builds a weakly typed array; keep the strong one if this one moves
        from jax._src.lax import lax as lax_internal

        return lax_internal._convert_element_type(x, x.dtype, weak_type=True)
    except Exception:  # pragma: no cover - depends on JAX internals
        return x


class _Decoder:
    """Turns the unpickled records back into arrays, keys, NamedTuples and dataclasses."""

    def __init__(self, name: str, as_numpy: bool, trusted: bool):
        self.name, self.as_numpy, self.trusted = name, as_numpy, trusted

    def _error(self, cls: type, text: str) -> Exception:
        return cls(f"funcnet.load({self.name!r}): {text}")

    def resolve(self, module: str, qualname: str, roots: tuple[str, ...], what: str) -> Any:
        module, qualname = str(module), str(qualname)
        if not (self.trusted or _under(module, roots) or (module, qualname) in _EXTRA_SAFE):
            raise self._error(
                UnsafeCheckpointError,
                f"the file asks for the {what} {module}.{qualname}; only classes under "
                f"{', '.join(r + '.' for r in roots)} are rebuilt by default (nothing was executed). "
                f"If you trust the file, load it with weights_only=False.",
            )
        try:
            obj: Any = importlib.import_module(module)
            for part in qualname.split("."):
                obj = getattr(obj, part)
        except (ImportError, AttributeError) as e:
            raise self._error(
                pickle.UnpicklingError,
                f"the {what} {module}.{qualname} stored in the file does not exist in this environment "
                f"({e}); was it written with another version of optax/funcnet?",
            ) from None
        return obj

    def array(self, rec: _Array, as_numpy: bool) -> Any:
        try:
            dtype = _dtype_from_name(str(rec.dtype))
        except TypeError:
            raise self._error(CorruptCheckpointError, f"unknown array dtype {rec.dtype!r}") from None
        shape = rec.shape
        if dtype.hasobject or type(shape) is not tuple or not all(type(d) is int and d >= 0 for d in shape):
            raise self._error(CorruptCheckpointError, f"invalid array record: {rec.dtype} {shape}")
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if type(rec.data) is not bytes or len(rec.data) != nbytes:
            raise self._error(
                CorruptCheckpointError,
                f"the array of shape {shape} and dtype {dtype.name} holds "
                f"{len(rec.data) if type(rec.data) is bytes else type(rec.data).__name__} bytes, "
                f"expected {nbytes}",
            )
        stored = dtype.newbyteorder("<")
        arr = np.frombuffer(rec.data, dtype=stored).reshape(shape)
        if not stored.isnative:
            arr = arr.astype(dtype.newbyteorder("="))
        if not as_numpy:
            jax = importlib.import_module("jax")
            wide = dtype.itemsize == 8 and dtype.kind in "iuf" or dtype == np.complex128
            if not (wide and not jax.config.jax_enable_x64):
                out = jax.numpy.asarray(arr)
                return _make_weak(out) if rec.weak_type else out
        if rec.kind == "numpy_scalar":
            return arr[()]
        return arr.copy()  # writable, and no longer tied to the file's buffer

    def __call__(self, x: Any) -> Any:
        t = type(x)
        if t in _PLAIN:
            return x
        if t is dict:
            return {self(k): self(v) for k, v in x.items()}
        if t is list:
            return [self(v) for v in x]
        if t in (tuple, set, frozenset):
            return t(self(v) for v in x)
        if t is _Array:
            return self.array(x, self.as_numpy)
        if t is _Key:
            jax = importlib.import_module("jax")
            data = jax.numpy.asarray(self.array(x.data, True))
            return jax.random.wrap_key_data(data, impl=str(x.impl))
        if t is _Complex:
            return complex(x.real, x.imag)
        if t is _DType:
            dtype = _dtype_from_name(str(x.name))
            return dtype.type if x.as_type else dtype
        if t is _OrderedDict:
            return OrderedDict((self(k), self(v)) for k, v in x.items)
        if t is _NamedTuple:
            return self.namedtuple(x)
        if t is _Dataclass:
            return self.dataclass(x)
        if self.trusted:
            return x
        raise self._error(UnsafeCheckpointError, f"unexpected object of type {t.__name__} in the file")

    def namedtuple(self, x: _NamedTuple) -> Any:
        cls = self.resolve(x.module, x.qualname, _TRUSTED_NAMEDTUPLE_ROOTS, "NamedTuple")
        if not (isinstance(cls, type) and issubclass(cls, tuple) and hasattr(cls, "_fields")):
            raise self._error(UnsafeCheckpointError, f"{x.module}.{x.qualname} is not a NamedTuple class")
        values = [self(v) for v in x.values]
        if len(values) != len(cls._fields):
            raise self._error(
                pickle.UnpicklingError,
                f"{x.module}.{x.qualname} has fields {cls._fields}, the file holds {len(values)} values "
                f"(saved with another version of its library?)",
            )
        return cls._make(values)

    def dataclass(self, x: _Dataclass) -> Any:
        cls = self.resolve(x.module, x.qualname, _TRUSTED_DATACLASS_ROOTS, "dataclass")
        if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
            raise self._error(UnsafeCheckpointError, f"{x.module}.{x.qualname} is not a dataclass")
        obj = object.__new__(cls)  # as pickle does: no __init__/__post_init__ runs
        for field_name, v in x.fields:
            object.__setattr__(obj, str(field_name), self(v))
        return obj


def _read_verified(path: str | os.PathLike) -> tuple[int, memoryview]:
    """The flags and the checksum-verified payload of a funcnet file."""
    name = os.fspath(path)
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < len(MAGIC) and MAGIC.startswith(data):
        raise CorruptCheckpointError(f"funcnet.load({name!r}): truncated file: only {len(data)} bytes")
    if data[: len(MAGIC)] != MAGIC:
        hint = ""
        if data[:2] == b"PK":
            hint = " It looks like a zip file (torch.save?): use funcnet.interop.torch.from_torch."
        elif data[:1] == b"\x80":
            hint = " It looks like a bare pickle; funcnet does not load those (they can run code)."
        raise CorruptCheckpointError(
            f"funcnet.load({name!r}): not a funcnet checkpoint (bad magic bytes).{hint}"
        )
    if len(data) < HEADER_SIZE:
        raise CorruptCheckpointError(
            f"funcnet.load({name!r}): truncated file: {len(data)} bytes, shorter than the "
            f"{HEADER_SIZE}-byte header"
        )
    _, version, flags, length, digest = _HEADER.unpack_from(data)
    if version > FORMAT_VERSION or version < 1:
        raise CorruptCheckpointError(
            f"funcnet.load({name!r}): format version {version}; this funcnet reads versions 1.."
            f"{FORMAT_VERSION} (written by a newer funcnet, or a corrupted header)"
        )
    payload = memoryview(data)[HEADER_SIZE:]
    if len(payload) != length:
        what = "truncated" if len(payload) < length else "has trailing bytes"
        raise CorruptCheckpointError(
            f"funcnet.load({name!r}): the file is {what}: the header announces {length} payload bytes, "
            f"the file holds {len(payload)}"
        )
    sha = hashlib.sha256(payload)
    sha.update(_header_prefix(version, flags, length))
    if sha.digest() != digest:
        raise CorruptCheckpointError(
            f"funcnet.load({name!r}): checksum mismatch: the file is corrupted (its SHA-256 does not "
            f"match the header)"
        )
    return flags, payload


def load(path: str | os.PathLike, *, weights_only: bool = True, as_numpy: bool = False) -> Any:
    """Read a file written by :func:`save`; ``torch.load`` for funcnet.

    Args:
        path: the file.
        weights_only: ``True`` (default, as ``torch.load`` since 2.6): only funcnet's own
            types are rebuilt; anything else raises :class:`UnsafeCheckpointError` and
            nothing in the file is executed. ``False`` unpickles anything — it can run
            arbitrary code, so use it only for files you trust (a warning says so).
        as_numpy: return numpy arrays (numpy scalars for saved numpy scalars) instead of
            jax arrays. Typed PRNG keys are jax arrays either way.

    Returns:
        The saved tree: containers, NamedTuples and scalars as saved, arrays as jax
        arrays on the default device (numpy with ``as_numpy=True``; 64-bit arrays stay
        numpy while ``jax_enable_x64`` is off, so nothing is narrowed).

    Raises:
        CorruptCheckpointError: truncated or corrupted file (checksum), wrong magic, newer version.
        UnsafeCheckpointError: the file refers to a type outside the safe set.
    """
    name = os.fspath(path)
    flags, payload = _read_verified(path)
    if weights_only:
        try:
            raw = _SafeUnpickler(io.BytesIO(payload), name).load()
        except UnsafeCheckpointError as e:
            if flags & _FLAG_ARBITRARY_PICKLE:
                raise UnsafeCheckpointError(
                    f"{e} (The file was written with save(..., weights_only=False).)"
                ) from None
            raise
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as e:
            raise CorruptCheckpointError(f"funcnet.load({name!r}): invalid payload: {e}") from None
        return _Decoder(name, as_numpy, trusted=False)(raw)
    warnings.warn(
        f"funcnet.load({name!r}, weights_only=False) unpickles arbitrary objects, which can run any "
        f"code the file contains; use it only for files you trust.",
        UserWarning,
        stacklevel=2,
    )
    raw = pickle.loads(payload)
    return _Decoder(name, as_numpy, trusted=True)(raw)
