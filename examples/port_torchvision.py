"""Run torchvision's own model code on funcnet: convert its files, build an architecture, train it.

Takes the torchvision wheel (a zip: ``pip download --no-deps torchvision==0.28.0``) or one model
file inside an unpacked torchvision tree (``.../torchvision/models/resnet.py``), converts the model
files and the helpers they import (``models/_utils.py``, ``ops/misc.py``, ``models/_api.py``,
``_utils.py``) with ``funcnet.port.convert`` into a package in ``--out``, builds
``--arch`` (any classification builder of torchvision: ``resnet18``, ``mobilenet_v3_small``,
``shufflenet_v2_x0_5``, ...) with 10 classes, and trains it a few SGD steps on the built-in digits,
resized to 3×32×32, printing the loss. The converter's flags go to stderr as it finds them.
``ops/stochastic_depth.py`` is ported by hand (below): the converter flags its random draw.

Stand-ins replace what a classification model does not compute with: torchvision's compiled-op
package ``__init__``, the API-usage logger (a no-op), the preprocessing presets and the weights
download (nothing is downloaded). No torch is needed.

    python examples/port_torchvision.py ~/.cache/funcnet-tests/torchvision-0.28.0-*.whl --arch resnet18
    python examples/port_torchvision.py path/to/torchvision/models/shufflenetv2.py --arch shufflenet_v2_x0_5
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
import tempfile
import time
import zipfile

import numpy as np

import funcnet
import funcnet.nn as nn
import funcnet.nn.functional as F
import funcnet.optim as optim
from funcnet.datasets import Digits
from funcnet.port import convert
from funcnet.train import TrainState, make_train_step, metrics

# torchvision files converted besides the model files (the helpers they import).
HELPERS = ["_utils.py", "models/_utils.py", "models/_api.py", "ops/misc.py"]
COPIED = ["models/_meta.py"]  # plain data
# The one file changed by hand, as the README's list says: the converter flags stochastic depth's
# Bernoulli noise (`torch.empty(...).bernoulli_(p)` draws from torch's global generator; JAX needs a key).
HAND_PORTED = {
    "ops/stochastic_depth.py": '''"""torchvision.ops.stochastic_depth, ported by hand: the noise is drawn with a key."""
import jax

import funcnet.nn as nn


def stochastic_depth(input, p, mode, training=True, key=None):
    """Zero whole residual branches ("batch") or samples ("row") with probability p, scale the rest."""
    if p < 0.0 or p > 1.0:
        raise ValueError(f"drop probability has to be between 0 and 1, but got {p}")
    if mode not in ["batch", "row"]:
        raise ValueError(f"mode has to be either 'batch' or 'row', but got {mode}")
    if not training or p == 0.0:
        return input
    survival_rate = 1.0 - p
    size = [input.shape[0]] + [1] * (input.ndim - 1) if mode == "row" else [1] * input.ndim
    noise = jax.random.bernoulli(key, survival_rate, size).astype(input.dtype)
    if survival_rate > 0.0:
        noise = noise / survival_rate
    return input * noise


class StochasticDepth(nn.Module):
    def __init__(self, p: float, mode: str) -> None:
        super().__init__()
        self.p = p
        self.mode = mode

    def forward(self, input):
        key = self.make_rng() if self.training and self.p > 0.0 else None
        return stochastic_depth(input, self.p, self.mode, self.training, key)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(p={self.p}, mode={self.mode})"
''',
}
STANDINS = {
    "__init__.py": '"""torchvision, Python model sources converted by funcnet.port (no compiled ops)."""\n',
    "utils.py": '''"""Stand-in for torchvision.utils: what the model files import from it."""
import collections.abc
from typing import Any


def _log_api_usage_once(obj: Any) -> None:
    """torch's API-usage logging: nothing to log here."""


def _make_ntuple(x: Any, n: int) -> tuple:
    """``x`` as an ``n``-tuple (an iterable is kept as it is)."""
    return tuple(x) if isinstance(x, collections.abc.Iterable) else (x,) * n
''',
    "_internally_replaced_utils.py": '''def load_state_dict_from_url(*args, **kwargs):
    raise RuntimeError("this example downloads no weights")
''',
    "transforms/__init__.py": "",
    "transforms/_presets.py": '''"""Stand-in: the presets are only named in the weights' metadata."""
from enum import Enum


class InterpolationMode(Enum):
    NEAREST = "nearest"
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"


class ImageClassification:
    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs
''',
    "models/__init__.py": "",
    "ops/__init__.py": '''from .misc import MLP, Conv2dNormActivation, Conv3dNormActivation, Permute, SqueezeExcitation
