"""Running a learner's function over generated cases, and what every checker shares.

A :class:`Case` holds the arguments of one call and a judge: a function from the learner's
output to a :class:`~p2p_teach.exercises.feedback.Finding` (or None when it is right).
:func:`run_cases` calls the learner on fresh copies of the arguments, turns a blank into "not
written yet", an exception into an error finding, and a changed input into a finding of its
own, and returns a report at the asked level.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .feedback import CheckReport, Finding, NotWritten, blank_report, call_learner, make_report

Judge = Callable[[Any], "Finding | None"]


@dataclass(frozen=True)
class Case:
    """One generated case: its name, the learner's arguments, a judge, and an error hint."""

    name: str
    args: tuple
    judge: Judge
    error_hint: str = ""


def run_cases(
    exercise: str,
    function: Callable,
    cases: Sequence[Case],
    *,
    hint: bool = False,
    reveal: bool = False,
) -> CheckReport:
    """Run ``function`` on every case; report the first failing case at the asked level."""
    if not callable(function):
        raise TypeError(
            f"check the function itself, not its result: check_{exercise}({exercise}), "
            f"not {type(function).__name__}"
        )
    first: Finding | None = None
    first_raised = False
    failing = 0
    for case in cases:
        args = copy.deepcopy(case.args)
        raised = False
        try:
            output = call_learner(function, *args)
        except NotWritten as blank:
            return blank_report(exercise, str(blank), len(cases))
        except Exception as error:  # the learner's bug: report it, don't crash the notebook
            raised = True
            finding = Finding(
                case.name,
                f"{exercise} raised {type(error).__name__}: {error}",
                case.error_hint
                or "read the error's line in your function; print the shapes "
                "of the arguments to see what arrives",
            )
        else:
            changed = _changed_argument(case.args, args, function)
            finding = (
                Finding(
                    case.name,
                    f"{exercise} changed its argument {changed} in place",
                    "work on a copy (tensor.clone()) or build a new tensor: the edit passes the "
                    "model's own attention maps, which other layers still read",
                )
                if changed
                else case.judge(output)
            )
        if finding is not None:
            failing += 1
            if first is None:
                first, first_raised = finding, raised
    return make_report(
        exercise, len(cases), first, failing, error=first_raised, hint=hint, reveal=reveal
    )


def _changed_argument(originals: tuple, given: tuple, function: Callable) -> str | None:
    """The name of a tensor argument the learner changed in place, or None."""
    try:
        names = list(inspect.signature(function).parameters)
    except (TypeError, ValueError):
        names = []
    for index, (original, after) in enumerate(zip(originals, given)):
        if isinstance(original, torch.Tensor) and not torch.equal(original, after):
            return repr(names[index]) if index < len(names) else f"number {index + 1}"
    return None


def as_tensor(output: Any, shape: tuple[int, ...], name: str) -> torch.Tensor | str:
    """The learner's output as a float64 tensor of ``shape``, or a sentence saying what is off."""
    if output is None:
        return f"{name} returned None: did you forget `return`?"
    try:
        tensor = torch.as_tensor(output).detach().cpu()
    except (TypeError, ValueError, RuntimeError):
        return f"{name} returned a {type(output).__name__}, not a tensor of shape {shape}"
    if tuple(tensor.shape) != shape:
        return f"{name} returned shape {tuple(tensor.shape)}; the shape must be {shape}"
    if not (tensor.dtype.is_floating_point or tensor.dtype in (torch.bool, torch.int64)):
        tensor = tensor.long()
    tensor = tensor.double()
    if not torch.isfinite(tensor).all():
        return f"{name} returned NaN or infinite values"
    return tensor


def span(indices: Sequence[int]) -> str:
    """``[2, 3, 4]`` → ``"2–4"``, ``[5]`` → ``"5"``, ``[1, 3]`` → ``"1, 3"``."""
    indices = sorted(indices)
    if not indices:
        return "none"
    if indices == list(range(indices[0], indices[-1] + 1)):
        return str(indices[0]) if len(indices) == 1 else f"{indices[0]}–{indices[-1]}"
    shown = ", ".join(str(i) for i in indices[:8])
    return shown + (", …" if len(indices) > 8 else "")


def close(a: torch.Tensor, b: torch.Tensor, atol: float) -> bool:
    return bool(((a - b).abs() <= atol).all())


def random_maps(seed: int, heads: int = 2, pixels: int = 6, slots: int = 77) -> torch.Tensor:
    """Attention-like maps: (heads, pixels, slots) rows of a softmax, from a fixed seed."""
    generator = torch.Generator().manual_seed(seed)
    scores = torch.randn(heads, pixels, slots, generator=generator, dtype=torch.float64)
    return (2 * scores).softmax(dim=-1)  # (heads, pixels, slots)


def mistake_hint(
    answer: torch.Tensor, mistakes: dict[str, torch.Tensor], otherwise: str, atol: float = 0.0
) -> str:
    """The hint of every known mistake the answer equals (joined by "or"), else ``otherwise``."""
    matching = [
        text
        for text, value in mistakes.items()
        if answer.shape == value.shape and close(answer, value.to(answer.dtype), atol)
    ]
    if not matching:
        return otherwise
    return matching[0] if len(matching) == 1 else "either " + "; or ".join(matching)
