"""Recurrent layers: ``RNN``, ``LSTM``, ``GRU`` and their cells, with torch's parameters and numbers.

Parameter names, shapes, gate orders and initialisation are torch's:

* ``weight_ih_l{k}{sfx}`` ``[G*H, in]``, ``weight_hh_l{k}{sfx}`` ``[G*H, H_out]``,
  ``bias_ih_l{k}{sfx}``, ``bias_hh_l{k}{sfx}`` ``[G*H]`` and, for an LSTM with
  ``proj_size > 0``, ``weight_hr_l{k}{sfx}`` ``[proj_size, H]``; ``sfx`` is
  ``'_reverse'`` for the backward direction. ``G`` is 1 (RNN), 4 (LSTM, gates
  ``i, f, g, o``) or 3 (GRU, gates ``r, z, n``).
* every parameter is U(±1/√hidden_size), both biases included (they are added).

The time loop is a ``lax.scan`` (compile time does not grow with the sequence
length). The input projection ``x W_ihᵀ + b_ih`` of all time steps is one matmul
before the scan; only ``h W_hhᵀ`` runs inside it.

Variable-length batches: instead of ``pack_padded_sequence`` pass
``lengths=[N]`` to ``forward``. The result equals torch's
``pad_packed_sequence(rnn(pack_padded_sequence(x, lengths, enforce_sorted=False)),
total_length=T)``: outputs at and past a sequence's length are zero, ``h_n``
(and ``c_n``) are the states at each sequence's last valid step, and the reverse
direction starts at each sequence's own last valid step. Differences from torch:
the output keeps all ``T`` steps (torch's ``pad_packed_sequence`` trims to
``max(lengths)`` unless ``total_length`` is given) and the lengths need not be sorted.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from funcnet.nn import functional as F
from funcnet.nn import init
from funcnet.nn.module import Module
from funcnet.nn.parameter import Parameter

_GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3}


# -- one time step, as pure functions (shared by the layers and the cells) -------------------------
def rnn_step(xw: jax.Array, h: jax.Array, w_hh: jax.Array, b_hh: jax.Array | None,
             nonlinearity: str = "tanh") -> jax.Array:
    """``h' = act(xw + h W_hhᵀ + b_hh)`` where ``xw = x W_ihᵀ + b_ih`` (``[N, H]``)."""
    pre = xw + F.linear(h, w_hh, b_hh)
    return jnp.tanh(pre) if nonlinearity == "tanh" else jax.nn.relu(pre)


