"""funcnet.testing against torch's own tools: assert_close vs torch.testing.assert_close on a table
of generated cases, gradcheck vs torch.autograd.gradcheck on funcnet.nn's layers, the torch-parity
assertion, and the pytest plugin (through pytester)."""

from __future__ import annotations

import re
from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
import torch

import funcnet.nn as nn
from funcnet.interop.torch import numpy_to_tensor
from funcnet.testing import (
    GradcheckError,
    assert_close,
    assert_function_matches_torch,
    assert_module_matches_torch,
    gradcheck,
    gradgradcheck,
)

pytest_plugins = ["pytester"]

# ----------------------------------------------------------------------------- assert_close table

_DTYPES = ["float16", "bfloat16", "float32", "float64", "complex64", "int32", "int64", "uint8", "bool"]
_SHAPES = [(), (0,), (5,), (2, 3)]


def _np_dtype(name: str) -> np.dtype:
    return np.dtype(ml_dtypes.bfloat16) if name == "bfloat16" else np.dtype(name)


def _draw(rng: np.random.Generator, shape: tuple, dtype: str) -> np.ndarray:
    if dtype == "bool":
        return rng.random(shape) < 0.5
    if dtype in ("int32", "int64", "uint8"):
        return rng.integers(0, 50, shape).astype(dtype)
    x = rng.standard_normal(shape) * 3
    if dtype.startswith("complex"):
        x = x + 1j * rng.standard_normal(shape)
    return np.asarray(x).astype(_np_dtype(dtype))


def _perturbed(rng, e: np.ndarray, how: str) -> np.ndarray:
    """``e`` changed by ``how``: none, within (a hair inside torch's default tolerance), beyond, one
    (a single element off), nan/inf variants."""
    a = e.copy()
    if how == "none" or a.size == 0:
        return a
    flat = a.reshape(-1)
    if how == "one":
        flat[rng.integers(flat.size)] += 1
    elif how == "within":
        rtol = {"float16": 1e-3, "bfloat16": 1.6e-2, "float32": 1.3e-6, "float64": 1e-7, "complex64": 1.3e-6}
        wide = flat.astype(np.complex128 if a.dtype.kind == "c" else np.float64)
        flat[:] = (wide + 0.3 * rtol.get(str(a.dtype), 0) * np.abs(wide)).astype(a.dtype)
    elif how == "beyond":
        wide = flat.astype(np.complex128 if a.dtype.kind == "c" else np.float64)
        flat[:] = (wide * 1.05 + 0.1).astype(a.dtype)
    return a


