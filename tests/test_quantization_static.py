"""Static int8 quantization against torch 2.13's eager mode (torch.ao.quantization).

Same float weights and the same calibration batches go through torch's
fuse_modules / prepare / calibrate / convert and funcnet's; compared: fused weights
(bit-equal), observer state (histogram, min, max: equal), output scales and zero
points (equal), int8 weights and weight scales (equal), and int8 outputs (equal,
or within one quantization step where torch's kernels round differently).
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import funcnet
import funcnet.nn as nn
from funcnet import quantization as Q

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import torch.ao.quantization as tq

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:.*deprecated:UserWarning"),
]


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = Q.QuantStub()
        self.conv1 = nn.Conv2d(2, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu1 = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(8, 6, 3, bias=False)
        self.bn2 = nn.BatchNorm2d(6)
        self.fc1 = nn.Linear(6 * 2 * 2, 16)
        self.relu2 = nn.ReLU()
        self.fc2 = nn.Linear(16, 5)
        self.dequant = Q.DeQuantStub()

    def forward(self, x):
        x = self.pool(self.relu1(self.bn1(self.conv1(self.quant(x)))))
        x = funcnet.flatten(self.bn2(self.conv2(x)), 1)
        return self.dequant(self.fc2(self.relu2(self.fc1(x))))


class TorchNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = tq.QuantStub()
        self.conv1 = torch.nn.Conv2d(2, 8, 3, padding=1)
        self.bn1 = torch.nn.BatchNorm2d(8)
        self.relu1 = torch.nn.ReLU()
        self.pool = torch.nn.MaxPool2d(2)
        self.conv2 = torch.nn.Conv2d(8, 6, 3, bias=False)
        self.bn2 = torch.nn.BatchNorm2d(6)
        self.fc1 = torch.nn.Linear(6 * 2 * 2, 16)
        self.relu2 = torch.nn.ReLU()
        self.fc2 = torch.nn.Linear(16, 5)
        self.dequant = tq.DeQuantStub()

    def forward(self, x):
        x = self.pool(self.relu1(self.bn1(self.conv1(self.quant(x)))))
        x = torch.flatten(self.bn2(self.conv2(x)), 1)
        return self.dequant(self.fc2(self.relu2(self.fc1(x))))


FUSE = [["conv1", "bn1", "relu1"], ["conv2", "bn2"], ["fc1", "relu2"]]


@pytest.fixture(autouse=True)
def x86_engine():
    """torch's quantized engine is process-global: every test starts and ends on x86."""
    torch.backends.quantized.engine = "x86"
    yield
    torch.backends.quantized.engine = "x86"


def float_pair(seed=0):
    rng = np.random.default_rng(seed)
    model = Net()
    variables = model.init(jax.random.key(seed))
    sd = {k: np.asarray(v) for k, v in model.state_dict(variables).items()}
    for k in sd:  # BatchNorm away from identity
        if k.endswith("running_mean"):
            sd[k] = rng.normal(0, 0.3, sd[k].shape).astype(np.float32)
        elif k.endswith("running_var"):
            sd[k] = rng.uniform(0.3, 2.0, sd[k].shape).astype(np.float32)
        elif ".bn" in "." + k and k.endswith(("weight", "bias")):
            sd[k] = rng.normal(0.8 if k.endswith("weight") else 0.1, 0.3, sd[k].shape).astype(np.float32)
    variables, _ = model.load_state_dict(sd)
    tmodel = TorchNet()
    tmodel.load_state_dict({k: torch.tensor(v) for k, v in sd.items()})
    return model, variables, tmodel.eval()


def batches(seed=1, n=3):
    rng = np.random.default_rng(seed)
    # growing ranges: the histogram is re-binned (upscaled) between batches
    return [(rng.normal(0, 1 + i, (4, 2, 8, 8)) + 0.3 * i).astype(np.float32) for i in range(n)]


