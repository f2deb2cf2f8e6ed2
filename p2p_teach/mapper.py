"""The word-swap mapper: which source token's attention feeds which target token.

Prompt-to-Prompt's word swap ("a lion eating" → "a hippopotamus eating") keeps the source
image's layout by giving the target prompt the source prompt's cross-attention maps. The two
prompts' slots rarely line up one to one, because CLIP splits words into a varying number of
pieces. A 77×77 matrix ``M`` says how to move the maps across: rows are source slots, columns
are target slots, and

    target map of slot n = Σ_w M[w, n] · (source map of slot w).

The course's rule (the recitation's "Attention Mapping" slides): walk a source index ``i`` and
a target index ``j`` from BOS. At a swapped word with ``n`` source and ``m`` target pieces,

* ``n == m``: map piece k to piece k (an identity block);
* ``n != m``: fill the whole n×m block with ``1 / max(n, m)``;

then advance ``i`` by ``n`` and ``j`` by ``m``. Every other slot (words, BOS, EOS, padding) maps
``i → j`` with weight 1 and both indices advance by one, so later tokens stay aligned. Slots
pushed past 77 drop out. Punctuation that both words share is not part of the swap: in
"a lion, eating" → "a hippopotamus, eating" the block is lion → hippo·potam·us (1-to-N) and
the comma maps one to one.

The original Prompt-to-Prompt code (``seq_aligner.get_replacement_mapper_``) differs in two
ways, and ``rule="original"`` reproduces it for comparison: an n≠m block holds ``1 / m``, and
after the last swapped word it sets ``M[j, j] = 1`` instead of ``M[i, j] = 1``. (It also swaps
whole space-separated words, punctuation included.) When n≠m the
source and target indices no longer agree there, so every later target token receives the
attention of the wrong source token (the slot ``n - m`` places off).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Literal

import torch

from p2p_teach.tokens import MAX_SLOTS, TokenView, Word, tokenize

SwapCase = Literal["1-to-1", "N-to-N", "1-to-N", "N-to-1", "N-to-M"]
MapperRule = Literal["course", "original"]
RULES: tuple[MapperRule, ...] = ("course", "original")

RULE_DESCRIPTIONS: dict[str, str] = {
    "course": (
        "course rule: an n≠m block holds 1/max(n, m); after a swap, source slot i keeps "
        "mapping to target slot j, so later tokens stay aligned"
    ),
    "original": (
        "original Prompt-to-Prompt code: an n≠m block holds 1/m; after the last swap it sets "
        "M[j, j] = 1, which misaligns every later token when n≠m"
    ),
}

# The recitation's examples (real CLIP splits in comments), one pair per case, and a pair with
# several swaps. The slides split haunted/magical in two; the real tokenizer keeps them whole.
EXAMPLES: dict[str, tuple[str, str]] = {
    "1-to-1: haunted → magical": ("A haunted house", "A magical house"),
    "N-to-N: hexagon → matchstick (hex·agon → match·stick)": (
        "A hexagon house",
        "A matchstick house",
    ),
    "1-to-N: lion → hippopotamus (hippo·potam·us)": ("A lion eating", "A hippopotamus eating"),
    "N-to-1: hippopotamus → lion": ("A hippopotamus eating", "A lion eating"),
    "N-to-M: unimaginably (uni·magin·ably) → inconceivably (in·conce·iv·ably)": (
        "An unimaginably large house",
        "An inconceivably large house",
    ),
    "two swaps: N-to-M and 1-to-N": (
        "An unimaginably large lion eating",
        "An inconceivably large hippopotamus eating",
    ),
}


class WordCountMismatchError(ValueError):
    """A word swap needs prompts with the same number of words."""


@dataclass(frozen=True)
class Swap:
    """One swapped word: the source word, the target word that replaces it, the slots that
    swap, and the case.

    The slots are the words' own pieces without edge punctuation that both words share: in
    ``"lion,"`` → ``"hippopotamus,"`` the block is lion → hippo·potam·us (1-to-N) and the comma
    maps one to one like any unchanged slot. Where the punctuation differs too, the whole
    words swap.
    """

    source_word: Word
    target_word: Word
    source_slots: range
    target_slots: range
    case: SwapCase

    @property
    def n_source(self) -> int:
        """How many slots (BPE pieces) of the source swap."""
        return len(self.source_slots)

    @property
    def n_target(self) -> int:
        """How many slots (BPE pieces) of the target swap."""
        return len(self.target_slots)

    @property
    def source_text(self) -> str:
        return self._text(self.source_word, self.source_slots)

    @property
    def target_text(self) -> str:
        return self._text(self.target_word, self.target_slots)

    @staticmethod
    def _text(word: Word, slots: range) -> str:
        return word.core_text if slots == word.core else word.text

    def __str__(self) -> str:
        return (
            f"{self.source_text!r} (slots {_span(self.source_slots)}) → "
            f"{self.target_text!r} (slots {_span(self.target_slots)}): {self.case}"
        )


@dataclass(frozen=True)
class WordSwapMapper:
    """A word-swap mapper and everything needed to explain it."""

    source: TokenView
    target: TokenView
    matrix: torch.Tensor = field(compare=False, repr=False)  # (77, 77) float32, rows = source
    swaps: tuple[Swap, ...] = ()
    rule: MapperRule = "course"

    @property
    def active_size(self) -> int:
        """Rows/columns worth showing: BOS, the pieces, EOS of the longer prompt, one pad."""
        return min(MAX_SLOTS, max(self.source.n_used, self.target.n_used) + 1)

    def __str__(self) -> str:
        return format_mapper(self)


def swap_case(n_source: int, n_target: int) -> SwapCase:
    """Name the case of a swapped word from its piece counts."""
    if n_source == n_target:
        return "1-to-1" if n_source == 1 else "N-to-N"
    if n_source == 1:
        return "1-to-N"
    if n_target == 1:
        return "N-to-1"
    return "N-to-M"


def find_swaps(
    source: TokenView, target: TokenView, whole_words: bool = False
) -> tuple[Swap, ...]:
    """The words that differ, position by position.

    Args:
        source, target: the prompts' token views.
        whole_words: swap whole space-separated words, edge punctuation included, as the
            original code does; by default punctuation both words share stays out of the swap.

    Raises:
        WordCountMismatchError: the prompts have different numbers of words.
    """
    source_words = [word.text for word in source.words]
    target_words = [word.text for word in target.words]
    if len(source_words) != len(target_words):
        raise WordCountMismatchError(
            "a word swap needs the same number of words in both prompts, but the source has "
            f"{len(source_words)} words {source_words} and the target has {len(target_words)} "
            f"words {target_words}. To add or remove words, use refinement instead: "
            "p2p_teach.alignment.refinement_alignment(source, target)."
        )
    return tuple(
        _swap(source_word, target_word, whole_words)
        for source_word, target_word in zip(source.words, target.words)
        if source_word.text != target_word.text
    )


def _swap(source_word: Word, target_word: Word, whole_words: bool) -> Swap:
    """The swap of two differing words: their cores if they share their edge punctuation."""
    if not whole_words and source_word.edges == target_word.edges:
        source_slots, target_slots = source_word.core, target_word.core
    else:
        source_slots, target_slots = source_word.slots, target_word.slots
    return Swap(
        source_word,
        target_word,
        source_slots,
        target_slots,
        swap_case(len(source_slots), len(target_slots)),
    )


def check_rule(rule: object, where: str = "rule") -> MapperRule:
    """``rule`` if it names a mapper rule (:data:`RULES`), else a ValueError naming the fix."""
    if rule not in RULES:
        raise ValueError(
            f"{where}: {rule!r} is not a mapper rule, which is one of {list(RULES)}. Fix: "
            "'course' for the course's rule, 'original' for the original code's."
        )
    return rule  # type: ignore[return-value]


def word_swap_mapper(
    source: str | TokenView, target: str | TokenView, rule: str = "course"
) -> WordSwapMapper:
    """Build the 77×77 word-swap mapper from ``source`` to ``target``.

    Args:
        source: the source prompt (or its token view).
        target: the target prompt, with the same number of words.
        rule: ``"course"`` (the recitation's rule, default) or ``"original"`` (the rule of the
            original Prompt-to-Prompt code, kept to show why it misaligns later tokens).

    Raises:
        WordCountMismatchError: the prompts have different numbers of words.
        ValueError: ``rule`` is neither ``"course"`` nor ``"original"``.
    """
    check_rule(rule)
    source_view = source if isinstance(source, TokenView) else tokenize(source)
    target_view = target if isinstance(target, TokenView) else tokenize(target)
    swaps = find_swaps(source_view, target_view, whole_words=rule == "original")
    matrix = _course_matrix(swaps) if rule == "course" else _original_matrix(swaps)
    return WordSwapMapper(source_view, target_view, matrix, swaps, rule)  # type: ignore[arg-type]


def _course_matrix(swaps: tuple[Swap, ...]) -> torch.Tensor:
    matrix = torch.zeros(MAX_SLOTS, MAX_SLOTS)  # (77 source slots, 77 target slots)
    swap_at = {swap.source_slots.start: swap for swap in swaps}
    i = j = 0
    while i < MAX_SLOTS and j < MAX_SLOTS:
        swap = swap_at.get(i)
        if swap is None:
            matrix[i, j] = 1.0
            i, j = i + 1, j + 1
            continue
        if swap.target_slots.start != j:  # the walk and the swap must agree on the target
            raise RuntimeError(
                f"mapper walk out of step: {swap} starts at target slot "
                f"{swap.target_slots.start}, the walk is at {j}"
            )
        n, m = swap.n_source, swap.n_target
        if n == m:
            for k in range(n):
                matrix[i + k, j + k] = 1.0
        else:
            matrix[i : i + n, j : j + m] = 1.0 / max(n, m)
        i, j = i + n, j + m
    return matrix


def _original_matrix(swaps: tuple[Swap, ...]) -> torch.Tensor:
    """``seq_aligner.get_replacement_mapper_`` of the original code, loop for loop."""
    matrix = torch.zeros(MAX_SLOTS, MAX_SLOTS)  # (77 source slots, 77 target slots)
    i = j = 0
    next_swap = 0
    while i < MAX_SLOTS and j < MAX_SLOTS:
        if next_swap < len(swaps) and swaps[next_swap].source_slots.start == i:
            swap = swaps[next_swap]
            n, m = swap.n_source, swap.n_target
            if n == m:
                for k in range(n):
                    matrix[i + k, j + k] = 1.0
            else:
                matrix[i : i + n, j : j + m] = 1.0 / m
            next_swap += 1
            i, j = i + n, j + m
        elif next_swap < len(swaps):
            matrix[i, j] = 1.0
            i, j = i + 1, j + 1
        else:
            matrix[j, j] = 1.0  # the original's step: source slot j, not i
            i, j = i + 1, j + 1
    return matrix


# --------------------------------------------------------------------------------------------
# Reading a mapper: text rendering and a checker for learners' answers
# --------------------------------------------------------------------------------------------


def format_weight(value: float, zero: str = ".") -> str:
    """A mapper weight as short text: ``1``, ``1/3``, ``1/4``; zero as ``zero``."""
    if abs(value) < 1e-9:
        return zero
    fraction = Fraction(float(value)).limit_denominator(77)
    if abs(float(fraction) - value) > 1e-6:
        return f"{value:.3g}"
    return str(fraction)


def format_mapper(mapper: WordSwapMapper, size: int | None = None) -> str:
    """The mapper's active region as a text table with token labels on both axes.

    Rows are source slots, columns target slots; zeros print as ``.``. ``size`` defaults to
    :attr:`WordSwapMapper.active_size` (BOS to the later EOS, plus one padding slot).
    """
    size = mapper.active_size if size is None else max(1, min(MAX_SLOTS, size))
    column_labels = [_slot_label(mapper.target, j) for j in range(size)]
    row_labels = [_slot_label(mapper.source, i) for i in range(size)]
    cells = [[format_weight(float(mapper.matrix[i, j])) for j in range(size)] for i in range(size)]
    widths = [  # each column as wide as its label or its widest cell
        max(3, len(column_labels[j]), *(len(row[j]) for row in cells)) for j in range(size)
    ]
    row_width = max(len(text) for text in row_labels) + 4

    lines = [
        f"source: {mapper.source.normalized!r}",
        f"target: {mapper.target.normalized!r}",
        f"rule:   {RULE_DESCRIPTIONS[mapper.rule]}",
    ]
    if mapper.swaps:
        lines += [f"swap:   {swap}" for swap in mapper.swaps]
    else:
        lines.append("swap:   none (the prompts are the same word for word)")
    lines.append(f"rows = source slots, columns = target slots; slots 0–{size - 1} of 77")
    lines.append(" " * row_width + " ".join(f"{c:>{w}}" for c, w in zip(column_labels, widths)))
    for i, row in enumerate(cells):
        values = " ".join(f"{cell:>{w}}" for cell, w in zip(row, widths))
        lines.append(f"{i:>2} {row_labels[i]:<{row_width - 3}}{values}")
    return "\n".join(lines)


@dataclass(frozen=True)
class CellDifference:
    """One cell where a learner's mapper differs from the expected one."""

    row: int  # source slot
    column: int  # target slot
    expected: float
    got: float
    row_label: str
    column_label: str

    def __str__(self) -> str:
        return (
            f"M[{self.row}, {self.column}] (source {self.row_label!r} → target "
            f"{self.column_label!r}): expected {format_weight(self.expected, '0')}, "
            f"got {format_weight(self.got, '0')}"
        )


