"""The mapper explorer: pick a slide example or type two prompts, switch the rule, zoom.

A view over :func:`p2p_teach.mapper.word_swap_mapper` and :mod:`p2p_teach.figures.mapper`; it
holds no logic beyond wiring. When the prompts have different numbers of words, it says why
a word swap does not apply and shows their refinement alignment instead.

Stable attributes (for tests and notebooks): ``mapper`` (the current WordSwapMapper or None),
``alignment`` (the refinement alignment when the word counts differ, else None), ``figure``
(the current Figure), ``error``; the children ``preset_dropdown``, ``source_text``,
``target_text``, ``rule_buttons``, ``view_buttons``, ``text_view``, ``figure_image``,
``status``.

CSS classes (for browser tests): ``p2p-mapper-explorer`` (the whole widget),
``p2p-mapper-preset``, ``p2p-mapper-source``, ``p2p-mapper-target``, ``p2p-mapper-rule``,
``p2p-mapper-view``, ``p2p-mapper-text``, ``p2p-mapper-figure``, ``p2p-status``.
"""

from __future__ import annotations

import html

import ipywidgets as widgets
from matplotlib.figure import Figure

from ..alignment import RefinementAlignment, format_alignment, refinement_alignment
from ..figures.images import figure_png
from ..figures.mapper import alignment_figure, mapper_figure
from ..mapper import (
    EXAMPLES,
    RULES,
    WordCountMismatchError,
    WordSwapMapper,
    format_mapper,
    word_swap_mapper,
)
from .common import check_choice

CUSTOM = "(your own prompts)"
VIEWS = {"zoom": "zoom", "zoom + full 77×77": "both", "full 77×77": "full"}


class MapperExplorer(widgets.VBox):
    """Preset dropdown, two prompt boxes, rule and view toggles, the mapper as text and figure."""

    def __init__(self, preset: str = next(iter(EXAMPLES)), rule: str = "course") -> None:
        check_choice("rule", rule, list(RULES))
        check_choice("preset", preset, [*EXAMPLES, CUSTOM])
        self.mapper: WordSwapMapper | None = None
        self.alignment: RefinementAlignment | None = None
        self.figure: Figure | None = None
        self.error: str | None = None
        self._applying_preset = False

        source, target = EXAMPLES.get(preset, ("A lion eating", "A hippopotamus eating"))
        self.preset_dropdown = widgets.Dropdown(
            options=[*EXAMPLES, CUSTOM], value=preset if preset in EXAMPLES else CUSTOM,
            description="example", layout=widgets.Layout(width="70%"),
        )
        self.preset_dropdown.add_class("p2p-mapper-preset")
        self.source_text = widgets.Text(
            value=source, description="source", continuous_update=False,
            layout=widgets.Layout(width="60%"),
        )
        self.source_text.add_class("p2p-mapper-source")
        self.target_text = widgets.Text(
            value=target, description="target", continuous_update=False,
            layout=widgets.Layout(width="60%"),
        )
        self.target_text.add_class("p2p-mapper-target")
        self.rule_buttons = widgets.ToggleButtons(
            options=list(RULES), value=rule, description="rule",
            tooltips=["the course's rule (slides)", "the original Prompt-to-Prompt code"],
        )
        self.rule_buttons.add_class("p2p-mapper-rule")
        self.view_buttons = widgets.ToggleButtons(
            options=list(VIEWS), value="zoom", description="show"
        )
        self.view_buttons.add_class("p2p-mapper-view")
        self.text_view = widgets.HTML()
        self.text_view.add_class("p2p-mapper-text")
        self.figure_image = widgets.Image(format="png")
        self.figure_image.layout.max_width = "100%"
        self.figure_image.add_class("p2p-mapper-figure")
        self.status = widgets.Label()
        self.status.add_class("p2p-status")

        self.preset_dropdown.observe(lambda change: self._apply_preset(change["new"]), "value")
        for control in (self.source_text, self.target_text):
            control.observe(lambda _change: self._prompts_edited(), names="value")
        for control in (self.rule_buttons, self.view_buttons):
            control.observe(lambda _change: self.update(), names="value")

        super().__init__(
            [
                self.preset_dropdown,
                self.source_text,
                self.target_text,
                self.rule_buttons,
                self.view_buttons,
                self.figure_image,
                self.text_view,
                self.status,
            ]
        )
        self.add_class("p2p-mapper-explorer")
        self.update()

    def _apply_preset(self, name: str) -> None:
        if name not in EXAMPLES:
            return
        self._applying_preset = True  # set both prompts, then redraw once
        try:
            self.source_text.value, self.target_text.value = EXAMPLES[name]
        finally:
            self._applying_preset = False
        self.update()

    def _prompts_edited(self) -> None:
        if self._applying_preset:
            return
        pair = (self.source_text.value, self.target_text.value)
        self.preset_dropdown.value = next(
            (name for name, example in EXAMPLES.items() if example == pair), CUSTOM
        )
        self.update()

    def update(self) -> None:
        """Build the mapper for the current prompts and rule and redraw."""
        source, target = self.source_text.value, self.target_text.value
        try:
            mapper = word_swap_mapper(source, target, rule=self.rule_buttons.value)
        except WordCountMismatchError as error:
            self._show_alignment(source, target, str(error))
            return
        except (ValueError, TypeError) as error:  # e.g. a prompt longer than 77 slots
            self.mapper, self.alignment, self.error = None, None, str(error)
            self.status.value = f"could not build the mapper: {error}"
            return
        self.mapper, self.alignment, self.error = mapper, None, None
        self.figure = mapper_figure(mapper, view=VIEWS[self.view_buttons.value])  # type: ignore[arg-type]
        self.figure_image.value = figure_png(self.figure)
        self.text_view.value = f"<pre>{html.escape(format_mapper(mapper))}</pre>"
        cases = ", ".join(f"{s.source_text} → {s.target_text}: {s.case}"
                          for s in mapper.swaps)
        self.status.value = f"{mapper.rule} rule; swaps: {cases or 'none'}"

    def _show_alignment(self, source: str, target: str, message: str) -> None:
        try:
            alignment = refinement_alignment(source, target)
        except (ValueError, TypeError) as error:
            self.mapper, self.alignment, self.error = None, None, str(error)
            self.status.value = f"could not tokenize: {error}"
            return
        self.mapper, self.alignment, self.error = None, alignment, message
        self.figure = alignment_figure(alignment)
        self.figure_image.value = figure_png(self.figure)
        self.text_view.value = (
            f"<p>{html.escape(message)}</p>"
            f"<pre>{html.escape(format_alignment(alignment))}</pre>"
        )
        self.status.value = "no word swap: different word counts; showing the refinement alignment"
