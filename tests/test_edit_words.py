"""Edits that name words act on every copy of the word, and on the word proper only."""

from __future__ import annotations

import pytest
import torch

from p2p_teach.edits import LocalBlend, Replace, Reweight
from p2p_teach.schedules import resolve_schedule
from p2p_teach.tokens import MAX_SLOTS, WordNotFoundError, tokenize

SOURCE = tokenize("a red car beside a red house.")
TARGET = tokenize("a blue car beside a blue house.")


def _slots_of(view, text):
    """Slots whose piece is ``text``: an independent reading of the slot table."""
    return [slot.index for slot in view.slots if slot.kind == "word" and slot.text == text]


def test_reweight_scales_every_copy_of_the_word_and_not_its_punctuation():
    plan = Reweight({"blue": 3.0, "house": 2.0}, base=Replace()).resolve(SOURCE, TARGET)
    expected = torch.ones(MAX_SLOTS)
    expected[_slots_of(TARGET, "blue")] = 3.0  # both copies
    expected[_slots_of(TARGET, "house")] = 2.0  # "house." without its "."
    assert _slots_of(TARGET, ".") and plan.weights[_slots_of(TARGET, ".")[0]] == 1.0
    assert torch.equal(plan.weights, expected)


def test_local_blend_reads_every_copy_of_its_words():
    plan = LocalBlend("red", "blue").resolve(SOURCE, TARGET, num_steps=10)
    assert list(plan.source_slots) == _slots_of(SOURCE, "red")
    assert list(plan.target_slots) == _slots_of(TARGET, "blue")
    assert len(plan.source_slots) == 2


def test_per_word_cross_window_covers_every_copy_and_not_the_punctuation():
    schedule = resolve_schedule({"default": 1.0, "blue": 0.5, "house": 0.0}, 0.0, 4, TARGET)
    for slot in range(MAX_SLOTS):
        if slot in _slots_of(TARGET, "blue"):
            expected = [1, 1, 0, 0]
        elif slot in _slots_of(TARGET, "house"):
            expected = [0, 0, 0, 0]
        else:
            expected = [1, 1, 1, 1]  # the default, "." of "house." included
        assert schedule.cross[:, slot].tolist() == expected, slot


def test_per_word_key_of_the_source_only_says_windows_are_target_words():
    with pytest.raises(WordNotFoundError, match="not a word of the target prompt.*'default'"):
        resolve_schedule({"red": 0.5}, 0.0, 4, TARGET)


def test_replace_refuses_an_unknown_rule_when_made():
    with pytest.raises(ValueError, match=r"one of \['course', 'original'\].*Fix"):
        Replace(rule="paper")
    assert Replace(rule="original").describe() == {"kind": "replace", "rule": "original"}


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"threshold": True}, "threshold=True"),
        ({"threshold": 1.5}, "threshold=1.5"),
        ({"resolution": True}, "resolution=True"),
        ({"resolution": 0}, "resolution=0"),
        ({"start": True}, "start=True"),
    ],
)
def test_local_blend_refuses_bools_and_out_of_range_numbers(settings, message):
    with pytest.raises(ValueError, match=message):
        LocalBlend("red", "blue", **settings).resolve(SOURCE, TARGET, num_steps=10)


def test_a_word_named_by_text_and_by_index_counts_once_in_a_blend():
    source = tokenize("a cat and a cat")
    plan = LocalBlend(["cat", 1], "cat").resolve(source, source, num_steps=4)
    assert list(plan.source_slots) == _slots_of(source, "cat")  # [2, 5], each once


def test_combining_marks_belong_to_the_word_proper():
    view = tokenize("a fox\u0301 here")  # x + acute has no precomposed form: it stays a mark
    assert view.pretokens == ("a", "fox", "\u0301", "here")  # CLIP splits the mark off
    fox = view.words[1]
    assert fox.edges == ("", "") and fox.core == fox.slots and fox.core_text == "fox\u0301"
