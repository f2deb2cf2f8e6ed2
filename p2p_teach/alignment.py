"""Refinement alignment: which source token each target token continues, when words are added
or removed ("a cat" → "a fluffy cat").

Prompt-to-Prompt's refine edit keeps the source's cross-attention for every target token that
also occurs in the source, and lets new tokens attend freely. Which tokens "also occur" comes
from a global (Needleman–Wunsch) alignment of the two token sequences, as in the original
code's ``seq_aligner``:

* scores: +1 for a pair of equal tokens, −1 for a pair of different tokens, 0 for a gap;
  with free gaps, different tokens are never paired, so the alignment is a longest common
  subsequence of the two sequences;
* ties are broken as the original code does, walking back from the end: first "the target
  token is new", then "the source token was removed", then "the two tokens match". When a
  token repeats, its earlier occurrence is the one matched ("a cat" → "a cat and a cat").

The used slots (BOS to EOS) are aligned. Padding follows EOS: target padding slot
``target_eos + d`` continues source slot ``source_eos + d``; slots that this pushes past 77 have
no source (index −1, alpha 0), as in the word-swap mapper. (The original code maps target
padding slot k to source slot k instead, which after a removal points target padding at source
words.)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from p2p_teach.tokens import MAX_SLOTS, TokenView, tokenize

MATCH_SCORE = 1
MISMATCH_SCORE = -1
GAP_SCORE = 0

# How each cell of the score table was reached, listed in the order ties are broken.
_TARGET_NEW = "target token is new"  # from the left: gap in the source
_SOURCE_REMOVED = "source token removed"  # from above: gap in the target
_PAIRED = "tokens paired"  # diagonal


@dataclass(frozen=True)
class RefinementAlignment:
    """For every target slot, the source slot whose attention it keeps (or none)."""

    source: TokenView
    target: TokenView
    source_index: torch.Tensor = field(compare=False, repr=False)  # (77,) int64, −1 if none
    alphas: torch.Tensor = field(compare=False, repr=False)  # (77,) float32, 1 aligned / 0 new

    def as_matrix(self) -> torch.Tensor:
        """The alignment as a (77, 77) one-hot mapper: rows source, columns target slots.

        A target slot with no source has an all-zero column.
        """
        matrix = torch.zeros(MAX_SLOTS, MAX_SLOTS)  # (77 source slots, 77 target slots)
        aligned = self.source_index >= 0  # (77,) bool over target slots
        target_slots = torch.arange(MAX_SLOTS)[aligned]
        matrix[self.source_index[aligned], target_slots] = 1.0
        return matrix

    @property
    def new_target_slots(self) -> list[int]:
        """Target slots among BOS…EOS with no source slot (the inserted tokens)."""
        return [j for j in range(self.target.n_used) if self.source_index[j] < 0]

    @property
    def removed_source_slots(self) -> list[int]:
        """Source slots among BOS…EOS that no target slot continues (the removed tokens)."""
        kept = set(self.source_index.tolist())
        return [i for i in range(self.source.n_used) if i not in kept]

    def __str__(self) -> str:
        return format_alignment(self)


def align_sequences(source_ids: list[int], target_ids: list[int]) -> list[int]:
    """Globally align two token sequences; return, for each target position, its source
    position or −1.

    Needleman–Wunsch with the scores and tie-breaking described in the module docstring.
    """
    n_source, n_target = len(source_ids), len(target_ids)
    # best[i][j]: best score aligning source_ids[:i] with target_ids[:j]
    best = [[0] * (n_target + 1) for _ in range(n_source + 1)]
    move: list[list[str | None]] = [[None] * (n_target + 1) for _ in range(n_source + 1)]
    for j in range(1, n_target + 1):
        best[0][j], move[0][j] = j * GAP_SCORE, _TARGET_NEW
    for i in range(1, n_source + 1):
        best[i][0], move[i][0] = i * GAP_SCORE, _SOURCE_REMOVED
    for i in range(1, n_source + 1):
        for j in range(1, n_target + 1):
            pair = MATCH_SCORE if source_ids[i - 1] == target_ids[j - 1] else MISMATCH_SCORE
            candidates = {  # dicts keep insertion order: the tie-breaking order
                _TARGET_NEW: best[i][j - 1] + GAP_SCORE,
                _SOURCE_REMOVED: best[i - 1][j] + GAP_SCORE,
                _PAIRED: best[i - 1][j - 1] + pair,
            }
            best_score = max(candidates.values())
            best[i][j] = best_score
            move[i][j] = next(name for name, score in candidates.items() if score == best_score)

    source_of_target = [-1] * n_target
    i, j = n_source, n_target
    while i > 0 or j > 0:
        if move[i][j] == _PAIRED:
            source_of_target[j - 1] = i - 1
            i, j = i - 1, j - 1
        elif move[i][j] == _TARGET_NEW:
            j -= 1
        else:
            i -= 1
    return source_of_target


def refinement_alignment(
    source: str | TokenView, target: str | TokenView, padding: str = "eos"
) -> RefinementAlignment:
    """Align a target prompt that adds or removes words with its source prompt.

    Returns, for each of the target's 77 slots, the aligned source slot (−1 if none) and an
    alpha: 1.0 where the target slot keeps the source's attention, 0.0 for new tokens.

    Args:
        source, target: the prompts (or token views).
        padding: ``"eos"`` (default): target padding slot ``EOS + d`` continues source slot
            ``EOS + d``; ``"slot"``: target padding slot ``k`` reads source slot ``k``, as
            the original code's ``seq_aligner.get_mapper`` does.
    """
    if padding not in ("eos", "slot"):
        raise ValueError(
            f"padding={padding!r}: 'eos' (padding follows EOS, this toolkit's) or 'slot' "
            "(target padding slot k reads source slot k, the original code's)"
        )
    source_view = source if isinstance(source, TokenView) else tokenize(source)
    target_view = target if isinstance(target, TokenView) else tokenize(target)
    source_used = source_view.ids[: source_view.n_used]  # BOS … EOS
    target_used = target_view.ids[: target_view.n_used]

    source_index = torch.full((MAX_SLOTS,), -1, dtype=torch.int64)  # (77,) over target slots
    source_index[: target_view.n_used] = torch.tensor(
        align_sequences(source_used, target_used), dtype=torch.int64
    )
    for offset in range(1, MAX_SLOTS - target_view.eos_index):  # padding follows EOS
        source_slot = source_view.eos_index + offset
        if padding == "slot":  # the original: padding slot k reads source slot k
            source_slot = target_view.eos_index + offset
        if source_slot < MAX_SLOTS:
            source_index[target_view.eos_index + offset] = source_slot
    alphas = (source_index >= 0).float()  # (77,)
    return RefinementAlignment(source_view, target_view, source_index, alphas)


def format_alignment(alignment: RefinementAlignment, show_padding: int = 1) -> str:
    """The alignment as text: one line per target slot, BOS to EOS plus ``show_padding``
    padding slots."""
    source, target = alignment.source, alignment.target
    lines = [
        f"source: {source.normalized!r}",
        f"target: {target.normalized!r}",
        f"{'slot':>4}  {'target':<14} {'alpha':>5}  source slot",
    ]
    last = min(MAX_SLOTS, target.n_used + show_padding)
    for j in range(last):
        i = int(alignment.source_index[j])
        origin = f"{i:>2} {source.slots[i].label}" if i >= 0 else " - (new: own attention)"
        alpha = f"{float(alignment.alphas[j]):.0f}"
        lines.append(f"{j:>4}  {target.slots[j].label:<14} {alpha:>5}  {origin}")
    removed = alignment.removed_source_slots
    if removed:
        pieces = ", ".join(f"{i} {source.slots[i].label}" for i in removed)
        lines.append(f"source slots no target slot continues: {pieces}")
    if last < MAX_SLOTS:
        lines.append(f"  … slots {last}–{MAX_SLOTS - 1}: padding")
    return "\n".join(lines)
