"""``funcnet.quantization``: dynamic int8 quantization of ``Linear`` layers, as ``torch.ao.quantization``.

    qmodel, qvariables = funcnet.quantization.quantize_dynamic(model, variables)
    logits = jax.jit(qmodel.apply)(qvariables, x)          # int8 weights, int32 matmul
    print(funcnet.quantization.size_report(model, variables, qmodel, qvariables))

Weights, weight scales and outputs match ``torch.ao.quantization.quantize_dynamic``
(fbgemm/x86 engine, qint8, per tensor or per channel); see ``QuantizedLinear``
for the arithmetic and the state_dict keys.
"""

from funcnet.quantization.dynamic import LayerSize, SizeReport, quantize_dynamic, size_report
from funcnet.quantization.linear import QuantizedLinear
from funcnet.quantization.observers import (
    activation_qparams,
    quantize_activation,
    quantize_weight,
    weight_qparams,
)

__all__ = [
    "LayerSize",
    "QuantizedLinear",
    "SizeReport",
    "activation_qparams",
    "quantize_activation",
    "quantize_dynamic",
    "quantize_weight",
    "size_report",
    "weight_qparams",
]