def _table() -> list:
    """(id, actual, expected, kwargs) cases, all numpy arrays; converted per framework in the test."""
    rng = np.random.default_rng(0)
    cases = []
    for dtype in _DTYPES:
        for shape in _SHAPES:
            e = _draw(rng, shape, dtype)
            hows = ["none", "one"] if dtype in ("int32", "int64", "uint8", "bool") else ["none", "within", "beyond"]
            if shape == (0,):
                hows = ["none"]
            for how in hows:
                if dtype == "bool" and how == "one":
                    a = e.copy()
                    a.reshape(-1)[0] = ~a.reshape(-1)[0]
                else:
                    a = _perturbed(rng, e, how)
                cases.append((f"{dtype}-{shape}-{how}", a, e, {}))
    # NaN and inf, with and without equal_nan
    x = rng.standard_normal(6).astype(np.float32)
    nan_both, nan_one = x.copy(), x.copy()
    nan_both[2] = np.nan
    nan_one[2] = np.nan
    for equal_nan in (False, True):
        cases.append((f"nan-both-equal_nan={equal_nan}", nan_both, nan_both.copy(), {"equal_nan": equal_nan}))
        cases.append((f"nan-one-equal_nan={equal_nan}", nan_one, x, {"equal_nan": equal_nan}))
    inf, neg_inf = x.copy(), x.copy()
    inf[1], neg_inf[1] = np.inf, -np.inf
    cases.append(("inf-same", inf, inf.copy(), {}))
    cases.append(("inf-opposite", inf, neg_inf, {}))
    cases.append(("inf-vs-finite", inf, x, {}))
    cases.append(("inf-vs-finite-huge-tol", inf, x, {"rtol": 1e30, "atol": 1e30}))
    cases.append(("nan-scalar", np.float32(np.nan) * np.ones((), np.float32), np.zeros((), np.float32), {}))
    # mismatched shapes and dtypes
    cases.append(("shape-(3,)-(4,)", x[:3], x[:4], {}))
    cases.append(("shape-(2,3)-(3,2)", x.reshape(2, 3), x.reshape(3, 2), {}))
    cases.append(("shape-()-(1,)", x[:1].reshape(()), x[:1], {}))
    for da, de in [("float32", "float64"), ("float16", "float32"), ("int64", "float32"), ("int32", "int64"),
                   ("bfloat16", "float16"), ("uint8", "int8")]:
        a = x.astype(_np_dtype(da)) if "int" not in da else np.arange(6).astype(da)
        e = x.astype(_np_dtype(de)) if "int" not in de else np.arange(6).astype(de)
        cases.append((f"dtype-{da}-{de}", a, e, {}))
        cases.append((f"dtype-{da}-{de}-unchecked", a, e, {"check_dtype": False}))
    # explicit tolerances
    y = x * (1 + 1e-4)
    for rtol, atol in [(1e-3, 0.0), (1e-5, 0.0), (0.0, 1e-3), (0.0, 0.0), (1e-5, 1e-5)]:
        cases.append((f"tol-{rtol}-{atol}", y, x, {"rtol": rtol, "atol": atol}))
    # a matched element with a larger difference than the mismatched one: the message must report the mismatch
    for dtype in ("float32", "float64"):
        e = np.array([1000.0, 0.001, 5.0], dtype)
        a = np.array([1000.0 * (1 + 1.2e-6 if dtype == "float32" else 1 + 0.9e-7), 0.002, 5.0], dtype)
        cases.append((f"matched-larger-diff-{dtype}", a, e, {}))
    cases.append(("int-tol", np.arange(6), np.arange(6) + 1, {"rtol": 0.0, "atol": 1.0}))
    cases.append(("empty-2d", np.zeros((0, 3), np.float32), np.zeros((0, 3), np.float32), {}))
    return cases


_TABLE = _table()
_FRAMEWORKS = ["jax", "numpy", "torch"]


def _as(framework: str, a: np.ndarray):
    if framework == "torch":
        return numpy_to_tensor(a)
    if framework == "jax":
        return jnp.asarray(a)
    return a


def _outcome(check, actual, expected, kwargs) -> str | None:
    """None if ``check`` passes, else the error type and message."""
    try:
        check(actual, expected, **kwargs)
    except (AssertionError, TypeError, ValueError) as error:
        return f"{type(error).__name__}: {error}"
    return None


def test_table_is_large_and_mixed():
    assert len(_TABLE) >= 50
    results = [_outcome(torch.testing.assert_close, numpy_to_tensor(a), numpy_to_tensor(e), k) for _, a, e, k in _TABLE]
    passing = sum(r is None for r in results)
    assert 15 <= passing <= len(_TABLE) - 15, passing  # both outcomes are well represented


