"""Injection schedules: windows, per-word tables, self-injection limit, and clear errors."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from p2p_teach.schedules import (
    ScheduleError,
    parse_window,
    resolve_schedule,
    self_injection_max_side,
    window_steps,
)
from p2p_teach.tokens import WordNotFoundError, tokenize

TARGET = tokenize("photo of a cat riding on a motorcycle")


def test_fraction_injects_the_first_steps():
    schedule = resolve_schedule(0.8, 0.4, 10, TARGET)
    expected = torch.zeros(10, 77)
    expected[:8] = 1.0  # steps 0–7 of 10
    assert torch.equal(schedule.cross, expected)
    assert schedule.self_.tolist() == [True] * 4 + [False] * 6


def test_pair_window_and_floor_rounding():
    schedule = resolve_schedule((0.2, 0.6), (0.1, 0.3), 10, TARGET)
    assert schedule.cross[:, 0].tolist() == [0, 0, 1, 1, 1, 1, 0, 0, 0, 0]
    assert schedule.self_.nonzero().flatten().tolist() == [1, 2]
    # 0.29 · 100 is 28.999999999999996 in floating point: still 29 steps
    assert len(window_steps((0.0, 0.29), 100)) == 29
    assert window_steps((0.0, 0.4), 25) == range(0, 10)


def test_per_word_windows_override_the_default_on_the_word_slots():
    schedule = resolve_schedule({"default": 0.5, "motorcycle": (0.0, 1.0)}, 0.0, 4, TARGET)
    word = TARGET.find_word("motorcycle")
    for step in range(4):
        for slot in range(77):
            expected = 1.0 if (slot in word.slots or step < 2) else 0.0
            assert schedule.cross[step, slot] == expected, (step, slot)
    assert not schedule.self_.any()


def test_a_dict_without_default_injects_other_slots_at_every_step():
    schedule = resolve_schedule({"motorcycle": 0.25}, 0.0, 4, TARGET)
    word = TARGET.find_word("motorcycle")
    assert schedule.cross[:, 0].tolist() == [1, 1, 1, 1]
    assert schedule.cross[:, word.start].tolist() == [1, 0, 0, 0]
    assert schedule.cross_windows["default"] == (0.0, 1.0)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (1.3, "fractions must lie in [0, 1]"),
        (-0.1, "fractions must lie in [0, 1]"),
        ((0.6, 0.2), "start 0.6 comes after the end 0.2"),
        ("most", "give a fraction"),
        (True, "give a fraction"),
        ((0.1, 0.2, 0.3), "give a fraction"),
        (float("nan"), "fractions must lie in [0, 1]"),
    ],
)
def test_bad_windows_say_how_to_fix_them(value, message):
    with pytest.raises(ScheduleError) as error:
        parse_window(value, "cross_steps")
    assert message in str(error.value)
    assert "Fix:" in str(error.value)


def test_errors_name_the_setting():
    with pytest.raises(ScheduleError, match=r"self_steps=1\.5"):
        resolve_schedule(0.8, 1.5, 10, TARGET)
    with pytest.raises(ScheduleError, match=r"cross_steps\['motorcycle'\]"):
        resolve_schedule({"motorcycle": (0.9, 0.1)}, 0.4, 10, TARGET)


@pytest.mark.parametrize("steps", [0, -3, 2.5, True, "25"])
def test_step_count_must_be_a_whole_number_at_least_one(steps):
    with pytest.raises(ScheduleError, match="steps="):
        resolve_schedule(0.8, 0.4, steps, TARGET)


def test_unknown_per_word_key_lists_the_prompt_words():
    with pytest.raises(WordNotFoundError) as error:
        resolve_schedule({"bicycle": 0.5}, 0.4, 10, TARGET)
    assert "motorcycle" in str(error.value) and "riding" in str(error.value)


def test_self_injection_limit_follows_the_latent_size():
    assert self_injection_max_side(64) == 16  # SD v1 at 512²: the original's 16×16
    assert self_injection_max_side(96) == 24  # SD at 768²
    assert self_injection_max_side(16) == 4  # the built-in model
    assert self_injection_max_side(16, 1.0) == 16
    with pytest.raises(ScheduleError, match="self_max_ratio"):
        self_injection_max_side(64, 0.0)


@settings(max_examples=200, deadline=None)
@given(
    start=st.integers(0, 1000), length=st.integers(0, 1000), num_steps=st.integers(1, 200)
)
def test_windows_cover_floor_start_to_floor_end(start, length, num_steps):
    end = min(1000, start + length)
    covered = window_steps((start / 1000, end / 1000), num_steps)
    # exact integer arithmetic as the independent reference
    assert covered == range(start * num_steps // 1000, end * num_steps // 1000)