def run_both(engine="x86", seed=0, qconfig_name=None):
    qconfig_name = qconfig_name or engine
    model, variables, tmodel = float_pair(seed)
    data = batches(seed + 1)
    torch.backends.quantized.engine = engine
    tmodel.qconfig = tq.get_default_qconfig(qconfig_name)
    tfused = tq.fuse_modules(tmodel, FUSE)
    tprep = tq.prepare(tfused)
    with torch.no_grad():
        for x in data:
            tprep(torch.tensor(x))
    tprep_state = {k: v.clone() for k, v in tprep.state_dict().items()}
    tq_model = tq.convert(tprep)

    fused, fv = Q.fuse_modules(model, variables, FUSE)
    prepared, pv = Q.prepare(fused, fv, Q.get_default_qconfig(qconfig_name))
    pv = Q.calibrate(prepared, pv, data)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing may be left in float here
        qmodel, qv = Q.convert(prepared, pv)
    return dict(model=model, variables=variables, tfused=tfused, fused=fused, fv=fv, prepared=prepared, pv=pv,
                tprep_state=tprep_state, tq=tq_model, qmodel=qmodel, qv=qv, data=data)


@pytest.fixture(scope="module")
def x86():
    return run_both("x86")


def test_fused_conv_bn_relu_weights_equal_torch(x86):
    tsd = x86["tfused"].state_dict()
    fsd = x86["fused"].state_dict(x86["fv"])
    assert list(fsd) == [k for k in tsd if not k.startswith(("bn", "relu"))]
    for key, value in fsd.items():
        np.testing.assert_array_equal(np.asarray(value), tsd[key].numpy(), err_msg=key)
    assert type(x86["fused"].conv1).__name__ == "ConvReLU2d" and type(x86["fused"].bn1).__name__ == "Identity"


def test_observer_state_in_model_matches_torch(x86):
    """The QuantStub's observer sees the inputs themselves: bit-equal. Later observers see
    float conv/linear outputs, whose last bits differ between XLA's and torch's float
    kernels; their state agrees to float rounding (exactness of the observers themselves is
    tested below on identical inputs)."""
    psd = x86["prepared"].state_dict(x86["pv"])
    tsd = x86["tprep_state"]
    assert list(psd) == list(tsd)
    for key in psd:
        if key.startswith("quant."):
            np.testing.assert_array_equal(np.asarray(psd[key]), tsd[key].numpy(), err_msg=key)
        elif key.endswith("histogram"):
            total = float(tsd[key].sum())
            assert abs(float(np.sum(psd[key])) - total) <= 1e-3 * total
            assert np.abs(np.asarray(psd[key]) - tsd[key].numpy()).sum() <= 0.01 * total, key
        else:
            np.testing.assert_allclose(np.asarray(psd[key]), tsd[key].numpy(), rtol=1e-5, err_msg=key)


def observer_batches(rng):
    """Batches whose ranges grow, shrink, shift and collapse: every histogram branch."""
    return [  # one shape: one compilation
        rng.normal(0, 1, (200, 5)).astype(np.float32),
        (rng.normal(0, 3, (200, 5)) + 1).astype(np.float32),     # wider both sides: upscale
        rng.uniform(-0.5, 0.5, (200, 5)).astype(np.float32),     # inside: same range
        np.abs(rng.normal(0, 6, (200, 5))).astype(np.float32),   # wider on the right only
        np.where(rng.random((200, 5)) < 0.003, 9.0, rng.normal(0, 1, (200, 5))).astype(np.float32),  # outliers
    ]


@pytest.mark.parametrize("kind, reduce_range", [
    ("minmax", False), ("moving", True), ("histogram", True), ("histogram", False),
    ("histogram_single_value_first", True)])