def lstm_step(xw: jax.Array, state: tuple[jax.Array, jax.Array], w_hh: jax.Array,
              b_hh: jax.Array | None, w_hr: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """torch's LSTM step; gates in rows ``i, f, g, o``; ``h' = (o ⊙ tanh(c')) W_hrᵀ`` if projected."""
    h, c = state
    gates = xw + F.linear(h, w_hh, b_hh)
    i, f, g, o = jnp.split(gates, 4, axis=-1)
    c_new = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
    h_new = jax.nn.sigmoid(o) * jnp.tanh(c_new)
    if w_hr is not None:
        h_new = F.linear(h_new, w_hr)
    return h_new, c_new


def gru_step(xw: jax.Array, h: jax.Array, w_hh: jax.Array, b_hh: jax.Array | None) -> jax.Array:
    """torch's GRU step; rows ``r, z, n``; ``n = tanh(x_n + r ⊙ (W_hn h + b_hn))``, ``h' = (1−z)n + z h``."""
    gh = F.linear(h, w_hh, b_hh)
    x_r, x_z, x_n = jnp.split(xw, 3, axis=-1)
    h_r, h_z, h_n = jnp.split(gh, 3, axis=-1)
    r = jax.nn.sigmoid(x_r + h_r)
    z = jax.nn.sigmoid(x_z + h_z)
    n = jnp.tanh(x_n + r * h_n)
    return (1.0 - z) * n + z * h


def _step_fn(mode: str, w_hh, b_hh, w_hr) -> Callable:
    if mode == "LSTM":
        return lambda xw, s: lstm_step(xw, s, w_hh, b_hh, w_hr)
    if mode == "GRU":
        return lambda xw, s: gru_step(xw, s, w_hh, b_hh)
    nonlinearity = "tanh" if mode == "RNN_TANH" else "relu"
    return lambda xw, s: rnn_step(xw, s, w_hh, b_hh, nonlinearity)


def _out_of(mode: str, state: Any) -> jax.Array:
    return state[0] if mode == "LSTM" else state


def scan_direction(step: Callable, xw: jax.Array, state0: Any, mode: str,
                   mask: jax.Array | None = None, reverse: bool = False) -> tuple[jax.Array, Any]:
    """Run ``step`` over time with ``lax.scan``.

    Args:
        step: ``(xw_t [N, G*H], state) -> state``.
        xw: the projected inputs ``[T, N, G*H]``.
        state0: the initial state (``h`` or ``(h, c)``), each ``[N, ·]``.
        mask: ``[T, N]`` bool, True at valid steps. Where False the state is left
            unchanged and the output is zero, so a reverse scan starts at each
            sequence's last valid step from ``state0``.
        reverse: scan from ``T-1`` down to 0 (outputs stay in time order).

    Returns:
        ``(outputs [T, N, H_out], final state)``.
    """

    def body(state, inputs):
        if mask is None:
            new = step(inputs, state)
            return new, _out_of(mode, new)
        xw_t, m_t = inputs
        new = step(xw_t, state)
        keep = m_t[:, None]
        new = jax.tree.map(lambda a, b: jnp.where(keep, a, b), new, state)
        out = jnp.where(keep, _out_of(mode, new), jnp.zeros((), xw.dtype))
        return new, out

    inputs = xw if mask is None else (xw, mask)
    final, outs = lax.scan(body, state0, inputs, reverse=reverse)
    return outs, final


# -- the layers ------------------------------------------------------------------------------------
class RNNBase(Module):
    """Shared machinery of ``RNN``, ``LSTM`` and ``GRU`` (``torch.nn.RNNBase``).

    ``forward(input, hx=None, lengths=None)``:

    * ``input``: ``[T, N, H_in]`` (``[N, T, H_in]`` if ``batch_first``) or unbatched ``[T, H_in]``.
    * ``hx``: ``[D*num_layers, N, H_out]`` (LSTM: a pair ``(h_0, c_0)``, ``c_0`` ``[D*num_layers, N, H]``);
      zeros when omitted; unbatched input takes unbatched states.
    * ``lengths``: optional ``[N]`` integer lengths (see the module docstring).

    Returns ``(output, h_n)`` (LSTM: ``(output, (h_n, c_n))``) with ``output``
    ``[T, N, D*H_out]`` (``[N, T, D*H_out]`` if ``batch_first``), ``H_out = proj_size or hidden_size``.
    """

    def __init__(self, mode: str, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, proj_size: int = 0, dtype: Any = None) -> None:
        super().__init__()
        if mode not in _GATES:
            raise ValueError(f"Unrecognized RNN mode: {mode}")
        if not (isinstance(dropout, (int, float)) and 0 <= dropout <= 1) or isinstance(dropout, bool):
            raise ValueError(
                "dropout should be a number in range [0, 1] representing the probability of an "
                "element being zeroed"
            )
        if not isinstance(hidden_size, int) or hidden_size <= 0:
            raise ValueError(f"hidden_size must be a positive integer, got {hidden_size!r}")
        if not isinstance(num_layers, int) or num_layers <= 0:
            raise ValueError(f"num_layers must be a positive integer, got {num_layers!r}")
        if proj_size < 0:
            raise ValueError("proj_size should be a positive integer or zero to disable projections")
        if proj_size >= hidden_size:
            raise ValueError("proj_size has to be smaller than hidden_size")
        if proj_size and mode != "LSTM":
            raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")
        self.mode = mode
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bias = bias
        self.batch_first = batch_first
        self.dropout = float(dropout)
        self.bidirectional = bidirectional
        self.proj_size = proj_size
        num_directions = 2 if bidirectional else 1
        gate_size = _GATES[mode] * hidden_size
        real_hidden = proj_size if proj_size > 0 else hidden_size
        stdv = 1.0 / math.sqrt(hidden_size)
        uniform = init.uniform(-stdv, stdv)
        for layer in range(num_layers):
            layer_input = input_size if layer == 0 else real_hidden * num_directions
            for direction in range(num_directions):
                sfx = f"_l{layer}" + ("_reverse" if direction == 1 else "")
                setattr(self, f"weight_ih{sfx}", Parameter((gate_size, layer_input), uniform, dtype))
                setattr(self, f"weight_hh{sfx}", Parameter((gate_size, real_hidden), uniform, dtype))
                if bias:
                    setattr(self, f"bias_ih{sfx}", Parameter((gate_size,), uniform, dtype))
                    setattr(self, f"bias_hh{sfx}", Parameter((gate_size,), uniform, dtype))
                if proj_size > 0:
                    setattr(self, f"weight_hr{sfx}", Parameter((proj_size, hidden_size), uniform, dtype))

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    def _check_state(self, name: str, h: jax.Array, expected: tuple[int, ...]) -> None:
        if tuple(h.shape) != expected:
            raise self.shape_error(f"{list(expected)} for {name}", h.shape)

    def forward(self, input: jax.Array, hx: Any = None, lengths: Any = None) -> tuple[jax.Array, Any]:
        if input.ndim not in (2, 3) or input.shape[-1] != self.input_size:
            layout = "[N, T, H_in]" if self.batch_first else "[T, N, H_in]"
            raise self.shape_error(f"{layout} or [T, H_in] with H_in={self.input_size}", input.shape)
        batched = input.ndim == 3
        x = input if batched else input[:, None, :]
        if batched and self.batch_first:
            x = jnp.swapaxes(x, 0, 1)
        steps, batch = x.shape[0], x.shape[1]
        lstm = self.mode == "LSTM"
        real_hidden = self.proj_size if self.proj_size > 0 else self.hidden_size
        n_states = self.num_layers * self.num_directions
        h_shape = (n_states, batch, real_hidden) if batched else (n_states, real_hidden)
        c_shape = (n_states, batch, self.hidden_size) if batched else (n_states, self.hidden_size)
        if hx is None:
            h0 = jnp.zeros((n_states, batch, real_hidden), x.dtype)
            c0 = jnp.zeros((n_states, batch, self.hidden_size), x.dtype) if lstm else None
        else:
            if lstm:
                if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                    raise TypeError(f"{self.path} (LSTM): hx must be a pair (h_0, c_0)")
                h0, c0 = hx
                self._check_state("h_0", h0, h_shape)
                self._check_state("c_0", c0, c_shape)
            else:
                h0, c0 = hx, None
                self._check_state("h_0", h0, h_shape)
            if not batched:
                h0 = h0[:, None, :]
                c0 = c0[:, None, :] if c0 is not None else None
        mask = None
        if lengths is not None:
            lengths = jnp.asarray(lengths)
            if lengths.shape != (batch,):
                raise self.shape_error(f"[{batch}] for lengths", lengths.shape)
            mask = jnp.arange(steps)[:, None] < lengths[None, :]

        h_n, c_n = [], []
        for layer in range(self.num_layers):
            outputs = []
            for direction in range(self.num_directions):
                sfx = f"_l{layer}" + ("_reverse" if direction == 1 else "")
                w_ih = getattr(self, f"weight_ih{sfx}")
                w_hh = getattr(self, f"weight_hh{sfx}")
                b_ih = getattr(self, f"bias_ih{sfx}") if self.bias else None
                b_hh = getattr(self, f"bias_hh{sfx}") if self.bias else None
                w_hr = getattr(self, f"weight_hr{sfx}") if self.proj_size > 0 else None
                idx = layer * self.num_directions + direction
                state0 = (h0[idx], c0[idx]) if lstm else h0[idx]
                xw = F.linear(x, w_ih, b_ih)
                out, final = scan_direction(
                    _step_fn(self.mode, w_hh, b_hh, w_hr), xw, state0, self.mode, mask,
                    reverse=direction == 1,
                )
                outputs.append(out)
                if lstm:
                    h_n.append(final[0])
                    c_n.append(final[1])
                else:
                    h_n.append(final)
            x = outputs[0] if len(outputs) == 1 else jnp.concatenate(outputs, axis=-1)
            if self.dropout > 0 and layer < self.num_layers - 1 and self.training:
                x = F.dropout(x, self.dropout, training=True, key=self.make_rng())
        h_n = jnp.stack(h_n)
        c_n = jnp.stack(c_n) if lstm else None
        if batched and self.batch_first:
            x = jnp.swapaxes(x, 0, 1)
        if not batched:
            x = x[:, 0]
            h_n = h_n[:, 0]
            c_n = c_n[:, 0] if lstm else None
        return (x, (h_n, c_n)) if lstm else (x, h_n)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.proj_size != 0:
            s += f", proj_size={self.proj_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        if self.batch_first is not False:
            s += f", batch_first={self.batch_first}"
        if self.dropout != 0:
            s += f", dropout={self.dropout}"
        if self.bidirectional is not False:
            s += f", bidirectional={self.bidirectional}"
        return s


class RNN(RNNBase):
    """``torch.nn.RNN(input_size, hidden_size, num_layers=1, nonlinearity='tanh', bias=True,
    batch_first=False, dropout=0.0, bidirectional=False)``.

    ``h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)`` with ``act`` tanh or relu.

    ``forward(input, hx=None, lengths=None) -> (output, h_n)``; shapes in :class:`RNNBase`.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 nonlinearity: str = "tanh", bias: bool = True, batch_first: bool = False,
                 dropout: float = 0.0, bidirectional: bool = False, dtype: Any = None) -> None:
        if nonlinearity == "tanh":
            mode = "RNN_TANH"
        elif nonlinearity == "relu":
            mode = "RNN_RELU"
        else:
            raise ValueError(f"Unknown nonlinearity '{nonlinearity}'. Select from 'tanh' or 'relu'.")
        super().__init__(mode, input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, dtype=dtype)
        self.nonlinearity = nonlinearity  # like torch, not shown in repr


class LSTM(RNNBase):
    """``torch.nn.LSTM(input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
    dropout=0.0, bidirectional=False, proj_size=0)``.

    ``forward(input, hx=None, lengths=None) -> (output, (h_n, c_n))``; with ``proj_size > 0``
    ``output`` and ``h_n`` have ``proj_size`` features, ``c_n`` has ``hidden_size``.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 proj_size: int = 0, dtype: Any = None) -> None:
        super().__init__("LSTM", input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, proj_size, dtype)


