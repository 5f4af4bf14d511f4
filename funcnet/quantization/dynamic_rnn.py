"""Dynamic int8 ``LSTM`` / ``GRU``: torch's ``torch.ao.nn.quantized.dynamic.LSTM`` / ``GRU``.

Every weight matrix is int8 (torch's dynamic weight observer: symmetric, per tensor or per
output row), the biases stay float. Each matrix product is torch's ``quantized::linear_dynamic``
(:func:`funcnet.quantization.linear.dynamic_linear`, bit-identical to fbgemm's): the input is
quantized to 7-bit uint8 from its own range at each call. As in torch's CPU kernel the input
projection of the whole sequence is one call (one range for all time steps) and the hidden
projection one call per step (the range of that step's ``h``)::

    xw    = linear_dynamic(x[0:T], W_ih) + b_ih           # once per layer and direction
    gates = linear_dynamic(h_{t-1}, W_hh) + b_hh + xw_t   # every step

then torch's cell arithmetic (LSTM: ``c' = f⊙c + i⊙g``, ``h' = o⊙tanh(c')``; GRU:
``h' = (h - n)⊙z + n``, torch's order of operations).

Parameters per layer ``k`` and direction ``sfx`` (``''`` or ``'_reverse'``): ``weight_ih_l{k}{sfx}``
int8, ``weight_ih_l{k}{sfx}_scale`` / ``_zero_point``, ``bias_ih_l{k}{sfx}`` float, and the same
for ``hh``. (torch keeps them packed in ``_all_weight_values``; these are readable arrays.)
Not supported (``from_float`` raises): ``proj_size > 0``; ``forward(lengths=...)``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from funcnet.nn.module import Module
from funcnet.nn.parameter import Parameter
from funcnet.quantization import observers
from funcnet.quantization.linear import dynamic_linear


class _QuantizedRNN(Module):
    mode = "LSTM"
    gates = 4

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, bidirectional: bool = False, per_channel: bool = False) -> None:
        super().__init__()
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.bidirectional = bias, batch_first, bidirectional
        self.per_channel = per_channel
        self.num_directions = 2 if bidirectional else 1
        rows = self.gates * hidden_size
        qshape = (rows,) if per_channel else ()
        for layer in range(num_layers):
            layer_in = input_size if layer == 0 else hidden_size * self.num_directions
            for direction in range(self.num_directions):
                sfx = f"_l{layer}" + ("_reverse" if direction else "")
                for kind, cols in (("ih", layer_in), ("hh", hidden_size)):
                    setattr(self, f"weight_{kind}{sfx}", Parameter((rows, cols), 0, jnp.int8))
                    setattr(self, f"weight_{kind}{sfx}_scale", Parameter(qshape, 1.0, jnp.float32))
                    setattr(self, f"weight_{kind}{sfx}_zero_point", Parameter(qshape, 0, jnp.int32))
                    if bias:
                        setattr(self, f"bias_{kind}{sfx}", Parameter((rows,), 0.0, jnp.float32))

    @classmethod
    def from_float(cls, rnn: Module, params: dict, per_channel: bool = False,
                   reduce_range: bool = True) -> tuple[_QuantizedRNN, dict]:
        """``torch.ao.nn.quantized.dynamic.LSTM/GRU.from_float`` for one float ``nn.LSTM``/``nn.GRU``."""
        if getattr(rnn, "proj_size", 0):
            raise NotImplementedError("quantize_dynamic: LSTM with proj_size > 0 is not supported")
        module = cls(rnn.input_size, rnn.hidden_size, rnn.num_layers, rnn.bias, rnn.batch_first,
                     rnn.bidirectional, per_channel)
        qparams = {}
        for name in module._parameters:
            if name.endswith(("_scale", "_zero_point")):
                continue
            if name.startswith("bias"):
                qparams[name] = jnp.asarray(params[name], jnp.float32)
                continue
            w = np.asarray(params[name], np.float32)
            scale = observers.weight_qparams(w, per_channel)
            qparams[name] = jnp.asarray(observers.quantize_weight(w, scale))
            qparams[f"{name}_scale"] = jnp.asarray(scale)
            qparams[f"{name}_zero_point"] = jnp.zeros(scale.shape, jnp.int32)
        return module, {k: qparams[k] for k in module._parameters}

    def _linear(self, x: jax.Array, kind: str, sfx: str) -> jax.Array:
        bias = getattr(self, f"bias_{kind}{sfx}") if self.bias else None
        return dynamic_linear(x, getattr(self, f"weight_{kind}{sfx}"), getattr(self, f"weight_{kind}{sfx}_scale"),
                              getattr(self, f"weight_{kind}{sfx}_zero_point"), bias, True)

    def forward(self, input: jax.Array, hx: Any = None, lengths: Any = None) -> tuple[jax.Array, Any]:
        if lengths is not None:
            raise NotImplementedError(f"{self.path}: the dynamic int8 {self.mode} does not take lengths")
        if input.ndim not in (2, 3) or input.shape[-1] != self.input_size:
            raise self.shape_error(f"[T, N, {self.input_size}] or [T, {self.input_size}]", input.shape)
        batched = input.ndim == 3
        x = input if batched else input[:, None, :]
        if batched and self.batch_first:
            x = jnp.swapaxes(x, 0, 1)
        n_states, batch, hidden = self.num_layers * self.num_directions, x.shape[1], self.hidden_size
        lstm = self.mode == "LSTM"
        if hx is None:
            h0 = jnp.zeros((n_states, batch, hidden), jnp.float32)
            c0 = jnp.zeros_like(h0) if lstm else None
        else:
            h0, c0 = hx if lstm else (hx, None)
            if not batched:
                h0 = h0[:, None]
                c0 = c0[:, None] if lstm else None
        h_n, c_n = [], []
        for layer in range(self.num_layers):
            outputs = []
            for direction in range(self.num_directions):
                sfx = f"_l{layer}" + ("_reverse" if direction else "")
                idx = layer * self.num_directions + direction
                xw = self._linear(x, "ih", sfx)  # the whole sequence at once, as torch's CPU kernel

                def step(state, xw_t, sfx=sfx):
                    if lstm:
                        h, c = state
                        gates = self._linear(h, "hh", sfx) + xw_t
                        i, f, g, o = jnp.split(gates, 4, axis=-1)
                        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
                        h = jax.nn.sigmoid(o) * jnp.tanh(c)
                        return (h, c), h
                    h = state
                    gh = self._linear(h, "hh", sfx)
                    x_r, x_z, x_n = jnp.split(xw_t, 3, axis=-1)
                    h_r, h_z, h_n_ = jnp.split(gh, 3, axis=-1)
                    r = jax.nn.sigmoid(h_r + x_r)
                    z = jax.nn.sigmoid(h_z + x_z)
                    n = jnp.tanh(x_n + h_n_ * r)
                    h = (h - n) * z + n
                    return h, h

                state0 = (h0[idx], c0[idx]) if lstm else h0[idx]
                final, out = lax.scan(step, state0, xw, reverse=direction == 1)
                outputs.append(out)
                if lstm:
                    h_n.append(final[0])
                    c_n.append(final[1])
                else:
                    h_n.append(final)
            x = outputs[0] if len(outputs) == 1 else jnp.concatenate(outputs, axis=-1)
        h_n = jnp.stack(h_n)
        c_n = jnp.stack(c_n) if lstm else None
        if batched and self.batch_first:
            x = jnp.swapaxes(x, 0, 1)
        if not batched:
            x, h_n = x[:, 0], h_n[:, 0]
            c_n = c_n[:, 0] if lstm else None
        return (x, (h_n, c_n)) if lstm else (x, h_n)

    def extra_repr(self) -> str:
        return (f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, dtype=int8, "
                f"qscheme={'per_channel' if self.per_channel else 'per_tensor'}_symmetric")


class QuantizedLSTM(_QuantizedRNN):
    """Dynamic int8 ``nn.LSTM`` (``torch.ao.nn.quantized.dynamic.LSTM``); same call signature."""

    mode, gates = "LSTM", 4


class QuantizedGRU(_QuantizedRNN):
    """Dynamic int8 ``nn.GRU`` (``torch.ao.nn.quantized.dynamic.GRU``); same call signature."""

    mode, gates = "GRU", 3
