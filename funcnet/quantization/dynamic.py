"""``quantize_dynamic``: torch's ``torch.ao.quantization.quantize_dynamic`` for ``Linear`` layers.

funcnet modules are configuration, so quantization builds a *new* module tree
(a deep copy of the model with each selected ``nn.Linear`` replaced by a
:class:`~funcnet.quantization.QuantizedLinear` under the same name) and a new
variables tree (the Linear's ``weight``/``bias`` replaced by int8 ``weight``,
float ``bias``, ``scale`` and ``zero_point``). The user's model and arrays are
left untouched.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from funcnet.nn.module import Module, Variables, as_variables
from funcnet.nn.modules.linear import Linear
from funcnet.nn.modules.rnn import GRU, LSTM
from funcnet.quantization.dynamic_rnn import QuantizedGRU, QuantizedLSTM
from funcnet.quantization.linear import QuantizedLinear

#: float type -> its dynamic int8 replacement (torch's default dynamic mapping, these three).
DYNAMIC_MAPPING = {Linear: QuantizedLinear, LSTM: QuantizedLSTM, GRU: QuantizedGRU}


def _lookup(tree: dict, path: tuple[str, ...]) -> dict:
    for part in path:
        tree = tree[part]
    return tree


def _copy_tree(tree: dict) -> dict:
    """A copy of the nested dicts (arrays are shared: they are immutable)."""
    return {k: _copy_tree(v) if isinstance(v, dict) else v for k, v in tree.items()}


def _options(spec: Any, path: str, module: Module, per_channel: bool, reduce_range: bool) -> dict | None:
    """The options for the Linear at ``path``, or None when the spec does not select it.

    As in torch, an entry for a module name applies to that module and everything
    under it; the most specific entry wins, and a name entry beats a type entry.
    """
    defaults = {"per_channel": per_channel, "reduce_range": reduce_range}
    entries = spec.items() if isinstance(spec, Mapping) else ((key, {}) for key in spec)
    chosen: tuple[int, Any, Any] | None = None  # (specificity, key, value)
    for key, value in entries:
        if isinstance(key, str):
            if key == "" or path == key or path.startswith(key + "."):
                rank = 1 + (len(key.split(".")) if key else 0)
            else:
                continue
        elif isinstance(key, type):
            if type(module) is not key:
                continue
            rank = 0
        else:
            raise TypeError(f"qconfig_spec keys must be module types or names, got {key!r}")
        if chosen is None or rank >= chosen[0]:
            chosen = (rank, key, value)
    if chosen is None or chosen[2] is None:
        return None
    _, key, value = chosen
    if not isinstance(value, Mapping):
        raise TypeError(
            f"qconfig_spec[{key!r}] must be None (do not quantize) or a dict of options "
            f"(per_channel=..., reduce_range=...), got {value!r}"
        )
    unknown = set(value) - set(defaults)
    if unknown:
        raise TypeError(
            f"qconfig_spec[{key!r}]: unknown quantization options {sorted(unknown)}; "
            f"known options: {sorted(defaults)}"
        )
    return {**defaults, **value}


def quantize_dynamic(
    model: Module,
    variables_or_params: Variables | dict,
    qconfig_spec: Iterable | Mapping | None = None,
    dtype: Any = jnp.int8,
    per_channel: bool = False,
    reduce_range: bool = True,
) -> tuple[Module, Variables]:
    """Replace the model's ``nn.Linear`` (and ``nn.LSTM``/``nn.GRU``) layers by dynamic int8 ones.

    ``torch.ao.quantization.quantize_dynamic(model, qconfig_spec, dtype=torch.qint8)``:
    the weights are quantized once to int8 with torch's symmetric weight observer
    (bit-identical int8 values and scales), and every call quantizes its input
    to uint8 from that input's own range, multiplies in int32 and adds the float bias.

    Args:
        model: the float model (configuration; not modified).
        variables_or_params: its ``Variables`` from ``init``/training, or just the params.
        qconfig_spec: what to quantize, as in torch: a set of module types
            (default ``{nn.Linear, nn.LSTM, nn.GRU}``, torch's default for these;
            exact type match as torch; LSTM/GRU become :class:`QuantizedLSTM`/``QuantizedGRU``) and/or dotted
            submodule names (a name selects the Linear layers under it), or a dict
            ``{type_or_name: None | {"per_channel": bool, "reduce_range": bool}}``
            where None excludes. ``""`` names the whole model.
        dtype: ``jnp.int8`` (torch's ``torch.qint8``), the only one supported.
        per_channel: default weight scheme: one scale per output channel (torch's
            ``per_channel_dynamic_qconfig``) instead of per tensor (``default_dynamic_qconfig``).
        reduce_range: quantize activations to 7 bits as torch's dynamic Linear does.

    Returns:
        ``(qmodel, qvariables)``: a new model whose selected Linear layers are
        ``QuantizedLinear`` under the same names, and its ``Variables`` (other
        parameters and buffers are shared, unchanged). Use as any model:
        ``qmodel.apply(qvariables, x)``, under ``jax.jit`` too.

    Differences from torch: a Linear registered under several names (shared) is
    quantized under all of them (torch swaps only its first registration and
    leaves the others float); types in ``qconfig_spec`` are matched exactly, as
    torch does, so subclasses of ``nn.Linear`` are not swapped unless listed; a
    submodule referenced only from a plain Python list or dict (not registered)
    is not found, as in torch.
    """
    if jnp.dtype(dtype) != jnp.int8:
        raise NotImplementedError(f"quantize_dynamic supports dtype=jnp.int8 only, got {jnp.dtype(dtype)}")
    params, buffers = as_variables(model, variables_or_params, where="quantize_dynamic")
    if qconfig_spec is None:
        qconfig_spec = set(DYNAMIC_MAPPING)

    qmodel = copy.deepcopy(model)
    replaced: dict[int, tuple[Module, dict]] = {}
    for path, module in qmodel.named_modules():
        qclass = DYNAMIC_MAPPING.get(type(module))
        if qclass is None and isinstance(module, Linear):
            qclass = QuantizedLinear  # a Linear subclass named explicitly in the spec
        if qclass is None:
            continue
        options = _options(qconfig_spec, path, module, per_channel, reduce_range)
        if options is None:
            continue
        parts = tuple(path.split(".")) if path else ()
        try:
            node = _lookup(params, parts)
            weights = {k: node[k] for k in module._parameters}
        except (KeyError, TypeError):
            raise KeyError(
                f"quantize_dynamic: no parameters for {type(model).__name__}.{path} ({type(module).__name__}) "
                f"in the given variables; expected keys {[f'{path}.{k}' for k in module._parameters]}"
            ) from None
        if not parts:
            qlinear, qweights = qclass.from_float(module, weights, **options)
            return qlinear, Variables(qweights, buffers)
        replaced[id(module)] = qclass.from_float(module, weights, **options)

    # Swap every registration of a replaced Linear (a shared module is registered
    # under several names, as in torch's state_dict), in place in the copied
    # parents' registries so that the order of children, and hence Sequential's
    # order of calls and the state_dict order, is unchanged.
    qparams = _copy_tree(params)

    def swap(parent: Module, path: tuple[str, ...]) -> None:
        children = parent._modules
        for name, child in children.items():
            if id(child) in replaced:
                qlinear, qweights = replaced[id(child)]
                children[name] = qlinear
                node = qparams
                for part in path:
                    node = node.setdefault(part, {})
                node[name] = dict(qweights)
            else:
                swap(child, (*path, name))

    swap(qmodel, ())
    return qmodel, Variables(qparams, buffers)


class LayerSize(NamedTuple):
    name: str
    kind: str
    float_bytes: int
    quantized_bytes: int


class SizeReport(NamedTuple):
    """Bytes of the float and quantized models: total, and per replaced layer."""

    float_bytes: int
    quantized_bytes: int
    layers: list[LayerSize]

    @property
    def ratio(self) -> float:
        return self.float_bytes / max(self.quantized_bytes, 1)

    def __str__(self) -> str:
        width = max([len("total")] + [len(layer.name) for layer in self.layers])
        lines = [f"{'layer'.ljust(width)}  {'float':>12}  {'int8':>12}  ratio"]
        for layer in self.layers:
            ratio = layer.float_bytes / max(layer.quantized_bytes, 1)
            lines.append(
                f"{layer.name.ljust(width)}  {layer.float_bytes:>12,}  {layer.quantized_bytes:>12,}  {ratio:5.2f}x"
            )
        lines.append(
            f"{'total'.ljust(width)}  {self.float_bytes:>12,}  {self.quantized_bytes:>12,}  {self.ratio:5.2f}x"
        )
        return "\n".join(lines)


def _nbytes(tree: Any) -> int:
    return sum(int(leaf.size) * jnp.dtype(leaf.dtype).itemsize for leaf in jax.tree.leaves(tree))


def size_report(
    model: Module, variables: Variables | dict, qmodel: Module, qvariables: Variables | dict
) -> SizeReport:
    """Bytes before and after :func:`quantize_dynamic` (params and buffers), per quantized layer.

    ``print(size_report(...))`` gives a table; ``.ratio`` the total compression.
    """
    params, buffers = as_variables(model, variables, where="size_report(variables)")
    qparams, qbuffers = as_variables(qmodel, qvariables, where="size_report(qvariables)")
    layers = []
    for path, module in qmodel.named_modules():
        if isinstance(module, (QuantizedLinear, QuantizedLSTM, QuantizedGRU)):
            parts = tuple(path.split(".")) if path else ()
            kind = {QuantizedLinear: "Linear", QuantizedLSTM: "LSTM", QuantizedGRU: "GRU"}[type(module)]
            layers.append(
                LayerSize(path, kind, _nbytes(_lookup(params, parts)), _nbytes(_lookup(qparams, parts)))
            )
    return SizeReport(_nbytes((params, buffers)), _nbytes((qparams, qbuffers)), layers)
