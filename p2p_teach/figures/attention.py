"""Per-step attention of chosen words: one row per word, one column per denoising step.

A pure function on an :class:`~p2p_teach.history.AttentionHistory` (data in, matplotlib Figure
out). Each row shares one colour scale across its steps, so a brighter cell is more attention,
not a different scale.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from ..history import AttentionHistory, Prompt, ResolutionSelector

WordRow = tuple[str, Prompt]  # (word, "source" | "target")
ATTENTION_CMAP = "inferno"


def changed_word_rows(history: AttentionHistory) -> list[WordRow]:
    """Rows for the words that differ between the prompts (source word, then target word,
    position by position); all target words when the prompts have the same words."""
    source_words = [word.text for word in history.source.words]
    target_words = [word.text for word in history.target.words]
    rows: list[WordRow] = []
    if len(source_words) == len(target_words):
        for source_word, target_word in zip(source_words, target_words):
            if source_word != target_word:
                rows += [(source_word, "source"), (target_word, "target")]
    else:
        rows += [(word, "source") for word in source_words if word not in target_words]
        rows += [(word, "target") for word in target_words if word not in source_words]
    return rows or [(word, "target") for word in target_words]


def pick_steps(num_steps: int, max_columns: int) -> list[int]:
    """At most ``max_columns`` step indices (0-based) spread evenly from the first to the last.

    With ``max_columns=1`` that is the first step alone.
    """
    if max_columns < 1:
        raise ValueError(
            f"max_columns={max_columns!r}: at least one step must be shown. Fix: pass "
            "max_columns ≥ 1."
        )
    if num_steps <= max_columns:
        return list(range(num_steps))
    if max_columns == 1:
        return [0]
    return sorted({round(i * (num_steps - 1) / (max_columns - 1)) for i in range(max_columns)})


def word_steps_figure(
    history: AttentionHistory,
    rows: Sequence[WordRow] | None = None,
    *,
    steps: Sequence[int] | None = None,
    max_columns: int = 8,
    resolution: ResolutionSelector = None,
    cell_inches: float = 1.3,
    injected: range | None = None,
) -> Figure:
    """Word maps over the denoising steps.

    Args:
        history: the edit's attention history.
        rows: ``(word, prompt)`` pairs; default: the swapped words (:func:`changed_word_rows`).
        steps: the step indices to show (0-based; the titles count from 1); default: up to
            ``max_columns`` spread over the run.
        max_columns: the most steps shown when ``steps`` is not given.
        resolution: which layers to average (see :meth:`AttentionHistory.maps`); default all
            kept layers, each resized to the largest.
        cell_inches: size of one cell.
        injected: 0-based steps whose cross-attention the edit injected: their titles say
            so and their panels get a grey frame (the target's maps there are the source's).

    Under the figure: which layers the maps average (heads always are).

    Returns:
        A Figure with ``len(rows) × len(steps)`` map panels and a colour bar per row.
    """
    rows = list(rows) if rows is not None else changed_word_rows(history)
    if not rows:
        raise ValueError("no words to show: pass rows=[(word, 'source' or 'target'), ...]")
    if steps is None:
        steps = pick_steps(history.steps_recorded, max_columns)
    steps = list(steps)
    if not steps:
        raise ValueError("the history has no recorded step yet")
    figure = Figure(
        figsize=(cell_inches * len(steps) + 1.2, cell_inches * len(rows) + 0.8),
        layout="constrained",
    )
    grid = figure.add_gridspec(len(rows), len(steps) + 1, width_ratios=[1] * len(steps) + [0.08])
    for row, (word, prompt) in enumerate(rows):
        maps = history.word_maps(word, prompt, steps=steps, resolution=resolution)  # (n, H, W)
        values = np.asarray(maps.numpy(), dtype=np.float32)
        vmax = float(values.max()) if values.size and values.max() > 0 else 1.0
        image = None
        for column, step in enumerate(steps):
            axis = figure.add_subplot(grid[row, column])
            image = axis.imshow(values[column], cmap=ATTENTION_CMAP, vmin=0.0, vmax=vmax)
            axis.set_xticks([])
            axis.set_yticks([])
            is_injected = injected is not None and step in injected
            if is_injected:
                for spine in axis.spines.values():
                    spine.set_edgecolor("0.55")
                    spine.set_linewidth(3)
            if row == 0:
                # steps count from 1, as in algorithm_trace and the widgets
                mark = "\ninjected" if is_injected else ""
                axis.set_title(f"step {step + 1}\nt={history.timesteps[step]:g}{mark}", fontsize=8)
            if column == 0:
                label = "edited target" if prompt == "target" else "source"
                axis.set_ylabel(f"{word!r}\n({label})", fontsize=8)
        colorbar_axis = figure.add_subplot(grid[row, -1])
        figure.colorbar(image, cax=colorbar_axis)
        colorbar_axis.tick_params(labelsize=7)
    figure.suptitle(
        f"cross-attention per step: {history.source.prompt!r} → {history.target.prompt!r}",
        fontsize=9,
    )
    note = f"maps averaged over heads and {layers_text(history, resolution)}"
    if injected is not None and len(injected):
        note += "; grey frames: injected steps, where the target copies the source's maps"
    figure.supxlabel(note, fontsize=7)
    return figure


def layers_text(history: AttentionHistory, resolution: ResolutionSelector = None) -> str:
    """Which kept layers a selection averages, e.g. ``"2 layers at 16×16 (down, up)"``."""
    chosen = history.select(resolution)
    sides = sorted({layer.side for layer in chosen}, reverse=True)
    parts = []
    for side in sides:
        places = sorted({layer.place for layer in chosen if layer.side == side})
        count = sum(1 for layer in chosen if layer.side == side)
        parts.append(f"{count} at {side}×{side} ({', '.join(places)})")
    resized = " (each resized to the largest)" if len(sides) > 1 else ""
    return f"layers {'; '.join(parts)}{resized}"