from .stochastic_depth import StochasticDepth, stochastic_depth
''',
}
# torchvision/models files that are not classification families (their own subpackages aside).
NOT_FAMILIES = {"__init__.py", "_api.py", "_meta.py", "_utils.py", "feature_extraction.py"}


class Source:
    """torchvision's files, read from the wheel (a zip) or from an unpacked tree."""

    def __init__(self, path: str):
        path = os.path.expanduser(path)
        if zipfile.is_zipfile(path):
            self.zip = zipfile.ZipFile(path)
            self.root = None
            self.model_file = None
        else:
            parts = os.path.abspath(path).split(os.sep)
            if "torchvision" not in parts or not path.endswith(".py"):
                raise SystemExit(f"{path}: give the torchvision wheel or a .py file inside a torchvision/ tree")
            i = len(parts) - 1 - parts[::-1].index("torchvision")
            self.zip = None
            self.root = os.sep.join(parts[: i + 1])
            self.model_file = "/".join(parts[i + 1 :])

    def read(self, relpath: str) -> str:
        if self.zip is not None:
            return self.zip.read(f"torchvision/{relpath}").decode("utf-8")
        with open(os.path.join(self.root, relpath), encoding="utf-8") as f:
            return f.read()

    def families(self) -> list[str]:
        if self.zip is not None:
            names = [n[len("torchvision/"):] for n in self.zip.namelist()]
        else:
            names = [f"models/{n}" for n in os.listdir(os.path.join(self.root, "models"))]
        return sorted(n for n in names if re.fullmatch(r"models/[a-z_0-9]+\.py", n)
                      and n.split("/")[1] not in NOT_FAMILIES)


def find_family(source: Source, arch: str) -> str:
    """The model file that defines the builder ``def <arch>(``."""
    candidates = [source.model_file] if source.model_file else source.families()
    for relpath in candidates:
        if re.search(rf"^def {re.escape(arch)}\(", source.read(relpath), re.M):
            return relpath
    raise SystemExit(f"no torchvision model file defines {arch}() (looked in {', '.join(candidates)})")


def write_package(source: Source, family: str, out: str) -> int:
    """Converts ``family`` (and the sibling model files it imports) and the helpers into ``out/torchvision``."""
    flags = 0
    todo, done = [family, *HELPERS], set()
    while todo:
        relpath = todo.pop(0)
        if relpath in done:
            continue
        done.add(relpath)
        text = source.read(relpath)
        before = _count_flags(text)
        code = convert(text, filename=f"torchvision/{relpath}")
        flags += _count_flags(code) - before
        _write(out, relpath, code)
        if relpath.startswith("models/"):  # mobilenet.py re-exports mobilenetv2/v3
            todo += [f"models/{m}.py" for m in re.findall(r"^from \.(\w+) import", text, re.M) if not m.startswith("_")]
    for relpath in COPIED:
        _write(out, relpath, source.read(relpath))
    for relpath, text in {**STANDINS, **HAND_PORTED}.items():
        _write(out, relpath, text)
    return flags


def _count_flags(code: str) -> int:
    return code.count("# funcnet.port:")


def _write(out: str, relpath: str, text: str) -> None:
    path = os.path.join(out, "torchvision", relpath)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def digits_3x32(train: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The 8×8 digits as ``[N, 3, 32, 32]`` float32 (bilinear resize, grey repeated on 3 channels,
    standardised), and their labels."""
    data = Digits(train=train)
    images, labels = data.tensors
    big = F.interpolate(funcnet.tensor(images), size=(32, 32), mode="bilinear", align_corners=False)
    big = np.repeat(np.asarray(big), 3, axis=1)
    return ((big - big.mean()) / big.std()).astype(np.float32), np.asarray(labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("source", help="the torchvision wheel, or a model file inside a torchvision/ tree")
    parser.add_argument("--arch", default="resnet18", help="a torchvision builder, e.g. resnet18")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="where the converted package goes (default: a temporary folder)")
    args = parser.parse_args()
    start = time.perf_counter()

    source = Source(args.source)
    family = find_family(source, args.arch)
    out = args.out or tempfile.mkdtemp(prefix="funcnet-torchvision-")
    flags = write_package(source, family, out)
    print(f"converted torchvision/{family} and its helpers into {out}/torchvision ({flags} flagged)")
    sys.path.insert(0, out)
    module = importlib.import_module("torchvision." + family[:-3].replace("/", "."))
    model = getattr(module, args.arch)(num_classes=10)
    print(f"built {args.arch}: {model.num_parameters():,} parameters")

    images, labels = digits_3x32(train=True)
    criterion = nn.CrossEntropyLoss()
    optimizer = optim.SGD(lr=args.lr, momentum=0.9)
    state = TrainState.create(model, optimizer, funcnet.manual_seed(args.seed))
    train_step = make_train_step(model, criterion, optimizer)
    order = np.random.default_rng(args.seed).permutation(len(images))
    for step in range(args.steps):
        batch = order[(step * args.batch_size) % len(order):][: args.batch_size]
        state, step_metrics = train_step(state, (images[batch], labels[batch]))
        print(f"step {step + 1}, loss: {metrics.compute(step_metrics)['loss']:.4f}")
    print(f"done in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
