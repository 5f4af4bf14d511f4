"""from_torch / to_torch: torch weights into funcnet and back, checked against torch's own outputs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from conftest import TorchSeedNet, assert_close, load_example

from funcnet import nn
from funcnet.interop import from_torch, to_torch

Net = load_example("mnist").Net  # the seed program's translation
TorchNet = TorchSeedNet


class BNNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(20, 32)
        self.bn = nn.BatchNorm1d(32)
        self.head = nn.Sequential(nn.Linear(32, 16), nn.BatchNorm1d(16, momentum=None), nn.Linear(16, 5))

    def forward(self, x):
        x = jax.nn.relu(self.bn(self.fc1(x)))
        return self.head(x)


def torch_bnnet():
    return torch.nn.ModuleDict({
        "fc1": torch.nn.Linear(20, 32),
        "bn": torch.nn.BatchNorm1d(32),
        "head": torch.nn.Sequential(torch.nn.Linear(32, 16), torch.nn.BatchNorm1d(16, momentum=None),
                                    torch.nn.Linear(16, 5)),
    })


def run_torch_bnnet(m, x):
    return m["head"](torch.relu(m["bn"](m["fc1"](x))))


def test_seed_net_weights_in_and_out(rng):
    torch.manual_seed(0)
    tnet = TorchNet()
    x = rng.standard_normal((16, 784)).astype(np.float32)
    model = Net()
    variables = from_torch(model, tnet.state_dict())
    with torch.no_grad():
        expected = tnet(torch.from_numpy(x))
    assert_close(model.apply(variables, jnp.asarray(x)), expected, rtol=1e-5, atol=1e-5)

    from_module = from_torch(model, tnet)  # the torch model itself works too
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(from_module), jax.tree.leaves(variables),
                                                     strict=True))

    exported = to_torch(model, variables)
    assert list(exported) == list(tnet.state_dict())
    for key, tensor in tnet.state_dict().items():
        assert exported[key].dtype == tensor.dtype
        assert torch.equal(exported[key], tensor), key  # bit-exact both ways
    fresh = TorchNet()  # other random weights
    assert str(fresh.load_state_dict(exported, strict=True)) == "<All keys matched successfully>"
    with torch.no_grad():
        assert torch.equal(fresh(torch.from_numpy(x)), expected)


def test_a_torch_save_file_loads(tmp_path, rng):
    torch.manual_seed(1)
    tnet = TorchNet()
    path = tmp_path / "net.pt"
    torch.save(tnet.state_dict(), path)
    model = Net()
    variables = from_torch(model, path)
    x = rng.standard_normal((4, 784)).astype(np.float32)
    with torch.no_grad():
        assert_close(model.apply(variables, jnp.asarray(x)), tnet(torch.from_numpy(x)), rtol=1e-5, atol=1e-5)
    # a training checkpoint is not a state_dict: the error says what to pass
    torch.save({"model_state_dict": tnet.state_dict(), "epoch": 3}, path)
    with pytest.raises(TypeError, match="not a flat state_dict.*model_state_dict"):
        from_torch(model, path)
    # torch.load(weights_only=True) guards the door: a pickled object is refused
    torch.save({"fc1.weight": torch.ones(128, 784), "evil": TorchNet}, path)
    with pytest.raises(Exception, match="Weights only load failed"):
        from_torch(model, path)


def test_batchnorm_buffers_and_num_batches_tracked(rng):
    torch.manual_seed(2)
    tm = torch_bnnet()
    opt = torch.optim.SGD(tm.parameters(), lr=0.1)
    for _ in range(3):  # non-trivial weights and running statistics
        loss = run_torch_bnnet(tm, torch.randn(8, 20)).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    model = BNNet()
    variables = from_torch(model, tm.state_dict())
    assert variables.buffers["bn"]["num_batches_tracked"] == 3
    x = rng.standard_normal((8, 20)).astype(np.float32)
    tm.eval()
    with torch.no_grad():
        assert_close(model.apply(variables, jnp.asarray(x)), run_torch_bnnet(tm, torch.from_numpy(x)),
                     rtol=1e-5, atol=1e-5)
    # one more training step on both sides: outputs and updated buffers agree
    tm.train()
    with torch.no_grad():
        expected = run_torch_bnnet(tm, torch.from_numpy(x))
    out, new_buffers = model.apply(variables, jnp.asarray(x), train=True)
    assert_close(out, expected, rtol=1e-5, atol=1e-5)
    exported = to_torch(model, variables._replace(buffers=new_buffers))
    for key, tensor in tm.state_dict().items():
        assert exported[key].dtype == tensor.dtype, key
        assert_close(exported[key], tensor, rtol=1e-5, atol=1e-6)
    assert exported["bn.num_batches_tracked"].dtype == torch.int64
    assert exported["bn.num_batches_tracked"].item() == 4
    fresh = torch_bnnet()
    fresh.load_state_dict(exported, strict=True)
    fresh.eval()
    tm.eval()
    with torch.no_grad():
        # funcnet's running statistics in torch's model give torch's outputs
        assert_close(run_torch_bnnet(fresh, torch.from_numpy(x)), run_torch_bnnet(tm, torch.from_numpy(x)),
                     rtol=1e-5, atol=1e-5)


def test_mismatched_keys_and_shapes_raise_load_state_dict_errors():
    model = Net()
    sd = TorchNet().state_dict()
    extra = {**sd, "fc4.weight": torch.zeros(1)}
    with pytest.raises(RuntimeError, match=r'Error\(s\) in loading state_dict for Net:\n\tUnexpected key\(s\) '
                                           r'in state_dict: "fc4.weight"'):
        from_torch(model, extra)
    missing = {k: v for k, v in sd.items() if k != "fc2.bias"}
    with pytest.raises(RuntimeError, match=r'Missing key\(s\) in state_dict: "fc2.bias"'):
        from_torch(model, missing)
    wrong = {**sd, "fc1.weight": torch.zeros(128, 783)}
    with pytest.raises(RuntimeError, match=r"size mismatch for fc1.weight: copying a param with shape "
                                           r"\(128, 783\) from checkpoint, the shape in current model is "
                                           r"\(128, 784\)"):
        from_torch(model, wrong, strict=False)
    # not strict: the missing entry comes from `into`, the extra one is reported
    into = model.init(jax.random.key(0))
    with pytest.warns(UserWarning, match=r"missing keys \['fc2.bias'\], unexpected keys \['fc4.weight'\]"):
        variables = from_torch(model, {**missing, "fc4.weight": torch.zeros(1)}, strict=False, into=into)
    np.testing.assert_array_equal(variables.params["fc2"]["bias"], into.params["fc2"]["bias"])
    np.testing.assert_array_equal(variables.params["fc1"]["weight"], sd["fc1.weight"].numpy())


@pytest.mark.parametrize("dtype, torch_dtype", [(jnp.bfloat16, torch.bfloat16), (jnp.float16, torch.float16)])
def test_dtypes_are_preserved(rng, dtype, torch_dtype):
    model = nn.Linear(6, 3, dtype=dtype)
    variables = model.init(jax.random.key(0))
    exported = to_torch(model, variables)
    assert all(t.dtype == torch_dtype for t in exported.values())
    for key, value in model.state_dict(variables).items():
        np.testing.assert_array_equal(exported[key].float().numpy(), np.asarray(value, np.float32))
    tm = torch.nn.Linear(6, 3, dtype=torch_dtype)
    tm.load_state_dict(exported, strict=True)
    back = from_torch(model, tm.state_dict())
    assert back.params["weight"].dtype == dtype
    np.testing.assert_array_equal(np.asarray(back.params["weight"], np.float32),
                                  np.asarray(variables.params["weight"], np.float32))
    # into a float32 model the values are cast, as torch's load_state_dict copies into its dtype
    as_f32 = from_torch(nn.Linear(6, 3), tm.state_dict())
    assert as_f32.params["weight"].dtype == jnp.float32
    np.testing.assert_array_equal(as_f32.params["weight"], tm.weight.detach().float().numpy())


def cnn(lib):
    """The same small CNN in funcnet (lib=nn) or torch (lib=torch.nn): identical state_dict keys."""
    return lib.Sequential(lib.Conv2d(1, 8, 3, padding=1), lib.BatchNorm2d(8), lib.ReLU(), lib.MaxPool2d(2),
                          lib.Dropout(0.25), lib.Flatten(), lib.Linear(8 * 4 * 4, 10))


def test_cnn_with_batchnorm2d_round_trip(rng):
    torch.manual_seed(3)
    tm = cnn(torch.nn)
    opt = torch.optim.SGD(tm.parameters(), lr=0.1)
    for _ in range(3):  # trained weights and non-trivial running statistics
        loss = tm(torch.randn(16, 1, 8, 8)).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    tm.eval()
    model = cnn(nn)
    variables = from_torch(model, tm.state_dict())
    x = rng.standard_normal((5, 1, 8, 8)).astype(np.float32)
    with torch.no_grad():
        expected = tm(torch.from_numpy(x))
    assert_close(model.apply(variables, jnp.asarray(x)), expected, rtol=1e-5, atol=1e-5)
    exported = to_torch(model, variables)
    fresh = cnn(torch.nn)
    assert str(fresh.load_state_dict(exported, strict=True)) == "<All keys matched successfully>"
    fresh.eval()
    with torch.no_grad():
        assert torch.equal(fresh(torch.from_numpy(x)), expected)
