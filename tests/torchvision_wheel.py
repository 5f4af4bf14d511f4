"""torchvision 0.28's own Python source, read from its published wheel, as a test reference.

torchvision cannot be imported here the ordinary way (its wheel's compiled ops want a CUDA build
of torch), but its Python files run on CPU torch. This helper fetches the wheel once with
``pip download --no-deps torchvision==0.28.0`` into a cache folder, unpacks the ``.py`` files,
and replaces ``torchvision/__init__.py`` with a stub that loads no compiled extension. Nothing of
torchvision is copied into this repository.

- ``source_root()``: folder holding the unpacked ``torchvision/`` package (stubbed ``__init__``).
- ``read_source("torchvision/models/resnet.py")``: one file's text (e.g. for ``funcnet.port``).
- ``import_torchvision("torchvision.models.resnet")``: the real torchvision module, running on
  torch (the reference side of a parity test).
- ``converted_source("torchvision/models/resnet.py")``: ``funcnet.port.convert_with_flags`` of one
  file, cached on disk (LibCST takes ~8 s for the zoo's files, which the zoo and port tests, on
  each pytest-xdist worker, would otherwise convert again).

Offline, the tests that need it skip with the reason; under CI (``CI`` set) they fail instead,
since CI must run them. The cache folder is ``$FUNCNET_TEST_CACHE`` or ``~/.cache/funcnet-tests``.
"""

from __future__ import annotations

import functools
import glob
import hashlib
import importlib
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import zipfile

import pytest

VERSION = "0.28.0"
CACHE = os.environ.get("FUNCNET_TEST_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "funcnet-tests"))

# Replaces torchvision/__init__.py: the package's attributes its Python modules read, no _C load.
_STUB_INIT = '''"""torchvision {version}, Python sources only (stub __init__ written by funcnet's tests)."""
__version__ = "{version}"
_image_backend = "PIL"
_video_backend = "pyav"


def get_image_backend():
    return _image_backend


def get_video_backend():
    return _video_backend


def _is_tracing():
    return False
'''


def _unavailable(reason: str):
    if os.environ.get("CI"):
        pytest.fail(f"torchvision {VERSION} wheel unavailable under CI: {reason}")
    pytest.skip(f"torchvision {VERSION} wheel unavailable (offline?): {reason}")


def wheel_path() -> str:
    """The cached torchvision wheel, downloaded on first use."""
    found = glob.glob(os.path.join(CACHE, f"torchvision-{VERSION}-*.whl"))
    if found:
        return found[0]
    os.makedirs(CACHE, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", f"torchvision=={VERSION}", "-d", CACHE]
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as e:
        _unavailable(f"{' '.join(cmd)}: {e}")
    found = glob.glob(os.path.join(CACHE, f"torchvision-{VERSION}-*.whl"))
    if result.returncode != 0 or not found:
        _unavailable(f"{' '.join(cmd)} exited {result.returncode}: {result.stderr.strip()[-500:]}")
    return found[0]


def source_root() -> str:
    """Folder containing the unpacked ``torchvision/`` Python package (created once, atomically)."""
    root = os.path.join(CACHE, f"torchvision-{VERSION}-src")
    if os.path.isdir(os.path.join(root, "torchvision")):
        return root
    wheel = wheel_path()
    tmp = tempfile.mkdtemp(dir=CACHE, prefix=".unpack-")
    with zipfile.ZipFile(wheel) as z:
        members = [n for n in z.namelist() if n.startswith("torchvision/") and n.endswith(".py")]
        z.extractall(tmp, members)
    with open(os.path.join(tmp, "torchvision", "__init__.py"), "w") as f:
        f.write(_STUB_INIT.format(version=VERSION))
    try:
        os.rename(tmp, root)
    except OSError:  # another process unpacked it first
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def read_source(relpath: str) -> str:
    """Text of one file of the wheel, e.g. ``read_source("torchvision/models/resnet.py")``."""
    with open(os.path.join(source_root(), relpath), encoding="utf-8") as f:
        return f.read()


def import_torchvision(module: str = "torchvision"):
    """Import a torchvision module from the unpacked wheel (runs on torch, the reference)."""
    root = source_root()
    if root not in sys.path:
        sys.path.append(root)
    return importlib.import_module(module)


@functools.cache
def _converter_fingerprint() -> bytes:
    """funcnet.port's own source (file names and contents) and LibCST's version: a change to either
    converts anew. Read once per process: the converter does not change while the tests run."""
    from importlib.metadata import version

    import funcnet.port

    digest = hashlib.sha256(version("libcst").encode())
    folder = os.path.dirname(funcnet.port.__file__)
    for name in sorted(glob.glob(os.path.join(folder, "*.py"))):
        with open(name, "rb") as f:
            digest.update(os.path.basename(name).encode() + f.read())
    return digest.digest()


def converted_source(relpath: str):
    """``funcnet.port.convert_with_flags(read_source(relpath), relpath)``: ``(code, flags)``, from a
    disk cache keyed by the file's text and the converter's fingerprint (written atomically, so
    concurrent workers at worst convert a file twice)."""
    from funcnet.port import convert_with_flags

    source = read_source(relpath)
    key = hashlib.sha256(_converter_fingerprint() + source.encode()).hexdigest()
    path = os.path.join(CACHE, "converted", f"{key}.pkl")
    try:
        with open(path, "rb") as f:
            return pickle.load(f)
    except (OSError, EOFError, pickle.UnpicklingError):
        pass
    result = convert_with_flags(source, relpath)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".write-")
    with os.fdopen(fd, "wb") as f:
        pickle.dump(result, f)
    os.replace(tmp, path)
    return result
