"""The Module system: init/apply purity under JAX transforms, naming, state_dict, errors."""

import threading
from collections import OrderedDict

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from conftest import TorchSeedNet, assert_close, load_example

import funcnet.nn as nn
from funcnet.nn import functional as F

Net = load_example("mnist").Net  # the seed program's translation
TorchNet = TorchSeedNet


class BNDropNet(nn.Module):
    """Linear → BatchNorm1d → Dropout → Linear: buffers and randomness together."""

    def __init__(self, p=0.5):
        super().__init__()
        self.fc1 = nn.Linear(6, 8)
        self.bn = nn.BatchNorm1d(8)
        self.drop = nn.Dropout(p)
        self.fc2 = nn.Linear(8, 3)

    def forward(self, x):
        return self.fc2(self.drop(jax.nn.relu(self.bn(self.fc1(x)))))


def manifest(named_arrays):
    return [(k, tuple(np.shape(v))) for k, v in named_arrays.items()]


def to_torch_state(state_dict):
    return OrderedDict((k, torch.tensor(np.asarray(v))) for k, v in state_dict.items())


# -- naming ------------------------------------------------------------------------------
def test_seed_net_manifest_equals_torch():
    model = Net()
    variables = model.init(jax.random.key(0))
    assert manifest(model.state_dict(variables)) == manifest(TorchNet().state_dict())


def test_nested_sequential_manifest_equals_torch():
    model = nn.Sequential(
        nn.Sequential(nn.Linear(4, 5), nn.BatchNorm1d(5)),
        nn.Identity(),
        nn.Sequential(OrderedDict(head=nn.Linear(5, 2), drop=nn.Dropout())),
    )
    reference = torch.nn.Sequential(
        torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.BatchNorm1d(5)),
        torch.nn.Identity(),
        torch.nn.Sequential(OrderedDict(head=torch.nn.Linear(5, 2), drop=torch.nn.Dropout())),
    )
    variables = model.init(jax.random.key(0))
    assert manifest(model.state_dict(variables)) == manifest(reference.state_dict())
    # Buffers are kept apart from trainable parameters.
    assert set(variables.buffers["0"]["1"]) == {"running_mean", "running_var", "num_batches_tracked"}
    assert set(variables.params["0"]["1"]) == {"weight", "bias"}


def test_module_list_and_dict_names():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = nn.ModuleList([nn.Linear(3, 3) for _ in range(2)])
            self.heads = nn.ModuleDict({"a": nn.Linear(3, 1), "b": nn.Linear(3, 2)})

        def forward(self, x):
            for block in self.blocks:
                x = block(x)
            return self.heads["a"](x), self.heads["b"](x)

    class T(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = torch.nn.ModuleList([torch.nn.Linear(3, 3) for _ in range(2)])
            self.heads = torch.nn.ModuleDict({"a": torch.nn.Linear(3, 1), "b": torch.nn.Linear(3, 2)})

    model = M()
    variables = model.init(jax.random.key(1))
    assert manifest(model.state_dict(variables)) == manifest(T().state_dict())
    a, b = model.apply(variables, jnp.ones((2, 3)))
    assert a.shape == (2, 1) and b.shape == (2, 2)


def test_seed_net_forward_and_grads_match_torch(rng):
    model, reference = Net(), TorchNet()
    variables, _ = model.load_state_dict(reference.state_dict())
    x = rng.standard_normal((5, 1, 28, 28)).astype(np.float32)
    assert_close(model.apply(variables, x), reference(torch.tensor(x)))

    grads = jax.grad(lambda p: model.apply(p, x).sum())(variables.params)
    reference(torch.tensor(x)).sum().backward()
    for name, tensor in reference.named_parameters():
        layer, kind = name.split(".")
        assert_close(grads[layer][kind], tensor.grad)


# -- purity under transforms ---------------------------------------------------------------
def test_jit_grad_vmap_scan_with_batchnorm_and_dropout(rng):
    model = BNDropNet()
    params, buffers = model.init(jax.random.key(0))
    x = jnp.asarray(rng.standard_normal((16, 6)), jnp.float32)
    key = jax.random.key(3)

    def loss(params, buffers, key):
        out, new_buffers = model.apply(params, x, buffers=buffers, key=key, train=True)
        return jnp.mean(out**2), new_buffers

    (value, new_buffers), grads = jax.value_and_grad(loss, has_aux=True)(params, buffers, key)
    (jvalue, jbuffers), jgrads = jax.jit(jax.value_and_grad(loss, has_aux=True))(params, buffers, key)
    np.testing.assert_allclose(value, jvalue, rtol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), grads, jgrads)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), new_buffers, jbuffers)
    assert int(new_buffers["bn"]["num_batches_tracked"]) == 1

    # vmap over a batch of keys: independent dropout masks, same buffers update.
    keys = jax.random.split(key, 4)
    outs = jax.vmap(lambda k: model.apply(params, x, buffers=buffers, key=k, train=True)[0])(keys)
    assert outs.shape == (4, 16, 3)
    assert not np.allclose(outs[0], outs[1])

    # lax.scan over training-mode applications threads the buffers through.
    def body(buffers, k):
        out, buffers = model.apply(params, x, buffers=buffers, key=k, train=True)
        return buffers, out.sum()

    final, _ = jax.lax.scan(body, buffers, keys)
    assert int(final["bn"]["num_batches_tracked"]) == 4
    # Eval mode: deterministic, no key needed, equal under jit.
    eval_out = model.apply(params, x, buffers=final)
    np.testing.assert_allclose(eval_out, jax.jit(model.apply)(params, x, buffers=final), rtol=1e-6)