@pytest.mark.parametrize(("case", "actual", "expected", "kwargs"), _TABLE, ids=[c[0] for c in _TABLE])
def test_assert_close_decides_and_reports_as_torch(case, actual, expected, kwargs):
    """Same pass/fail as torch.testing.assert_close, and the same message facts (the numbers in
    "Mismatched elements", "Greatest absolute/relative difference ... at index"); the actual side
    comes from JAX, NumPy or torch in turn, the expected side is torch."""
    torch_result = _outcome(torch.testing.assert_close, numpy_to_tensor(actual), numpy_to_tensor(expected), kwargs)
    framework = _FRAMEWORKS[[c[0] for c in _TABLE].index(case) % 3]
    with jax.enable_x64(True):  # keep float64/int64 as they are on the JAX side
        ours = _outcome(assert_close, _as(framework, actual), numpy_to_tensor(expected), kwargs)
    assert (ours is None) == (torch_result is None), (ours, torch_result)
    if ours is None:
        return
    assert ours.split(":")[0] == torch_result.split(":")[0]  # the exception type
    if "attribute 'shape'" in torch_result:
        assert f"attribute 'shape' do not match: {actual.shape} != {expected.shape}" in ours
    elif "attribute 'dtype'" in torch_result:
        assert "attribute 'dtype' do not match" in ours and str(actual.dtype) in ours and str(expected.dtype) in ours
    else:  # value mismatch: torch's message, line for line (numbers to float32 precision: complex abs
        # may round differently in the last bit)
        assert _NUMBER.sub("#", ours) == _NUMBER.sub("#", torch_result)
        ours_numbers, torch_numbers = (
            [float(n) for n in _NUMBER.findall(text)] for text in (ours, torch_result))
        np.testing.assert_allclose(ours_numbers, torch_numbers, rtol=1e-6)


_NUMBER = re.compile(r"-?(?:\d+\.?\d*(?:e[-+]?\d+)?|inf|nan)")


class _Pair(NamedTuple):
    weight: object
    bias: object


def test_pytree_paths_keys_and_lengths():
    tree = {"enc": [_Pair(np.ones(3, np.float32), np.zeros(2, np.float32))], "step": 3}
    assert_close(tree, {"enc": [_Pair(torch.ones(3), jnp.zeros(2))], "step": 3})
    bad = {"enc": [_Pair(np.ones(3, np.float32), np.array([0.0, 0.5], np.float32))], "step": 3}
    with pytest.raises(AssertionError, match=re.escape("The failure occurred for item ['enc'][0][1]")) as info:
        assert_close(bad, tree)
    assert "Mismatched elements: 1 / 2 (50.0%)" in str(info.value)
    assert "Greatest absolute difference: 0.5 at index (1,)" in str(info.value)
    with pytest.raises(AssertionError, match=r"Missing keys in the actual mapping: \['step'\]"):
        assert_close({"enc": tree["enc"]}, tree)
    with pytest.raises(AssertionError, match="length of the sequences mismatch: 1 != 2"):
        assert_close([1.0], [1.0, 2.0])
    with pytest.raises(TypeError, match="No comparison pair"):
        assert_close("a", np.ones(1))
    with pytest.raises(ValueError, match="'rtol' and 'atol' must be either specified or omitted"):
        assert_close(1.0, 1.0, rtol=1e-3)


def test_cross_framework_dtypes_and_numbers():
    assert_close(jnp.ones(2, jnp.bfloat16), torch.ones(2, dtype=torch.bfloat16))
    with pytest.raises(AssertionError, match="'dtype' do not match: float32 != float64"):
        assert_close(jnp.ones(2), np.ones(2))
    assert_close(jnp.ones(2), np.ones(2), check_dtype=False)
    assert_close(jnp.full(3, 0.5), 0.5)  # a number broadcasts against an array
    with pytest.raises(AssertionError, match="Mismatched elements: 3 / 3"):
        assert_close(jnp.full(3, 0.5), 0.6)
    with pytest.raises(AssertionError, match=r"The \(d\)types do not match"):
        assert_close(1, 1.0)
    assert_close(None, None)
    with pytest.raises(AssertionError, match="only x"):
        assert_close(np.ones(2), np.zeros(2), msg="only x")
    with pytest.raises(AssertionError, match="^prefix\nTensor-likes are not close"):
        assert_close(np.ones(2), np.zeros(2), msg=lambda m: "prefix\n" + m)


def test_registered_pytree_nodes_compare_child_by_child():
    from funcnet.nn.module import Variables

    assert_close(Variables({"w": jnp.ones(2)}, {}), Variables({"w": torch.ones(2)}, {}))
    with pytest.raises(AssertionError, match=re.escape("item [0]['w']")):
        assert_close(Variables({"w": jnp.ones(2)}, {}), Variables({"w": torch.zeros(2)}, {}))


# ----------------------------------------------------------------------------- gradcheck


@jax.custom_vjp
def _sin_wrong_sign(x):
    return jnp.sin(x)


