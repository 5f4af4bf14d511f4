"""``Dropout``, ``Dropout2d``: randomness from the ``key`` given to apply; identity in eval mode.

``p`` is the *drop* probability, as in torch (stax's keep-rate trap avoided).
Each call site draws its own key (``Module.make_rng``), so two dropouts, or one
dropout called twice, get independent masks that are reproducible for a key.
"""

from __future__ import annotations

import jax

from funcnet.nn import functional as F
from funcnet.nn.functional.dropout import warn_dropout2d_rank
from funcnet.nn.module import Module


class Dropout(Module):
    """``torch.nn.Dropout(p=0.5)``: zero elements with probability p, scale the rest by 1/(1−p)."""

    def __init__(self, p: float = 0.5, inplace: bool = False) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
        self.p = p

    def forward(self, x: jax.Array) -> jax.Array:
        if not self.training or self.p == 0.0:
            return x
        return F.dropout(x, self.p, training=True, key=self.make_rng())

    def extra_repr(self) -> str:
        return f"p={self.p}, inplace=False"


class Dropout2d(Dropout):
    """``torch.nn.Dropout2d``: zero whole channels of ``[N, C, H, W]``.

    As torch 2.13, a 3-D input is read as ``[N, C, L]`` (whole channels of each sample dropped, not
    slices of an unbatched ``[C, H, W]``) with torch's warning, in train and eval mode alike; see
    ``F.dropout2d``.
    """

    def forward(self, x: jax.Array) -> jax.Array:
        if x.ndim not in (3, 4):
            raise self.shape_error("[N, C, H, W] or [N, C, L]", x.shape)
        if not self.training or self.p == 0.0:
            warn_dropout2d_rank(x.ndim)  # torch warns in eval mode too
            return x
        return F.dropout2d(x, self.p, training=True, key=self.make_rng())
