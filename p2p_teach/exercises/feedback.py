"""Feedback in levels: what is wrong, then why, then (only when asked) the expected value.

A checker runs the learner's function on generated cases and stops at the first case that
fails. Its :class:`CheckReport` says, by level:

0. *what* is wrong: the case, the block, step or slots, the shape; never the expected value;
1. a *hint* about why (``hint=True``, or the same mistake checked a second time);
2. the expected value, only with ``reveal=True``.

A function that still raises ``NotImplementedError`` is "not written yet", which is a report,
not an exception, so a notebook of blanks runs to the end.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

Status = Literal["correct", "not written yet", "wrong", "error"]

# exercise name → the last failure reported (its case and what), to raise the level on a repeat
_LAST_FAILURE: dict[str, str] = {}


@dataclass(frozen=True)
class Finding:
    """The first problem a checker found.

    Attributes:
        case: the generated case, in words (e.g. ``"1-to-N: lion → hippopotamus"``).
        what: what is wrong there (where, which shape), without the expected value.
        why: a hint about the cause.
        expected: the expected value as text, shown only on ``reveal=True``.
    """

    case: str
    what: str
    why: str
    expected: str = ""

    @property
    def key(self) -> str:
        return f"{self.case}\n{self.what}"


class Verdict:
    """A check's outcome, truthy when the learner's code is correct (``if ex.check_...:``)."""

    status: str  # "correct", or what is wrong

    @property
    def ok(self) -> bool:
        return self.status == "correct"

    def __bool__(self) -> bool:
        return self.ok


@dataclass(frozen=True)
class CheckReport(Verdict):
    """The result of one exercise's check; ``bool(report)`` is True when it passed.

    Attributes:
        exercise: the learner's function name.
        status: ``"correct"``, ``"not written yet"``, ``"wrong"`` or ``"error"`` (it raised).
        cases: how many generated cases were run (all of them when correct).
        finding: the first problem (None when correct or not written yet).
        level: 0 what, 1 what and why, 2 what, why and the expected value.
        blank_hint: the one-line hint of the blank's ``NotImplementedError``.
        failing_cases: how many of the cases fail.
    """

    exercise: str
    status: Status
    cases: int
    finding: Finding | None = None
    level: int = 0
    blank_hint: str = ""
    failing_cases: int = 0

    def __str__(self) -> str:
        if self.status == "correct":
            return f"{self.exercise}: correct on all {self.cases} cases."
        if self.status == "not written yet":
            hint = f" ({self.blank_hint})" if self.blank_hint else ""
            return f"{self.exercise}: not written yet{hint}."
        finding = self.finding
        assert finding is not None
        also = self.failing_cases - 1
        lines = [
            f"{self.exercise}: {'raised an error' if self.status == 'error' else 'not yet right'}"
            f" in case {finding.case}",
            f"  what:  {finding.what}",
        ]
        if also > 0:
            lines.append(f"         ({also} more case(s) fail; fix this one first)")
        if self.level >= 1:
            lines.append(f"  why:   {finding.why}")
        if self.level >= 2 and finding.expected:
            lines.append("  expected:")
            lines += [f"    {line}" for line in finding.expected.splitlines()]
        if self.level == 0:
            lines.append("  (check again, or pass hint=True, for a hint; reveal=True shows the "
                         "expected value)")  # fmt: skip
        elif self.level == 1:
            lines.append("  (reveal=True shows the expected value)")
        return "\n".join(lines)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # IPython shows it as text
        printer.text(str(self))


class NotWritten(Exception):
    """The learner's function raised NotImplementedError (the blank is still there)."""


def call_learner(function: Callable, *args: Any) -> Any:
    """Call the learner's function; a blank's ``NotImplementedError`` becomes :class:`NotWritten`
    (other exceptions pass through for the checker to report)."""
    try:
        return function(*args)
    except NotImplementedError as error:
        raise NotWritten(str(error)) from None


def make_report(
    exercise: str,
    cases: int,
    finding: Finding | None,
    failing: int,
    *,
    error: bool = False,
    hint: bool = False,
    reveal: bool = False,
) -> CheckReport:
    """A report at the right level: a repeat of the last failure of this exercise earns the
    hint without asking."""
    if finding is None:
        _LAST_FAILURE.pop(exercise, None)
        return CheckReport(exercise, "correct", cases)
    repeated = _LAST_FAILURE.get(exercise) == finding.key
    _LAST_FAILURE[exercise] = finding.key
    level = 2 if reveal else 1 if (hint or repeated) else 0
    status: Status = "error" if error else "wrong"
    return CheckReport(exercise, status, cases, finding, level, failing_cases=failing)


def blank_report(exercise: str, message: str, cases: int) -> CheckReport:
    return CheckReport(exercise, "not written yet", cases, blank_hint=message.strip())


def forget_attempts() -> None:
    """Forget earlier failures (the next check of each exercise starts at level 0 again)."""
    _LAST_FAILURE.clear()