_sin_wrong_sign.defvjp(lambda x: (jnp.sin(x), x), lambda x, g: (-g * jnp.cos(x),))  # sign error


def test_gradcheck_catches_a_wrong_custom_vjp():
    x = jnp.linspace(-1.0, 1.0, 4)
    assert gradcheck(jnp.sin, (x,))
    names_the_element = r"for output element \(\d,\) with respect to inputs\[0\] element \(\d,\): -?[\d.]+ analytically"
    with pytest.raises(GradcheckError, match=names_the_element):
        gradcheck(_sin_wrong_sign, (x,))
    assert gradcheck(_sin_wrong_sign, (x,), raise_exception=False) is False
    with pytest.raises(GradcheckError, match="fast mode"):
        gradcheck(_sin_wrong_sign, (x,), fast_mode=True)


class _BrokenScale(nn.Module):
    """A custom layer ``x * gain + shift`` whose hand-written gradient for ``gain`` drops the x factor."""

    def __init__(self, n: int):
        super().__init__()
        self.gain = nn.Parameter((n,), init=1.0)
        self.shift = nn.Parameter((n,), init=0.0)

    def forward(self, x):
        return _scale(x, self.gain) + self.shift


@jax.custom_vjp
def _scale(x, gain):
    return x * gain


def _scale_bwd(res, g):
    x, gain = res
    return g * gain, jnp.sum(g, axis=0)  # wrong: the gain gradient is sum(g * x)


_scale.defvjp(lambda x, gain: (x * gain, (x, gain)), _scale_bwd)


def test_gradcheck_names_the_parameter_of_a_wrong_custom_layer():
    model = _BrokenScale(3)
    params, _ = model.init(jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (2, 3))
    with pytest.raises(GradcheckError, match=re.escape("with respect to inputs[0]['gain'] element")):
        gradcheck(model.apply, (params, x))
    assert gradcheck(model.apply, (params, x), argnums=1)  # the input gradient is right


def test_gradgradcheck_catches_a_wrong_second_derivative():
    @jax.custom_vjp
    def cube(x):
        return x**3

    # right first derivative, but its own derivative is lost (stop_gradient)
    cube.defvjp(lambda x: (x**3, x), lambda x, g: (g * 3 * jax.lax.stop_gradient(x) ** 2,))
    x = jnp.array([0.5, -1.0, 2.0])
    assert gradcheck(cube, (x,))
    assert gradgradcheck(lambda x: x**3, (x,))
    with pytest.raises(GradcheckError, match="Jacobian mismatch"):
        gradgradcheck(cube, (x,))


