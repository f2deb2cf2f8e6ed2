"""The self-attention view: pick a pixel and a step, see where it attends, with and without
self-attention injection, in the source and the target.

A thin view over :func:`p2p_teach.self_attention.self_attention_view` and
:func:`p2p_teach.figures.claims.self_attention_figure`; **Compute** runs the two edits.

Stable attributes: ``row_slider``, ``column_slider``, ``step_slider``, ``compute_button``,
``figure_image``, ``status``; state ``view`` (the last view), ``figure``.
CSS classes: ``p2p-self-attention`` (the whole widget), ``p2p-self-attention-figure``.
"""

from __future__ import annotations

from typing import Any

import ipywidgets as widgets

from ..figures.claims import self_attention_figure
from ..figures.images import figure_png
from ..guards import check_pipeline
from ..self_attention import SelfAttentionView, self_attention_view
from .common import check_range, check_text, png_image, set_png


class SelfAttentionExplorer(widgets.VBox):
    """Pixel (row, column) and step sliders, Compute, and the 2×2 figure."""

    def __init__(
        self,
        pipe: Any,
        source: str,
        target: str,
        *,
        pixel: tuple[int, int] = (32, 32),
        step: int = 2,
        seed: int = 1,
        steps: int = 20,
    ) -> None:
        check_pipeline(pipe, "SelfAttentionExplorer")
        check_text("source", source)
        check_text("target", target)
        self.pipe, self.source, self.target = pipe, source, target
        self.seed, self.steps = seed, steps
        self.view: SelfAttentionView | None = None
        self.figure = None
        side = pipe.unet.config.sample_size * pipe.vae_scale_factor
        self.row_slider = widgets.IntSlider(
            value=check_range("pixel row", pixel[0], 0, side - 1), min=0, max=side - 1,
            description="row",
        )  # fmt: skip
        self.column_slider = widgets.IntSlider(
            value=check_range("pixel column", pixel[1], 0, side - 1), min=0, max=side - 1,
            description="column",
        )  # fmt: skip
        self.step_slider = widgets.IntSlider(
            value=check_range("step", step, 0, steps - 2), min=0, max=steps - 2,
            description="step (0-based)",
        )  # fmt: skip
        self.compute_button = widgets.Button(description="Compute", button_style="primary")
        self.compute_button.on_click(lambda _button: self.compute())
        self.figure_image = png_image("p2p-self-attention-figure")
        self.status = widgets.Label("Pick a pixel and a step, then press Compute (two edits).")
        super().__init__([
            widgets.HBox([self.row_slider, self.column_slider]),
            widgets.HBox([self.step_slider, self.compute_button]),
            self.figure_image, self.status,
        ])  # fmt: skip
        self.add_class("p2p-self-attention")

    def compute(self) -> SelfAttentionView | None:
        """Run the two edits for the sliders' pixel and step and show the figure."""
        self.status.value = "Computing…"
        try:
            self.view = self_attention_view(
                self.pipe, self.source, self.target,
                pixel=(self.row_slider.value, self.column_slider.value),
                step=self.step_slider.value, seed=self.seed, steps=self.steps,
            )  # fmt: skip
        except Exception as error:  # bad input shows in the widget, not as a traceback
            self.status.value = f"Could not compute: {error}"
            return None
        self.figure = self_attention_figure(self.view)
        set_png(self.figure_image, figure_png(self.figure))
        state = "injected" if self.view.injected else "not injected"
        self.status.value = (
            f"Step {self.view.step + 1}: self-attention {state} in the 'with' run; layer "
            f"{self.view.layer} ({self.view.side}×{self.view.side})."
        )
        return self.view