class GRU(RNNBase):
    """``torch.nn.GRU(input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
    dropout=0.0, bidirectional=False)``. ``forward(input, hx=None, lengths=None) -> (output, h_n)``."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 dtype: Any = None) -> None:
        super().__init__("GRU", input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, dtype=dtype)


# -- the cells -------------------------------------------------------------------------------------
class RNNCellBase(Module):
    """Shared parameters of the cells: ``weight_ih [G*H, in]``, ``weight_hh [G*H, H]``,
    ``bias_ih``, ``bias_hh [G*H]``, all U(±1/√hidden_size) (``torch.nn.RNNCellBase``)."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool, num_chunks: int,
                 dtype: Any = None) -> None:
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.bias = bias
        stdv = 1.0 / math.sqrt(hidden_size) if hidden_size > 0 else 0.0
        uniform = init.uniform(-stdv, stdv)
        self.weight_ih = Parameter((num_chunks * hidden_size, input_size), uniform, dtype)
        self.weight_hh = Parameter((num_chunks * hidden_size, hidden_size), uniform, dtype)
        if bias:
            self.bias_ih = Parameter((num_chunks * hidden_size,), uniform, dtype)
            self.bias_hh = Parameter((num_chunks * hidden_size,), uniform, dtype)

    def _prepare(self, input: jax.Array, states: tuple) -> tuple[jax.Array, tuple, bool]:
        if input.ndim not in (1, 2) or input.shape[-1] != self.input_size:
            raise self.shape_error(f"[N, {self.input_size}] or [{self.input_size}]", input.shape)
        batched = input.ndim == 2
        x = input if batched else input[None]
        expected = (x.shape[0], self.hidden_size) if batched else (self.hidden_size,)
        out = []
        for s in states:
            if s is None:
                s = jnp.zeros((x.shape[0], self.hidden_size), x.dtype)
            else:
                if tuple(s.shape) != expected:
                    raise self.shape_error(f"{list(expected)} for the hidden state", s.shape)
                s = s if batched else s[None]
            out.append(s)
        return x, tuple(out), batched

    def _projections(self, x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array | None]:
        b_ih = self.bias_ih if self.bias else None
        b_hh = self.bias_hh if self.bias else None
        return F.linear(x, self.weight_ih, b_ih), self.weight_hh, b_hh

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        nonlinearity = getattr(self, "nonlinearity", "tanh")
        if nonlinearity != "tanh":
            s += f", nonlinearity={nonlinearity}"
        return s


