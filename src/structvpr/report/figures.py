"""Report plots that carry their axis labels: each PNG stores the labels of its axes as text chunks
(`structvpr:xlabel`, `structvpr:ylabel`), so a checker can tell a labelled plot from one without
labels by reading the file itself (benchmarks/check_report.py does)."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from structvpr.io_utils import atomic_write_bytes

XLABEL_KEY = "structvpr:xlabel"
YLABEL_KEY = "structvpr:ylabel"


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    return plt


def save_plot(figure: Any, out_png: str | Path, dpi: int = 110) -> Path:
    """Save a matplotlib figure as PNG atomically, with its first axes' labels in the PNG's text
    chunks. Raises ValueError naming the file if an axis label is empty (a plot must say what it shows)."""
    out_png = Path(out_png)
    axis = figure.axes[0]
    xlabel, ylabel = axis.get_xlabel().strip(), axis.get_ylabel().strip()
    if not xlabel or not ylabel:
        raise ValueError(f"{out_png}: plot without an axis label (x {xlabel!r}, y {ylabel!r})")
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=dpi, metadata={XLABEL_KEY: xlabel, YLABEL_KEY: ylabel})
    _pyplot().close(figure)
    atomic_write_bytes(out_png, buffer.getvalue())
    return out_png


def axis_labels(png: str | Path) -> tuple[str, str]:
    """(x label, y label) stored in a PNG by `save_plot`; empty strings when absent."""
    from PIL import Image

    with Image.open(png) as image:
        text = getattr(image, "text", {}) or {}
        return str(text.get(XLABEL_KEY, "")), str(text.get(YLABEL_KEY, ""))


def plot_recall_curves(curves: Mapping[str, Mapping[int, float]], out_png: str | Path, title: str = "") -> Path:
    """Recall@N (%) against N, one line per method: `curves` maps a method to {N: recall in [0, 1]}.
    The N axis is linear with a tick at every N measured."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(5.5, 3.8))
    ns = sorted({n for recalls in curves.values() for n in recalls})
    for method, recalls in curves.items():
        xs = sorted(recalls)
        axis.plot(xs, [100 * recalls[n] for n in xs], marker="o", label=method)
    axis.set_xticks(ns)
    axis.set_xlabel("N (number of top-ranked database images)")
    axis.set_ylabel("Recall@N (%)")
    if title:
        axis.set_title(title)
    axis.grid(True, alpha=0.3)
    axis.legend(fontsize=8)
    return save_plot(figure, out_png)


def plot_group_counts(counts: Mapping[str, int], out_png: str | Path, title: str = "") -> Path:
    """Bar plot of training samples per partition group (G1..G4)."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(5, 3))
    colours: Sequence[str] = ["grey", "tab:green", "tab:blue", "tab:orange", "tab:red"][-len(counts) :]
    bars = axis.bar(list(counts), list(counts.values()), color=colours)
    axis.bar_label(bars, fontsize=8)
    axis.set_ylim(0, 1.15 * max([*counts.values(), 1]))  # room for the count labels
    axis.set_xlabel("group")
    axis.set_ylabel("training samples")
    if title:
        axis.set_title(title)
    return save_plot(figure, out_png, dpi=100)
