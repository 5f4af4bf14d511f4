"""The layer catalogue, one family per file (torch.nn.modules layout)."""

from funcnet.nn.modules.attention import MultiheadAttention
from funcnet.nn.modules.batchnorm import BatchNorm1d, BatchNorm2d, BatchNorm3d
from funcnet.nn.modules.container import ModuleDict, ModuleList, Sequential
from funcnet.nn.modules.dropout import Dropout, Dropout2d
from funcnet.nn.modules.linear import Identity, Linear
from funcnet.nn.modules.rnn import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNBase, RNNCell, RNNCellBase
from funcnet.nn.modules.transformer import (
    Transformer,
    TransformerDecoder,
    TransformerDecoderLayer,
    TransformerEncoder,
    TransformerEncoderLayer,
)

__all__ = [
    "BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "Dropout", "Dropout2d", "Identity", "Linear",
    "ModuleDict", "ModuleList", "Sequential",
    "MultiheadAttention", "Transformer", "TransformerDecoder", "TransformerDecoderLayer",
    "TransformerEncoder", "TransformerEncoderLayer",
    "GRU", "LSTM", "RNN", "GRUCell", "LSTMCell", "RNNBase", "RNNCell", "RNNCellBase",
]