MAX_LISTED = 20  # differing cells a MapperCheck lists as text (all are in .differences)


@dataclass(frozen=True)
class MapperCheck:
    """The result of :func:`check_mapper`: ``ok`` and the cells that differ."""

    expected: WordSwapMapper
    checked_shape: tuple[int, int]  # the top-left corner that was compared
    differences: tuple[CellDifference, ...]

    @property
    def ok(self) -> bool:
        return not self.differences

    def __bool__(self) -> bool:
        return self.ok

    def __str__(self) -> str:
        rows, columns = self.checked_shape
        where = f"the top-left {rows}×{columns} corner (rows = source, columns = target)"
        if self.ok:
            return f"Correct: all cells of {where} match the {self.expected.rule} rule."
        lines = [
            f"{len(self.differences)} cell(s) of {where} differ from the "
            f"{self.expected.rule} rule:"
        ]
        lines += [f"  {difference}" for difference in self.differences[:MAX_LISTED]]
        if len(self.differences) > MAX_LISTED:
            lines.append(f"  … and {len(self.differences) - MAX_LISTED} more")
        return "\n".join(lines)

    def _repr_pretty_(self, printer, cycle) -> None:  # IPython shows the report as text
        printer.text(str(self))


def check_mapper(
    answer: object,
    source: str | TokenView,
    target: str | TokenView,
    rule: str = "course",
    atol: float = 1e-4,
) -> MapperCheck:
    """Compare a learner's mapper with the library's and say which cells differ.

    Args:
        answer: the learner's matrix, rows = source slots, columns = target slots: a nested
            list, NumPy array or tensor. It may be the full 77×77 or only its top-left corner
            (e.g. BOS to EOS); cells outside the corner are not checked. Fractions and floats
            such as ``1/3`` are fine.
        source, target: the prompts (or token views).
        rule: the rule to check against, ``"course"`` (default) or ``"original"``.
        atol: how close a cell must be to count as equal.
    """
    expected = word_swap_mapper(source, target, rule=rule)
    given = torch.as_tensor(_as_float_rows(answer), dtype=torch.float64)
    fits = given.ndim == 2 and all(1 <= size <= MAX_SLOTS for size in given.shape)
    if not fits:
        raise ValueError(
            "the answer must be a 2-D matrix of at most 77×77 (rows = source slots, columns = "
            f"target slots), not shape {tuple(given.shape)}"
        )
    rows, columns = given.shape
    reference = expected.matrix[:rows, :columns].double()  # (rows, columns): the same corner
    differing = (given - reference).abs() > atol  # (rows, columns) bool
    differences = tuple(
        CellDifference(
            row=i,
            column=j,
            expected=float(reference[i, j]),
            got=float(given[i, j]),
            row_label=_slot_label(expected.source, i),
            column_label=_slot_label(expected.target, j),
        )
        for i, j in differing.nonzero().tolist()
    )
    return MapperCheck(expected, (rows, columns), differences)


