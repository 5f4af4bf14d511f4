"""Activation modules: ``torch.nn.ReLU`` … ``LogSoftmax``, thin wrappers over ``funcnet.nn.functional``.

They have no parameters; constructor arguments, defaults and ``repr`` are
torch's. ``inplace=True`` is accepted (and shown in ``repr`` as in torch) but
has no effect: JAX arrays are immutable.
"""

from __future__ import annotations

import jax

from funcnet.nn import functional as F
from funcnet.nn.module import Module


class _Inplace(Module):
    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.inplace = inplace

    def _inplace_repr(self, leading: str = "") -> str:
        if not self.inplace:
            return leading
        return f"{leading}, inplace=True" if leading else "inplace=True"

    def extra_repr(self) -> str:
        return self._inplace_repr()


class ReLU(_Inplace):
    """``torch.nn.ReLU``: max(x, 0), any shape."""

    def forward(self, x: jax.Array) -> jax.Array:
        return F.relu(x)


class ReLU6(_Inplace):
    """``torch.nn.ReLU6``: min(max(x, 0), 6), any shape."""

    def forward(self, x: jax.Array) -> jax.Array:
        return F.relu6(x)


class LeakyReLU(_Inplace):
    """``torch.nn.LeakyReLU(negative_slope=0.01)``."""

    def __init__(self, negative_slope: float = 1e-2, inplace: bool = False) -> None:
        super().__init__(inplace)
        self.negative_slope = negative_slope

    def forward(self, x: jax.Array) -> jax.Array:
        return F.leaky_relu(x, self.negative_slope)

    def extra_repr(self) -> str:
        return self._inplace_repr(f"negative_slope={self.negative_slope}")


class ELU(_Inplace):
    """``torch.nn.ELU(alpha=1.0)``: x if x > 0 else alpha·(eˣ − 1)."""

    def __init__(self, alpha: float = 1.0, inplace: bool = False) -> None:
        super().__init__(inplace)
        self.alpha = alpha

    def forward(self, x: jax.Array) -> jax.Array:
        return F.elu(x, self.alpha)

    def extra_repr(self) -> str:
        return self._inplace_repr(f"alpha={self.alpha}")


class Hardswish(_Inplace):
    """``torch.nn.Hardswish``: x·relu6(x + 3)/6, any shape."""

    def forward(self, x: jax.Array) -> jax.Array:
        return F.hardswish(x)


class Hardsigmoid(_Inplace):
    """``torch.nn.Hardsigmoid``: relu6(x + 3)/6, any shape."""

    def forward(self, x: jax.Array) -> jax.Array:
        return F.hardsigmoid(x)


class GELU(Module):
    """``torch.nn.GELU(approximate='none')``; ``'tanh'`` selects torch's tanh approximation."""

    def __init__(self, approximate: str = "none") -> None:
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"approximate argument must be either none or tanh, got {approximate!r}")
        self.approximate = approximate

    def forward(self, x: jax.Array) -> jax.Array:
        return F.gelu(x, approximate=self.approximate)

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"


class SiLU(_Inplace):
    """``torch.nn.SiLU``: x·σ(x)."""

    def forward(self, x: jax.Array) -> jax.Array:
        return F.silu(x)


class Mish(_Inplace):
    """``torch.nn.Mish``: x·tanh(softplus(x))."""

    def forward(self, x: jax.Array) -> jax.Array:
        return F.mish(x)


class Sigmoid(Module):
    """``torch.nn.Sigmoid``."""

    def forward(self, x: jax.Array) -> jax.Array:
        return F.sigmoid(x)


class Tanh(Module):
    """``torch.nn.Tanh``."""

    def forward(self, x: jax.Array) -> jax.Array:
        return F.tanh(x)


class Softplus(Module):
    """``torch.nn.Softplus(beta=1.0, threshold=20.0)``: linear where βx > threshold, as torch."""

    def __init__(self, beta: float = 1.0, threshold: float = 20.0) -> None:
        super().__init__()
        self.beta = beta
        self.threshold = threshold

    def forward(self, x: jax.Array) -> jax.Array:
        return F.softplus(x, self.beta, self.threshold)

    def extra_repr(self) -> str:
        return f"beta={self.beta}, threshold={self.threshold}"


class Hardtanh(_Inplace):
    """``torch.nn.Hardtanh(min_val=-1.0, max_val=1.0)``: clip to [min_val, max_val]."""

    def __init__(self, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False) -> None:
        super().__init__(inplace)
        if max_val <= min_val:
            raise ValueError(f"Hardtanh: max_val ({max_val}) must be greater than min_val ({min_val})")
        self.min_val = min_val
        self.max_val = max_val

    def forward(self, x: jax.Array) -> jax.Array:
        return F.hardtanh(x, self.min_val, self.max_val)

    def extra_repr(self) -> str:
        return self._inplace_repr(f"min_val={self.min_val}, max_val={self.max_val}")


class Softmax(Module):
    """``torch.nn.Softmax(dim=None)``: pass ``dim``; ``None`` follows torch's deprecated implicit rule."""

    def __init__(self, dim: int | None = None) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, x: jax.Array) -> jax.Array:
        return F.softmax(x, self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class LogSoftmax(Module):
    """``torch.nn.LogSoftmax(dim=None)``: log(softmax(x)) along ``dim``, computed stably."""

    def __init__(self, dim: int | None = None) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, x: jax.Array) -> jax.Array:
        return F.log_softmax(x, self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"
