"""Mapper pictures: the word-swap mapper as a heatmap, two rules side by side, and the
refinement alignment as lines between token boxes.

The heatmaps put source slots on the rows and target slots on the columns, like the slides.
The full 77×77 view shows where the action is (a small top-left region); the zoom shows that
region with token labels on both axes, every non-zero weight written as a fraction (1/3, 1/4)
and each swapped word's block outlined and labelled with its case. Pure functions: data in,
Figure out.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch, Rectangle

from ..alignment import RefinementAlignment
from ..mapper import RULE_DESCRIPTIONS, WordSwapMapper, format_weight
from ..tokens import MAX_SLOTS, TokenView

MapperView = Literal["both", "zoom", "full"]
HEATMAP_CMAP = "Blues"
SWAP_EDGE = "#d94801"
DIFFERENCE_EDGE = "#cb181d"
NEW_TOKEN_COLOR = "#a1d99b"  # target tokens the alignment marks new (alpha 0)
REMOVED_TOKEN_COLOR = "#fc9272"  # source tokens no target token continues
KEPT_TOKEN_COLOR = "#deebf7"


def _labels(view: TokenView, size: int) -> list[str]:
    return [f"{slot.index} {slot.label}" for slot in view.slots[:size]]


def _zoom_axis(axis, mapper: WordSwapMapper, size: int, annotate_cases: bool = True) -> None:
    """Draw the top-left ``size``×``size`` region with labels, fractions and swap blocks."""
    region = mapper.matrix[:size, :size].numpy()  # (size source slots, size target slots)
    annotations = np.array([[format_weight(v, zero="") for v in row] for row in region])
    sns.heatmap(
        region, ax=axis, cmap=HEATMAP_CMAP, vmin=0.0, vmax=1.0, cbar=False,
        annot=annotations, fmt="", annot_kws={"fontsize": 8},
        linewidths=0.5, linecolor="#dddddd",
        xticklabels=_labels(mapper.target, size), yticklabels=_labels(mapper.source, size),
    )
    axis.set_xlabel("target slot")
    axis.set_ylabel("source slot")
    axis.xaxis.tick_top()
    axis.xaxis.set_label_position("top")
    axis.tick_params(axis="x", labelrotation=90, labelsize=8)
    axis.tick_params(axis="y", labelrotation=0, labelsize=8)
    if not annotate_cases:
        return
    for swap in mapper.swaps:
        rows, columns = swap.source_slots, swap.target_slots
        if rows.start >= size or columns.start >= size:
            continue
        axis.add_patch(
            Rectangle((columns.start, rows.start), len(columns), len(rows), fill=False,
                      edgecolor=SWAP_EDGE, linewidth=2.0, gid="swap-block")
        )
        axis.text(
            columns.stop + 0.15, rows.start + len(rows) / 2,  # right of the block: zeros
            f"{swap.case} ({swap.n_source}→{swap.n_target})",
            ha="left", va="center", fontsize=8, color=SWAP_EDGE, fontweight="bold",
            bbox={"boxstyle": "round,pad=0.2", "facecolor": "white", "edgecolor": SWAP_EDGE},
        )


def _full_axis(axis, mapper: WordSwapMapper, size: int) -> None:
    sns.heatmap(
        mapper.matrix.numpy(), ax=axis, cmap=HEATMAP_CMAP, vmin=0.0, vmax=1.0, cbar=False,
        square=True, xticklabels=10, yticklabels=10,
    )
    axis.add_patch(
        Rectangle((0, 0), size, size, fill=False, edgecolor=SWAP_EDGE, linewidth=1.5,
                  linestyle="--", gid="zoom-region")
    )
    axis.set_title(f"all {MAX_SLOTS}×{MAX_SLOTS} (dashed: the zoom)", fontsize=9)
    axis.set_xlabel("target slot")
    axis.set_ylabel("source slot")
    axis.tick_params(labelsize=7)


def mapper_figure(
    mapper: WordSwapMapper, view: MapperView = "both", size: int | None = None
) -> Figure:
    """The mapper as a heatmap: ``"full"`` 77×77, ``"zoom"`` on the active region, or both.

    ``size`` is the zoom's side (default: BOS to the later EOS plus one padding slot).
    """
    if view not in ("both", "zoom", "full"):
        raise ValueError(f"view must be 'both', 'zoom' or 'full', not {view!r}")
    size = mapper.active_size if size is None else max(1, min(MAX_SLOTS, size))
    zoom_inches = max(4.0, 0.42 * size + 2.2)
    if view == "both":
        figure = Figure(figsize=(zoom_inches + 4.8, zoom_inches), layout="constrained")
        full_axis, zoom_axis = figure.subplots(1, 2, width_ratios=[4.2, zoom_inches])
        _full_axis(full_axis, mapper, size)
        _zoom_axis(zoom_axis, mapper, size)
    elif view == "zoom":
        figure = Figure(figsize=(zoom_inches + 1.0, zoom_inches), layout="constrained")
        _zoom_axis(figure.add_subplot(), mapper, size)
    else:
        figure = Figure(figsize=(6.0, 6.0), layout="constrained")
        _full_axis(figure.add_subplot(), mapper, size)
    figure.suptitle(
        f"{mapper.source.normalized!r} → {mapper.target.normalized!r}\n"
        f"{RULE_DESCRIPTIONS[mapper.rule]}",
        fontsize=9,
    )
    return figure


def mapper_comparison_figure(
    first: WordSwapMapper, second: WordSwapMapper, size: int | None = None
) -> Figure:
    """Two mappers of the same pair side by side (e.g. the course rule and the original
    code's), with the cells where they differ outlined on both."""
    size = max(first.active_size, second.active_size) if size is None else size
    differing = (first.matrix[:size, :size] != second.matrix[:size, :size]).nonzero().tolist()
    zoom_inches = max(4.0, 0.42 * size + 2.2)
    figure = Figure(figsize=(2 * zoom_inches + 1.0, zoom_inches + 0.6), layout="constrained")
    axes = figure.subplots(1, 2)
    for axis, mapper in zip(axes, (first, second)):
        _zoom_axis(axis, mapper, size)
        for i, j in differing:
            axis.add_patch(
                Rectangle((j + 0.06, i + 0.06), 0.88, 0.88, fill=False,
                          edgecolor=DIFFERENCE_EDGE, linewidth=1.6, linestyle=":",
                          gid="difference")
            )
        axis.set_title(f"rule: {mapper.rule}", fontsize=10, pad=4, loc="left")
    figure.suptitle(
        f"{first.source.normalized!r} → {first.target.normalized!r}: "
        f"{len(differing)} cell(s) differ (dotted)",
        fontsize=10,
    )
    return figure


def alignment_figure(alignment: RefinementAlignment, padding_shown: int = 1) -> Figure:
    """The refinement alignment: source slots above, target slots below, a line for each
    aligned pair; new target tokens (alpha 0) green, removed source tokens red."""
    source, target = alignment.source, alignment.target
    n_source = min(MAX_SLOTS, source.n_used + padding_shown)
    n_target = min(MAX_SLOTS, target.n_used + padding_shown)
    new, removed = set(alignment.new_target_slots), set(alignment.removed_source_slots)
    n_columns = max(n_source, n_target)
    figure = Figure(figsize=(min(40.0, 1.2 + 0.85 * n_columns), 3.2), layout="constrained")
    axis = figure.add_subplot()
    top, bottom = 1.6, 0.0
    for i in range(n_source):
        color = REMOVED_TOKEN_COLOR if i in removed else KEPT_TOKEN_COLOR
        _token_box(axis, i, top, f"{i}\n{source.slots[i].label}", color, f"source-{i}")
    for j in range(n_target):
        color = NEW_TOKEN_COLOR if j in new else KEPT_TOKEN_COLOR
        alpha = f"α={float(alignment.alphas[j]):.0f}"
        _token_box(axis, j, bottom, f"{j}\n{target.slots[j].label}", color, f"target-{j}")
        axis.text(j, bottom - 0.55, alpha, ha="center", va="top", fontsize=7, color="#404040")
    for j in range(n_target):
        i = int(alignment.source_index[j])
        if 0 <= i < n_source:
            axis.plot([i, j], [top - 0.38, bottom + 0.38], color="#3182bd", linewidth=1.2,
                      gid="alignment-line")
    axis.text(-0.7, top, "source", ha="right", va="center", fontsize=9)
    axis.text(-0.7, bottom, "target", ha="right", va="center", fontsize=9)
    axis.set_xlim(-1.9, n_columns - 0.4)
    axis.set_ylim(-0.95, 2.1)
    axis.axis("off")
    axis.set_title(
        f"refinement alignment {source.normalized!r} → {target.normalized!r}: "
        "green = new (own attention), red = removed",
        fontsize=9, loc="left",
    )
    return figure


def _token_box(axis, x: float, y: float, text: str, color: str, gid: str) -> None:
    axis.add_patch(
        FancyBboxPatch((x - 0.44, y - 0.36), 0.88, 0.72,
                       boxstyle="round,pad=0.02,rounding_size=0.08",
                       facecolor=color, edgecolor="#636363", linewidth=0.8, gid=gid)
    )
    axis.text(x, y, text, ha="center", va="center", fontsize=7.5)