def _as_float_rows(answer: object) -> torch.Tensor:
    """A learner's answer as a float64 matrix; rows may hold Fractions, floats or ints."""
    if isinstance(answer, torch.Tensor):
        return answer.detach().cpu().double()
    try:
        rows = [list(row) for row in answer]  # a nested list, tuple or NumPy array
    except TypeError:
        raise ValueError(
            "the answer must be a 2-D matrix of at most 77×77 (rows = source slots, columns = "
            f"target slots): a nested list, NumPy array or tensor, not {answer!r:.60}"
        ) from None
    lengths = {len(row) for row in rows}
    if len(lengths) > 1:
        short = min(range(len(rows)), key=lambda i: len(rows[i]))
        raise ValueError(
            f"the answer's rows have different lengths {sorted(lengths)} (row {short} has "
            f"{len(rows[short])}). Fix: give every row the same number of columns."
        )
    try:
        return torch.tensor(  # (rows, columns)
            [[float(value) for value in row] for row in rows], dtype=torch.float64
        )
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"every cell of the answer must be a number such as 1, 0.5 or Fraction(1, 3): "
            f"{error}"
        ) from None


def _slot_label(view: TokenView, index: int) -> str:
    return view.slots[index].label


def _span(slots: range) -> str:
    return str(slots.start) if len(slots) == 1 else f"{slots.start}–{slots.stop - 1}"
