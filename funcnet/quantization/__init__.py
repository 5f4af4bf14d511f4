"""``funcnet.quantization``: int8 quantization as ``torch.ao.quantization`` (dynamic and static).

Static (eager-mode post-training quantization, activations int8 too)::

    fused, v = fuse_modules(model, variables, [["conv1", "bn1", "relu1"], ["fc1", "relu3"]])
    prepared, v = prepare(fused, v, get_default_qconfig("x86"))
    v = calibrate(prepared, v, batches)                     # observers are buffers
    qmodel, qvariables = convert(prepared, v)               # QuantStub -> Quantize, Conv -> int8 ...
    print(qmodel.conversion_report)

Dynamic (int8 weights, activations quantized per call)::

    qmodel, qvariables = funcnet.quantization.quantize_dynamic(model, variables)
    logits = jax.jit(qmodel.apply)(qvariables, x)          # int8 weights, int32 matmul
    print(funcnet.quantization.size_report(model, variables, qmodel, qvariables))

Weights, weight scales and outputs match ``torch.ao.quantization.quantize_dynamic``
(fbgemm/x86 engine, qint8, per tensor or per channel); see ``QuantizedLinear``
for the arithmetic and the state_dict keys.
"""

from funcnet.quantization import functional, observer, quantized
from funcnet.quantization.convert import ConversionReport, convert
from funcnet.quantization.dynamic import LayerSize, SizeReport, quantize_dynamic, size_report
from funcnet.quantization.dynamic_rnn import QuantizedGRU, QuantizedLSTM
from funcnet.quantization.fuse import ConvReLU1d, ConvReLU2d, LinearReLU, fuse_modules
from funcnet.quantization.interop import from_torch_state_dict, to_torch_state_dict
from funcnet.quantization.linear import QuantizedLinear
from funcnet.quantization.observer import (
    HistogramObserver,
    MinMaxObserver,
    MovingAverageMinMaxObserver,
    PerChannelMinMaxObserver,
    default_per_channel_weight_observer,
    default_weight_observer,
)
from funcnet.quantization.observers import (
    activation_qparams,
    quantize_activation,
    quantize_weight,
    weight_qparams,
)
from funcnet.quantization.prepare import calibrate, prepare
from funcnet.quantization.qconfig import (
    QConfig,
    default_per_channel_qconfig,
    default_qconfig,
    get_default_qconfig,
)
from funcnet.quantization.qtensor import QTensor, quantize_per_tensor
from funcnet.quantization.stubs import DeQuantStub, FloatFunctional, QuantStub

__all__ = [
    "ConversionReport",
    "ConvReLU1d",
    "ConvReLU2d",
    "DeQuantStub",
    "FloatFunctional",
    "HistogramObserver",
    "LinearReLU",
    "MinMaxObserver",
    "MovingAverageMinMaxObserver",
    "PerChannelMinMaxObserver",
    "QConfig",
    "QTensor",
    "QuantStub",
    "calibrate",
    "convert",
    "default_per_channel_qconfig",
    "default_per_channel_weight_observer",
    "default_qconfig",
    "default_weight_observer",
    "functional",
    "from_torch_state_dict",
    "fuse_modules",
    "get_default_qconfig",
    "observer",
    "prepare",
    "quantize_per_tensor",
    "quantized",
    "LayerSize",
    "QuantizedGRU",
    "QuantizedLSTM",
    "QuantizedLinear",
    "SizeReport",
    "activation_qparams",
    "quantize_activation",
    "quantize_dynamic",
    "quantize_weight",
    "size_report",
    "to_torch_state_dict",
    "weight_qparams",
]