class RNNCell(RNNCellBase):
    """``torch.nn.RNNCell(input_size, hidden_size, bias=True, nonlinearity='tanh')``.

    ``forward(input [N, in] or [in], hx=None [N, H] or [H]) -> h' [N, H] or [H]``.
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 nonlinearity: str = "tanh", dtype: Any = None) -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise RuntimeError(f"Unknown nonlinearity: {nonlinearity}")
        super().__init__(input_size, hidden_size, bias, 1, dtype)
        self.nonlinearity = nonlinearity

    def forward(self, input: jax.Array, hx: jax.Array | None = None) -> jax.Array:
        x, (h,), batched = self._prepare(input, (hx,))
        xw, w_hh, b_hh = self._projections(x)
        h = rnn_step(xw, h, w_hh, b_hh, self.nonlinearity)
        return h if batched else h[0]


class LSTMCell(RNNCellBase):
    """``torch.nn.LSTMCell(input_size, hidden_size, bias=True)``.

    ``forward(input [N, in] or [in], hx=None or (h, c)) -> (h', c')``, each ``[N, H]`` or ``[H]``.
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, dtype: Any = None) -> None:
        super().__init__(input_size, hidden_size, bias, 4, dtype)

    def forward(self, input: jax.Array, hx: tuple[jax.Array, jax.Array] | None = None
                ) -> tuple[jax.Array, jax.Array]:
        states = (None, None) if hx is None else tuple(hx)
        x, (h, c), batched = self._prepare(input, states)
        xw, w_hh, b_hh = self._projections(x)
        h, c = lstm_step(xw, (h, c), w_hh, b_hh)
        return (h, c) if batched else (h[0], c[0])


class GRUCell(RNNCellBase):
    """``torch.nn.GRUCell(input_size, hidden_size, bias=True)``.

    ``forward(input [N, in] or [in], hx=None [N, H] or [H]) -> h'``.
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, dtype: Any = None) -> None:
        super().__init__(input_size, hidden_size, bias, 3, dtype)

    def forward(self, input: jax.Array, hx: jax.Array | None = None) -> jax.Array:
        x, (h,), batched = self._prepare(input, (hx,))
        xw, w_hh, b_hh = self._projections(x)
        h = gru_step(xw, h, w_hh, b_hh)
        return h if batched else h[0]
