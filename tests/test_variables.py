"""One rule for every function that takes "the variables" (issue 17, point 1).

``Variables``, a ``(params, buffers)`` tuple or list, and a ``TrainState`` give the full state
dict; params alone works only for a model without buffers; anything else (a
``{"params", "buffers"}`` dict, params of a model with BatchNorm, trees of another model) raises
with a message naming what was passed — never a silently empty or partial ``state_dict``.
"""

import jax
import numpy as np
import pytest

import funcnet
import funcnet.nn as nn
from funcnet.interop import save_safetensors, to_torch
from funcnet.train import TrainState


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 4)
        self.bn = nn.BatchNorm1d(4)
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        return self.head(self.bn(self.fc(x)))


KEYS = ["fc.weight", "fc.bias", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var",
        "bn.num_batches_tracked", "head.weight", "head.bias"]


@pytest.fixture(scope="module")
def model_and_variables():
    model = Net()
    return model, model.init(jax.random.key(0))


def _same(a, b):
    assert list(a) == list(b) == KEYS
    for k in a:
        np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]))


def test_every_accepted_kind_gives_every_key(model_and_variables):
    model, variables = model_and_variables
    params, buffers = variables
    state = TrainState.create(model, funcnet.optim.SGD(lr=0.1), jax.random.key(1), variables=variables)
    reference = model.state_dict(variables)
    for kind in ((params, buffers), [params, buffers], state, state.variables):
        _same(model.state_dict(kind), reference)
        _same(to_torch(model, kind), reference)
    _same(model.state_dict(params, buffers), reference)


@pytest.mark.parametrize("kind", ["dict", "params_alone", "triple", "both_empty", "other_model", "array"])
def test_wrong_kinds_raise_naming_what_was_passed(model_and_variables, kind, tmp_path):
    model, (params, buffers) = model_and_variables
    wrong, match = {
        "dict": ({"params": params, "buffers": buffers}, "dict with keys 'params' and 'buffers'"),
        "params_alone": (params, r"params alone, but Net has 3 buffer\(s\) \(bn.running_mean"),
        "triple": ((params, buffers, buffers), "tuple of 3"),
        "both_empty": (({}, {}), "lack 9 of Net's keys"),
        "other_model": (nn.Linear(3, 4).init(jax.random.key(0)), "lack 6 of Net's keys"),
        "array": (params["fc"]["weight"], "got a ArrayImpl|got a Array"),
    }[kind]
    calls = {
        "state_dict": lambda: model.state_dict(wrong),
        "to_torch": lambda: to_torch(model, wrong),
        "save_safetensors": lambda: save_safetensors(model, wrong, tmp_path / "m.safetensors"),
        "load_state_dict(into=)": lambda: model.load_state_dict({}, strict=False, into=wrong),
        "TrainState.create": lambda: TrainState.create(model, funcnet.optim.SGD(lr=0.1), jax.random.key(0),
                                                       variables=wrong),
        "functional_call": lambda: nn.functional_call(model, wrong, (np.ones((2, 3), np.float32),)),
    }
    for name, call in calls.items():
        with pytest.raises((TypeError, ValueError), match=match):
            call()
            pytest.fail(f"{name} accepted a {kind}")
    assert not (tmp_path / "m.safetensors").exists()


def test_params_alone_is_fine_without_buffers_and_an_explicit_empty_tree_flattens_one_kind(model_and_variables):
    mlp = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    params, _ = mlp.init(jax.random.key(0))
    assert list(to_torch(mlp, params)) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    model, (params, buffers) = model_and_variables
    grads = jax.tree.map(np.zeros_like, params)
    assert list(model.state_dict(grads, {})) == [k for k in KEYS if not k.startswith("bn.r") and "num" not in k]
    assert list(model.state_dict({}, buffers)) == ["bn.running_mean", "bn.running_var", "bn.num_batches_tracked"]


def test_torch_loads_what_to_torch_gives_for_a_train_state(model_and_variables):
    torch = pytest.importorskip("torch")
    model, variables = model_and_variables
    state = TrainState.create(model, funcnet.optim.SGD(lr=0.1), jax.random.key(1), variables=variables)
    twin = torch.nn.Sequential()
    twin.fc, twin.bn, twin.head = torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2)
    twin.bn.running_mean.fill_(7.0)
    result = twin.load_state_dict(to_torch(model, state), strict=False)
    assert not result.missing_keys and not result.unexpected_keys
    assert twin.bn.running_mean.abs().max().item() == 0.0  # the buffers arrived too