def test_submodule_called_inside_scan_body(rng):
    class Recurrent(nn.Module):
        def __init__(self):
            super().__init__()
            self.cell = nn.Linear(4, 4)

        def forward(self, xs):
            def step(h, x):
                h = jnp.tanh(self.cell(h) + x)
                return h, h

            return jax.lax.scan(step, jnp.zeros(xs.shape[1:]), xs)[1]

    model = Recurrent()
    params, _ = model.init(jax.random.key(0))
    xs = jnp.asarray(rng.standard_normal((5, 2, 4)), jnp.float32)
    cot = rng.standard_normal((5, 2, 4)).astype(np.float32)
    w, b = params["cell"]["weight"], params["cell"]["bias"]
    h, expected = jnp.zeros((2, 4)), []
    for x in xs:
        h = jnp.tanh(h @ w.T + b + x)
        expected.append(h)
    np.testing.assert_allclose(model.apply(params, xs), jnp.stack(expected), rtol=1e-5, atol=1e-6)
    grads = jax.jit(jax.grad(lambda p: (model.apply(p, xs) * cot).sum()))(params)
    # the same recurrence in torch: the gradient flows through every step of the scan
    tw, tb = (torch.tensor(np.asarray(a), requires_grad=True) for a in (w, b))
    th, outs = torch.zeros(2, 4), []
    for x in torch.tensor(np.asarray(xs)):
        th = torch.tanh(th @ tw.T + tb + x)
        outs.append(th)
    (torch.stack(outs) * torch.tensor(cot)).sum().backward()
    assert_close(grads["cell"]["weight"], tw.grad, rtol=1e-5, atol=1e-6)
    assert_close(grads["cell"]["bias"], tb.grad, rtol=1e-5, atol=1e-6)


def test_modules_are_static_arguments():
    model = Net()
    params, _ = model.init(jax.random.key(0))
    x = jnp.ones((2, 784))
    run = jax.jit(lambda m, p, x: m.apply(p, x), static_argnums=0)
    np.testing.assert_allclose(run(model, params, x), model.apply(params, x), rtol=1e-5, atol=1e-6)
    assert hash(model) == hash(model)


