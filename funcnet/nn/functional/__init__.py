"""``funcnet.nn.functional``: torch.nn.functional's names, arguments and defaults, as pure JAX.

One file per family; this module re-exports them all.
"""

from funcnet.nn.functional.activation import (
    elu,
    gelu,
    hardtanh,
    leaky_relu,
    log_softmax,
    mish,
    relu,
    relu6,
    sigmoid,
    silu,
    softmax,
    softplus,
    tanh,
)
from funcnet.nn.functional.dropout import dropout, dropout2d
from funcnet.nn.functional.linear import linear
from funcnet.nn.functional.normalization import (
    batch_norm,
    group_norm,
    instance_norm,
    layer_norm,
    normalize,
)
from funcnet.nn.functional.padding import pad
from funcnet.nn.functional.sparse import embedding, one_hot

__all__ = ["dropout", "dropout2d", "linear"]
__all__ += [
    "elu", "gelu", "hardtanh", "leaky_relu", "log_softmax", "mish", "relu", "relu6", "sigmoid", "silu",
    "softmax", "softplus", "tanh",
]
__all__ += [
    "batch_norm", "group_norm", "instance_norm", "layer_norm", "normalize", "pad", "embedding", "one_hot",
]
