"""``prepare`` and ``calibrate``: attach activation observers, then run data through them.

torch's ``torch.ao.quantization.prepare`` adds an ``activation_post_process`` observer
under every quantizable leaf (``QuantStub``, Conv, Linear, fused ConvReLU/LinearReLU,
``FloatFunctional``) that has a qconfig, observing its output. funcnet does the same on a
copy of the model (each such layer becomes an ``Observed<Layer>`` subclass whose forward
passes its output through the observer) and adds the observers' buffers to the variables,
so the state_dict keys are torch's: ``conv1.activation_post_process.histogram``.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

import jax

from funcnet.nn.module import Module, Variables
from funcnet.nn.modules.conv import Conv1d, Conv2d
from funcnet.nn.modules.linear import Linear
from funcnet.quantization import fuse
from funcnet.quantization.qconfig import QConfig
from funcnet.quantization.quantized import with_mixin
from funcnet.quantization.stubs import FloatFunctional, QuantStub

#: float layers whose output prepare observes (torch's quantizable leaves).
OBSERVED_TYPES = (QuantStub, Conv1d, Conv2d, Linear, fuse.ConvReLU1d, fuse.ConvReLU2d, fuse.LinearReLU)
OBSERVER = "activation_post_process"


class _Observed:
    """Mixin: the layer's output goes through its ``activation_post_process`` observer."""

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if isinstance(self, fuse._FusedModule):
            # torch's fused modules are Sequentials: the observer registered in them runs once
            # as their last layer and once more as the forward hook, so their histograms count
            # every value twice (an exact doubling: the chosen range is the same). Kept for
            # bit-equal observer state.
            (x,) = args
            for name, layer in self._modules.items():
                if name != OBSERVER:
                    x = layer(x)
            return self.activation_post_process(self.activation_post_process(x))
        return self.activation_post_process(super().forward(*args, **kwargs))


def _qconfig_of(module: Module, inherited: QConfig | None) -> QConfig | None:
    q = module.__dict__.get("qconfig", inherited)
    if q is not None and not isinstance(q, QConfig):
        raise TypeError(f"qconfig must be a funcnet.quantization.QConfig or None, got {type(q).__name__}")
    return q


def _assign(tree: dict, path: tuple[str, ...], value: dict) -> None:
    for part in path[:-1]:
        tree = tree.setdefault(part, {})
    tree[path[-1]] = value


def prepare(model: Module, variables: Variables | dict, qconfig: QConfig | None = None) -> tuple[Module, Variables]:
    """``torch.ao.quantization.prepare(model)``: a copy of the model with observers, and its variables.

    Args:
        model: the float (usually fused) model. Its qconfig is ``qconfig=`` or, as in torch,
            a ``qconfig`` attribute on the model or any submodule (inherited by children;
            ``None`` on a submodule leaves it float).
        variables: the model's ``Variables``.

    Returns:
        ``(prepared, variables)``; the variables gain each observer's buffers.
        Calibrate with :func:`calibrate` (or ``prepared.apply(v, x, train=True)``), then
        :func:`~funcnet.quantization.convert`.
    """
    if not isinstance(variables, Variables):
        variables = Variables(variables, {})
    prepared = copy.deepcopy(model)
    if qconfig is not None:
        prepared.qconfig = qconfig
    if _qconfig_of(prepared, None) is None and not any("qconfig" in m.__dict__ for _, m in prepared.named_modules()):
        raise ValueError("prepare: no qconfig; pass qconfig=get_default_qconfig('x86') or set model.qconfig")
    params, buffers = fuse._copy(variables.params), fuse._copy(variables.buffers)
    key = jax.random.key(0)  # observers' buffers are constants: the key is unused

    def walk(module: Module, path: tuple[str, ...], inherited: QConfig | None) -> None:
        qconfig = _qconfig_of(module, inherited)
        object.__setattr__(module, "_active_qconfig", qconfig)
        if qconfig is not None and isinstance(module, (*OBSERVED_TYPES, FloatFunctional)):
            observer = qconfig.activation()
            module.activation_post_process = observer
            if not isinstance(module, FloatFunctional):
                with_mixin(module, _Observed, "Observed")
            _assign(buffers, (*path, OBSERVER), dict(observer.init(key).buffers))
            return
        for name, child in module.named_children():
            walk(child, (*path, name), qconfig)

    walk(prepared, (), None)
    object.__setattr__(prepared, "_funcnet_prepared", True)
    return prepared, Variables(params, buffers)


def calibrate(prepared: Module, variables: Variables, batches: Iterable, jit: bool = True) -> Variables:
    """Run ``batches`` (arrays, or tuples whose first item is the input) through the observers.

    Each batch is one ``prepared.apply(variables, x, train=True)`` with every layer in eval
    mode (dropout off, BatchNorm on running statistics, as torch's calibration under
    ``model.eval()``); only the observers' buffers change. Returns the updated variables.

    Raises:
        ValueError: ``batches`` is empty (nothing calibrated).
    """
    if not getattr(prepared, "_funcnet_prepared", False):
        raise ValueError("calibrate: the model is not prepared; call prepare(model, variables, qconfig) first")
    eval_all = tuple(name for name, _ in prepared.named_children())

    def step(v: Variables, x: Any) -> Variables:
        _, new_buffers = prepared.apply(v.params, x, buffers=v.buffers, train=True, eval_modules=eval_all)
        return Variables(v.params, new_buffers)

    run = jax.jit(step) if jit else step
    seen = 0
    for batch in batches:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        variables = run(variables, x)
        seen += 1
    if not seen:
        raise ValueError("calibrate: no calibration batches were given; the observers saw no data")
    return variables
