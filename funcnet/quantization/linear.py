"""``QuantizedLinear``: torch's dynamic int8 ``Linear`` (``torch.ao.nn.quantized.dynamic.Linear``).

The weight is stored as int8 with a symmetric float32 scale (per tensor or per
output channel). Each call quantizes the input to uint8 with parameters chosen
from that call's whole input tensor, multiplies in integers (int32
accumulation), then rescales to float and adds the float bias::

    x_q = clamp(nearbyint(x / s_x + z_x), 0, 127)            # reduce_range=True
    y   = float(Σ_k (x_q - z_x) · w_q) · (s_x · s_w) + b

Parameters (``state_dict`` keys, in this order):

==============  =========================  ============================================
key             shape / dtype              torch equivalent
==============  =========================  ============================================
``weight``      ``[out, in]`` int8         ``mod.weight().int_repr()``
``bias``        ``[out]`` float32          ``mod.bias()`` (absent when ``bias=False``)
``scale``       ``()`` or ``[out]`` f32    ``mod.weight().q_scale()`` /
                                           ``q_per_channel_scales()``
``zero_point``  ``()`` or ``[out]`` int32  ``q_zero_point()`` / ``q_per_channel_zero_points()``
==============  =========================  ============================================

Differences from torch: torch keeps all of this in one opaque ``_packed_params``
object (its module-level ``scale``/``zero_point`` are the unused output
parameters, 1.0 and 0); here they are plain arrays under readable keys. The
arrays are declared as ``Parameter`` so that ``apply(params, x)`` works, but
they are not trainable (int8 has no gradient). With ``apply(..., compute_dtype=bf16)``
the float ``scale``/``bias`` are read in bfloat16 like every float parameter; use
float32 (the default) for torch parity.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from funcnet.nn.module import Module
from funcnet.nn.parameter import Parameter
from funcnet.quantization import observers


class QuantizedLinear(Module):
    """Dynamic int8 ``Linear``: input ``[..., in_features]`` float → output ``[..., out_features]``.

    Args:
        in_features, out_features, bias: as ``nn.Linear``.
        per_channel: one weight scale per output row instead of one per tensor.
        reduce_range: quantize activations to ``[0, 127]`` rather than ``[0, 255]``
            (torch's dynamic Linear always passes True; fbgemm needs it to avoid
            int16 saturation, which funcnet's int32 accumulation does not have).

    Build one from a float ``nn.Linear`` with :meth:`from_float` or, for a whole
    model, with :func:`funcnet.quantization.quantize_dynamic`.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        per_channel: bool = False,
        reduce_range: bool = True,
    ) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.per_channel = per_channel
        self.reduce_range = reduce_range
        qshape = (out_features,) if per_channel else ()
        self.weight = Parameter((out_features, in_features), 0, jnp.int8)
        if bias:
            self.bias = Parameter((out_features,), 0.0, jnp.float32)
        self.scale = Parameter(qshape, 1.0, jnp.float32)
        self.zero_point = Parameter(qshape, 0, jnp.int32)

    @classmethod
    def from_float(
        cls,
        linear: Module,
        params: dict,
        per_channel: bool = False,
        reduce_range: bool = True,
    ) -> tuple[QuantizedLinear, dict]:
        """``torch.ao.nn.quantized.dynamic.Linear.from_float``: quantize one float Linear.

        Args:
            linear: an ``nn.Linear`` (its configuration).
            params: its parameters, ``{'weight': [out, in], 'bias': [out]}``.

        Returns:
            ``(QuantizedLinear, qparams)`` with ``qparams`` keyed as in the table above.
        """
        has_bias = "bias" in linear._parameters
        module = cls(linear.in_features, linear.out_features, has_bias, per_channel, reduce_range)
        weight = np.asarray(params["weight"], dtype=np.float32)
        scale = observers.weight_qparams(weight, per_channel)
        qparams = {"weight": jnp.asarray(observers.quantize_weight(weight, scale))}
        if has_bias:
            qparams["bias"] = jnp.asarray(params["bias"], dtype=jnp.float32)
        qparams["scale"] = jnp.asarray(scale)
        qparams["zero_point"] = jnp.zeros(scale.shape, jnp.int32)
        return module, qparams

    def forward(self, x: jax.Array) -> jax.Array:
        if x.ndim < 1 or x.shape[-1] != self.in_features:
            raise self.shape_error(f"[..., {self.in_features}]", x.shape)
        if not jnp.issubdtype(x.dtype, jnp.floating):
            raise TypeError(f"{self.path} (QuantizedLinear): expected a float input, got {x.dtype}")
        weight = self.weight
        if weight.dtype != jnp.int8:
            raise TypeError(
                f"{self.path} (QuantizedLinear): weight must be int8, got {weight.dtype}; "
                f"load the variables returned by quantize_dynamic"
            )
        bias = self.bias.astype(jnp.float32) if "bias" in self._parameters else None
        out = dynamic_linear(
            x, weight, self.scale.astype(jnp.float32), self.zero_point, bias, self.reduce_range
        )
        return out.astype(x.dtype)

    def extra_repr(self) -> str:
        qscheme = "per_channel_symmetric" if self.per_channel else "per_tensor_symmetric"
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"dtype=int8, qscheme={qscheme}"
        )


@partial(jax.jit, static_argnames="reduce_range")
def dynamic_linear(
    x: jax.Array,
    weight: jax.Array,
    scale: jax.Array,
    zero_point: jax.Array,
    bias: jax.Array | None = None,
    reduce_range: bool = True,
) -> jax.Array:
    """The arithmetic of ``quantized::linear_dynamic`` (fbgemm), as one jitted function.

    Args:
        x: float ``[..., in]``; quantized to uint8 with parameters from the whole tensor.
        weight: int8 ``[out, in]``; ``scale``/``zero_point``: ``()`` or ``[out]``.
        bias: float32 ``[out]`` or None.

    Returns:
        float32 ``[..., out]``.
    """
    qmin, qmax = (0, 127) if reduce_range else (0, 255)
    x_scale, x_zp = observers.activation_qparams(x, reduce_range)
    x_q = observers.quantize_activation(x, x_scale, x_zp, qmin, qmax)
    # x_q - offset fits int8 ([0, 127] as is; [0, 255] shifted by 128), so the
    # product is an int8 x int8 -> int32 dot; the offsets are folded back in
    # through the row sums of the weight.
    offset = 0 if reduce_range else 128
    x_s = (x_q - offset).astype(jnp.int8)
    acc = jax.lax.dot_general(
        x_s, weight, (((x.ndim - 1,), (1,)), ((), ())), preferred_element_type=jnp.int32
    )
    acc = acc + (offset - x_zp) * jnp.sum(weight.astype(jnp.int32), axis=1)
    # Weight zero points are 0 for torch's symmetric observers; kept general.
    x_sums = jnp.sum(x_q - x_zp, axis=-1, keepdims=True)
    acc = acc - x_sums * zero_point.astype(jnp.int32)
    # fbgemm's ReQuantizeForFloat: float(acc) * (s_x * s_w) + bias
    out = acc.astype(jnp.float32) * (x_scale * scale)
    return out if bias is None else out + bias
