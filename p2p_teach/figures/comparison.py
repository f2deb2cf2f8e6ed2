"""Two edits of the same prompts beside each other: the toolkit's and a learner's (notebook 07)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from matplotlib.figure import Figure

from .images import to_pil

if TYPE_CHECKING:
    from ..engine import EditResult


def edit_comparison_figure(toolkit: EditResult, learner: EditResult, size: float = 2.6) -> Figure:
    """Source, the toolkit's edited image, the learner's, and their largest channel difference
    per pixel (in levels of 255)."""
    ours = np.asarray(to_pil(toolkit.edited_image), dtype=np.int16)  # (H, W, 3)
    theirs = np.asarray(to_pil(learner.edited_image), dtype=np.int16)
    difference = np.abs(ours - theirs).max(axis=-1)  # (H, W)
    figure = Figure(figsize=(size * 4 + 0.6, size + 0.4), layout="constrained")
    axes = figure.subplots(1, 4)
    panels = [
        (toolkit.source_image, "source"),
        (toolkit.edited_image, "toolkit's edit"),
        (learner.edited_image, "your edit"),
    ]
    for axis, (image, title) in zip(axes, panels):
        axis.imshow(to_pil(image))
        axis.set_title(title, fontsize=10)
    largest = int(difference.max())
    shown = axes[3].imshow(difference, cmap="magma", vmin=0, vmax=max(1, largest))
    axes[3].set_title(f"|difference|, max {largest}/255", fontsize=10)
    figure.colorbar(shown, ax=axes[3], fraction=0.046)
    for axis in axes:
        axis.set_xticks([])
        axis.set_yticks([])
    return figure
