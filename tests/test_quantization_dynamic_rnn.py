"""Dynamic int8 LSTM/GRU against torch.ao.quantization.quantize_dynamic (x86/fbgemm engine).

Same float weights, same inputs. int8 weights and scales must be equal. Outputs: each matrix
product is bit-identical to torch's linear_dynamic; sigmoid/tanh differ from torch's in the last
bits, so outputs are compared at 1e-5 (torch's default float32 tolerance in its own tests is
1.3e-6 rtol / 1e-5 atol); the measured differences are printed (-s).
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from funcnet import nn
from funcnet.quantization import QuantizedGRU, QuantizedLSTM, quantize_dynamic, size_report

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import torch.ao.quantization as tq

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:.*deprecated:UserWarning"),
]


class Seq(nn.Module):
    def __init__(self, kind, **kw):
        super().__init__()
        self.rnn = getattr(nn, kind)(6, 8, **kw)
        self.head = nn.Linear(8 * (2 if kw.get("bidirectional") else 1), 3)

    def forward(self, x):
        out, _ = self.rnn(x)
        return out, self.head(out)


class TorchSeq(torch.nn.Module):
    def __init__(self, kind, **kw):
        super().__init__()
        self.rnn = getattr(torch.nn, kind)(6, 8, **kw)
        self.head = torch.nn.Linear(8 * (2 if kw.get("bidirectional") else 1), 3)

    def forward(self, x):
        out, _ = self.rnn(x)
        return out, self.head(out)


slow = pytest.mark.slow
CASES = [
    ("LSTM", {}, False),
    ("GRU", {}, True),
    pytest.param("LSTM", {}, True, marks=slow),
    pytest.param("GRU", {}, False, marks=slow),
    pytest.param("LSTM", {"num_layers": 2, "bidirectional": True}, False, marks=slow),
    pytest.param("GRU", {"num_layers": 2, "batch_first": True}, True, marks=slow),
]


@pytest.mark.parametrize("kind, kw, per_channel", CASES)
def test_dynamic_rnn_matches_torch(kind, kw, per_channel):
    torch.backends.quantized.engine = "x86"
    model = Seq(kind, **kw)
    variables = model.init(jax.random.key(3))
    tmodel = TorchSeq(kind, **kw)
    tmodel.load_state_dict({k: torch.tensor(np.asarray(v)) for k, v in model.state_dict(variables).items()})
    if per_channel:
        qconfig = tq.per_channel_dynamic_qconfig
        spec = {torch.nn.Linear: qconfig, getattr(torch.nn, kind): qconfig}
    else:
        spec = {torch.nn.Linear, getattr(torch.nn, kind)}
    tq_model = tq.quantize_dynamic(tmodel, spec, dtype=torch.qint8)
    qmodel, qv = quantize_dynamic(model, variables, per_channel=per_channel)
    assert isinstance(qmodel.rnn, QuantizedLSTM if kind == "LSTM" else QuantizedGRU)

    # int8 weights and scales equal torch's packed ones
    packed = [p.param for p in tq_model.rnn._all_weight_values]
    names = [n for n in qv.params["rnn"] if n.startswith("weight_ih") and not n.endswith(("scale", "point"))]
    assert len(packed) == len(names)
    for cell, ih_name in zip(packed, names, strict=True):
        hh_name = ih_name.replace("_ih", "_hh")
        kind_name, _biases, _, _, (w_ih, w_hh) = cell.__getstate__()[0]  # torch's CellParamsBase state
        assert kind_name == "quantized_dynamic"
        for packed_w, name in ((w_ih, ih_name), (w_hh, hh_name)):
            tw, _ = torch.ops.quantized.linear_unpack(packed_w)
            np.testing.assert_array_equal(np.asarray(qv.params["rnn"][name]), tw.int_repr().numpy())
            t_scale = tw.q_per_channel_scales().numpy() if per_channel else np.float32(tw.q_scale())
            np.testing.assert_array_equal(np.asarray(qv.params["rnn"][name + "_scale"]), np.float32(t_scale))

    x = np.random.default_rng(0).normal(0, 1, (5, 4, 6) if not kw.get("batch_first") else (4, 5, 6))
    x = x.astype(np.float32)
    out, head = jax.jit(qmodel.apply)(qv, jnp.asarray(x))
    t_out, t_head = tq_model(torch.tensor(x))
    print("max |diff|", np.abs(np.asarray(out) - t_out.detach().numpy()).max())
    np.testing.assert_allclose(np.asarray(out), t_out.detach().numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(head), t_head.detach().numpy(), rtol=1e-5, atol=1e-5)


def test_size_report_lists_the_rnn():
    model = Seq("LSTM")
    variables = model.init(jax.random.key(0))
    qmodel, qv = quantize_dynamic(model, variables)
    report = size_report(model, variables, qmodel, qv)
    assert [(layer.name, layer.kind) for layer in report.layers] == [("rnn", "LSTM"), ("head", "Linear")]
    assert report.layers[0].float_bytes / report.layers[0].quantized_bytes > 2.5  # float biases stay