# (name, funcnet module, torch module, input shapes; int inputs as ("int", shape, high), train)
_LAYERS = [
    ("Linear", lambda m: m.Linear(3, 2), [(2, 3)], False),
    ("Conv1d", lambda m: m.Conv1d(2, 2, 3, padding=1), [(1, 2, 4)], False),
    ("Conv2d", lambda m: m.Conv2d(1, 2, 2, stride=2), [(1, 1, 4, 4)], False),
    ("Conv3d", lambda m: m.Conv3d(1, 1, 2), [(1, 1, 3, 3, 3)], False),
    ("ConvTranspose1d", lambda m: m.ConvTranspose1d(2, 1, 3, stride=2), [(1, 2, 3)], False),
    ("ConvTranspose2d", lambda m: m.ConvTranspose2d(1, 1, 2, stride=2), [(1, 1, 2, 2)], False),
    ("ConvTranspose3d", lambda m: m.ConvTranspose3d(1, 1, 2), [(1, 1, 2, 2, 2)], False),
    ("MaxPool1d", lambda m: m.MaxPool1d(2), [(1, 2, 4)], False),
    ("MaxPool2d", lambda m: m.MaxPool2d(2), [(1, 1, 4, 4)], False),
    ("MaxPool3d", lambda m: m.MaxPool3d(2), [(1, 1, 2, 2, 4)], False),
    ("AvgPool1d", lambda m: m.AvgPool1d(2), [(1, 2, 4)], False),
    ("AvgPool2d", lambda m: m.AvgPool2d(2, padding=1), [(1, 1, 3, 3)], False),
    ("AvgPool3d", lambda m: m.AvgPool3d(2), [(1, 1, 2, 2, 4)], False),
    ("AdaptiveAvgPool1d", lambda m: m.AdaptiveAvgPool1d(2), [(1, 2, 5)], False),
    ("AdaptiveAvgPool2d", lambda m: m.AdaptiveAvgPool2d(2), [(1, 1, 3, 3)], False),
    ("AdaptiveAvgPool3d", lambda m: m.AdaptiveAvgPool3d(1), [(1, 1, 2, 2, 2)], False),
    ("AdaptiveMaxPool1d", lambda m: m.AdaptiveMaxPool1d(2), [(1, 2, 5)], False),
    ("AdaptiveMaxPool2d", lambda m: m.AdaptiveMaxPool2d(2), [(1, 1, 3, 3)], False),
    ("AdaptiveMaxPool3d", lambda m: m.AdaptiveMaxPool3d(1), [(1, 1, 2, 2, 2)], False),
    ("BatchNorm1d", lambda m: m.BatchNorm1d(3), [(4, 3)], True),
    ("BatchNorm2d", lambda m: m.BatchNorm2d(2), [(2, 2, 2, 2)], True),
    ("BatchNorm3d", lambda m: m.BatchNorm3d(1), [(2, 1, 2, 2, 1)], True),
    ("BatchNorm2d-eval", lambda m: m.BatchNorm2d(2), [(1, 2, 2, 2)], False),
    ("LayerNorm", lambda m: m.LayerNorm(4), [(2, 4)], False),
    ("GroupNorm", lambda m: m.GroupNorm(2, 4), [(2, 4, 3)], False),
    ("InstanceNorm1d", lambda m: m.InstanceNorm1d(2, affine=True), [(2, 2, 5)], False),
    ("InstanceNorm2d", lambda m: m.InstanceNorm2d(1, affine=True), [(1, 1, 3, 3)], False),
    ("InstanceNorm3d", lambda m: m.InstanceNorm3d(1), [(1, 1, 2, 2, 2)], False),
    ("ReLU", lambda m: m.ReLU(), [(2, 3)], False),
    ("ReLU6", lambda m: m.ReLU6(), [(2, 3)], False),
    ("LeakyReLU", lambda m: m.LeakyReLU(0.1), [(2, 3)], False),
    ("ELU", lambda m: m.ELU(), [(2, 3)], False),
    ("GELU", lambda m: m.GELU(), [(2, 3)], False),
    ("GELU-tanh", lambda m: m.GELU(approximate="tanh"), [(2, 3)], False),
    ("SiLU", lambda m: m.SiLU(), [(2, 3)], False),
    ("Mish", lambda m: m.Mish(), [(2, 3)], False),
    ("Sigmoid", lambda m: m.Sigmoid(), [(2, 3)], False),
    ("Tanh", lambda m: m.Tanh(), [(2, 3)], False),
    ("Softplus", lambda m: m.Softplus(beta=2.0), [(2, 3)], False),
    ("Hardtanh", lambda m: m.Hardtanh(), [(2, 3)], False),
    ("Softmax", lambda m: m.Softmax(dim=1), [(2, 3)], False),
    ("LogSoftmax", lambda m: m.LogSoftmax(dim=1), [(2, 3)], False),
    ("Identity", lambda m: m.Identity(), [(2, 3)], False),
    ("Flatten", lambda m: m.Flatten(), [(2, 2, 2)], False),
    ("Unflatten", lambda m: m.Unflatten(1, (2, 2)), [(2, 4)], False),
    ("Dropout-eval", lambda m: m.Dropout(0.5), [(2, 3)], False),
    ("Dropout2d-eval", lambda m: m.Dropout2d(0.5), [(1, 2, 2, 2)], False),
    ("Embedding", lambda m: m.Embedding(5, 3), [("int", (2, 3), 5)], False),
    ("RNN", lambda m: m.RNN(3, 2), [(2, 1, 3)], False),
    ("LSTM", lambda m: m.LSTM(2, 2, batch_first=True), [(1, 2, 2)], False),
    ("GRU", lambda m: m.GRU(2, 2), [(2, 1, 2)], False),
    ("RNNCell", lambda m: m.RNNCell(3, 2), [(2, 3)], False),
    ("LSTMCell", lambda m: m.LSTMCell(2, 2), [(1, 2)], False),
    ("GRUCell", lambda m: m.GRUCell(2, 2), [(1, 2)], False),
    ("MultiheadAttention", lambda m: m.MultiheadAttention(4, 2), [(2, 1, 4), (3, 1, 4), (3, 1, 4)], False),
    ("TransformerEncoderLayer",
     lambda m: m.TransformerEncoderLayer(4, 2, dim_feedforward=4, dropout=0.0), [(2, 1, 4)], False),
    ("TransformerDecoderLayer",
     lambda m: m.TransformerDecoderLayer(4, 2, dim_feedforward=4, dropout=0.0), [(2, 1, 4), (3, 1, 4)], False),
    ("TransformerEncoder",
     lambda m: m.TransformerEncoder(m.TransformerEncoderLayer(4, 2, dim_feedforward=4, dropout=0.0), 1,
                                    enable_nested_tensor=False), [(2, 1, 4)], False),
    ("Transformer",
     lambda m: m.Transformer(4, 2, num_encoder_layers=1, num_decoder_layers=1, dim_feedforward=4, dropout=0.0),
     [(3, 1, 4), (2, 1, 4)], False),
    ("Sequential", lambda m: m.Sequential(m.Linear(3, 4), m.Tanh(), m.Linear(4, 2)), [(2, 3)], False),
    ("MSELoss", lambda m: m.MSELoss(), [(2, 3), (2, 3)], False),
    ("L1Loss", lambda m: m.L1Loss(), [(2, 3), (2, 3)], False),
    ("SmoothL1Loss", lambda m: m.SmoothL1Loss(), [(2, 3), (2, 3)], False),
    ("HuberLoss", lambda m: m.HuberLoss(delta=0.5), [(2, 3), (2, 3)], False),
    ("BCEWithLogitsLoss", lambda m: m.BCEWithLogitsLoss(), [(2, 3), ("prob", (2, 3))], False),
    ("BCELoss", lambda m: m.BCELoss(), [("prob", (2, 3)), ("prob", (2, 3))], False),
    ("CrossEntropyLoss", lambda m: m.CrossEntropyLoss(label_smoothing=0.1), [(3, 4), ("int", (3,), 4)], False),
    ("NLLLoss", lambda m: m.NLLLoss(), [(3, 4), ("int", (3,), 4)], False),
    ("KLDivLoss", lambda m: m.KLDivLoss(reduction="batchmean"), [(2, 3), ("prob", (2, 3))], False),
]


