"""Predict, then check: the question's answer key, feedback and widget wiring."""

from __future__ import annotations

import pytest

from p2p_teach.widgets.question import Prediction, PredictQuestion

CHOICES = ("the star", "the heart", "something between")


def test_feedback_says_right_or_names_the_answer_with_the_reason():
    prediction = Prediction("At full injection, which outline?", CHOICES, 1, "The maps hold it.")
    right = prediction.feedback(1)
    assert right.correct and "The maps hold it." in right.text
    wrong = prediction.feedback("the star")
    assert not wrong.correct
    assert "'the heart'" in wrong.text and "The maps hold it." in wrong.text


@pytest.mark.parametrize(("choices", "answer", "message"), [
    (("only one",), 0, "at least two"),
    (("a", "a"), 0, "repeat"),
    (CHOICES, 3, "index of the right choice"),
    (CHOICES, True, "index of the right choice"),
])  # fmt: skip
def test_bad_questions_are_refused(choices, answer, message):
    with pytest.raises(ValueError, match=message):
        Prediction("?", choices, answer, "")


def test_unknown_choice_is_refused():
    with pytest.raises(ValueError, match="not one of"):
        Prediction("?", CHOICES, 0, "").feedback(7)


def test_widget_shows_no_feedback_until_a_choice_then_the_reason():
    question = PredictQuestion("Which outline?", CHOICES, 1, "The maps hold it.")
    assert question.chosen is None and question.feedback_view.value == ""
    feedback = question.choose(0)
    assert not feedback.correct and question.chosen == feedback
    assert "The maps hold it." in question.feedback_view.value
    question.choice_buttons.value = "the heart"  # as a click does
    assert question.chosen.correct and "Right" in question.feedback_view.value
