"""``QuantStub``, ``DeQuantStub`` and ``FloatFunctional``: where a float model marks its int8 region.

As in torch's eager mode, the model author places a ``QuantStub`` where float inputs
become quantized and a ``DeQuantStub`` where results go back to float; both are
identities in the float model. Arithmetic between activations (``x + y``, ``cat``)
goes through a ``FloatFunctional`` so that ``prepare`` can observe its output and
``convert`` can replace it by its quantized version.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from funcnet.nn.module import Module


class QuantStub(Module):
    """``torch.ao.quantization.QuantStub``: identity until ``convert`` makes it a ``Quantize``."""

    def __init__(self, qconfig: Any = None) -> None:
        super().__init__()
        if qconfig is not None:
            self.qconfig = qconfig

    def forward(self, x: jax.Array) -> jax.Array:
        return x


class DeQuantStub(Module):
    """``torch.ao.quantization.DeQuantStub``: identity until ``convert`` makes it a ``DeQuantize``."""

    def __init__(self, qconfig: Any = None) -> None:
        super().__init__()
        if qconfig is not None:
            self.qconfig = qconfig

    def forward(self, x: jax.Array) -> jax.Array:
        return x


class FloatFunctional(Module):
    """``torch.ao.nn.quantized.FloatFunctional``: ``add``, ``add_relu``, ``cat`` whose output
    ``prepare`` observes (``activation_post_process``) and ``convert`` quantizes (``QFunctional``).

    Call the methods inside ``forward``: ``self.skip = FloatFunctional()``, then
    ``self.skip.add(x, y)``.
    """

    def forward(self, x: Any) -> Any:
        raise RuntimeError("FloatFunctional is not called directly: use its add / add_relu / cat methods")

    def _observe(self, r: jax.Array) -> jax.Array:
        if "activation_post_process" in self._modules:
            return self.activation_post_process(r)
        return r

    def add(self, x: jax.Array, y: jax.Array) -> jax.Array:
        return self._observe(x + y)

    def add_relu(self, x: jax.Array, y: jax.Array) -> jax.Array:
        return self._observe(jax.nn.relu(x + y))

    def cat(self, xs: Sequence[jax.Array], dim: int = 0) -> jax.Array:
        return self._observe(jnp.concatenate(list(xs), axis=dim))
