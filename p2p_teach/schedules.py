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
fraction means the same steps for both.

The original code counts differently (``conventions="original"`` in
:func:`p2p_teach.engine.edit` reproduces it, :func:`resolve_original_schedule`): its windows
index *UNet calls*, not denoising steps. Its cross-attention table has ``T + 1`` rows and a
window covers the calls ``int(start·(T + 1)) ≤ c < int(end·(T + 1))``; its self-attention
window covers ``int(start·T) ≤ c < int(end·T)``. With one UNet call per step (DDIM, Euler, …)
calls are steps, and the two counts differ only by the ``T + 1`` rounding (``T = 25,
f = 0.5``: 13 steps there, 12 here; ``f = 0.8`` gives 20 in both at 25 steps and 40 in both
at 50). With PNDM, Stable Diffusion's default, the first step makes two UNet calls, so every
window ending after it covers one step less there: ``0.8`` of 25 steps injects 19 denoising
steps there and 20 here, and self-attention's ``0.4`` 9 steps there and 10 here.
Self-attention is injected only in layers of a coarse resolution: the original does it at
≤ 16×16 for SD's 64×64 latent, a quarter of the latent's side, and
:func:`self_injection_max_side` keeps that ratio for any model.

:func:`resolve_schedule` turns the settings into per-step tables, computed once before the
loop: ``cross`` of shape ``(T, 77)`` (the α of every target slot at every step) and
``self_`` of shape ``(T,)`` (inject self-attention or not).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from numbers import Integral, Real
from typing import Any, Literal

import torch

from .defaults import SD_V1
from .tokens import MAX_SLOTS, TokenView, Word, WordNotFoundError

