"""The tokenization explorer: type one or two prompts and see their 77 slots.

A view over :func:`p2p_teach.tokens.tokenize` and :mod:`p2p_teach.figures.tokens`; it holds no
logic beyond wiring. The table is shown twice: as an HTML table (text a browser test can find)
and as the token-table figure.

Stable attributes (for tests and notebooks): ``views`` (the current TokenViews), ``figure``
(the current Figure), ``error``; the children ``source_text``, ``target_text``,
``padding_slider``, ``table_view``, ``figure_image``, ``work_view``, ``status``.

CSS classes (for browser tests): ``p2p-token-explorer`` (the whole widget),
``p2p-token-source``, ``p2p-token-target``, ``p2p-token-table-view``, ``p2p-token-figure``,
``p2p-token-work``, ``p2p-status``.
"""

from __future__ import annotations

import html

import ipywidgets as widgets
from matplotlib.figure import Figure

from ..figures.images import figure_png
from ..figures.tokens import token_table_figure, token_table_html
from ..tokens import MAX_SLOTS, TokenView, tokenize
from .common import check_range, check_text


class TokenExplorer(widgets.VBox):
    """Two prompt boxes (leave the second empty for one prompt), the slot table and figure."""

    def __init__(
        self,
        source: str = "A lion eating",
        target: str = "A hippopotamus eating",
        padding_shown: int = 2,
    ) -> None:
        check_text("source", source)
        check_text("target", target)
        check_range("padding_shown", padding_shown, 0, 10)
        self.views: tuple[TokenView, ...] = ()
        self.figure: Figure | None = None
        self.error: str | None = None

        self.source_text = widgets.Text(
            value=source, description="prompt", continuous_update=False,
            layout=widgets.Layout(width="60%"),
        )
        self.source_text.add_class("p2p-token-source")
        self.target_text = widgets.Text(
            value=target, description="compare", placeholder="(optional) a second prompt",
            continuous_update=False, layout=widgets.Layout(width="60%"),
        )
        self.target_text.add_class("p2p-token-target")
        self.padding_slider = widgets.IntSlider(
            value=padding_shown, min=0, max=10, description="padding shown"
        )
        self.table_view = widgets.HTML()
        self.table_view.add_class("p2p-token-table-view")
        self.figure_image = widgets.Image(format="png")
        self.figure_image.layout.max_width = "100%"
        self.figure_image.add_class("p2p-token-figure")
        self.work_view = widgets.HTML()
        self.work_view.add_class("p2p-token-work")
        self.status = widgets.Label()
        self.status.add_class("p2p-status")

        for control in (self.source_text, self.target_text, self.padding_slider):
            control.observe(lambda _change: self.update(), names="value")

        super().__init__(
            [
                self.source_text,
                self.target_text,
                self.padding_slider,
                self.table_view,
                self.figure_image,
                self.work_view,
                self.status,
            ]
        )
        self.add_class("p2p-token-explorer")
        self.update()

    def update(self) -> None:
        """Tokenize the prompts and redraw; a bad prompt is reported in ``status``."""
        prompts = [self.source_text.value]
        if self.target_text.value.strip():
            prompts.append(self.target_text.value)
        try:
            views = tuple(tokenize(prompt) for prompt in prompts)
        except (ValueError, TypeError) as error:  # e.g. PromptTooLongError
            self.error = str(error)
            self.status.value = f"could not tokenize: {error}"
            return
        padding = self.padding_slider.value
        self.views, self.error = views, None
        self.figure = token_table_figure(*views, padding_shown=padding)
        self.figure_image.value = figure_png(self.figure)
        self.table_view.value = token_table_html(*views, padding_shown=padding)
        self.work_view.value = "".join(
            f"<pre>{html.escape(view.show_work())}</pre>" for view in views
        )
        self.status.value = " | ".join(
            f"{view.normalized!r}: {len(view.words)} words, {view.n_used} of {MAX_SLOTS} slots used"
            for view in views
        )
