"""The pipeline tour widget: the seven components, and one prompt's trip through the text side.

A view over :mod:`p2p_teach.tour` (data) and :mod:`p2p_teach.figures.tour` (the diagram); it
holds no model logic. Type a prompt and press Encode (or Enter) to see the tokenizer's output
dictionary and the text encoder's output object, with shapes.

Stable attributes (for tests and notebooks): ``components``, ``encoding``, ``diagram_image``,
``components_view``, ``prompt_text``, ``encode_button``, ``encoding_view``, ``status``.

CSS classes (for browser tests): ``p2p-tour`` (the whole widget), ``p2p-tour-diagram``,
``p2p-tour-components``, ``p2p-tour-prompt``, ``p2p-tour-encode``, ``p2p-tour-encoding``,
``p2p-status``.
"""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as widgets

from ..figures.images import figure_png
from ..figures.tour import pipeline_diagram
from ..guards import check_pipeline
from ..models import describe_pipeline
from ..tour import (
    ComponentInfo,
    PromptEncoding,
    components_html,
    encode_prompt_with_shapes,
    flow_shapes,
    pipeline_components,
)
from .common import check_text, png_image, set_png


class PipelineTour(widgets.VBox):
    """Components table + diagram, and a prompt box that shows the text side's outputs."""

    def __init__(self, pipe: Any, prompt: str = "photo of a cat riding on a bicycle") -> None:
        check_pipeline(pipe, "PipelineTour")
        check_text("prompt", prompt)
        self.pipe = pipe
        self.components: list[ComponentInfo] = pipeline_components(pipe)
        self.encoding: PromptEncoding | None = None

        self.model_label = widgets.HTML(f"<b>Model:</b> {html.escape(describe_pipeline(pipe))}")
        diagram = pipeline_diagram(self.components, flow_shapes(pipe))
        self.diagram_image = png_image("p2p-tour-diagram")
        set_png(self.diagram_image, figure_png(diagram))
        self.components_view = widgets.HTML(components_html(self.components))
        self.components_view.add_class("p2p-tour-components")

        self.prompt_text = widgets.Text(
            value=prompt,
            description="prompt",
            continuous_update=False,
            layout=widgets.Layout(width="60%"),
        )
        self.prompt_text.add_class("p2p-tour-prompt")
        self.encode_button = widgets.Button(description="Encode", button_style="primary")
        self.encode_button.add_class("p2p-tour-encode")
        self.encoding_view = widgets.HTML()
        self.encoding_view.add_class("p2p-tour-encoding")
        self.status = widgets.Label()
        self.status.add_class("p2p-status")

        self.encode_button.on_click(lambda _button: self.encode())
        self.prompt_text.observe(lambda _change: self.encode(), names="value")

        super().__init__(
            [
                self.model_label,
                self.diagram_image,
                self.components_view,
                widgets.HBox([self.prompt_text, self.encode_button]),
                self.encoding_view,
                self.status,
            ]
        )
        self.add_class("p2p-tour")
        self.encode()

    def encode(self) -> PromptEncoding | None:
        """Encode the prompt in the text box and show both outputs; errors go to ``status``."""
        try:
            encoding = encode_prompt_with_shapes(self.pipe, self.prompt_text.value)
        except Exception as error:  # a widget must not die on bad input: say what went wrong
            self.status.value = f"could not encode: {type(error).__name__}: {error}"
            return None
        self.encoding = encoding
        self.encoding_view.value = f"<pre>{html.escape(encoding.summary())}</pre>"
        used = f"{encoding.n_used} of {len(encoding.pieces)} slots used"
        self.status.value = f"encoded: {used}" + (" (TRUNCATED)" if encoding.truncated else "")
        return encoding