# -- dropout randomness ----------------------------------------------------------------------
def test_dropout_sites_have_independent_reproducible_streams():
    class TwoDrops(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Dropout(0.5)
            self.b = nn.Dropout(0.5)

        def forward(self, x):
            return self.a(x), self.b(x), self.a(x)

    model = TwoDrops()
    x = jnp.ones((1000,))
    (a1, b1, a2), _ = model.apply({}, x, key=jax.random.key(0), train=True)
    (again, _, _), _ = model.apply({}, x, key=jax.random.key(0), train=True)
    np.testing.assert_array_equal(a1, again)
    assert not np.array_equal(a1, b1) and not np.array_equal(a1, a2)
    kept = float(jnp.mean(a1 != 0))
    assert 0.45 < kept < 0.55 and set(np.unique(a1)) <= {0.0, 2.0}
    # Eval mode is the identity and needs no key.
    np.testing.assert_array_equal(model.apply({}, x)[0], x)
    with pytest.raises(ValueError, match="key"):
        model.apply({}, x, train=True)


# -- threads -------------------------------------------------------------------------------
def test_two_threads_apply_different_models_at_once(rng):
    models = [Net(), BNDropNet(p=0.0)]
    variables = [m.init(jax.random.key(i)) for i, m in enumerate(models)]
    inputs = [rng.standard_normal((3, 784)).astype(np.float32), rng.standard_normal((3, 6)).astype(np.float32)]
    expected = [m.apply(v, x) for m, v, x in zip(models, variables, inputs)]
    errors, barrier = [], threading.Barrier(2)

    def worker(i):
        try:
            barrier.wait()
            for _ in range(30):
                np.testing.assert_allclose(models[i].apply(variables[i], inputs[i]), expected[i], rtol=1e-6)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


# -- state_dict and errors -------------------------------------------------------------------
def test_load_state_dict_strict_reports_missing_and_unexpected():
    model = Net()
    state = model.state_dict(model.init(jax.random.key(0)))
    del state["fc2.bias"]
    state["fc4.weight"] = np.zeros((1, 1), np.float32)
    with pytest.raises(RuntimeError) as err:
        model.load_state_dict(state)
    message = str(err.value)
    assert 'Missing key(s) in state_dict: "fc2.bias"' in message
    assert 'Unexpected key(s) in state_dict: "fc4.weight"' in message
    assert message.index("Missing") < message.index("Unexpected")


def test_loaded_parameters_do_not_share_memory_with_the_source():
    # tensor.numpy() shares torch's storage, and on CPU device_put may alias numpy memory: a torch
    # optimizer step (in place) after loading must not change the loaded parameters.
    tmodel = torch.nn.Linear(3, 2)
    state = {k: v.detach().numpy() for k, v in tmodel.state_dict().items()}
    variables, _ = nn.Linear(3, 2).load_state_dict(state)
    before = np.array(variables.params["weight"])
    with torch.no_grad():
        tmodel.weight.add_(1.0)
    state["bias"][:] = 7.0
    np.testing.assert_array_equal(np.asarray(variables.params["weight"]), before)
    assert not (np.asarray(variables.params["bias"]) == 7.0).any()


def test_load_state_dict_non_strict_fills_from_into():
    model = Net()
    base = model.init(jax.random.key(0))
    state = model.state_dict(model.init(jax.random.key(1)))
    del state["fc3.weight"]
    variables, incompatible = model.load_state_dict(state, strict=False, into=base)
    assert incompatible.missing_keys == ["fc3.weight"] and incompatible.unexpected_keys == []
    np.testing.assert_array_equal(variables.params["fc3"]["weight"], base.params["fc3"]["weight"])
    np.testing.assert_array_equal(variables.params["fc1"]["weight"], state["fc1.weight"])
    with pytest.raises(RuntimeError, match="into="):
        model.load_state_dict(state, strict=False)


def test_size_mismatch_raises_even_when_not_strict():
    model = Net()
    state = model.state_dict(model.init(jax.random.key(0)))
    state["fc2.weight"] = np.zeros((64, 100), np.float32)
    expected = (
        "size mismatch for fc2.weight: copying a param with shape (64, 100) from checkpoint, "
        "the shape in current model is (64, 128)."
    )
    for strict in (True, False):
        with pytest.raises(RuntimeError) as err:
            model.load_state_dict(state, strict=strict)
        assert expected in str(err.value)


def test_wrong_input_shape_names_module_path():
    model = Net()
    params, _ = model.init(jax.random.key(0))
    with pytest.raises(nn.ShapeError) as err:
        model.apply(params, jnp.ones((2, 700)))
    assert "Net.fc1" in str(err.value) and "784" in str(err.value) and "(2, 700)" in str(err.value)

    class Wrong(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Linear(4, 8), nn.Linear(7, 2))

        def forward(self, x):
            return self.body(x)

    wrong = Wrong()
    with pytest.raises(nn.ShapeError, match=r"Wrong\.body\.1 \(Linear\).*\[\.\.\., 7\].*\(3, 8\)"):
        wrong.apply(wrong.init(jax.random.key(0)).params, jnp.ones((3, 4)))


def test_missing_params_and_buffers_are_named():
    model = BNDropNet()
    params, buffers = model.init(jax.random.key(0))
    with pytest.raises(KeyError, match=r"BNDropNet\.bn .*running_mean.*buffers="):
        model.apply(params, jnp.ones((2, 6)))
    del params["fc2"]["bias"]
    with pytest.raises(KeyError, match=r"fc2\.bias"):
        model.apply(params, jnp.ones((2, 6)), buffers=buffers)


def test_mode_is_an_argument_not_state():
    with pytest.raises(TypeError, match="train=True"):
        Net().train()
    with pytest.raises(RuntimeError, match="apply"):
        Net()(jnp.ones((1, 784)))


def test_modules_hold_no_arrays():
    model = BNDropNet()
    declared = model.fc1.weight  # outside apply: the declaration (a recipe), never an array
    assert isinstance(declared, nn.Parameter) and declared.shape == (8, 6)
    with pytest.raises(TypeError, match="not an array"):
        _ = declared * 2
    leaves = [v for v in vars(model).values() if isinstance(v, jax.Array)]
    assert leaves == []


# -- transfer learning: a trained model as a submodule ----------------------------------------
def test_whole_model_as_submodule_reuses_its_weights(rng):
    backbone = Net()
    trained = backbone.init(jax.random.key(0))

    class WithHead(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = backbone
            self.head = nn.Linear(10, 2)

        def forward(self, x):
            return self.head(jax.nn.relu(self.backbone(x)))

    model = WithHead()
    fresh = model.init(jax.random.key(1))
    state = {f"backbone.{k}": v for k, v in backbone.state_dict(trained).items()}
    variables, incompatible = model.load_state_dict(state, strict=False, into=fresh)
    assert incompatible.missing_keys == ["head.weight", "head.bias"]
    x = rng.standard_normal((2, 784)).astype(np.float32)
    feats = jax.nn.relu(backbone.apply(trained, x))
    expected = F.linear(feats, variables.params["head"]["weight"], variables.params["head"]["bias"])
    np.testing.assert_allclose(model.apply(variables, x), expected, rtol=1e-6)


# -- dtype policy, printing, summary -----------------------------------------------------------
def test_parameter_dtype_and_compute_dtype_policy(rng):
    model = nn.Linear(8, 4, dtype=jnp.bfloat16)
    params, _ = model.init(jax.random.key(0))
    assert params["weight"].dtype == jnp.bfloat16
    model32 = Net()
    params32, _ = model32.init(jax.random.key(0))
    x = rng.standard_normal((4, 784)).astype(np.float32)
    out = model32.apply(params32, x, compute_dtype=jnp.bfloat16)
    assert out.dtype == jnp.bfloat16 and params32["fc1"]["weight"].dtype == jnp.float32
    torch_net = TorchNet()
    torch_net.load_state_dict(to_torch_state(model32.state_dict(params32)))
    expected = torch_net(torch.tensor(x)).detach().numpy()  # float32, outputs ~0.2-0.3
    # Measured over init seeds 0-5: max |bf16 - float32| 1.1e-3 to 1.4e-3; allowed 3e-3 (2× margin).
    # (The old rtol = atol = 0.1 let a zeroed fc2 bias, ~0.09, through.)
    np.testing.assert_allclose(np.asarray(out, np.float32), expected, rtol=0, atol=3e-3)


def test_repr_matches_torch():
    assert repr(Net()) == repr(TorchNet()).replace("TorchSeedNet(", "Net(", 1)
    model = nn.Sequential(nn.Linear(2, 3, bias=False), nn.BatchNorm1d(3, momentum=None), nn.Dropout(0.2))
    reference = torch.nn.Sequential(
        torch.nn.Linear(2, 3, bias=False), torch.nn.BatchNorm1d(3, momentum=None), torch.nn.Dropout(0.2)
    )
    assert repr(model) == repr(reference)


def test_summary_counts_parameters_and_bytes():
    model = BNDropNet()
    text = model.summary()
    expected_params = sum(p.numel() for p in torch.nn.Sequential(
        torch.nn.Linear(6, 8), torch.nn.BatchNorm1d(8), torch.nn.Linear(8, 3)).parameters())
    assert model.num_parameters() == expected_params
    assert f"{expected_params:,}" in text and "bn" in text and "BatchNorm1d" in text


def test_linear_init_distribution_matches_torch_bounds():
    model = nn.Linear(400, 3000)
    params, _ = model.init(jax.random.key(0))
    bound = 1 / np.sqrt(400)
    for name in ("weight", "bias"):
        w = np.asarray(params[name])
        assert np.abs(w).max() <= bound and np.abs(w).max() > 0.99 * bound
        assert abs(w.mean()) < 4 * bound / np.sqrt(3) / np.sqrt(w.size)
        np.testing.assert_allclose(w.std(), bound / np.sqrt(3), rtol=0.05)


def test_init_is_jittable_and_deterministic():
    model = BNDropNet()
    eager = model.init(jax.random.key(7))
    jitted = jax.jit(model.init)(jax.random.key(7))
    jax.tree.map(np.testing.assert_array_equal, eager, jitted)
    other = model.init(jax.random.key(8))
    assert not np.array_equal(eager.params["fc1"]["weight"], other.params["fc1"]["weight"])


def test_functional_call_matches_apply(rng):
    model = Net()
    variables = model.init(jax.random.key(0))
    x = rng.standard_normal((2, 784)).astype(np.float32)
    np.testing.assert_array_equal(nn.functional_call(model, variables, (x,)), model.apply(variables, x))


def test_small_cnn_manifest_equals_torch():
    def cnn(lib):
        return lib.Sequential(
            lib.Conv2d(1, 8, 3, padding=1), lib.BatchNorm2d(8), lib.ReLU(), lib.MaxPool2d(2), lib.Dropout(0.25),
            lib.Conv2d(8, 16, 3), lib.BatchNorm2d(16), lib.ReLU(), lib.Flatten(), lib.Linear(16 * 2 * 2, 10),
        )

    model = cnn(nn)
    variables = model.init(jax.random.key(0))
    assert manifest(model.state_dict(variables)) == manifest(cnn(torch.nn).state_dict())
    assert repr(model) == repr(cnn(torch.nn))


def test_init_under_vmap_equals_eager_per_key():
    model = nn.Sequential(nn.Linear(3, 4), nn.Embedding(5, 2), nn.BatchNorm1d(4))
    keys = jax.random.split(jax.random.key(0), 3)
    batched = jax.vmap(model.init)(keys)
    for i in range(3):
        single = model.init(keys[i])
        jax.tree.map(lambda b, s, i=i: np.testing.assert_array_equal(b[i], s), batched, single)


# -- shared modules and tied parameters, as torch ----------------------------------------------


class _Tied(nn.Module):
    """An embedding and an output layer sharing one weight (torch: ``dec.weight = emb.weight``),
    plus one Linear used under two names."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(10, 4)
        self.mid = nn.Linear(4, 4)
        self.again = self.mid
        self.dec = nn.Linear(4, 10, bias=False)
        self.dec.weight = self.emb.get_parameter("weight")  # torch: self.dec.weight = self.emb.weight

    def forward(self, idx):
        h = jnp.tanh(self.again(jnp.tanh(self.mid(self.emb(idx)))))
        return self.dec(h)


class _TorchTied(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(10, 4)
        self.mid = torch.nn.Linear(4, 4)
        self.again = self.mid
        self.dec = torch.nn.Linear(4, 10, bias=False)
        self.dec.weight = self.emb.weight

    def forward(self, idx):
        h = torch.tanh(self.again(torch.tanh(self.mid(self.emb(idx)))))
        return self.dec(h)


def test_tied_and_shared_parameters_exist_once_and_match_torch():
    model, reference = _Tied(), _TorchTied()
    variables = model.init(jax.random.key(0))
    # One array per tensor: the first name only, as torch's named_parameters().
    assert sorted(k for k, _ in nn.utils.named_leaves(variables.params)) == sorted(
        k for k, _ in reference.named_parameters())
    assert model.num_parameters() == sum(p.numel() for p in reference.parameters())
    # state_dict: every name, in torch's order, the shared ones holding the same array.
    sd = model.state_dict(variables)
    assert list(sd) == list(reference.state_dict())
    assert sd["dec.weight"] is sd["emb.weight"] and sd["again.bias"] is sd["mid.bias"]
    # Same weights → same outputs and the same gradient for the tied weight (both uses summed).
    reference.load_state_dict(to_torch_state(sd))
    idx = np.array([[1, 2, 3], [4, 5, 9]])
    target = torch.tensor(np.random.default_rng(0).standard_normal((2, 3, 10)), dtype=torch.float32)

    def loss(params):
        return jnp.mean((model.apply(params, jnp.asarray(idx)) - jnp.asarray(target.numpy())) ** 2)

    grads = jax.grad(loss)(variables.params)
    torch_loss = torch.mean((reference(torch.tensor(idx)) - target) ** 2)
    torch_loss.backward()
    assert_close(loss(variables.params), torch_loss)
    assert_close(grads["emb"]["weight"], reference.emb.weight.grad)
    assert_close(grads["mid"]["weight"], reference.mid.weight.grad)


def test_load_state_dict_of_a_tied_model_from_torch_and_inconsistent_files():
    model, reference = _Tied(), _TorchTied()
    torch_sd = reference.state_dict()
    variables, report = model.load_state_dict(torch_sd)
    assert report == ([], [])
    np.testing.assert_array_equal(np.asarray(variables.params["emb"]["weight"]), torch_sd["dec.weight"].numpy())
    # A file whose two names of one tensor disagree cannot be loaded without losing one of them.
    bad = dict(torch_sd)
    bad["dec.weight"] = bad["dec.weight"] + 1
    with pytest.raises(RuntimeError, match=r'"dec.weight" and "emb.weight" name one shared tensor'):
        model.load_state_dict(bad)


def test_get_parameter_and_the_hint_outside_apply():
    model = _Tied()
    assert model.get_parameter("dec.weight") is model.get_parameter("emb.weight")
    assert model.get_parameter("mid.bias").shape == (4,)
    assert nn.Sequential(nn.BatchNorm1d(3)).get_buffer("0.running_var").shape == (3,)
    with pytest.raises(AttributeError, match="`nope` is not a parameter of Linear"):
        model.get_parameter("mid.nope")
    # Outside apply `m.weight` reads the declaration, so torch's tying syntax ties as get_parameter does.
    assert model.emb.weight is model.get_parameter("emb.weight")
    tied = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 3))
    tied[1].weight = tied[0].weight
    params, _ = tied.init(jax.random.key(0))
    assert list(tied.state_dict(params)) == ["0.weight", "0.bias", "1.weight", "1.bias"]
    assert "weight" not in params["1"]  # one array, trained once
