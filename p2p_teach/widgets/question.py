"""Predict, then check: a multiple-choice question asked before an experiment runs.

The logic lives in :class:`Prediction` (plain data, testable without a browser): the question,
its choices, the answer key and the reason, and :meth:`Prediction.feedback` for a choice. The
widget :class:`PredictQuestion` is a thin view: radio buttons, and after a choice the feedback
with the reason. The experiment in the next cell then shows the measured answer.

    question = PredictQuestion(
        "At full injection, will the star appear?",
        ["yes, at every seed", "no, the heart's outline stays", "only at some seeds"],
        answer=1, reason="the source's maps hold the outline at every step…")
    question

CSS classes (for browser tests): ``p2p-predict`` (the whole widget), ``p2p-predict-choices``,
``p2p-predict-feedback``.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass

import ipywidgets as widgets


@dataclass(frozen=True)
class Feedback:
    """What a learner's choice earns: whether it is right, and the text to show."""

    correct: bool
    text: str


@dataclass(frozen=True)
class Prediction:
    """A question with its choices, the index of the right one and the reason behind it."""

    question: str
    choices: tuple[str, ...]
    answer: int
    reason: str

    def __post_init__(self) -> None:
        if len(self.choices) < 2:
            raise ValueError(f"a question needs at least two choices, got {list(self.choices)}")
        if len(set(self.choices)) != len(self.choices):
            raise ValueError(f"the choices repeat: {list(self.choices)}. Fix: make them differ.")
        if isinstance(self.answer, bool) or not 0 <= self.answer < len(self.choices):
            raise ValueError(
                f"answer={self.answer!r}: the index of the right choice, 0 to "
                f"{len(self.choices) - 1}."
            )

    def feedback(self, choice: int | str) -> Feedback:
        """The feedback for a choice, given by index or by its text."""
        index = self.choices.index(choice) if isinstance(choice, str) else choice
        if not 0 <= index < len(self.choices):
            raise ValueError(f"choice {choice!r} is not one of {list(self.choices)}")
        right = self.choices[self.answer]
        if index == self.answer:
            return Feedback(True, f"Right: {right}. {self.reason} Run the next cell to check.")
        return Feedback(
            False,
            f"Not quite: the answer is '{right}'. {self.reason} Run the next cell and see.",
        )


class PredictQuestion(widgets.VBox):
    """The question, its choices as radio buttons, and the feedback once one is picked.

    Attributes: ``prediction`` (the :class:`Prediction`), ``chosen`` (the last
    :class:`Feedback`, or None), the children ``choice_buttons`` and ``feedback_view``.
    """

    def __init__(self, question: str, choices: Sequence[str], answer: int, reason: str) -> None:
        self.prediction = Prediction(question, tuple(choices), answer, reason)
        self.chosen: Feedback | None = None
        title = widgets.HTML(f"<b>Predict, then check.</b> {html.escape(question)}")
        self.choice_buttons = widgets.RadioButtons(
            options=list(self.prediction.choices), value=None,
            layout=widgets.Layout(width="max-content"),
        )  # fmt: skip
        self.choice_buttons.add_class("p2p-predict-choices")
        self.feedback_view = widgets.HTML()
        self.feedback_view.add_class("p2p-predict-feedback")
        self.choice_buttons.observe(self._on_choice, names="value")
        super().__init__([title, self.choice_buttons, self.feedback_view])
        self.add_class("p2p-predict")

    def choose(self, choice: int | str) -> Feedback:
        """Pick a choice (as a click does) and return its feedback."""
        text = self.prediction.choices[choice] if isinstance(choice, int) else choice
        self.choice_buttons.value = text
        assert self.chosen is not None
        return self.chosen

    def _on_choice(self, change: dict) -> None:
        if change["new"] is None:
            return
        self.chosen = self.prediction.feedback(change["new"])
        colour = "#1a7f37" if self.chosen.correct else "#b35900"
        self.feedback_view.value = (
            f'<span style="color:{colour}">{html.escape(self.chosen.text)}</span>'
        )
