"""``QConfig`` and torch's default static qconfigs per engine (``torch.ao.quantization.qconfig``).

A ``QConfig`` names two observer factories: ``activation`` (an observer module, inserted
by ``prepare`` after each quantizable layer) and ``weight`` (applied to the final float
weight at ``convert``).

=============================  =====================================  ====================================
``get_default_qconfig(...)``   activation                             weight
=============================  =====================================  ====================================
``"x86"``, ``"fbgemm"``        ``HistogramObserver(reduce_range=True)`` per-channel symmetric qint8
``"onednn"``                   ``HistogramObserver(reduce_range=False)`` per-channel symmetric qint8
``"qnnpack"``                  ``HistogramObserver(reduce_range=False)`` per-tensor symmetric qint8
=============================  =====================================  ====================================
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from funcnet.quantization import observer as obs


class QConfig(NamedTuple):
    """torch's ``QConfig(activation=..., weight=...)``: two zero-argument observer factories."""

    activation: Callable[[], obs.ObserverBase]
    weight: Callable[[], obs.ObserverBase]


ENGINES = ("fbgemm", "x86", "qnnpack", "onednn")

#: torch's ``default_qconfig``: MinMax activations (quint8, affine), per-tensor symmetric weights.
default_qconfig = QConfig(activation=obs.MinMaxObserver, weight=obs.default_weight_observer)
#: torch's ``default_per_channel_qconfig``.
default_per_channel_qconfig = QConfig(activation=obs.MinMaxObserver, weight=obs.default_per_channel_weight_observer)


def get_default_qconfig(backend: str = "x86", version: int = 0) -> QConfig:
    """``torch.ao.quantization.get_default_qconfig(backend)``: the post-training static qconfig.

    Args:
        backend: ``"x86"`` (default), ``"fbgemm"``, ``"qnnpack"`` or ``"onednn"``.

    Raises:
        ValueError: another backend name or version (torch raises AssertionError).
    """
    if backend not in ENGINES:
        raise ValueError(f"get_default_qconfig: backend {backend!r} not supported; torch's engines are {ENGINES}")
    if version != 0:
        raise ValueError(f"get_default_qconfig: version {version} is not supported; torch has version 0")
    reduce_range = backend in ("x86", "fbgemm")
    weight = obs.default_weight_observer if backend == "qnnpack" else obs.default_per_channel_weight_observer
    return QConfig(activation=obs.HistogramObserver.with_args(reduce_range=reduce_range), weight=weight)