def test_observers_equal_torch_on_identical_inputs(rng, kind, reduce_range):
    xs = observer_batches(rng)
    if kind == "histogram_single_value_first":
        xs = [np.full((200, 5), 0.7, np.float32)] + xs
    if kind == "minmax":
        ours, theirs = Q.MinMaxObserver(reduce_range=reduce_range), tq.MinMaxObserver(reduce_range=reduce_range)
    elif kind == "moving":
        ours = Q.MovingAverageMinMaxObserver(reduce_range=reduce_range)
        theirs = tq.MovingAverageMinMaxObserver(reduce_range=reduce_range)
    else:
        ours, theirs = Q.HistogramObserver(reduce_range=reduce_range), tq.HistogramObserver(reduce_range=reduce_range)
    buffers = ours.init(jax.random.key(0)).buffers
    step = jax.jit(lambda b, x: ours.apply({}, x, buffers=b, train=True)[1])
    for x in xs:
        buffers = step(buffers, jnp.asarray(x))
        theirs(torch.tensor(x))
        for key, value in theirs.state_dict().items():
            np.testing.assert_array_equal(np.asarray(buffers[key]), value.numpy(), err_msg=key)
    scale, zp = ours.calculate_qparams(buffers)
    t_scale, t_zp = theirs.calculate_qparams()
    assert np.float32(np.ravel(scale)[0]) == np.float32(t_scale.item())
    assert int(np.ravel(zp)[0]) == int(t_zp.item())


@pytest.mark.parametrize("per_channel", [True, False])
def test_weight_observers_equal_torch(rng, per_channel):
    w = rng.normal(0, 0.3, (7, 3, 3, 3)).astype(np.float32)
    w[2] = 0.0
    ours = Q.default_per_channel_weight_observer() if per_channel else Q.default_weight_observer()
    theirs = tq.default_per_channel_weight_observer() if per_channel else tq.default_weight_observer()
    theirs(torch.tensor(w))
    scale, zp = ours.observe_weight(w)
    t_scale, t_zp = theirs.calculate_qparams()
    np.testing.assert_array_equal(np.ravel(scale), t_scale.numpy().astype(np.float32))
    np.testing.assert_array_equal(np.ravel(zp), t_zp.numpy())


def _torch_layer_qparams(tmodel):
    out = {"quant": (float(tmodel.quant.scale), int(tmodel.quant.zero_point))}
    for name in ("conv1", "conv2", "fc1", "fc2"):
        layer = getattr(tmodel, name)
        out[name] = (float(layer.scale), int(layer.zero_point))
    return out


def test_scales_zero_points_and_int8_weights_equal_torch(x86):
    """Scales/zero points equal; for the layers after the first, whose observed ranges come from
    float kernels (last-bit differences, see above), the scale may differ by a few float32 ulps:
    one ulp with XLA's convolution, two with the CPU patches+matmul lowering (measured on fc2, whose
    range comes after two convolutions and a Linear); 4 leaves a margin and is still far below
    any change a wrong observer or rounding rule makes (those move the scale by >= 1e-3 relative)."""
    qv, tmodel = x86["qv"].params, x86["tq"]
    for name, (scale, zp) in _torch_layer_qparams(tmodel).items():
        s, z = np.float32(np.ravel(qv[name]["scale"])[0]), int(np.ravel(qv[name]["zero_point"])[0])
        assert z == zp, name
        if name in ("quant", "conv1"):
            assert s == np.float32(scale), name
        else:
            assert abs(s - np.float32(scale)) <= 4 * np.spacing(np.float32(scale)), name
    for name in ("conv1", "conv2", "fc1", "fc2"):
        tw = getattr(tmodel, name).weight()
        np.testing.assert_array_equal(np.asarray(qv[name]["weight"]), tw.int_repr().numpy(), err_msg=name)
        np.testing.assert_array_equal(np.asarray(qv[name]["weight_scale"]),
                                      tw.q_per_channel_scales().numpy().astype(np.float32), err_msg=name)
        tb = getattr(tmodel, name).bias()
        np.testing.assert_array_equal(np.asarray(qv[name]["bias"]), tb.detach().numpy(), err_msg=name)


def test_int8_outputs_within_one_step_of_torch(x86):
    rng = np.random.default_rng(5)
    x = rng.normal(0, 1.5, (16, 2, 8, 8)).astype(np.float32)
    ours = np.asarray(jax.jit(x86["qmodel"].apply)(x86["qv"], jnp.asarray(x)))
    theirs = x86["tq"](torch.tensor(x)).numpy()
    step = float(x86["tq"].fc2.scale)
    diff = np.abs(ours - theirs) / step
    assert diff.max() <= 1 + 1e-3, diff.max()
    assert np.mean(diff < 1e-3) >= 0.99  # in practice all bit-identical (up to the float dequantize)


