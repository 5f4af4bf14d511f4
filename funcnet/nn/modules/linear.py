"""``Linear``, ``Identity``: y = x Wᵀ + b with W in torch's ``[out, in]`` layout."""

from __future__ import annotations

from typing import Any

import jax

from funcnet.nn import functional as F
from funcnet.nn import init
from funcnet.nn.module import Module
from funcnet.nn.parameter import Parameter


class Identity(Module):
    """``torch.nn.Identity``: returns its input; takes and ignores any arguments."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()

    def forward(self, x: Any) -> Any:
        return x


class Linear(Module):
    """``torch.nn.Linear(in_features, out_features, bias=True, device=None, dtype=None)``.

    ``device`` is accepted for signature compatibility and ignored: placement is JAX's.

    Input ``[..., in_features]`` (any leading dims), output ``[..., out_features]``.
    Parameters ``weight [out, in]`` ~ U(±1/√in) and ``bias [out]`` ~ U(±1/√in), as torch.
    """

    def __init__(
        self, in_features: int, out_features: int, bias: bool = True, device: Any = None, dtype: Any = None
    ) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.weight = Parameter((out_features, in_features), init.torch_default_weight, dtype)
        if bias:
            self.bias = Parameter((out_features,), init.torch_default_bias(in_features), dtype)
        else:
            self.register_parameter("bias", None)  # reads None, as torch's m.bias

    def forward(self, x: jax.Array) -> jax.Array:
        if x.ndim < 1 or x.shape[-1] != self.in_features:
            raise self.shape_error(f"[..., {self.in_features}]", x.shape)
        bias = self.bias if "bias" in self._parameters else None
        return F.linear(x, self.weight, bias)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={'bias' in self._parameters}"
        )
