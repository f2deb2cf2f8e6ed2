"""Exercise (c): the injection schedule τ as a table of steps × target slots.

The learner writes ``injection_table(num_steps, default, word_windows) -> (num_steps, 77)``:
1 where target slot j takes the source's map at step k, 0 where it keeps its own. ``default``
is a ``(start, end)`` window of fractions for every slot; ``word_windows`` maps a word's slots
(a ``range``) to its own window, which replaces the default for those slots. The answer is
compared with :func:`p2p_teach.schedules.resolve_schedule`'s ``cross`` table, on cases with
rounding, one step, the first and the last step, a word split in pieces, several words.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ..schedules import resolve_schedule
from ..tokens import MAX_SLOTS, TokenView, tokenize
from .cases import Case, as_tensor, mistake_hint, run_cases, span
from .feedback import CheckReport, Finding

Window = tuple[float, float]

# name → (steps, default window, {target word: window}, target prompt)
SCHEDULE_CASES: dict[str, tuple[int, Window, dict[str, Window], str]] = {
    "0.8 of 25 steps": (25, (0.0, 0.8), {}, "a big blue circle"),
    "(0.2, 0.6) of 10 steps": (10, (0.2, 0.6), {}, "a big blue circle"),
    "one step, the full window": (1, (0.0, 1.0), {}, "a big blue circle"),
    "0.5 of 7 steps (3.5 steps)": (7, (0.0, 0.5), {}, "a big blue circle"),
    "a word's own window": (
        20, (0.0, 0.8), {"motorcycle": (0.0, 0.4)}, "A hippopotamus riding a motorcycle"
    ),
    "a word in three pieces, to the last step": (
        10, (0.0, 0.3), {"hippopotamus": (0.5, 1.0)}, "A hippopotamus riding a motorcycle"
    ),
    "two words, no default injection": (
        12, (0.0, 0.0), {"big": (0.0, 0.25), "circle": (0.75, 1.0)}, "a big blue circle"
    ),
}  # fmt: skip


def check_injection_table(
    injection_table: Callable, *, hint: bool = False, reveal: bool = False
) -> CheckReport:
    """Check the learner's ``injection_table(num_steps, default, word_windows)``."""
    cases = []
    for label, (steps, default, words, prompt) in SCHEDULE_CASES.items():
        view = tokenize(prompt)
        word_windows = {view.find_words(word)[0].core: window for word, window in words.items()}
        shown = {f"{w} (slots {span(list(view.find_words(w)[0].core))})": v
                 for w, v in words.items()}  # fmt: skip
        name = f"'{label}': num_steps={steps}, default={default}, word windows {shown or '{}'}"
        expected = resolve_schedule({"default": default, **words}, 0.0, steps, view).cross
        args = (steps, default, word_windows)
        cases.append(Case(name, args, _judge(name, args, expected.double(), view)))
    return run_cases("injection_table", injection_table, cases, hint=hint, reveal=reveal)


def _judge(name: str, args: tuple, expected: torch.Tensor, view: TokenView):
    steps = args[0]
    mistakes = {
        "your windows include their end step: a window (start, end) covers "
        "floor(start·T) ≤ k < floor(end·T), the end excluded": _variant(*args, "inclusive"),
        "your windows round to the nearest step; both ends round down (floor), so 0.5 of 7 "
        "steps is 3 steps": _variant(*args, "round"),
        "your windows round up; both ends round down (floor)": _variant(*args, "ceil"),
        "a word's window adds to the default here; it replaces the default for the word's "
        "slots, at every step": _variant(*args, "union"),
        "the word windows are missing: each one replaces the default for its word's slots":
        _variant(*args, "no words"),
    }  # fmt: skip

    def judge(output: object) -> Finding | None:
        table = as_tensor(output, (steps, MAX_SLOTS), "injection_table")
        if isinstance(table, str):
            return Finding(name, table, "one row per denoising step, one column per target slot",
                           _show(expected, range(steps)))  # fmt: skip
        differ = (table - expected).abs() > 1e-6  # (T, 77)
        if not differ.any():
            return None
        step = int(differ.any(1).nonzero()[0])
        slots = differ[step].nonzero().flatten().tolist()
        where = "the first step" if step == 0 else "the last step" if step == steps - 1 else (
            f"step {step}")  # fmt: skip
        values = sorted({_short(float(v)) for v in table[step, slots]})
        what = (
            f"{where} (steps run 0–{steps - 1}) is wrong in target slot(s) {span(slots)} "
            f"({', '.join(repr(view.slots[j].label) for j in slots[:4])}"
            f"{', …' if len(slots) > 4 else ''}); yours: {', '.join(values)}; "
            f"{int(differ.any(1).sum())} step(s) differ in all"
        )
        why = mistake_hint(
            table,
            mistakes,
            "a window (start, end) covers the steps floor(start·T) ≤ k < floor(end·T); a word's "
            "window replaces the default for its slots at every step",
        )
        return Finding(name, what, why, _show(expected, sorted({0, step, steps - 1})))

    return judge


def _variant(steps: int, default: Window, words: dict, mistake: str) -> torch.Tensor:
    """The table a common mistake gives."""
    table = torch.zeros(steps, MAX_SLOTS, dtype=torch.float64)  # (T, 77)

    def covered(window: Window) -> range:
        scaled = [fraction * steps for fraction in window]
        if mistake == "round":
            return range(round(scaled[0]), round(scaled[1]))
        if mistake == "ceil":
            return range(math.ceil(scaled[0] - 1e-9), math.ceil(scaled[1] - 1e-9))
        first, end = (math.floor(value + 1e-9) for value in scaled)
        return range(first, min(steps, end + 1) if mistake == "inclusive" else end)

    table[list(covered(default)), :] = 1.0
    for slots, window in ({} if mistake == "no words" else words).items():
        if mistake != "union":
            table[:, slots.start : slots.stop] = 0.0
        table[list(covered(window)), slots.start : slots.stop] = 1.0
    return table


def _short(value: float) -> str:
    return f"{value:g}"


def _show(expected: torch.Tensor, steps) -> str:
    """The expected rows of some steps, the used slots only (0–11)."""
    return "\n".join(
        f"step {k}: " + " ".join(f"{int(v)}" for v in expected[k, :12].tolist()) + " …"
        for k in steps
    )
