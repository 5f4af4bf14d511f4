"""``Module.summary``: parameter counts and bytes per module, counted from declarations."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from funcnet.nn.module import Module


def _human(nbytes: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if nbytes < 1024 or unit == "GiB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    return f"{nbytes} B"


def summarize(model: Module) -> str:
    """One row per module that owns parameters or buffers, then totals.

    Own counts only (a parent's row does not repeat its children's), so the
    column sums to the total: no double counting.
    """
    rows = []
    for path, module in model.named_modules():
        params = list(module._parameters.values())
        buffers = list(module._buffers.values())
        if not params and not buffers:
            continue
        rows.append(
            (
                path or "(root)",
                type(module).__name__,
                sum(p.numel() for p in params),
                sum(b.numel() for b in buffers),
                sum(p.nbytes for p in params) + sum(b.nbytes for b in buffers),
            )
        )
    total_p = sum(r[2] for r in rows)
    total_b = sum(r[3] for r in rows)
    total_bytes = sum(r[4] for r in rows)
    header = ("module", "type", "params", "buffers", "bytes")
    table = [header] + [(a, b, f"{c:,}", f"{d:,}", _human(e)) for a, b, c, d, e in rows]
    table.append(("total", "", f"{total_p:,}", f"{total_b:,}", _human(total_bytes)))
    widths = [max(len(row[i]) for row in table) for i in range(5)]

    def fmt(row):
        return "  ".join(
            cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))
        )

    rule = "-" * len(fmt(header))
    lines = [f"{type(model).__name__} summary", rule, fmt(header), rule]
    lines += [fmt(r) for r in table[1:-1]]
    lines += [rule, fmt(table[-1]), f"trainable params: {total_p:,}   ({_human(total_bytes)} with buffers)"]
    return "\n".join(lines)
