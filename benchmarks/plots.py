"""PNG plots for the reports. matplotlib is optional: without it, no plots (and the reports say so)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def pyplot() -> Any | None:
    """matplotlib's pyplot with a file-only backend, or None when it is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def grouped_bars(
    path: Path,
    title: str,
    categories: Sequence[str],
    series: dict[str, Sequence[float | None]],
    ylabel: str,
    *,
    log_scale: bool = False,
    reference_line: float | None = None,
) -> Path | None:
    """One group of bars per category, one bar per series; None when matplotlib is missing."""
    plt = pyplot()
    if plt is None:
        return None
    width = 0.8 / max(1, len(series))
    figure, axes = plt.subplots(figsize=(min(14.0, max(6.4, 0.5 * len(categories) + 2)), 4.6))
    for index, (label, values) in enumerate(series.items()):
        xs = [i + (index - (len(series) - 1) / 2) * width for i in range(len(categories))]
        ys = [v if v is not None and math.isfinite(v) and (v > 0 or not log_scale) else math.nan for v in values]
        axes.bar(xs, ys, width=width, label=label)
    axes.set_xticks(range(len(categories)))
    axes.set_xticklabels(
        categories, rotation=45 if len(categories) > 8 else 0, ha="right" if len(categories) > 8 else "center"
    )
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    if log_scale:
        axes.set_yscale("log")
    if reference_line is not None:
        axes.axhline(reference_line, color="grey", linewidth=0.8, linestyle="--")
    axes.grid(axis="y", alpha=0.3)
    axes.legend(fontsize="small")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def lines(
    path: Path,
    title: str,
    xs: Sequence[float],
    series: dict[str, Sequence[float | None]],
    xlabel: str,
    ylabel: str,
    *,
    log_x: bool = False,
    log_y: bool = False,
) -> Path | None:
    """One line per series over ``xs``; None when matplotlib is missing."""
    plt = pyplot()
    if plt is None:
        return None
    figure, axes = plt.subplots(figsize=(6.4, 4.2))
    for label, values in series.items():
        ys = [v if v is not None and math.isfinite(v) else math.nan for v in values]
        axes.plot(xs, ys, marker="o", label=label)
    if log_x:
        axes.set_xscale("log", base=2)
    if log_y:
        axes.set_yscale("log")
    axes.set_xticks(list(xs))
    axes.set_xticklabels([str(x) for x in xs])
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def image_links(paths: Sequence[Path | None], note_missing: bool = True) -> str:
    """Markdown image links for the plots that were made."""
    made = [p for p in paths if p is not None]
    if not made:
        return "_No plots: matplotlib is not installed (or --no-plots was given)._" if note_missing else ""
    return "\n\n".join(f"![{p.stem}]({p.name})" for p in made)
