"""Find oneDNN, compile the shim (``conv.cc``, ``matmul.cc``) against it once per machine, load it,
register its handlers.

oneDNN comes from pip (``pip install funcnet[onednn]``: the ``onednn-cpu-gomp`` library and the
``onednn-devel-cpu-gomp`` headers) or from an install prefix named by ``$FUNCNET_ONEDNN_ROOT``
(``include/oneapi/dnnl/dnnl.hpp`` and ``lib/libdnnl.so*``). The shim is compiled with ``$CXX``
(else ``g++``/``c++``) against those headers and JAX's XLA FFI headers (``jax.ffi.include_dir()``)
into a cache directory (``$FUNCNET_CACHE_DIR``, else ``$XDG_CACHE_HOME/funcnet``, else
``~/.cache/funcnet``) keyed by the source, the jaxlib version and the oneDNN files: the first use
on a machine takes a few seconds, later processes load the cached library. The file is written
under a temporary name and renamed into place, so concurrent processes (pytest-xdist workers)
and interrupted builds never load a partial library.

Nothing here runs at ``import funcnet``: the first convolution or product that a rule would give
to oneDNN calls ``funcnet.onednn.available()``, which builds and loads once per process. Any failure (no
oneDNN, no compiler, a compile error, another OS) leaves oneDNN unavailable, with the reason in
:func:`status`; convolutions then keep XLA's lowerings.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import importlib.metadata
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT_ENV_VAR = "FUNCNET_ONEDNN_ROOT"
SWITCH_ENV_VAR = "FUNCNET_ONEDNN"
CACHE_ENV_VAR = "FUNCNET_CACHE_DIR"

# pip distributions that ship the library and the headers (oneDNN built with GNU OpenMP, which
# links the system's libgomp: no Intel runtimes needed).
_LIBRARY_DISTRIBUTIONS = ("onednn-cpu-gomp",)
_HEADER_DISTRIBUTIONS = ("onednn-devel-cpu-gomp",)

HANDLERS = {  # FFI target name -> symbol in the shim
    "funcnet_onednn_conv_forward": "FuncnetOnednnConvForward",
    "funcnet_onednn_conv_backward_data": "FuncnetOnednnConvBackwardData",
    "funcnet_onednn_conv_backward_weights": "FuncnetOnednnConvBackwardWeights",
    "funcnet_onednn_matmul": "FuncnetOnednnMatmul",
    "funcnet_column_sums": "FuncnetColumnSums",
}

_SOURCES = tuple(Path(__file__).with_name(name) for name in ("shim.h", "conv.cc", "matmul.cc", "sums.cc"))


class Unavailable(RuntimeError):
    """oneDNN cannot be used in this process; the message says why."""


def _distribution_file(names: tuple[str, ...], suffix: str) -> Path | None:
    for name in names:
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        for file in dist.files or ():
            if ("/" + str(file).replace("\\", "/")).endswith("/" + suffix):
                return Path(dist.locate_file(file)).resolve()
    return None


def locate() -> tuple[Path, Path]:
    """``(include_dir, library_file)`` of the oneDNN to build against; raises :class:`Unavailable`."""
    root = os.environ.get(ROOT_ENV_VAR, "").strip()
    if root:
        include = Path(root) / "include"
        libraries = [p for d in ("lib", "lib64") for p in sorted((Path(root) / d).glob("libdnnl.so*"))]
        if not (include / "oneapi" / "dnnl" / "dnnl.hpp").is_file() or not libraries:
            raise Unavailable(f"${ROOT_ENV_VAR}={root} has no include/oneapi/dnnl/dnnl.hpp and lib/libdnnl.so*")
        return include, libraries[0]
    library = _distribution_file(_LIBRARY_DISTRIBUTIONS, "libdnnl.so.3")
    header = _distribution_file(_HEADER_DISTRIBUTIONS, "include/oneapi/dnnl/dnnl.hpp")
    if library is None or header is None:
        found = ((_LIBRARY_DISTRIBUTIONS[0], library), (_HEADER_DISTRIBUTIONS[0], header))
        missing = [name for name, file in found if file is None]
        raise Unavailable(f"oneDNN is not installed ({', '.join(missing)} missing: pip install 'funcnet[onednn]', "
                          f"or set ${ROOT_ENV_VAR} to a oneDNN install prefix)")
    return header.parents[2], library


def _compiler() -> str:
    for candidate in (os.environ.get("CXX", "").strip(), "g++", "c++"):
        if candidate and shutil.which(candidate.split()[0]):
            return candidate
    raise Unavailable("no C++ compiler found ($CXX, g++ or c++) to build funcnet's oneDNN shim")


def cache_dir() -> Path:
    """Where compiled shims live: ``$FUNCNET_CACHE_DIR``, ``$XDG_CACHE_HOME/funcnet`` or ``~/.cache/funcnet``."""
    explicit = os.environ.get(CACHE_ENV_VAR, "").strip()
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(xdg) if xdg else Path.home() / ".cache") / "funcnet"


def _build(include: Path, library: Path) -> Path:
    """The compiled shim for this source, jaxlib and oneDNN: from the cache, else compiled now."""
    import jax
    import jaxlib

    ffi_include = Path(jax.ffi.include_dir())
    compiler = _compiler()
    key = hashlib.sha256()
    for part in (*(source.read_bytes() for source in _SOURCES), jaxlib.__version__.encode(), str(ffi_include).encode(),
                 str(library).encode(), str(library.stat().st_size).encode(), compiler.encode(),
                 (include / "oneapi" / "dnnl" / "dnnl_version.h").read_bytes()):
        key.update(part)
        key.update(b"\0")
    target = cache_dir() / "onednn" / key.hexdigest()[:20] / "libfuncnet_onednn.so"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, partial = tempfile.mkstemp(prefix=".build-", suffix=".so", dir=target.parent)
    os.close(fd)
    command = [*compiler.split(), "-O2", "-std=c++17", "-fopenmp", "-shared", "-fPIC", "-w",
               *(str(source) for source in _SOURCES if source.suffix == ".cc"),
               "-I", str(include), "-I", str(ffi_include), str(library),
               # DT_RPATH (not RUNPATH): also finds the library's own dependencies (libtbb) beside it
               f"-Wl,--disable-new-dtags,-rpath,{library.parent}",
               "-o", partial]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=600)
        if result.returncode != 0:
            raise Unavailable(f"compiling funcnet's oneDNN shim failed ({' '.join(command)}):\n"
                              f"{result.stderr[-4000:]}")
        os.replace(partial, target)  # atomic: other processes see no file or the whole one
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
    return target


@functools.cache
def load() -> tuple[ctypes.CDLL, str]:
    """Build (once per machine), load and register the shim (once per process): ``(library, version)``.

    Raises :class:`Unavailable` with the reason (``funcnet.onednn`` keeps the outcome for the
    process), ``ValueError`` for a ``$FUNCNET_ONEDNN`` that is neither on nor off.
    """
    setting = os.environ.get(SWITCH_ENV_VAR, "").strip().lower()
    if setting in ("0", "off", "false", "no"):
        raise Unavailable(f"${SWITCH_ENV_VAR}={setting}")
    if setting not in ("", "1", "on", "true", "yes"):
        raise ValueError(f"${SWITCH_ENV_VAR} must be on or off, got {setting!r}")
    if not sys.platform.startswith("linux"):
        raise Unavailable(f"funcnet's oneDNN shim is built for Linux only (this is {sys.platform})")
    import jax

    include, library = locate()
    path = _build(include, library)
    try:
        lib = ctypes.CDLL(str(path))
    except OSError as error:
        raise Unavailable(f"loading {path} failed: {error}") from error
    for target, symbol in HANDLERS.items():
        jax.ffi.register_ffi_target(target, jax.ffi.pycapsule(getattr(lib, symbol)), platform="cpu")
    lib.FuncnetOnednnVersion.restype = ctypes.c_char_p
    return lib, lib.FuncnetOnednnVersion().decode()