def test_first_int8_layer_bit_identical_to_torch(x86):
    """quant -> conv1 (ConvReLU2d): same input scale, so the uint8 outputs must be equal."""
    qm, qv, tmodel = x86["qmodel"], x86["qv"].params, x86["tq"]
    x = np.random.default_rng(7).normal(0, 2, (8, 2, 8, 8)).astype(np.float32)

    class FirstLayer(nn.Module):
        def __init__(self):
            super().__init__()
            self.quant, self.conv1 = qm.quant, qm.conv1

        def forward(self, x):
            return self.conv1(self.quant(x)).int_repr

    ours = np.asarray(FirstLayer().apply({"quant": qv["quant"], "conv1": qv["conv1"]}, jnp.asarray(x)))
    theirs = tmodel.conv1(tmodel.quant(torch.tensor(x))).int_repr().numpy()
    np.testing.assert_array_equal(ours, theirs)


@pytest.mark.slow
def test_per_tensor_weights_qnnpack_within_one_step():
    r = run_both("qnnpack")
    qv, tmodel = r["qv"].params, r["tq"]
    for name in ("conv1", "conv2", "fc1", "fc2"):
        tw = getattr(tmodel, name).weight()
        np.testing.assert_array_equal(np.asarray(qv[name]["weight"]), tw.int_repr().numpy(), err_msg=name)
        assert np.float32(qv[name]["weight_scale"]) == np.float32(tw.q_scale())
    x = np.random.default_rng(6).normal(0, 1.5, (8, 2, 8, 8)).astype(np.float32)
    ours = np.asarray(r["qmodel"].apply(r["qv"], jnp.asarray(x)))
    theirs = tmodel(torch.tensor(x)).numpy()
    assert np.abs(ours - theirs).max() <= float(tmodel.fc2.scale) * (1 + 1e-3)


# -- bad input ------------------------------------------------------------------------------
def test_convert_unprepared_model_raises():
    model, variables, _ = float_pair()
    with pytest.raises(ValueError, match="not prepared"):
        Q.convert(model, variables)


def test_calibrating_with_no_data_raises():
    model, variables, _ = float_pair()
    prepared, pv = Q.prepare(model, variables, Q.get_default_qconfig("x86"))
    with pytest.raises(ValueError, match="no calibration batches"):
        Q.calibrate(prepared, pv, [])
    with pytest.raises(ValueError, match=r"observers \(quant.activation_post_process.*saw no data"):
        Q.convert(prepared, pv)


@pytest.mark.parametrize("name", ["arm", "X86", "fbgemm2"])
def test_unknown_engine_raises(name):
    with pytest.raises(ValueError, match="not supported"):
        Q.get_default_qconfig(name)
    with pytest.raises(AssertionError):
        tq.get_default_qconfig(name)


class WithSigmoid(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = Q.QuantStub()
        self.fc = nn.Linear(6, 4)
        self.act = nn.Sigmoid()
        self.head = nn.Linear(4, 3)
        self.dequant = Q.DeQuantStub()

    def forward(self, x):
        return self.dequant(self.act(self.fc(self.quant(x))))


def test_unquantizable_layer_is_left_float_and_reported():
    model = WithSigmoid()
    variables = model.init(jax.random.key(0))
    prepared, pv = Q.prepare(model, variables, Q.default_qconfig)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(5, 6)).astype(np.float32))
    pv = Q.calibrate(prepared, pv, [x])
    with pytest.warns(UserWarning, match=r"left in float: .*act \(Sigmoid\)"):
        qmodel, qv = Q.convert(prepared, pv)
    report = qmodel.conversion_report
    # head is never called in forward: its observer saw nothing, so it stays float too
    assert sorted((p, r) for p, _, r in report.float_modules) == [
        ("act", "no int8 version in funcnet"), ("head", "not reached by the calibration batches")]
    assert ("fc", "Linear", "quantized.Linear") in report.quantized
    # the Sigmoid runs in float on the dequantized int8 Linear output: close to the float model
    out = np.asarray(qmodel.apply(qv, x))
    ref = np.asarray(model.apply(variables, x))
    assert np.abs(out - ref).max() < 0.02


