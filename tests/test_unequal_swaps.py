"""Word swaps whose words differ in piece count get a window of their own; others do not."""

from __future__ import annotations

import pytest
import torch

from p2p_teach.edits import Refine, Replace, Reweight
from p2p_teach.engine import edit
from p2p_teach.schedules import resolve_schedule, window_steps
from p2p_teach.tokens import tokenize

PINK = tokenize("a big pink circle")
CHARTREUSE = tokenize("a big chartreuse circle")  # char·tre·use: 1-to-3
BLUE = tokenize("a big blue circle")


def _word_slots(view, word):
    found = view.find_word(word)
    return list(range(found.core_start, found.core_stop))


def test_equal_piece_counts_keep_cross_steps_as_given():
    for cross in (0.8, (0.1, 0.9), {"default": 0.5, "blue": 0.2}):
        assert Replace().cross_windows(cross, PINK, BLUE) is cross


@pytest.mark.parametrize(("source", "target", "word"), [
    (PINK, CHARTREUSE, "chartreuse"), (CHARTREUSE, PINK, "pink"),
    (tokenize("a cyan star"), tokenize("a chartreuse star"), "chartreuse"),
])  # fmt: skip
def test_unequal_swap_word_takes_its_share_of_the_default_window(source, target, word):
    windows = Replace(unequal_share=0.5).cross_windows((0.2, 0.8), source, target)
    assert windows == {"default": (0.2, 0.8), word: pytest.approx((0.2, 0.5))}
    schedule = resolve_schedule(windows, 0.0, 10, target)
    slots = _word_slots(target, word)
    expected = torch.zeros(10)
    expected[2:5] = 1.0  # floor(0.2·10) ≤ k < floor(0.5·10)
    for slot in slots:
        assert torch.equal(schedule.cross[:, slot], expected)
    other = target.find_word("a").core_start
    steps = torch.arange(10)
    assert torch.equal(schedule.cross[:, other], ((steps >= 2) & (steps < 8)).float())


def test_a_window_named_by_the_user_wins_and_none_turns_it_off():
    named = {"default": 0.8, "Chartreuse": 0.3}
    assert Replace().cross_windows(named, PINK, CHARTREUSE)["Chartreuse"] == (0.0, 0.3)
    assert "chartreuse" not in Replace().cross_windows(named, PINK, CHARTREUSE)
    assert Replace(unequal_share=None).cross_windows(0.8, PINK, CHARTREUSE) == 0.8


def test_default_share_injects_the_new_word_over_the_first_quarter_of_the_window():
    windows = Replace().cross_windows(0.8, PINK, CHARTREUSE)
    assert window_steps(windows["chartreuse"], 25) == range(0, 5)  # of the default's 20


def test_reweight_follows_its_base_and_refine_adds_nothing():
    reweight = Reweight({"chartreuse": 2.0}, base=Replace(unequal_share=0.25))
    assert reweight.cross_windows(0.8, PINK, CHARTREUSE)["chartreuse"] == (0.0, 0.2)
    assert Reweight({"pink": 2.0}).cross_windows(0.8, PINK, PINK) == 0.8
    assert Refine().cross_windows(0.8, PINK, tokenize("a big pink circle on the left")) == 0.8


@pytest.mark.parametrize("share", [-0.1, 1.5, True, "half"])
def test_bad_share_is_refused_with_the_fix(share):
    with pytest.raises(ValueError, match="unequal_share"):
        Replace(unequal_share=share)


def test_edit_records_the_word_window_and_one_to_one_edits_are_unchanged(pipe):
    unequal = edit(pipe, "a big pink circle", "a big chartreuse circle", steps=4, seed=3,
                   progress=False, record="none")  # fmt: skip
    assert unequal.settings["cross_steps"]["chartreuse"] == [0.0, 0.2]
    assert unequal.settings["edit"] == {"kind": "replace", "rule": "course"}  # the default
    old = edit(pipe, "a big pink circle", "a big chartreuse circle", steps=4, seed=3,
               progress=False, record="none", edit=Replace(unequal_share=None))  # fmt: skip
    assert "chartreuse" not in old.settings["cross_steps"]
    assert old.settings["edit"]["unequal_share"] is None
    assert not torch.equal(unequal.latents, old.latents)  # the window changed the edit
    equal_default = edit(pipe, "a big pink circle", "a big blue circle", steps=4, seed=3,
                         progress=False, record="none")  # fmt: skip
    equal_off = edit(pipe, "a big pink circle", "a big blue circle", steps=4, seed=3,
                     progress=False, record="none", edit=Replace(unequal_share=None))  # fmt: skip
    assert torch.equal(equal_default.latents, equal_off.latents)
    assert equal_default.settings["cross_steps"] == {"default": [0.0, 0.8]}
