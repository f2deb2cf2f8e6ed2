"""Exercise (a): the word-swap mapper, checked against :func:`p2p_teach.mapper.word_swap_mapper`.

The learner writes ``build_mapper(swaps) -> (77, 77)`` from the swaps of two prompts
(:func:`p2p_teach.mapper.find_swaps`: each swap's ``source_slots`` and ``target_slots``) under
the course's rule. The cases cover every swap kind (1-to-1, N-to-N, 1-to-N, N-to-1, N-to-M),
two swaps in one prompt, no swap, and shared punctuation; each n≠m case also runs the walk off
the end of the 77 slots.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..mapper import (
    EXAMPLES,
    Swap,
    find_swaps,
    format_mapper,
    format_weight,
    mapper_regions,
    region_text,
    word_swap_mapper,
)
from ..tokens import MAX_SLOTS, tokenize
from .cases import Case, as_tensor, run_cases, span
from .feedback import CheckReport, Finding

EXERCISE = "build_mapper"

MAPPER_PAIRS: dict[str, tuple[str, str]] = {
    **EXAMPLES,
    "no swap": ("A red house", "A red house"),
    "shared punctuation: lion, → hippopotamus,": ("A lion, eating", "A hippopotamus, eating"),
}

ERROR_HINT = (
    "an index past 76 is a slot that does not exist: stop the walk when i or j reaches 77 "
    "(slots pushed past the end drop out)"
)


def check_build_mapper(
    build_mapper: Callable, *, hint: bool = False, reveal: bool = False
) -> CheckReport:
    """Check the learner's ``build_mapper(swaps)`` on every case of :data:`MAPPER_PAIRS`.

    Args:
        build_mapper: the learner's function; it gets the tuple of
            :class:`~p2p_teach.mapper.Swap` of a prompt pair and returns the (77, 77) mapper
            (rows source slots, columns target slots).
        hint: add a hint about why the first failing case fails.
        reveal: also show the expected mapper of that case.
    """
    return run_cases(EXERCISE, build_mapper, mapper_cases(), hint=hint, reveal=reveal)


def mapper_cases() -> list[Case]:
    cases = []
    for label, (source, target) in MAPPER_PAIRS.items():
        swaps = find_swaps(tokenize(source), tokenize(target))
        name = f"'{label}' ({source!r} → {target!r})"
        cases.append(Case(name, (swaps,), _judge(name, source, target, swaps), ERROR_HINT))
    return cases


def _judge(name: str, source: str, target: str, swaps: tuple[Swap, ...]):
    expected = word_swap_mapper(source, target)

    def judge(output: object) -> Finding | None:
        matrix = as_tensor(output, (MAX_SLOTS, MAX_SLOTS), EXERCISE)
        if isinstance(matrix, str):
            return Finding(
                name,
                matrix,
                "start from torch.zeros(77, 77): rows are source slots, columns target slots, "
                "all 77 of each (BOS, words, EOS and padding)",
                format_mapper(expected),
            )
        differ = (matrix - expected.matrix.double()).abs() > 1e-4  # (77, 77) bool
        if not differ.any():
            return None
        what, why = _locate(differ, matrix, swaps, expected)
        return Finding(name, what, _known_mistake(matrix, swaps) or why, format_mapper(expected))

    return judge


def _locate(differ, matrix, swaps, expected) -> tuple[str, str]:
    """What is wrong (the first region of rows with a differing cell) and a hint for it."""
    for kind, rows, swap in mapper_regions(swaps):
        cells = differ[rows.start : rows.stop].nonzero().tolist()
        if not cells:
            continue
        r, c = cells[0][0] + rows.start, cells[0][1]
        what, why = region_text(kind, swap)
        return (
            f"{what} is wrong: {len(cells)} cell(s) in source rows {span(list(rows))} differ, "
            f"first M[{r}, {c}] (source {expected.source.slots[r].label!r} → target "
            f"{expected.target.slots[c].label!r}; yours: {format_weight(float(matrix[r, c]), '0')})"
        ), why
    raise AssertionError("no differing cell")  # pragma: no cover - differ.any() was True


def _known_mistake(matrix: torch.Tensor, swaps: tuple[Swap, ...]) -> str | None:
    """A hint naming a common mistake when the answer is exactly that mistake."""
    mistakes = {
        "original": (
            "this is the original code's mapper (block 1/m, then M[j, j] = 1 after the last "
            "swap); the course's rule differs in the block's weight and keeps later slots "
            "aligned (i → j)"
        ),
        "1/m": "your n≠m block holds 1/m (the original code's weight); the course divides by "
        "the larger of n and m, so no column or row gets more than 1",
        "1/n": "your n≠m block holds 1/n; the course divides by the larger of n and m",
        "1": "your n≠m block holds 1s; each target piece would get n times the attention",
        "j→j": "after the swap you map j → j (the original code's misalignment): when n ≠ m, "
        "source slot j is not the counterpart of target slot j; map i → j",
        "i→i": "after the swap you map i → i: when n ≠ m the target's later words sit m − n "
        "slots further, so map source slot i to target slot j",
    }
    for name, text in mistakes.items():
        if any(s.n_source != s.n_target for s in swaps) and torch.equal(
            matrix, _variant(swaps, name).double()
        ):
            return text
    return None


def _variant(swaps: tuple[Swap, ...], mistake: str) -> torch.Tensor:
    """The mapper a common mistake gives (the walk with another block weight or alignment)."""
    weights: dict[str, Callable[[int, int], float]] = {
        "1/m": lambda n, m: 1 / m,
        "1/n": lambda n, m: 1 / n,
        "1": lambda n, m: 1.0,
        "original": lambda n, m: 1 / m,
    }
    weight = weights.get(mistake, lambda n, m: 1 / max(n, m))
    matrix = torch.zeros(MAX_SLOTS, MAX_SLOTS)  # (77 source slots, 77 target slots)
    starts = {swap.source_slots.start: swap for swap in swaps}
    last_swap_end = swaps[-1].source_slots.stop if swaps else 0
    i = j = 0
    while i < MAX_SLOTS and j < MAX_SLOTS:
        swap = starts.get(i)
        if swap is not None:
            n, m = swap.n_source, swap.n_target
            if n == m:
                matrix[range(i, i + n), range(j, j + n)] = 1.0
            else:
                matrix[i : i + n, j : j + m] = weight(n, m)
            i, j = i + n, j + m
            continue
        after = i >= last_swap_end
        if after and mistake in ("original", "j→j"):
            matrix[j, j] = 1.0
        elif after and mistake == "i→i":
            matrix[i, i] = 1.0
        else:
            matrix[i, j] = 1.0
        i, j = i + 1, j + 1
    return matrix
