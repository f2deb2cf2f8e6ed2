"""The injection sweep as pictures: a labelled grid of edits, and layout kept against fraction.

The recitation's "Injection Step" slide shows the same edit with the source's attention
injected for more and more of the denoising steps, from none ("w/o attention injection") to
all ("full attention injection"). Pure functions: images and numbers in, Figures out.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from ..claims import SweepScores
from .claims import tradeoff_figure
from .images import to_pil

ImageLike = Image.Image | np.ndarray


def fraction_label(fraction: float, kind: str = "") -> str:
    """A cell label: ``'0.4'`` or, with a kind, ``'cross 0.4'``; the ends are named as on the
    slide (``'0 (w/o injection)'``, ``'1 (full injection)'``)."""
    prefix = f"{kind} " if kind else ""
    if fraction <= 0.0:
        return f"{prefix}0 (w/o injection)"
    if fraction >= 1.0:
        return f"{prefix}1 (full injection)"
    return f"{prefix}{fraction:g}"


def sweep_grid_figure(
    rows: Mapping[str, Mapping[float, ImageLike]],
    *,
    source_image: ImageLike | None = None,
    source_label: str = "source",
    title: str = "",
    cell_size: float = 1.8,
) -> Figure:
    """A grid of edited images: a row per setting family, a column per injection fraction.

    Args:
        rows: row label (e.g. ``'cross-attention'``) → {fraction: edited image}. Each cell is
            titled with its fraction (:func:`fraction_label`).
        source_image: if given, shown first in every row, for comparison.
        title: figure title, e.g. ``'bicycle → motorcycle'``.
    """
    if not rows or not any(rows.values()):
        raise ValueError("sweep_grid_figure needs at least one row with one image")
    n_columns = max(len(cells) for cells in rows.values()) + int(source_image is not None)
    figure = Figure(
        figsize=(cell_size * n_columns + 0.6, (cell_size + 0.45) * len(rows) + 0.4),
        layout="constrained",
    )
    axes = figure.subplots(len(rows), n_columns, squeeze=False)
    for row, (row_label, cells) in enumerate(rows.items()):
        column = 0
        if source_image is not None:
            axes[row, 0].imshow(to_pil(source_image))
            axes[row, 0].set_title(source_label, fontsize=8, fontweight="bold")
            column = 1
        for fraction, image in sorted(cells.items()):
            axes[row, column].imshow(to_pil(image))
            axes[row, column].set_title(fraction_label(fraction), fontsize=8)
            column += 1
        axes[row, 0].set_ylabel(row_label, fontsize=9)
    for axis in axes.flat:
        axis.set_xticks([])
        axis.set_yticks([])
        if not axis.images:
            axis.set_axis_off()
    if title:
        figure.suptitle(title, fontsize=10)
    return figure


def layout_survival_figure(
    curves: Mapping[str, Mapping[float, float]],
    *,
    ylabel: str = "layout similarity to the source",
    title: str = "How much of the source's layout survives",
) -> Figure:
    """Lines of a layout measure against the injection fraction, one per curve.

    Args:
        curves: label (e.g. ``'cross-attention, bicycle → motorcycle'``) →
            {fraction: similarity}, e.g. from :func:`p2p_teach.measures.layout_similarity`.
    """
    import seaborn as sns

    if not curves:
        raise ValueError("layout_survival_figure needs at least one curve")
    figure = Figure(figsize=(6.0, 3.6), layout="constrained")
    axis = figure.add_subplot()
    palette = sns.color_palette("colorblind", n_colors=len(curves))
    for colour, (label, points) in zip(palette, curves.items()):
        fractions = sorted(points)
        axis.plot(fractions, [points[f] for f in fractions], marker="o", label=label, color=colour)
    axis.set_xlabel("injection fraction (share of the denoising steps, from the start)")
    axis.set_ylabel(ylabel)
    axis.set_xlim(-0.03, 1.03)
    axis.axhline(1.0, color="#999999", linewidth=0.8, linestyle=":")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, loc="best")
    axis.set_title(title, fontsize=10)
    return figure


def sweep_scores_figure(scores: SweepScores, *, title: str = "") -> Figure:
    """A sweep row's measures against the injection fraction (:func:`~p2p_teach.claims.
    sweep_scores`), on a 0–1 axis when every measure is bounded, with the note underneath."""
    if scores.bounded:
        figure = tradeoff_figure(scores.curves, ylabel="IoU / drawn", title=title)
    else:
        figure = layout_survival_figure(scores.curves, ylabel="layout similarity", title=title)
    figure.text(0.01, 0.0, textwrap.fill(scores.note, 90), fontsize=7, va="bottom",
                color="#555555")  # fmt: skip
    figure.get_layout_engine().set(rect=(0, 0.08, 1, 0.92))
    return figure


def fractions_from(count: int) -> Sequence[float]:
    """``count`` evenly spaced fractions from 0 (no injection) to 1 (full injection)."""
    if count < 2:
        raise ValueError(f"count={count!r}: a sweep needs at least 2 fractions (0 and 1)")
    return [round(float(f), 4) for f in np.linspace(0.0, 1.0, count)]
