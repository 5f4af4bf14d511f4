"""``QTensor``: torch's per-tensor affine ``quint8`` tensor as a jax pytree.

A quantized activation travels between static int8 layers as its uint8 values plus
one float32 ``scale`` and one int32 ``zero_point`` (``real = (q - zero_point) * scale``),
as torch's ``quantize_per_tensor(x, scale, zero_point, torch.quint8)``. Shape-only
operations (``reshape``, ``flatten``, ``transpose``, indexing) keep the parameters,
so ``funcnet.flatten(q, 1)`` works on it as ``torch.flatten`` on a quantized tensor.
Any float operation raises instead of silently reading the integers as floats.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from funcnet.quantization import observers

QUINT8_MIN, QUINT8_MAX = 0, 255


@jax.tree_util.register_pytree_node_class
class QTensor:
    """uint8 ``int_repr`` ``[*shape]`` with a float32 ``scale`` and int32 ``zero_point`` (scalars)."""

    __slots__ = ("int_repr", "scale", "zero_point")

    def __init__(self, int_repr: jax.Array, scale: jax.Array, zero_point: jax.Array) -> None:
        self.int_repr = int_repr
        self.scale = scale
        self.zero_point = zero_point

    def tree_flatten(self):
        return (self.int_repr, self.scale, self.zero_point), None

    @classmethod
    def tree_unflatten(cls, aux: Any, children: Any) -> QTensor:
        return cls(*children)

    # -- shape-only views (torch keeps q_scale/q_zero_point through them) ------------------
    @property
    def shape(self) -> tuple[int, ...]:
        return self.int_repr.shape

    @property
    def ndim(self) -> int:
        return self.int_repr.ndim

    @property
    def size(self) -> int:
        return self.int_repr.size

    def _like(self, values: jax.Array) -> QTensor:
        return QTensor(values, self.scale, self.zero_point)

    def reshape(self, *shape: Any) -> QTensor:
        return self._like(self.int_repr.reshape(*shape))

    def transpose(self, *axes: Any) -> QTensor:
        return self._like(self.int_repr.transpose(*axes))

    def __getitem__(self, index: Any) -> QTensor:
        return self._like(self.int_repr[index])

    def dequantize(self) -> jax.Array:
        """``(q - zero_point) * scale`` in float32 (torch's ``Tensor.dequantize``)."""
        return (self.int_repr.astype(jnp.int32) - self.zero_point).astype(jnp.float32) * self.scale

    def __jax_array__(self):
        raise TypeError(
            "a quantized tensor (QTensor: uint8 values, scale, zero_point) reached a float "
            "operation; dequantize it first (a DeQuantStub before that operation in the model, "
            "or q.dequantize())"
        )

    def __repr__(self) -> str:
        return f"QTensor(shape={self.shape}, scale={self.scale}, zero_point={self.zero_point})"


def quantize_per_tensor(x: jax.Array, scale: jax.Array, zero_point: jax.Array) -> QTensor:
    """``torch.quantize_per_tensor(x, scale, zero_point, torch.quint8)`` (fbgemm's rounding:
    ``clamp(nearbyint(x * (1/scale) + zero_point), 0, 255)``)."""
    scale = jnp.asarray(scale, jnp.float32)
    zero_point = jnp.asarray(zero_point, jnp.int32)
    q = observers.quantize_activation(x, scale, zero_point, QUINT8_MIN, QUINT8_MAX)
    return QTensor(q.astype(jnp.uint8), scale, zero_point)
