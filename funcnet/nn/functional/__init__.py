"""``funcnet.nn.functional``: torch.nn.functional's names, arguments and defaults, as pure JAX.

One file per family; this module re-exports them all.
"""

from funcnet.nn.functional.attention import scaled_dot_product_attention
from funcnet.nn.functional.dropout import dropout, dropout2d
from funcnet.nn.functional.linear import linear

__all__ = ["dropout", "dropout2d", "linear"]
__all__ += ["scaled_dot_product_attention"]