def test_float_input_to_int8_layer_raises():
    r_model = WithSigmoid()
    variables = r_model.init(jax.random.key(0))
    prepared, pv = Q.prepare(r_model, variables, Q.default_qconfig)
    pv = Q.calibrate(prepared, pv, [jnp.ones((2, 6))])
    with pytest.warns(UserWarning):
        qmodel, qv = Q.convert(prepared, pv)
    with pytest.raises(TypeError, match=r"Linear \(Linear\): expected a quantized input"):
        qmodel.fc.apply(qv.params["fc"], jnp.ones((2, 6)))


@pytest.mark.parametrize("shape", [pytest.param("normal_outliers", marks=pytest.mark.slow),
                                   pytest.param("laplace", marks=pytest.mark.slow),
                                   pytest.param("skewed", marks=pytest.mark.slow), "bimodal"])
def test_histogram_range_search_equals_torch(rng, shape):
    """torch's _non_linear_param_search on the same histogram (set into its buffers)."""
    n = 20000
    x = {
        "normal_outliers": np.concatenate([rng.normal(0, 1, n), rng.uniform(8, 12, 20)]),
        "laplace": rng.laplace(0.5, 1, n),
        "skewed": rng.exponential(2, n) - 0.3,
        "bimodal": np.concatenate([rng.normal(-3, 0.5, n // 2), rng.normal(2, 1, n // 2)]),
    }[shape].astype(np.float32)
    ours = Q.HistogramObserver(reduce_range=True)
    buffers = ours.apply({}, jnp.asarray(x), buffers=ours.init(jax.random.key(0)).buffers, train=True)[1]
    theirs = tq.HistogramObserver(reduce_range=True)
    theirs.histogram.copy_(torch.tensor(np.asarray(buffers["histogram"])))
    theirs.min_val.copy_(torch.tensor(np.asarray(buffers["min_val"])))
    theirs.max_val.copy_(torch.tensor(np.asarray(buffers["max_val"])))
    from funcnet.quantization.histogram import non_linear_param_search

    lo, hi = non_linear_param_search(buffers["histogram"], buffers["min_val"], buffers["max_val"], 256)
    t_lo, t_hi = theirs._non_linear_param_search()
    assert (lo, hi) == (np.float32(t_lo.item()), np.float32(t_hi.item()))
    assert hi < float(buffers["max_val"]) or lo > float(buffers["min_val"])  # the search clipped something
    scale, zp = ours.calculate_qparams(buffers)
    t_scale, t_zp = theirs.calculate_qparams()
    assert (np.float32(scale), int(zp)) == (np.float32(t_scale.item()), int(t_zp.item()))


def test_state_dict_interchange_with_torch(x86):
    """torch's converted weights/scales/zero points load into funcnet's converted model (same
    outputs as funcnet's own), and funcnet's into torch's (strict), giving torch the same outputs."""
    from funcnet.quantization.interop import from_torch_state_dict, to_torch_state_dict

    qmodel, qv, tmodel = x86["qmodel"], x86["qv"], x86["tq"]
    tsd = tmodel.state_dict()
    ours = to_torch_state_dict(qmodel, qv)
    assert list(ours) == list(tsd)
    loaded = from_torch_state_dict(qmodel, tsd)
    x = jnp.asarray(np.random.default_rng(8).normal(0, 1.5, (6, 2, 8, 8)).astype(np.float32))
    t_out = tmodel(torch.tensor(np.asarray(x))).numpy()
    run = jax.jit(qmodel.apply)
    ours_out = np.asarray(run(qv, x))
    np.testing.assert_allclose(np.asarray(run(loaded, x)), t_out, rtol=1e-6, atol=1e-6)

    import copy

    tcopy = copy.deepcopy(tmodel)
    tcopy.load_state_dict(ours, strict=True)
    np.testing.assert_allclose(tcopy(torch.tensor(np.asarray(x))).numpy(), ours_out, rtol=1e-6, atol=1e-6)


@pytest.mark.slow
def test_digits_cnn_static_int8_accuracy_within_one_point_of_float():
    """examples/quantize.py's static path: the seed CNN trained on the digits (3 epochs)."""
    import os
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "examples"))
    from quantize import FUSE, QuantizableCNN, train_cnn

    from funcnet.datasets import Digits

    train_x, train_y = Digits(train=True).tensors
    test_x, test_y = Digits(train=False).tensors
    train_x, test_x = train_x.reshape(-1, 1, 8, 8), test_x.reshape(-1, 1, 8, 8)
    model = QuantizableCNN()
    variables = train_cnn(model, model.init(jax.random.key(0)), train_x, train_y, epochs=3, seed=0)
    fused, v = Q.fuse_modules(model, variables, FUSE)
    prepared, v = Q.prepare(fused, v, Q.get_default_qconfig("x86"))
    v = Q.calibrate(prepared, v, [train_x[i:i + 64] for i in range(0, 512, 64)])
    qmodel, qv = Q.convert(prepared, v)
    float_acc = np.mean(np.asarray(jnp.argmax(model.apply(variables, test_x), -1)) == test_y)
    int8_acc = np.mean(np.asarray(jnp.argmax(jax.jit(qmodel.apply)(qv, test_x), -1)) == test_y)
    assert float_acc > 0.9
    assert abs(float_acc - int8_acc) <= 0.01, (float_acc, int8_acc)


@pytest.mark.parametrize("case", [
    dict(c=3, o=5, k=(3, 3), stride=(2, 1), pad=(1, 2), dil=(1, 2), size=(9, 10)),
    pytest.param(dict(c=80, o=4, k=(3, 3), stride=(1, 1), pad=(1, 1), dil=(1, 1), size=(5, 5)),  # chunked
                 marks=pytest.mark.slow),
    pytest.param(dict(c=4, o=6, k=(5,), stride=(2,), pad=(2,), dil=(1,), size=(17,)), marks=pytest.mark.slow),
    # the largest sums: 255 * -127 (odd) over 720 taps passes 2**24, where float32 stops being exact
    dict(c=80, o=2, k=(3, 3), stride=(1, 1), pad=(0, 0), dil=(1, 1), size=(3, 3), extreme=True),
])
def test_integer_paths_exact(rng, case):
    """Every INT_PATH gives the exact integer convolution (checked against int64 numpy)."""
    from funcnet.quantization import functional as QF
    from funcnet.quantization.qtensor import QTensor

    n = len(case["k"])
    xq = rng.integers(0, 256, (2, case["c"], *case["size"])).astype(np.uint8)
    w = rng.integers(-128, 128, (case["o"], case["c"], *case["k"])).astype(np.int8)
    zp = 37
    if case.get("extreme"):
        xq[:], w[:], zp = 255, -127, 0
        w[0, 0, 0, 0] = -126
    x = QTensor(jnp.asarray(xq), jnp.float32(0.1), jnp.int32(zp))
    pads = [(p, p) for p in case["pad"]]
    padded = np.pad(xq.astype(np.int64) - zp, [(0, 0), (0, 0)] + pads)
    ref = torch.nn.functional.conv1d if n == 1 else torch.nn.functional.conv2d
    expected = ref(torch.tensor(padded, dtype=torch.float64), torch.tensor(w.astype(np.float64)),
                   stride=case["stride"], dilation=case["dil"]).numpy()
    for path in ("float32", "int8", "auto"):
        got = QF.int_conv(x, jnp.asarray(w), case["stride"], pads, case["dil"], 1, path)
        # the int32 sum, rounded once to float32 (fbgemm also requantizes float(acc))
        np.testing.assert_array_equal(np.asarray(got), expected.astype(np.int64).astype(np.float32), err_msg=path)


def test_quantized_tensor_into_a_float_op_raises():
    from funcnet.quantization.qtensor import quantize_per_tensor

    q = quantize_per_tensor(jnp.ones((2, 3)), 0.1, 0)
    assert funcnet.flatten(q.reshape(2, 3, 1), 1).shape == (2, 3)  # shape-only ops keep it quantized
    with pytest.raises(TypeError, match="quantized tensor .* reached a float operation"):
        jnp.tanh(q)
