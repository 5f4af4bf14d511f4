"""save_safetensors / load_safetensors: torch key names, readable by safetensors.torch and back."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from conftest import assert_close
from safetensors import safe_open
from safetensors.torch import load_file as torch_load_file
from safetensors.torch import save_file as torch_save_file

from funcnet import nn
from funcnet.interop import load_safetensors, save_safetensors


def make_model():
    return nn.Sequential(nn.Linear(12, 8), nn.BatchNorm1d(8), nn.Linear(8, 3))


def make_torch_model():
    return torch.nn.Sequential(torch.nn.Linear(12, 8), torch.nn.BatchNorm1d(8), torch.nn.Linear(8, 3))


def trained_variables(model, rng):
    variables = model.init(jax.random.key(0))
    x = jnp.asarray(rng.standard_normal((6, 12)), jnp.float32)
    _, buffers = model.apply(variables, x, train=True)  # non-trivial running statistics
    return variables._replace(buffers=buffers)


def test_funcnet_file_loads_into_torch_strictly(tmp_path, rng):
    model = make_model()
    variables = trained_variables(model, rng)
    path = tmp_path / "model.safetensors"
    save_safetensors(model, variables, path, metadata={"epoch": "3"})
    with safe_open(str(path), framework="numpy") as f:
        assert f.metadata() == {"epoch": "3"}
    tensors = torch_load_file(str(path))
    assert sorted(tensors) == sorted(make_torch_model().state_dict())  # safetensors orders by itself
    assert tensors["1.num_batches_tracked"].dtype == torch.int64 and tensors["1.num_batches_tracked"].item() == 1
    tm = make_torch_model()
    tm.load_state_dict(tensors, strict=True)
    tm.eval()
    x = rng.standard_normal((5, 12)).astype(np.float32)
    with torch.no_grad():
        assert_close(model.apply(variables, jnp.asarray(x)), tm(torch.from_numpy(x)), rtol=1e-5, atol=1e-5)


def test_torch_file_loads_into_funcnet(tmp_path, rng):
    torch.manual_seed(0)
    tm = make_torch_model()
    tm.train()
    with torch.no_grad():
        tm(torch.randn(7, 12))
    tm.eval()
    path = tmp_path / "torch.safetensors"
    torch_save_file(tm.state_dict(), str(path))
    model = make_model()
    variables = load_safetensors(model, path)
    assert variables.buffers["1"]["num_batches_tracked"].dtype == jnp.int32
    x = rng.standard_normal((5, 12)).astype(np.float32)
    with torch.no_grad():
        assert_close(model.apply(variables, jnp.asarray(x)), tm(torch.from_numpy(x)), rtol=1e-5, atol=1e-5)
    for key, tensor in tm.state_dict().items():
        np.testing.assert_array_equal(np.asarray(model.state_dict(variables)[key]), tensor.numpy())


def test_round_trip_keeps_dtype_and_bits(tmp_path):
    model = nn.Sequential(nn.Linear(4, 5, dtype=jnp.bfloat16), nn.Linear(5, 2))
    variables = model.init(jax.random.key(3))
    path = tmp_path / "m.safetensors"
    save_safetensors(model, variables, path)
    assert torch_load_file(str(path))["0.weight"].dtype == torch.bfloat16
    back = load_safetensors(model, path)
    for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(variables), strict=True):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(np.asarray(a, np.float32), np.asarray(b, np.float32))


def test_key_and_shape_errors(tmp_path):
    tm = make_torch_model()
    path = tmp_path / "t.safetensors"
    sd = {k: v for k, v in tm.state_dict().items() if k != "2.bias"}
    sd["extra"] = torch.zeros(1)
    torch_save_file(sd, str(path))
    model = make_model()
    with pytest.raises(RuntimeError, match=r'Missing key\(s\) in state_dict: "2.bias". \n\t'
                                           r'Unexpected key\(s\) in state_dict: "extra"'):
        load_safetensors(model, path)
    into = model.init(jax.random.key(0))
    variables = load_safetensors(model, path, strict=False, into=into)
    np.testing.assert_array_equal(variables.params["2"]["bias"], into.params["2"]["bias"])
    torch_save_file({**tm.state_dict(), "0.weight": torch.zeros(8, 11)}, str(path))
    with pytest.raises(RuntimeError, match=r"size mismatch for 0.weight"):
        load_safetensors(model, path, strict=False)
