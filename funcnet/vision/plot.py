"""``plot_history``: loss and accuracy curves of a training history, as a PNG (matplotlib)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import IO, Any


def _columns(history: Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]]) -> dict[str, list]:
    """``{name: [value per epoch]}`` from a dict of lists or a list of per-epoch dicts."""
    if isinstance(history, Mapping):
        return {str(k): list(v) for k, v in history.items()}
    columns: dict[str, list] = {}
    for epoch, logs in enumerate(history):
        if not isinstance(logs, Mapping):
            raise TypeError(f"plot_history: epoch {epoch} of the history is {type(logs).__name__}, expected a dict")
        for k, v in logs.items():
            columns.setdefault(str(k), [None] * epoch).append(v)
        for col in columns.values():
            if len(col) < epoch + 1:
                col.append(None)
    return columns


def _is_number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def plot_history(
    history: Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]],
    path: str | os.PathLike | IO[bytes] | None = None,
    metrics: Sequence[str] = ("loss", "acc"),
    title: str | None = None,
    dpi: int = 100,
) -> Any:
    """Plot training curves, one panel per metric, and save them as a PNG.

    Args:
        history: ``{"loss": [...], "val_loss": [...], "accuracy": [...]}`` (a dict of
            per-epoch lists) or ``[{"loss": ..., "val_accuracy": ...}, ...]`` (one dict per
            epoch, as ``funcnet.train.fit`` returns). Missing or non-numeric values are skipped.
        path: where to write the PNG (a path or a binary file); None to only return the figure.
        metrics: one panel per entry; a series goes to the first panel whose name is a
            substring of the series name (``"loss"`` takes ``loss`` and ``val_loss``;
            ``"acc"`` takes ``accuracy``, ``train_acc``, ``val_accuracy``). Series that match
            no entry are not drawn. Panels with no series are left out.
        title: a title above the panels.

    Returns:
        The ``matplotlib.figure.Figure`` (drawn with the Agg canvas: no display, no
        change to matplotlib's global backend).

    Needs matplotlib (``pip install 'funcnet[vision]'``).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    columns = _columns(history)
    panels: dict[str, list[str]] = {m: [] for m in metrics}
    for name, values in columns.items():
        if not any(v is not None and _is_number(v) for v in values):
            continue
        for metric in metrics:
            if metric in name:
                panels[metric].append(name)
                break
    panels = {m: names for m, names in panels.items() if names}
    if not panels:
        raise ValueError(
            f"plot_history: no numeric series matches metrics {list(metrics)}; "
            f"the history has {sorted(columns)}"
        )
    fig = Figure(figsize=(5 * len(panels), 3.6), dpi=dpi)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (metric, names) in zip(axes, panels.items()):
        for name in names:
            points = [(i + 1, float(v)) for i, v in enumerate(columns[name]) if v is not None and _is_number(v)]
            xs, ys = zip(*points)
            ax.plot(xs, ys, marker="o" if len(points) < 30 else None, markersize=3, label=name)
        ax.set_xlabel("epoch")
        ax.set_ylabel({"acc": "accuracy"}.get(metric, metric))
        ax.grid(True, alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, format="png")
    return fig
