"""Images for people: PIL images and matplotlib figures as PNG bytes, images side by side.

Widgets show pictures through ``ipywidgets.Image`` (PNG bytes), so every figure function's
output passes through :func:`figure_png`. Pure functions only: no widgets, no model.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.figure import Figure
from PIL import Image

if TYPE_CHECKING:
    from ..engine import EditResult


def figure_png(figure: Figure, dpi: int = 100, tight: bool = True) -> bytes:
    """A matplotlib Figure as PNG bytes. The figure is not shown and can be garbage-collected.

    ``tight=False`` skips the tight bounding box (one draw instead of two: faster, and enough
    for figures with ``layout="constrained"``).
    """
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight" if tight else None)
    return buffer.getvalue()


def image_png(image: Image.Image | np.ndarray, min_size: int = 0) -> bytes:
    """A PIL image (or an HxWx3 uint8 / [0, 1] float array) as PNG bytes.

    ``min_size`` upsamples small images (nearest neighbour, so pixels stay honest) until their
    shorter side is at least that many pixels: a 64×64 image is too small to see in a browser.
    """
    image = to_pil(image)
    shorter = min(image.size)
    if min_size and 0 < shorter < min_size:
        factor = -(-min_size // shorter)  # ceiling division: the smallest integer zoom
        image = image.resize((image.width * factor, image.height * factor), Image.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def to_pil(image: Image.Image | np.ndarray) -> Image.Image:
    """A PIL RGB image from a PIL image or an HxW(x3) array (uint8, or floats in [0, 1])."""
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    array = np.asarray(image)
    if array.dtype != np.uint8:
        array = (np.clip(array, 0.0, 1.0) * 255).round().astype(np.uint8)
    return Image.fromarray(array).convert("RGB")


def to_array(image: Image.Image | np.ndarray) -> np.ndarray:
    """An HxWx3 float array in [0, 1] from a PIL image or an array."""
    return np.asarray(to_pil(image), dtype=np.float32) / 255.0


def side_by_side(
    images: Sequence[Image.Image | np.ndarray],
    titles: Sequence[str] | None = None,
    suptitle: str | None = None,
    size: float = 2.6,
) -> Figure:
    """Images in one row with titles (e.g. source and edited image)."""
    figure = Figure(figsize=(size * len(images), size + 0.4), layout="constrained")
    axes = figure.subplots(1, len(images), squeeze=False)[0]
    for index, (axis, image) in enumerate(zip(axes, images)):
        axis.imshow(to_pil(image))
        axis.set_xticks([])
        axis.set_yticks([])
        if titles is not None:
            axis.set_title(titles[index], fontsize=10)
    if suptitle:
        figure.suptitle(suptitle, fontsize=11)
    return figure


def result_figure(result: EditResult, size: float = 3.2) -> Figure:
    """An edit's source and edited image side by side, titled with the prompts, the edit, its
    seed and steps, and the injection windows (``p2p_teach.show(result)``)."""
    if not all(hasattr(result, name) for name in ("settings", "source_image", "edited_image")):
        raise TypeError(
            f"show() draws an edit's result, not {type(result).__name__} {result!r:.60}. Fix: "
            "p2p_teach.show(p2p_teach.edit(...)), or show(EditResult.load(folder)) for a "
            "saved one (EditResult is in p2p_teach.engine)."
        )
    settings = result.settings
    return side_by_side(
        [result.source_image, result.edited_image],
        [settings.source_prompt, settings.target_prompt],
        suptitle=(
            f"{settings.kind}, seed {settings.seed}, {settings.steps} "
            f"steps\ninjected: cross-attention {_window(settings.cross_steps)}, "
            f"self-attention {_window(settings.self_steps)} of the steps"
        ),
        size=size,
    )


def _window(setting: Mapping[str, Sequence[float]] | Sequence[float]) -> str:
    """A schedule window as text: ``(0, 0.8)`` → ``'0–0.8'``; per-word windows show the
    default."""
    if isinstance(setting, Mapping):
        setting = setting.get("default", (0.0, 1.0))
    start, end = setting
    return f"{start:g}–{end:g}"