def _inputs(specs, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for spec in specs:
        if spec[0] == "int":
            out.append(rng.integers(0, spec[2], spec[1]))
        elif spec[0] == "prob":
            out.append(rng.uniform(0.1, 0.9, spec[1]))
        else:
            out.append(rng.standard_normal(spec))
    return out


def _torch_passes_gradcheck(make, specs_inputs: list, train: bool) -> bool:
    """torch's own gradcheck of one layer, in float64, over its inputs and parameters (functional_call)."""
    module = make(torch.nn).double().train(train)
    names = [k for k, _ in module.named_parameters()]
    params = [p.detach().clone().requires_grad_(True) for _, p in module.named_parameters()]
    xs = [torch.tensor(x, requires_grad=np.issubdtype(x.dtype, np.floating)) for x in specs_inputs]
    buffers = dict(module.named_buffers())

    def f(*args):
        ps = dict(zip(names, args[:len(names)]))
        out = torch.func.functional_call(module, {**ps, **{k: b.clone() for k, b in buffers.items()}},
                                         tuple(args[len(names):]))
        return tuple(t for t in jax.tree.leaves(out) if t.is_floating_point())

    return torch.autograd.gradcheck(f, (*params, *xs), eps=1e-6, atol=1e-5, rtol=1e-3, raise_exception=False)


def _funcnet_gradcheck(entries, inputs: dict) -> bool:
    """funcnet's gradcheck of all the layers at once: ``({name: params}, {name: inputs}) -> {name:
    output}`` (one compilation; a failure names the layer: ``output['LSTM']``, ``inputs[0]['LSTM']``)."""
    models = {name: make(nn) for name, make, _, _ in entries}
    train = {name: t for name, _, _, t in entries}
    params, buffers = {}, {}
    for i, (name, model) in enumerate(models.items()):
        if hasattr(model, "init"):  # losses are plain callables
            p, buffers[name] = model.init(jax.random.key(i))
            # away from init's ones/zeros (LayerNorm at identity would hide layout errors)
            rng = np.random.default_rng(i)
            params[name] = jax.tree.map(lambda a, rng=rng: np.asarray(a) + 0.3 * rng.standard_normal(a.shape), p)

    def forward(params, inputs):
        outs = {}
        for name, model in models.items():
            if name not in params:
                outs[name] = model(*inputs[name])
                continue
            out = model.apply(params[name], *inputs[name], buffers=buffers[name], train=train[name])
            outs[name] = out[0] if train[name] else out
        return outs

    return gradcheck(forward, (params, inputs))


_GROUPS = {
    "elementwise": ["ReLU", "ReLU6", "LeakyReLU", "ELU", "GELU", "GELU-tanh", "SiLU", "Mish", "Sigmoid", "Tanh",
                    "Softplus", "Hardtanh", "Softmax", "LogSoftmax", "Identity", "Flatten", "Unflatten",
                    "Dropout-eval", "Dropout2d-eval"],
    "pooling": [c[0] for c in _LAYERS if "Pool" in c[0]],
    "losses": [c[0] for c in _LAYERS if c[0].endswith("Loss")],
    "linear-conv": ["Linear", "Sequential", "Embedding"] + [c[0] for c in _LAYERS if c[0].startswith("Conv")],
    "normalization": [c[0] for c in _LAYERS if "Norm" in c[0]],
    "recurrent": ["RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell"],
    "attention": ["MultiheadAttention", "TransformerEncoderLayer", "TransformerDecoderLayer", "TransformerEncoder",
                  "Transformer"],
}


def test_layer_groups_cover_the_table():
    grouped = sorted(n for names in _GROUPS.values() for n in names)
    assert grouped == sorted(c[0] for c in _LAYERS)


@pytest.mark.parametrize("group", [pytest.param(g, marks=pytest.mark.slow)
                                   if g in ("attention", "recurrent", "normalization") else g for g in _GROUPS])
def test_gradcheck_passes_on_funcnet_layers_where_torch_gradcheck_passes(group):
    """Every layer of the table passes torch's gradcheck (its torch twin, float64, params and inputs)
    and funcnet's, on the same inputs."""
    entries = [c for c in _LAYERS if c[0] in _GROUPS[group]]
    inputs = {name: _inputs(specs, seed=i) for i, (name, _, specs, _) in enumerate(entries)}
    for name, make, _, train in entries:
        assert _torch_passes_gradcheck(make, inputs[name], train), name
    assert _funcnet_gradcheck(entries, inputs)


# ----------------------------------------------------------------------------- torch parity


def test_module_parity_passes_and_names_the_wrong_parameter():
    torch.manual_seed(0)
    tnet = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Tanh(), nn.Linear(4, 2))
    x = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
    assert_module_matches_torch(net, tnet, x)
    assert_module_matches_torch(net, tnet, x, train=True)  # batch statistics and running-stat updates

    class BrokenLinear(nn.Linear):  # the bias gradient is doubled
        def forward(self, x):
            return x @ self.weight.T + _double_grad(self.bias)

    broken = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Tanh(), BrokenLinear(4, 2))
    assert_module_matches_torch(broken, tnet, x, grads=False)  # the forward is right
    with pytest.raises(AssertionError, match="gradient of parameter '3.bias' differs from torch's"):
        assert_module_matches_torch(broken, tnet, x)
    wrong = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Sigmoid(), nn.Linear(4, 2))
    with pytest.raises(AssertionError, match="Sequential: output differs from torch's"):
        assert_module_matches_torch(wrong, tnet, x)


