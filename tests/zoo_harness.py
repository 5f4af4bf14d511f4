"""Ports torchvision 0.28's classification models to funcnet with ``funcnet.port.convert`` and
compares each with the real torchvision running on torch.

The converted files form a package (``fvision``) in a temporary folder, laid out as torchvision
is, so the model files' package-relative imports resolve: ``models/<family>.py``, ``models/_utils.py``,
``_utils.py``, ``ops/misc.py`` and ``ops/stochastic_depth.py`` are torchvision's own files, converted
by the same converter; ``models/_meta.py`` is torchvision's (plain data). Stand-ins replace only
what a classification model does not compute with: the pretrained-weights registry
(``models/_api.py``: ``register_model``, ``Weights``, ``WeightsEnum``; nothing is downloaded), the
preprocessing presets (``transforms/_presets.py``), torch's API-usage logger
(``utils._log_api_usage_once``, a no-op) and the hub download path.
"""

from __future__ import annotations

import ast
import importlib
import os
import re
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import torch
from torchvision_wheel import converted_source, import_torchvision, read_source

PACKAGE = "fvision"

_API_STANDIN = '''
"""Stand-in for torchvision.models._api: the weights registry, without downloads."""
from enum import Enum


class Weights:
    def __init__(self, url, transforms, meta):
        self.url, self.transforms, self.meta = url, transforms, meta


class WeightsEnum(Enum):
    @classmethod
    def verify(cls, obj):
        if obj is not None and not isinstance(obj, cls):
            obj = cls[obj.replace(cls.__name__ + ".", "")] if isinstance(obj, str) else obj
        return obj

    def get_state_dict(self, *args, **kwargs):
        raise RuntimeError("funcnet's torchvision harness downloads no weights")


def register_model(name=None):
    return lambda fn: fn
'''

_PRESETS_STANDIN = '''
"""Stand-in for torchvision.transforms._presets: named only in the weights' metadata."""
from enum import Enum


class InterpolationMode(Enum):
    NEAREST = "nearest"
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"


class ImageClassification:
    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs
'''

_HUB_STANDIN = '''
def load_state_dict_from_url(*args, **kwargs):
    raise RuntimeError("funcnet's torchvision harness downloads no weights")
'''


def _functions_from(source: str, names: list[str]) -> str:
    """The top-level ``def``s named ``names`` of a torchvision file (used for ``utils._make_ntuple``)."""
    tree = ast.parse(source)
    parts = [ast.get_source_segment(source, node) for node in tree.body
             if isinstance(node, ast.FunctionDef) and node.name in names]
    return "\n\n\n".join(parts)


def _write(root: str, relpath: str, text: str) -> None:
    path = os.path.join(root, PACKAGE, relpath)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def build_package(root: str, families: list[str]) -> list[tuple[str, str]]:
    """Converts the files into ``root/fvision``; returns the converter's flags as (file, message)."""
    flags: list[tuple[str, str]] = []

    def converted(relpath: str) -> str:
        code, found = converted_source(f"torchvision/{relpath}")
        flags.extend((f"{relpath}:{f.line}", f.message) for f in found)
        # A few files import their package absolutely (maxvit: `from torchvision.ops.misc import ...`):
        # inside the converted package that is fvision, not the real torchvision.
        return re.sub(r"^(\s*)from torchvision\.", rf"\1from {PACKAGE}.", code, flags=re.MULTILINE)

    for folder in ("", "models", "transforms"):
        _write(root, os.path.join(folder, "__init__.py"), "")
    # torchvision.ops re-exports its layers (EfficientNet: `from ..ops import StochasticDepth`); the
    # real __init__ also loads compiled detection ops, which no classification model uses.
    _write(root, "ops/__init__.py", "from .misc import Conv2dNormActivation, MLP, Permute, SqueezeExcitation\n"
                                    "from .stochastic_depth import stochastic_depth, StochasticDepth\n")
    _write(root, "_utils.py", converted("_utils.py"))
    _write(root, "_internally_replaced_utils.py", _HUB_STANDIN)
    utils_source = read_source("torchvision/utils.py")
    _write(root, "utils.py", textwrap.dedent('''
        """Stand-in for torchvision.utils: the API-usage logger (a no-op) and torchvision's own _make_ntuple."""
        import collections
        from itertools import repeat
        from typing import Any


        def _log_api_usage_once(obj):
            pass


        ''') + _functions_from(utils_source, ["_make_ntuple"]) + "\n")
    _write(root, "transforms/_presets.py", _PRESETS_STANDIN)
    _write(root, "models/_api.py", _API_STANDIN)
    _write(root, "models/_meta.py", read_source("torchvision/models/_meta.py"))
    _write(root, "models/_utils.py", converted("models/_utils.py"))
    _write(root, "ops/misc.py", converted("ops/misc.py"))
    _write(root, "ops/stochastic_depth.py", converted("ops/stochastic_depth.py"))
    for family in families:
        _write(root, f"models/{family}.py", converted(f"models/{family}.py"))
    return flags


