"""``ratchet tune`` output: the table, the engine TOML, the figure (PNG) and the HTML report.

The figure has two panels: precision against recall for every grid point (the recommended one
and the recorded setting marked), and run-level FPR and recall against the floor threshold
(``floor_bits``) for the recommended sigma, fallback and window. Drawn with matplotlib's Agg
backend (no display needed). The HTML report is one self-contained file: the PNG embedded as
base64 and the full table.
"""

from __future__ import annotations

import base64
import html
import io
import logging
from collections.abc import Sequence
from typing import Any

from models.params import EngineParams

__all__ = ["COLUMNS", "engine_toml", "format_table", "html_report", "png_figure"]

#: Table columns: (key, header, format).
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("sigma_multiplier", "sigma", "{:.2f}"),
    ("floor_bits", "floor", "{:.1f}"),
    ("fallback_bits", "fallback", "{:.1f}"),
    ("window", "window", "{:d}"),
    ("precision", "precision", "{:.3f}"),
    ("recall", "recall", "{:.3f}"),
    ("fpr", "FPR", "{:.4f}"),
    ("f1", "F1", "{:.3f}"),
    ("tp", "tp", "{:d}"),
    ("fp", "fp", "{:d}"),
    ("fn", "fn", "{:d}"),
    ("learn_diff", "learn≠", "{:d}"),
)


def _cells(row: dict[str, Any]) -> list[str]:
    return [fmt.format(row[key]) for key, _, fmt in COLUMNS]


def format_table(rows: Sequence[dict[str, Any]], marks: dict[int, str]) -> str:
    """Fixed-width text table; ``marks`` maps a row position to a note (``recommended``)."""
    head = [h for _, h, _ in COLUMNS]
    body = [_cells(r) for r in rows]
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(head)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(head, widths, strict=True))]
    for i, cells in enumerate(body):
        line = "  ".join(c.rjust(w) for c, w in zip(cells, widths, strict=True))
        lines.append(line + (f"  <- {marks[i]}" if i in marks else ""))
    return "\n".join(lines)


def engine_toml(params: EngineParams, base: EngineParams, note: str) -> str:
    """The ``[engine]`` table of the grid parameters of ``params`` (and anything else that
    differs from the built-in defaults in ``base``), with a comment saying where it came from."""
    defaults = EngineParams()
    keys = ["sigma_multiplier", "floor_bits", "fallback_bits", "window", "window_large"]
    keys += [k for k in base.__dataclass_fields__ if k not in keys
             and getattr(base, k) != getattr(defaults, k)]
    lines = [f"# {line}" for line in note.splitlines()] + ["[engine]"]
    for k in keys:
        v = getattr(params, k)
        if isinstance(v, bool):
            text = "true" if v else "false"
        elif isinstance(v, str):
            text = f'"{v}"'
        else:
            text = repr(v)
        lines.append(f"{k} = {text}")
    return "\n".join(lines) + "\n"


def png_figure(rows: Sequence[dict[str, Any]], best: int, title: str) -> bytes:
    """The two-panel figure as PNG bytes (see the module docstring)."""
    # matplotlib's own INFO lines ("generated new fontManager") are not the command's output
    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (pr, thr) = plt.subplots(1, 2, figsize=(11, 4.5), dpi=100)
    recall = [r["recall"] for r in rows]
    precision = [r["precision"] for r in rows]
    pr.scatter(recall, precision, s=12, alpha=0.5, color="tab:blue", label="grid points")
    pr.scatter([recall[0]], [precision[0]], s=60, marker="s", facecolors="none",
               edgecolors="black", label="recorded setting")
    pr.scatter([recall[best]], [precision[best]], s=120, marker="*", color="tab:red",
               label="recommended")
    frontier = _frontier(recall, precision)
    pr.plot([recall[i] for i in frontier], [precision[i] for i in frontier], color="tab:blue",
            linewidth=1, label="best precision at each recall")
    pr.set_xlabel("recall (runs)")
    pr.set_ylabel("precision (runs)")
    pr.set_title("precision–recall over the grid")
    pr.grid(alpha=0.3)
    pr.legend(fontsize=8, loc="lower left")

    b = rows[best]
    same = [r for r in rows if r["sigma_multiplier"] == b["sigma_multiplier"]
            and r["fallback_bits"] == b["fallback_bits"] and r["window"] == b["window"]]
    same.sort(key=lambda r: r["floor_bits"])
    floors = [r["floor_bits"] for r in same]
    thr.plot(floors, [r["fpr"] for r in same], marker="o", color="tab:red", label="FPR")
    thr.set_xlabel("floor_bits (threshold floor)")
    thr.set_ylabel("false-positive rate (runs)", color="tab:red")
    thr.axvline(b["floor_bits"], color="gray", linestyle=":", linewidth=1)
    other = thr.twinx()
    other.plot(floors, [r["recall"] for r in same], marker="^", color="tab:green",
               label="recall")
    other.set_ylabel("recall (runs)", color="tab:green")
    other.set_ylim(0, 1.02)
    thr.set_title(f"sigma {b['sigma_multiplier']:g}, fallback {b['fallback_bits']:g}, "
                  f"window {b['window']}")
    thr.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png")
    plt.close(fig)
    return out.getvalue()


def _frontier(recall: Sequence[float], precision: Sequence[float]) -> list[int]:
    """Indices of the points no other point beats on both axes, by recall."""
    order = sorted(range(len(recall)), key=lambda i: (-recall[i], -precision[i]))
    out: list[int] = []
    best = -1.0
    for i in order:
        if precision[i] > best:
            out.append(i)
            best = precision[i]
    return sorted(out, key=lambda i: recall[i])


def html_report(rows: Sequence[dict[str, Any]], marks: dict[int, str], png: bytes,
                summary: Sequence[str], toml: str) -> str:
    """A self-contained HTML page: summary lines, the figure (inline base64) and the table."""
    head = "".join(f"<th>{html.escape(h)}</th>" for _, h, _ in COLUMNS) + "<th></th>"
    body = []
    for i, r in enumerate(rows):
        cls = ' class="best"' if marks.get(i) == "recommended" else ""
        cells = "".join(f"<td>{html.escape(c)}</td>" for c in _cells(r))
        body.append(f"<tr{cls}>{cells}<td>{html.escape(marks.get(i, ''))}</td></tr>")
    image = base64.b64encode(png).decode()
    items = "".join(f"<li>{html.escape(s)}</li>" for s in summary)
    return (
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>ratchet tune</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{padding:2px 8px;text-align:right;border-bottom:1px solid #ddd}"
        "tr.best{background:#fde2e2;font-weight:bold}pre{background:#f4f4f4;padding:1em}"
        "</style></head><body>\n<h1>ratchet tune</h1>\n"
        f"<ul>{items}</ul>\n"
        f"<img alt=\"precision-recall and FPR curves\" src=\"data:image/png;base64,{image}\">\n"
        f"<h2>Recommended [engine]</h2>\n<pre>{html.escape(toml)}</pre>\n"
        f"<h2>Grid (run level, enforced)</h2>\n<table id=\"grid\"><thead><tr>{head}</tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table>\n</body></html>\n"
    )
