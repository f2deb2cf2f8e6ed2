"""Figures for the lessons' measured claims: labelled seed grids, a trade-off plot, word maps.

Pure functions: images, maps and numbers in, matplotlib Figures out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from PIL import Image

from .images import to_pil
from .timeline import MAP_CMAP, overlay_image, shared_vmax

ImageLike = Image.Image | np.ndarray


def seed_grid_figure(
    columns: Mapping[str, Sequence[ImageLike]],
    seeds: Sequence[int | str],
    *,
    notes: Mapping[str, Sequence[str]] | None = None,
    title: str = "",
    cell_size: float = 1.55,
    row_label: str = "seed",
) -> Figure:
    """A labelled grid: a row per seed, a column per setting (its header the setting's name).

    Args:
        columns: setting name → one image per seed, in the order of ``seeds``.
        seeds: the seeds (or other row keys), written at the start of each row after
            ``row_label`` (``"seed 1"``; ``row_label=""`` writes the key alone).
        notes: setting name → one short caption per seed (e.g. ``"IoU 0.91 · blue"``).
    """
    counts = {name: len(images) for name, images in columns.items()}
    if not columns or any(count != len(seeds) for count in counts.values()):
        raise ValueError(
            f"seed_grid_figure needs one image per seed ({len(seeds)}) in every column; got "
            f"{counts}"
        )
    figure = Figure(
        figsize=(cell_size * len(columns) + 0.5, (cell_size + 0.35) * len(seeds) + 0.5),
        layout="constrained",
    )
    axes = figure.subplots(len(seeds), len(columns), squeeze=False)
    for column, (name, images) in enumerate(columns.items()):
        axes[0, column].set_title(name, fontsize=8, fontweight="bold")
        for row, image in enumerate(images):
            axis = axes[row, column]
            axis.imshow(to_pil(image))
            axis.set_xticks([])
            axis.set_yticks([])
            if notes is not None and name in notes:
                axis.set_xlabel(notes[name][row], fontsize=7)
    for row, seed in enumerate(seeds):
        axes[row, 0].set_ylabel(f"{row_label} {seed}".strip(), fontsize=8)
    if title:
        figure.suptitle(title, fontsize=10)
    return figure


def tradeoff_figure(
    curves: Mapping[str, Mapping[float, float]],
    *,
    xlabel: str = "share of the steps injected",
    ylabel: str = "share of seeds / median IoU",
    title: str = "",
) -> Figure:
    """Measured curves against the injected fraction (e.g. new-shape rate and object IoU)."""
    import seaborn as sns

    figure = Figure(figsize=(5.6, 3.4), layout="constrained")
    axis = figure.add_subplot()
    palette = sns.color_palette("colorblind", n_colors=max(1, len(curves)))
    for colour, (label, points) in zip(palette, curves.items()):
        xs = sorted(points)
        axis.plot(xs, [points[x] for x in xs], marker="o", label=label, color=colour)
    axis.set_xlabel(xlabel)
    axis.set_ylabel(ylabel)
    axis.set_ylim(-0.03, 1.03)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, loc="best")
    if title:
        axis.set_title(title, fontsize=10)
    return figure


def word_maps_figure(
    image: ImageLike,
    maps: Mapping[str, torch.Tensor | np.ndarray],
    *,
    layers_text: str,
    title: str = "",
) -> Figure:
    """Each word's map overlaid on the image, each with its own colour scale and bar (a word's
    map is compared with the image under it, not with the other words'), and which layers and
    steps the maps average written under the figure."""
    if not maps:
        raise ValueError("word_maps_figure needs at least one word's map")
    figure = Figure(figsize=(2.3 * len(maps) + 0.3, 2.7), layout="constrained")
    axes = figure.subplots(1, len(maps), squeeze=False)[0]
    for axis, (word, attention_map) in zip(axes, maps.items()):
        vmax = shared_vmax(attention_map)
        axis.imshow(overlay_image(image, attention_map, vmax, alpha=0.8))
        axis.set_title(repr(word), fontsize=9)
        axis.set_xticks([])
        axis.set_yticks([])
        figure.colorbar(ScalarMappable(norm=Normalize(0.0, vmax), cmap=MAP_CMAP), ax=axis,
                        shrink=0.75)  # fmt: skip
    figure.supxlabel(layers_text, fontsize=8)
    if title:
        figure.suptitle(title, fontsize=10)
    return figure


def self_attention_figure(view) -> Figure:
    """A :class:`~p2p_teach.self_attention.SelfAttentionView` as a 2×2 grid: rows without and
    with self-attention injection, columns source and target; each map over its run's final
    image on one colour scale for all four (so their peaks compare by eye), the chosen pixel
    marked."""
    figure = Figure(figsize=(6.4, 6.0), layout="constrained")
    axes = figure.subplots(2, 2, squeeze=False)
    scale = 64 / view.side  # image pixels per cell, for the marker
    vmax = shared_vmax(*(view.maps[run][prompt] for run in ("without", "with")
                         for prompt in ("source", "target")))  # fmt: skip
    for row, run in enumerate(("without", "with")):
        for column, prompt in enumerate(("source", "target")):
            axis = axes[row, column]
            attention_map = view.maps[run][prompt]
            image = view.images[run][prompt]
            axis.imshow(overlay_image(image, attention_map, vmax, alpha=0.8))
            size = np.asarray(to_pil(image)).shape[0] / 64
            axis.plot((view.cell[1] + 0.5) * scale * size, (view.cell[0] + 0.5) * scale * size,
                      marker="+", color="cyan", markersize=14, mew=2)  # fmt: skip
            axis.set_xticks([])
            axis.set_yticks([])
            injected = run == "with" and view.injected
            note = " (= source's: injected)" if injected and prompt == "target" else ""
            axis.set_title(f"{prompt}, {run} self-injection{note}", fontsize=8)
    figure.colorbar(ScalarMappable(norm=Normalize(0.0, vmax), cmap=MAP_CMAP), ax=axes,
                    shrink=0.6, label="attention weight (one scale)")  # fmt: skip
    layer = view.layer.removesuffix(".processor").replace(".transformer_blocks.0.attn1", "")
    figure.suptitle(
        f"where pixel {view.pixel} attends at step {view.step + 1} (step={view.step} counts "
        f"from 0), in the {view.side}×{view.side} self-attention of {layer}, heads averaged",
        fontsize=8,
    )
    return figure
