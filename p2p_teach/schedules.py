"""Injection schedules: at which denoising steps the source's attention replaces the target's.

Prompt-to-Prompt injects the source's attention maps into the target only during part of the
denoising: the layout is fixed in the early steps, and the late steps are left free so that the
target's own details appear (the recitation's "Injection Step" slides). Two schedules:

* **cross-attention** (``cross_steps``): a fraction ``0.8`` (the first 80 % of the steps), a
  ``(start, end)`` pair of fractions, or a per-word dict such as
  ``{"default": 0.8, "motorcycle": (0.0, 0.4)}`` whose words are words of the *target* prompt
  (a missing ``"default"`` means ``(0, 1)``: every step, as in the original code);
* **self-attention** (``self_steps``): a fraction or a ``(start, end)`` pair.

A window ``(start, end)`` of fractions covers the steps ``k`` with
``floor(start·T) ≤ k < floor(end·T)`` for ``T`` denoising steps, for both schedules, so one
fraction means the same steps for both. The original code rounds self-attention this way; for
cross-attention its table has ``T + 1`` rows and it rounds ``f·(T + 1)`` down, which is one step
more for some ``(T, f)`` (``T = 25, f = 0.5``: 13 steps there, 12 here; ``f = 0.8`` gives 20 in
both at 25 steps and 40 in both at 50).
Self-attention is injected only in layers of a coarse resolution: the original does it at
≤ 16×16 for SD's 64×64 latent, a quarter of the latent's side, and
:func:`self_injection_max_side` keeps that ratio for any model.

:func:`resolve_schedule` turns the settings into per-step tables, computed once before the
loop: ``cross`` of shape ``(T, 77)`` (the α of every target slot at every step) and
``self_`` of shape ``(T,)`` (inject self-attention or not).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from numbers import Real

import torch

from .defaults import SD_V1
from .tokens import MAX_SLOTS, TokenView, Word, WordNotFoundError

Window = tuple[float, float]
StepFraction = float | tuple[float, float]
CrossSteps = StepFraction | Mapping[str, StepFraction]
SelfSteps = StepFraction

DEFAULT_KEYS = ("default", "default_")  # "default_" is the original code's spelling
DEFAULT_SELF_RATIO = SD_V1.self_max_ratio  # the original's: ≤ 16×16 of a 64×64 latent
DEFAULT_SELF_STEPS = SD_V1.self_steps  # the original's self_replace_steps for SD v1 word swaps
_ROUNDING_GUARD = 1e-9  # 0.29 · 100 is 28.999999999999996 in floating point; count it as 29


class ScheduleError(ValueError):
    """An injection schedule that cannot be used; the message says how to fix it."""


def parse_window(value: StepFraction, name: str) -> Window:
    """Validate a fraction or a ``(start, end)`` pair and return it as a pair.

    Raises:
        ScheduleError: not a number or a pair of numbers, outside [0, 1], or start > end.
    """
    example = f"{name}=0.8 or {name}=(0.0, 0.8)"
    if isinstance(value, Real) and not isinstance(value, bool):
        start, end = 0.0, float(value)
    elif (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and all(isinstance(v, Real) and not isinstance(v, bool) for v in value)
    ):
        start, end = float(value[0]), float(value[1])
    else:
        raise ScheduleError(
            f"{name}={value!r}: give a fraction of the denoising steps or a (start, end) pair "
            f"of fractions. Fix: e.g. {example}."
        )
    for fraction in (start, end):
        if not (math.isfinite(fraction) and 0.0 <= fraction <= 1.0):
            raise ScheduleError(
                f"{name}={value!r}: fractions must lie in [0, 1] (shares of the denoising "
                f"steps), got {fraction}. Fix: e.g. {example}."
            )
    if start > end:
        raise ScheduleError(
            f"{name}={value!r}: the start {start} comes after the end {end}. Fix: give "
            f"(start, end) with start ≤ end, e.g. {name}=({end}, {start})."
        )
    return start, end


def window_steps(window: Window, num_steps: int) -> range:
    """The step indices a window covers: ``floor(start·T) ≤ k < floor(end·T)``."""
    start = math.floor(window[0] * num_steps + _ROUNDING_GUARD)
    end = math.floor(window[1] * num_steps + _ROUNDING_GUARD)
    return range(start, end)


def parse_cross_steps(cross_steps: CrossSteps) -> dict[str, Window]:
    """Normalise ``cross_steps`` to ``{"default": window, word: window, ...}``."""
    if not isinstance(cross_steps, Mapping):
        return {"default": parse_window(cross_steps, "cross_steps")}
    windows: dict[str, Window] = {"default": (0.0, 1.0)}
    for key, value in cross_steps.items():
        if not isinstance(key, str):
            raise ScheduleError(
                f"cross_steps keys must be words of the target prompt or 'default', not {key!r}"
            )
        label = "default" if key in DEFAULT_KEYS else key
        windows[label] = parse_window(value, f"cross_steps[{key!r}]")
    return windows


def self_injection_max_side(latent_side: int, ratio: float = DEFAULT_SELF_RATIO) -> int:
    """The largest attention side (in latent pixels) where self-attention is injected.

    The original injects self-attention only in layers of at most 16×16 on SD's 64×64 latent;
    ``ratio`` (default 1/4) keeps that proportion for any latent size.
    """
    if not (isinstance(ratio, Real) and 0.0 < ratio <= 1.0):
        raise ScheduleError(
            f"self_max_ratio={ratio!r}: it is the largest self-injected attention side as a "
            "share of the latent's side, in (0, 1]. Fix: e.g. self_max_ratio=0.25 (the "
            "original's 16×16 of a 64×64 latent)."
        )
    return max(1, math.floor(latent_side * ratio + _ROUNDING_GUARD))


@dataclass(frozen=True)
class InjectionSchedule:
    """Per-step injection tables for one edit with ``num_steps`` denoising steps.

    Attributes:
        num_steps: T, the number of denoising steps.
        cross: (T, 77) float32; ``cross[k, j]`` is α of target slot ``j`` at step ``k`` (1: the
            slot takes the source's map, 0: it keeps its own).
        self_: (T,) bool; inject self-attention at step ``k``.
        cross_windows: the normalised cross windows, ``{"default": (s, e), word: (s, e)}``.
        self_window: the normalised self window.
    """

    num_steps: int
    cross: torch.Tensor = field(repr=False)
    self_: torch.Tensor = field(repr=False)
    cross_windows: dict[str, Window]
    self_window: Window

    def to_json(self) -> dict:
        """The windows as JSON-ready data (lists for pairs)."""
        return {
            "cross_steps": {word: list(window) for word, window in self.cross_windows.items()},
            "self_steps": list(self.self_window),
            "cross_step_ranges": {
                word: [r.start, r.stop]
                for word, window in self.cross_windows.items()
                for r in [window_steps(window, self.num_steps)]
            },
            "self_step_range": [
                window_steps(self.self_window, self.num_steps).start,
                window_steps(self.self_window, self.num_steps).stop,
            ],
        }


def check_num_steps(num_steps: object) -> int:
    """``num_steps`` as an int ≥ 1, or a :class:`ScheduleError` naming the fix."""
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
        raise ScheduleError(
            f"steps={num_steps!r}: the number of denoising steps must be a whole number ≥ 1. "
            "Fix: e.g. steps=25 (50 is Stable Diffusion's usual setting)."
        )
    return num_steps


def resolve_schedule(
    cross_steps: CrossSteps,
    self_steps: SelfSteps,
    num_steps: int,
    target: TokenView,
) -> InjectionSchedule:
    """Validate the schedules and resolve them to per-step tables.

    Args:
        cross_steps: fraction, ``(start, end)``, or per-word dict with an optional
            ``"default"`` (words of the target prompt).
        self_steps: fraction or ``(start, end)``.
        num_steps: the number of denoising steps T (≥ 1).
        target: the target prompt's token view (for per-word windows).

    Raises:
        ScheduleError: a bad fraction, pair or step count.
        p2p_teach.tokens.WordNotFoundError: a per-word key is not a word of the target prompt
            (the message lists the prompt's words).
    """
    num_steps = check_num_steps(num_steps)
    cross_windows = parse_cross_steps(cross_steps)
    self_window = parse_window(self_steps, "self_steps")

    cross = torch.zeros(num_steps, MAX_SLOTS)  # (T, 77 target slots)
    default = window_steps(cross_windows["default"], num_steps)
    cross[default.start : default.stop, :] = 1.0
    for word_text, window in cross_windows.items():
        if word_text == "default":
            continue
        steps = window_steps(window, num_steps)
        for word in _target_words(target, word_text):  # every copy of the word
            cross[:, word.core_start : word.core_stop] = 0.0  # the word proper, not its ","
            cross[steps.start : steps.stop, word.core_start : word.core_stop] = 1.0

    self_ = torch.zeros(num_steps, dtype=torch.bool)  # (T,)
    self_range = window_steps(self_window, num_steps)
    self_[self_range.start : self_range.stop] = True
    return InjectionSchedule(num_steps, cross, self_, cross_windows, self_window)


def _target_words(target: TokenView, word_text: str) -> tuple[Word, ...]:
    """The copies of a per-word ``cross_steps`` key in the target prompt."""
    try:
        return target.find_words(word_text)
    except WordNotFoundError as error:
        raise WordNotFoundError(
            f"cross_steps key {word_text!r} is not a word of the target prompt "
            f"{target.prompt!r} (per-word windows act on the target's maps); its words are "
            f"{[w.text for w in target.words]}. Fix: use one of those words, or 'default'."
        ) from error