def load(root: str, family: str):
    """The converted model module ``fvision.models.<family>`` and torchvision's own."""
    if root not in sys.path:
        sys.path.insert(0, root)
    return importlib.import_module(f"{PACKAGE}.models.{family}"), import_torchvision(f"torchvision.models.{family}")


# -- making the torch model non-degenerate before comparing ---------------------------------------
def randomize_constants(tmodel: torch.nn.Module, seed: int = 0) -> None:
    """Every float tensor of the torch model that is constant (BatchNorm/LayerNorm at identity,
    zero biases, zero class tokens, running statistics) gets random values, so a comparison
    exercises it; running variances stay positive."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in tmodel.state_dict(keep_vars=True).items():
            if not t.is_floating_point() or t.numel() == 0:
                continue
            if t.numel() > 1 and float(t.std()) > 0:
                continue
            noise = torch.randn(t.shape, generator=gen)
            if name.endswith("running_var"):
                t.copy_(0.5 + torch.rand(t.shape, generator=gen))
            elif name.endswith("weight") and float(t.flatten()[0]) == 1.0:
                t.copy_(1.0 + 0.2 * noise)
            else:
                t.copy_(t + 0.1 * noise)


def torch_state(tmodel: torch.nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy().copy() for k, v in tmodel.state_dict().items()}


def leaves(out) -> list[np.ndarray]:
    """The arrays of a model output (a tensor, or GoogLeNet/Inception's named tuple of them)."""
    if isinstance(out, (tuple, list)):
        return [a for o in out if o is not None for a in leaves(o)]
    return [out.detach().numpy() if isinstance(out, torch.Tensor) else np.asarray(out)]


def assert_rel_close(ours, ref, rel: float, what: str) -> None:
    """max |ours - ref| <= rel * max |ref| (+ a tiny floor), array by array."""
    ours, ref = leaves(ours), leaves(ref)
    assert len(ours) == len(ref), f"{what}: {len(ours)} outputs vs torch's {len(ref)}"
    for a, b in zip(ours, ref, strict=True):
        assert a.shape == b.shape, f"{what}: shape {a.shape} vs torch's {b.shape}"
        scale = float(np.max(np.abs(b))) if b.size else 0.0
        err = float(np.max(np.abs(a.astype(np.float64) - b))) if b.size else 0.0
        assert err <= rel * scale + 1e-7, f"{what}: max abs error {err:.3g} > {rel} x max|torch| {scale:.3g}"


def assert_same_distributions(fresh_ours: dict, fresh_torch: dict, min_numel: int = 256) -> None:
    """Each tensor of a fresh funcnet model is drawn as torch's fresh model draws it: constant
    tensors equal exactly; random tensors of ``min_numel`` or more elements have the same mean
    and spread (std and mean within 4-5 standard errors of the difference of two samples)."""
    assert list(fresh_ours) == list(fresh_torch)
    for name, ref in fresh_torch.items():
        ours = np.asarray(fresh_ours[name])
        ref = np.asarray(ref)
        assert ours.shape == ref.shape, name
        if not np.issubdtype(ref.dtype, np.floating):
            np.testing.assert_array_equal(ours, ref, err_msg=name)
            continue
        if ref.size == 1 or float(ref.std()) == 0:
            np.testing.assert_array_equal(ours, ref, err_msg=f"{name}: constant initialisation")
            continue
        if ref.size < min_numel:
            continue
        # Two std estimates of n samples differ by ~1/sqrt(n) relative (normal draws): allow 4 of that.
        np.testing.assert_allclose(ours.std(), ref.std(), rtol=4 / np.sqrt(ref.size), err_msg=f"{name}: init std")
        stderr = ref.std() / np.sqrt(ref.size)
        assert abs(ours.mean() - ref.mean()) <= 5 * stderr * np.sqrt(2) + 1e-7, f"{name}: init mean"


def _jit(fn):
    """``jax.jit`` with LLVM's optimisations off: these tests run each model once or twice on small
    inputs, so XLA's compile is most of their time, and most of that is LLVM (GoogLeNet's check:
    21 s -> 15 s). The HLO graph and its fusions are XLA's usual ones; rounding can differ by an
    ulp (no fused multiply-adds), far below these model-level checks' 1e-4 relative tolerance.
    The suite compiles this way by default too (tests/conftest.py); set here as well, these checks
    stay at O0 under ``FUNCNET_TEST_COMPILE=default``."""
    return jax.jit(fn, compiler_options={"xla_backend_optimization_level": 0})


def _train_forward(fmodel, variables, x: np.ndarray, with_grads: bool):
    """Jitted train-mode ``(outputs, new buffers)``, plus, ``with_grads``, d(cross-entropy of the
    main logits)/d(params) from the same compile."""
    import funcnet.nn.functional as F

    def forward(params, xx):
        return fmodel.apply(params, xx, buffers=variables.buffers, train=True, key=jax.random.key(1))

    if not with_grads:
        return (*_jit(forward)(variables.params, jnp.asarray(x)), None)

    def loss(params, xx):
        out, new_buffers = forward(params, xx)
        main = out[0] if isinstance(out, tuple) else out  # GoogLeNet/Inception: aux outputs follow
        y = jnp.arange(main.shape[0]) % main.shape[-1]
        return F.cross_entropy(main, y), (out, new_buffers)

    (_, (out, new_buffers)), grads = _jit(jax.value_and_grad(loss, has_aux=True))(variables.params, jnp.asarray(x))
    return out, new_buffers, grads


def check_family(fmodule, tmodule, make, x_shape=(2, 3, 32, 32), seed=0, rel=1e-4, train=True,
                 train_step=True, train_rel=None):
    """The issue's acceptance for one architecture; ``make(module)`` builds it from either module.

    ``rel`` bounds the eval output's error relative to torch's largest value; ``train_rel``
    (default ``rel``) the train-mode output's and running statistics'. ``train_step`` also takes
    the gradient of the train-mode loss (finite, not all zero); it needs ``train``."""
    train_rel = rel if train_rel is None else train_rel
    if train_step and not train:
        raise ValueError("check_family: train_step=True takes its gradients in train mode; pass train=True")

    torch.manual_seed(seed)
    tmodel = make(tmodule)
    fmodel = make(fmodule)
    fresh = fmodel.init(jax.random.key(seed))

    # state_dict keys and order, and the default initialisation, as torch's
    fresh_sd = fmodel.state_dict(fresh)
    assert list(fresh_sd) == list(tmodel.state_dict()), "state_dict keys/order differ from torch's"
    assert_same_distributions(fresh_sd, torch_state(tmodel))

    # eval with torch's weights, made non-degenerate
    randomize_constants(tmodel, seed)
    state = torch_state(tmodel)
    variables, _ = fmodel.load_state_dict(state)
    x = np.random.default_rng(seed).standard_normal(x_shape).astype(np.float32)
    tmodel.eval()
    with torch.no_grad():
        ref = tmodel(torch.from_numpy(x))
    ours = _jit(lambda v, xx: fmodel.apply(v, xx))(variables, jnp.asarray(x))
    assert_rel_close(ours, ref, rel, "eval output")

    if train:  # train mode, dropout off: outputs and BatchNorm running statistics after one step
        tmodel.train()
        with torch.no_grad():
            ref = tmodel(torch.from_numpy(x))
        # train_step: gradients from the same compile (a jitted train step's work); compiling the
        # model once more for make_train_step cost tens of seconds per family, and make_train_step
        # on a ported model is exercised by examples/port_torchvision.py's test.
        ours, new_buffers, grads = _train_forward(fmodel, variables, x, with_grads=train_step)
        if train_step:
            norms = [float(np.abs(np.asarray(g)).max()) for g in jax.tree.leaves(grads)]  # host: no compile per shape
            assert all(np.isfinite(norms)), "non-finite gradient through the train-mode model"
            assert any(n > 0 for n in norms), "the gradient through the model is zero everywhere"
        assert_rel_close(ours, ref, train_rel, "train-mode output")
        ours_sd = fmodel.state_dict(variables.params, new_buffers)
        for name, value in torch_state(tmodel).items():
            if name in dict(tmodel.named_buffers()):
                assert_rel_close(ours_sd[name], value, train_rel, f"buffer {name} after one train step")
    return fmodel, tmodel, fresh
