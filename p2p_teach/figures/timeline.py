"""Attention over time: maps on images with honest colour scales, and how concentrated they get.

Pure functions on arrays (maps as (H, W) or (steps, H, W), images as PIL or HxWx3 arrays);
they return matplotlib Figures and never touch a model. Colour scales are shared: one ``vmax``
for source and target and, in the timeline, for every step, so that a brighter map at step 3
than at step 8 is a fact about the attention and not about the plot.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from PIL import Image

from .images import to_array

MAP_CMAP = "inferno"


def _numpy(maps: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(maps, torch.Tensor):
        return maps.detach().to("cpu", torch.float32).numpy()
    return np.asarray(maps, dtype=np.float32)


def shared_vmax(*maps: torch.Tensor | np.ndarray) -> float:
    """One colour-scale top for several maps (or stacks of maps): their common maximum."""
    peak = max((float(_numpy(m).max(initial=0.0)) for m in maps), default=0.0)
    return peak if peak > 0 else 1.0


def upsample_map(attention_map: torch.Tensor | np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A (h, w) map resized to (H, W) by nearest neighbour (each attention pixel stays a block)."""
    array = _numpy(attention_map)
    if array.shape == tuple(size):
        return array
    rows = (np.arange(size[0]) * array.shape[0] // size[0]).clip(0, array.shape[0] - 1)
    cols = (np.arange(size[1]) * array.shape[1] // size[1]).clip(0, array.shape[1] - 1)
    return array[np.ix_(rows, cols)]  # (H, W)


def overlay_image(
    image: Image.Image | np.ndarray,
    attention_map: torch.Tensor | np.ndarray,
    vmax: float,
    alpha: float = 0.6,
    cmap: str = MAP_CMAP,
) -> np.ndarray:
    """The image with the map drawn over it in colour, as an HxWx3 float array in [0, 1].

    The map is scaled by ``vmax`` (pass a shared value to compare maps honestly), and its
    opacity follows its value, so where the map is 0 the image shows through.
    """
    pixels = to_array(image)  # (H, W, 3)
    scaled = np.clip(upsample_map(attention_map, pixels.shape[:2]) / max(vmax, 1e-12), 0.0, 1.0)
    colours = colormaps[cmap](scaled)[..., :3]  # (H, W, 3)
    weight = alpha * scaled[..., None]  # (H, W, 1)
    return pixels * (1.0 - weight) + colours * weight


def timeline_figure(
    source_image: Image.Image | np.ndarray,
    target_image: Image.Image | np.ndarray,
    source_map: torch.Tensor | np.ndarray,
    target_map: torch.Tensor | np.ndarray,
    *,
    vmax: float | None = None,
    label: str = "",
    step_text: str = "",
    show_maps_alone: bool = True,
) -> Figure:
    """Source and target maps of one slot at one step, overlaid on the images, one colour scale.

    Args:
        source_image, target_image: the images the maps are drawn on (final images or x0
            previews).
        source_map, target_map: (h, w) maps of the same slot or word.
        vmax: top of the shared colour scale; pass the maximum over all steps so steps
            compare honestly. Default: the maximum of these two maps.
        label: what the maps are of, e.g. ``'"bicycle" → "motorcycle"'``.
        step_text: e.g. ``"step 3 of 10 (t = 701)"``.
        show_maps_alone: add a second row with the bare maps (no image underneath).
    """
    vmax = shared_vmax(source_map, target_map) if vmax is None else float(vmax)
    rows = 2 if show_maps_alone else 1
    figure = Figure(figsize=(6.0, 2.9 * rows + 0.5), layout="constrained")
    axes = figure.subplots(rows, 2, squeeze=False)
    norm = Normalize(0.0, vmax)
    for column, (name, image, attention_map) in enumerate(
        (("source", source_image, source_map), ("target (edited)", target_image, target_map))
    ):
        axes[0, column].imshow(overlay_image(image, attention_map, vmax))
        axes[0, column].set_title(f"{name}", fontsize=10)
        if show_maps_alone:
            axes[1, column].imshow(_numpy(attention_map), cmap=MAP_CMAP, norm=norm)
            axes[1, column].set_title(f"{name}: map alone", fontsize=9)
    for axis in axes.flat:
        axis.set_xticks([])
        axis.set_yticks([])
    figure.colorbar(
        ScalarMappable(norm=norm, cmap=MAP_CMAP),
        ax=axes,
        shrink=0.8,
        label="attention (shared scale)",
    )
    figure.suptitle(" · ".join(part for part in (label, step_text) if part), fontsize=10)
    return figure


def step_maps_figure(
    word_maps: Mapping[str, tuple[torch.Tensor | np.ndarray, torch.Tensor | np.ndarray]],
    *,
    vmax: float | None = None,
    title: str = "",
) -> Figure:
    """One step's maps for several words: a row per word, source and target side by side.

    Args:
        word_maps: row label (e.g. ``'bicycle → motorcycle'``) → (source map, target map),
            each (h, w).
        vmax: shared colour-scale top; default: the maximum over all maps shown.
    """
    if not word_maps:
        raise ValueError("step_maps_figure needs at least one word's maps")
    vmax = shared_vmax(*(m for pair in word_maps.values() for m in pair)) if vmax is None else vmax
    norm = Normalize(0.0, vmax)
    figure = Figure(figsize=(4.2, 2.0 * len(word_maps) + 0.5), layout="constrained")
    axes = figure.subplots(len(word_maps), 2, squeeze=False)
    for row, (label, (source_map, target_map)) in enumerate(word_maps.items()):
        for column, attention_map in enumerate((source_map, target_map)):
            axis = axes[row, column]
            axis.imshow(_numpy(attention_map), cmap=MAP_CMAP, norm=norm)
            axis.set_xticks([])
            axis.set_yticks([])
        axes[row, 0].set_ylabel(label, fontsize=9)
    axes[0, 0].set_title("source", fontsize=9)
    axes[0, 1].set_title("target (edited)", fontsize=9)
    figure.colorbar(ScalarMappable(norm=norm, cmap=MAP_CMAP), ax=axes, shrink=0.8)
    if title:
        figure.suptitle(title, fontsize=10)
    return figure


def step_lines_figure(
    values: Mapping[str, Sequence[float] | np.ndarray | torch.Tensor],
    *,
    steps: Sequence[int] | None = None,
    ylabel: str = "value",
    title: str = "",
    ylim: tuple[float | None, float | None] | None = None,
    injected: range | None = None,
) -> Figure:
    """Lines of any per-step measure, one per label; denoising goes left to right.

    Args:
        values: label → one value per step.
        steps: the x values (default 1, 2, …: steps count from 1, as in
            :func:`p2p_teach.timeline.algorithm_trace`).
        ylabel, title: the axis label and the title.
        ylim: ``(bottom, top)`` of the y axis; ``None`` on either side (or for the pair) lets
            the data decide. A layout similarity, for instance, lies in (−1, 1).
        injected: 0-based steps whose cross-attention the edit injected: shaded, with a
            legend entry saying the target copies the source's maps there.
    """
    import seaborn as sns

    figure = Figure(figsize=(6.4, 3.6), layout="constrained")
    axis = figure.add_subplot()
    palette = sns.color_palette("colorblind", n_colors=max(1, len(values)))
    for colour, (label, series) in zip(palette, values.items()):
        ys = _numpy(torch.as_tensor(np.asarray(series, dtype=np.float32)))
        xs = list(steps) if steps is not None else list(range(1, len(ys) + 1))
        if len(xs) != len(ys):
            raise ValueError(
                f"{label!r} has {len(ys)} values but there are {len(xs)} steps. Fix: pass one "
                "value per step, or steps=None to number them 1, 2, …"
            )
        axis.plot(xs, ys, marker="o", markersize=3, label=label, color=colour)
    shade_injected(axis, injected)
    axis.set_xlabel("denoising step (early → late)")
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axis.set_ylabel(ylabel)
    if ylim is not None:
        axis.set_ylim(bottom=ylim[0], top=ylim[1])
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, loc="best")
    if title:
        axis.set_title(title, fontsize=10)
    return figure


INJECTED_NOTE = "injected: the target copies the source's maps"


def shade_injected(axis, injected: range | None) -> None:
    """Shade 0-based ``injected`` steps on an axis whose x counts steps from 1."""
    if injected is not None and len(injected):
        axis.axvspan(injected.start + 0.5, injected.stop + 0.5, color="0.85", zorder=0,
                     label=INJECTED_NOTE)  # fmt: skip


def concentration_figure(
    values: Mapping[str, Sequence[float] | np.ndarray | torch.Tensor],
    *,
    steps: Sequence[int] | None = None,
    ylabel: str = "concentration (1 − normalised entropy)",
    title: str = "How concentrated each word's map is, step by step",
    ylim: tuple[float | None, float | None] | None = (0.0, None),
    injected: range | None = None,
) -> Figure:
    """Lines of a per-step concentration (:func:`p2p_teach.measures.concentration`), per word.

    A concentration lies in [0, 1], so the y axis starts at 0 (``ylim``). For a measure with
    another range use :func:`step_lines_figure` (or pass ``ylim``).

    Args:
        values: label → one value per step.
        steps: the x values (default 1, 2, …); denoising goes left to right.
    """
    return step_lines_figure(
        values, steps=steps, ylabel=ylabel, title=title, ylim=ylim, injected=injected
    )


def _font(size: int):
    """DejaVu Sans from matplotlib's own data (always installed with it), else PIL's default."""
    import os

    import matplotlib
    from PIL import ImageFont

    path = os.path.join(matplotlib.get_data_path(), "fonts", "ttf", "DejaVuSans.ttf")
    try:
        return ImageFont.truetype(path, size)
    except OSError:
        return ImageFont.load_default()


def maps_mosaic(
    word_maps: Mapping[str, tuple[torch.Tensor | np.ndarray, torch.Tensor | np.ndarray]],
    *,
    vmax: float | None = None,
    cell: int = 96,
    title: str = "",
    cmap: str = MAP_CMAP,
) -> Image.Image:
    """A fast picture of one step's maps (for live updates): a row per word, source | target.

    The same content as :func:`step_maps_figure` without matplotlib's layout engine (a few
    milliseconds instead of a few hundred), so a per-step update costs little next to the
    UNet. One colour scale for all cells (``vmax``, default their maximum), drawn as a bar
    on the right with its ends labelled.
    """
    from PIL import ImageDraw

    if not word_maps:
        raise ValueError("maps_mosaic needs at least one word's maps")
    vmax = shared_vmax(*(m for pair in word_maps.values() for m in pair)) if vmax is None else vmax
    label_width, header, gap, bar = 120, 18 + (18 if title else 0), 4, 12
    width = label_width + 2 * cell + 3 * gap + bar + 44
    height = header + len(word_maps) * (cell + gap) + gap
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    font = _font(12)
    if title:
        draw.text((gap, 2), title, fill="black", font=font)
    for column, name in enumerate(("source", "target")):
        draw.text((label_width + gap + column * (cell + gap), header - 16), name, fill="black",
                  font=font)  # fmt: skip
    colour_map = colormaps[cmap]
    for row, (label, pair) in enumerate(word_maps.items()):
        top = header + row * (cell + gap)
        lines = label.replace(" → ", " →\n").split("\n")  # a swap on two lines
        for index, line in enumerate(lines):
            line_top = top + cell // 2 - 8 * len(lines) + 16 * index
            draw.text((gap, line_top), line[:17], fill="black", font=font)
        for column, attention_map in enumerate(pair):
            scaled = np.clip(upsample_map(attention_map, (cell, cell)) / max(vmax, 1e-12), 0, 1)
            rgb = (colour_map(scaled)[..., :3] * 255).astype(np.uint8)  # (cell, cell, 3)
            canvas.paste(Image.fromarray(rgb), (label_width + gap + column * (cell + gap), top))
    _colour_bar(canvas, draw, (label_width + 2 * (cell + gap) + gap, header), bar,
                height - header - gap, vmax, colour_map, font)  # fmt: skip
    return canvas


def _colour_bar(canvas, draw, corner, width, height, vmax, colour_map, font) -> None:
    """A vertical colour bar (top: ``vmax``, bottom: 0) with its two ends labelled."""
    levels = np.linspace(1.0, 0.0, max(height, 2))[:, None].repeat(width, axis=1)  # (h, w)
    rgb = (colour_map(levels)[..., :3] * 255).astype(np.uint8)  # (h, w, 3)
    left, top = corner
    canvas.paste(Image.fromarray(rgb), (left, top))
    draw.text((left + width + 3, top), f"{vmax:.2g}", fill="black", font=font)
    draw.text((left + width + 3, top + height - 14), "0", fill="black", font=font)