Window = tuple[float, float]
Conventions = Literal["p2p_teach", "original"]
CONVENTIONS: tuple[Conventions, ...] = ("p2p_teach", "original")
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
        cross: (rows, 77) float32; ``cross[k, j]`` is α of target slot ``j`` at row ``k`` (1:
            the slot takes the source's map, 0: it keeps its own).
        self_: (rows,) bool; inject self-attention at row ``k``.
        cross_windows: the normalised cross windows, ``{"default": (s, e), word: (s, e)}``.
        self_window: the normalised self window.
        rows: ``"step"`` (row k is denoising step k: T rows, this toolkit's count) or
            ``"call"`` (row c is the c-th UNet call, the original code's count).
    """

    num_steps: int
    cross: torch.Tensor = field(repr=False)
    self_: torch.Tensor = field(repr=False)
    cross_windows: dict[str, Window]
    self_window: Window
    rows: Literal["step", "call"] = "step"

    def to_json(self) -> dict:
        """The windows as JSON-ready data (lists for pairs), with the rows they cover: steps,
        or UNet calls for the original's count (``rows == "call"``)."""
        if self.rows == "call":
            cross_rows, self_rows = original_cross_calls, original_self_calls
        else:
            cross_rows = self_rows = window_steps
        return {
            "cross_steps": {word: list(window) for word, window in self.cross_windows.items()},
            "self_steps": list(self.self_window),
            "cross_step_ranges": {
                word: _bounds(cross_rows(window, self.num_steps))
                for word, window in self.cross_windows.items()
            },
            "self_step_range": _bounds(self_rows(self.self_window, self.num_steps)),
        }


def _bounds(covered: range) -> list[int]:
    return [covered.start, covered.stop]


def check_num_steps(num_steps: object) -> int:
    """``num_steps`` as an int ≥ 1 (numpy integers too), or a :class:`ScheduleError`."""
    if isinstance(num_steps, bool) or not isinstance(num_steps, Integral) or num_steps < 1:
        raise ScheduleError(
            f"steps={num_steps!r}: the number of denoising steps must be a whole number ≥ 1. "
            "Fix: e.g. steps=25 (50 is Stable Diffusion's usual setting)."
        )
    return int(num_steps)


def _step_timesteps(scheduler: Any, num_steps: int) -> list[float] | None:
    """The timestep of each step's first UNet call on a copy of ``scheduler``, or None when
    the scheduler refuses the count or evaluates more than once per step."""
    trial = copy.deepcopy(scheduler)
    try:
        trial.set_timesteps(num_steps, device="cpu")
    except (ValueError, IndexError):
        return None
    timesteps = [float(t) for t in trial.timesteps]
    if len(timesteps) == num_steps + 1 and type(scheduler).__name__ == "PNDMScheduler":
        return [timesteps[0], *timesteps[2:]]  # PLMS's first step: two calls, one step
    return timesteps if len(timesteps) == num_steps else None


def _steps_fit(scheduler: Any, num_steps: int, train_steps: int) -> bool:
    timesteps = _step_timesteps(scheduler, num_steps)
    return (
        timesteps is not None
        and all(0 <= t <= train_steps - 1 for t in timesteps)
        and all(later < earlier for earlier, later in zip(timesteps, timesteps[1:]))
    )


def check_scheduler_steps(scheduler: Any, num_steps: int) -> int:
    """Refuse more steps than ``scheduler`` can give distinct timesteps for.

    A scheduler trained on T timesteps (``num_train_timesteps``, 1000 for Stable Diffusion)
    has at most T distinct ones: with more steps PNDM repeats timestep 1 for every step (a
    meaningless result, and a planning that never ends), and with steps_offset it can step to
    timestep T, which does not exist (an IndexError deep in the scheduler). Checks on a copy;
    the scheduler is not changed. Schedulers without ``num_train_timesteps`` are not checked.

    Returns:
        ``num_steps``, when the scheduler can take them.

    Raises:
        ScheduleError: the steps it can take, and the fix.
    """
    config = getattr(scheduler, "config", None) or {}
    train_steps = config.get("num_train_timesteps")
    if not isinstance(train_steps, int) or not hasattr(scheduler, "set_timesteps"):
        return num_steps
    if num_steps <= train_steps:  # more are never possible: no timesteps computed for them
        if _steps_fit(scheduler, num_steps, train_steps):
            return num_steps
        if _step_timesteps(scheduler, num_steps) is None:
            return num_steps  # a multi-evaluation scheduler: the engine says it is unsupported
    largest = min(num_steps, train_steps)
    for _ in range(64):  # the limit is within a step or two of T (steps_offset)
        if largest < 1 or _steps_fit(scheduler, largest, train_steps):
            break
        largest -= 1
    name = type(scheduler).__name__
    raise ScheduleError(
        f"steps={num_steps}: {name} can take at most {largest} steps here (its model was "
        f"trained on {train_steps} timesteps, and each step needs its own; with {num_steps} "
        "steps timesteps would repeat or fall outside the trained range). Fix: "
        f"steps={largest} or fewer (25–50 is usual)."
    )


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


# --------------------------------------------------------------------------------------------
# The original code's count: windows over UNet calls
# --------------------------------------------------------------------------------------------


def original_cross_calls(window: Window, num_steps: int) -> range:
    """The UNet calls the original code injects cross-attention in.

    Its table (``ptp_utils.get_time_words_attention_alpha``) has ``T + 1`` rows, read by a
    counter of UNet calls: a window covers ``int(start·(T + 1)) ≤ c < int(end·(T + 1))``,
    computed in floating point without rounding guard, as the original does.
    """
    rows = num_steps + 1
    return range(int(window[0] * rows), int(window[1] * rows))


def original_self_calls(window: Window, num_steps: int) -> range:
    """The UNet calls the original code injects self-attention in:
    ``int(start·T) ≤ c < int(end·T)`` (``AttentionControlEdit.num_self_replace``)."""
    return range(int(window[0] * num_steps), int(window[1] * num_steps))


def resolve_original_schedule(
    cross_steps: CrossSteps,
    self_steps: SelfSteps,
    num_steps: int,
    num_calls: int,
    target: TokenView,
) -> InjectionSchedule:
    """The original code's injection tables, one row per UNet call (``rows="call"``).

    Args:
        cross_steps, self_steps, target: as :func:`resolve_schedule`.
        num_steps: T, the denoising steps (the original's ``NUM_DIFFUSION_STEPS``).
        num_calls: the UNet calls of the run (T + 1 for PNDM, T for DDIM).
    """
    num_steps = check_num_steps(num_steps)
    cross_windows = parse_cross_steps(cross_steps)
    self_window = parse_window(self_steps, "self_steps")
    cross = torch.zeros(num_calls, MAX_SLOTS)  # (calls, 77 target slots)
    default = original_cross_calls(cross_windows["default"], num_steps)
    cross[default.start : default.stop, :] = 1.0
    for word_text, window in cross_windows.items():
        if word_text == "default":
            continue
        calls = original_cross_calls(window, num_steps)
        for word in _target_words(target, word_text):
            cross[:, word.core_start : word.core_stop] = 0.0
            cross[calls.start : calls.stop, word.core_start : word.core_stop] = 1.0
    self_ = torch.zeros(num_calls, dtype=torch.bool)  # (calls,)
    self_calls = original_self_calls(self_window, num_steps)
    self_[self_calls.start : self_calls.stop] = True
    return InjectionSchedule(num_steps, cross, self_, cross_windows, self_window, rows="call")


def injected_steps(covered: range, call_steps: tuple[int, ...]) -> list[int]:
    """The denoising steps whose UNet calls a range of calls touches (``call_steps[c]`` is the
    step of call ``c``, as :func:`p2p_teach.engine.plan_scheduler` gives it)."""
    return sorted({call_steps[c] for c in covered if c < len(call_steps)})
