"""``funcnet.nn.functional``: torch.nn.functional's names, arguments and defaults, as pure JAX.

One file per family; this module re-exports them all.
"""

from funcnet.nn.functional.dropout import dropout, dropout2d
from funcnet.nn.functional.linear import linear
from funcnet.nn.functional.loss import (
    binary_cross_entropy,
    binary_cross_entropy_with_logits,
    cross_entropy,
    huber_loss,
    kl_div,
    l1_loss,
    mse_loss,
    nll_loss,
    smooth_l1_loss,
)

__all__ = ["dropout", "dropout2d", "linear"]
__all__ += [
    "binary_cross_entropy", "binary_cross_entropy_with_logits", "cross_entropy", "huber_loss", "kl_div",
    "l1_loss", "mse_loss", "nll_loss", "smooth_l1_loss",
]