@jax.custom_vjp
def _double_grad(x):
    return x


_double_grad.defvjp(lambda x: (x, None), lambda _, g: (2 * g,))


def test_function_parity_compares_input_gradients():
    x = np.random.default_rng(1).standard_normal((2, 5)).astype(np.float32)
    assert_function_matches_torch(jax.nn.gelu, lambda t: torch.nn.functional.gelu(t, approximate="tanh"), x)
    with pytest.raises(AssertionError, match="gradient with respect to input 0"):
        assert_function_matches_torch(lambda a: _double_grad(a) * 1.0, lambda t: t * 1.0, x)


# ----------------------------------------------------------------------------- pytest plugin

_PLUGIN_TESTS = """
import jax, jax.numpy as jnp, numpy as np, pytest

KEYS = {}

def test_a(key, request):
    KEYS["a"] = jax.random.key_data(key)
    print("KEY", request.node.name, np.asarray(jax.random.key_data(key)).tolist())

def test_b(key, request):
    print("KEY", request.node.name, np.asarray(jax.random.key_data(key)).tolist())

def test_fixture(assert_close):
    assert_close(jnp.ones(2), np.ones(2, np.float32))

TRACES = []

@pytest.mark.funcnet_jit_and_eager
def test_both(funcnet_jit_mode, key):
    @jax.jit
    def f(x):
        TRACES.append(funcnet_jit_mode)
        return x * 2
    f(jnp.ones(2)); f(jnp.ones(2))
    # eager: the Python body runs on every call; jitted: traced once
    assert TRACES.count(funcnet_jit_mode) == (2 if funcnet_jit_mode == "eager" else 1)
    print("KEY", funcnet_jit_mode, np.asarray(jax.random.key_data(key)).tolist())

def test_fails(key):
    assert False
"""


def _keys(result) -> dict:
    return {m.group(1): m.group(2) for m in re.finditer(r"KEY (\S+) (\[.*\])", result.stdout.str())}


def test_pytest_plugin_fixtures_marker_and_seed(pytester):
    pytester.makepyfile(test_plugin_user=_PLUGIN_TESTS)
    first = pytester.runpytest_inprocess("-p", "funcnet.testing.pytest_plugin", "-s", "-q")
    first.assert_outcomes(passed=5, failed=1)
    again = pytester.runpytest_inprocess("-p", "funcnet.testing.pytest_plugin", "-s", "-q", "-k", "test_b")
    other_seed = pytester.runpytest_inprocess("-p", "funcnet.testing.pytest_plugin", "-s", "-q", "-k", "test_b",
                                              "--funcnet-seed", "1")
    keys = _keys(first)
    assert keys["test_a"] != keys["test_b"]  # each test its own key
    assert _keys(again)["test_b"] == keys["test_b"]  # reproducible, whichever tests run
    assert _keys(other_seed)["test_b"] != keys["test_b"]  # --funcnet-seed draws anew
    assert keys["jit"] == keys["eager"]  # both runs of a marked test get the same key
    first.stdout.fnmatch_lines(["*funcnet key*", "*jax.random.fold_in(jax.random.key(0), *test_fails*"])
    assert "test_both[jit]" in "\n".join(pytester.runpytest_inprocess(
        "-p", "funcnet.testing.pytest_plugin", "--collect-only", "-q").outlines)


def _readme_test_file() -> str:
    import pathlib

    readme = (pathlib.Path(__file__).parent.parent / "README.md").read_text()
    section = readme.split("## Testing your model", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_test_file_runs_and_passes(pytester):
    """The README's copyable pytest file is a working test file under the plugin."""
    pytester.makepyfile(test_net=_readme_test_file())
    result = pytester.runpytest_inprocess("-p", "funcnet.testing.pytest_plugin", "-q")
    result.assert_outcomes(passed=4)  # the marked test runs twice
