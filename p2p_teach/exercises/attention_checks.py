"""Exercises (b) and (d): the target's cross-attention made from the source's.

(b) ``replace_attention(source_maps, mapper)``: a word swap's target maps, the source's maps
through the mapper, ``P*[h, p, n] = Σ_w P_src[h, p, w] · M[w, n]`` (one einsum).

(d) ``refine_attention(source_maps, target_maps, source_index, alphas)``: refinement's target
maps, each aligned target slot the source map of its source slot, each new token its own map.

Both are compared with what the engine computes in its explicit path: the per-step
coefficients of :func:`p2p_teach.edits.step_coefficients` at a step where the source is
injected, ``P* = P_src · value_mixer + P_tgt · diag(target_keep)``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..alignment import refinement_alignment
from ..edits import Edit, Refine, Replace, step_coefficients
from ..mapper import EXAMPLES, word_swap_mapper
from ..schedules import resolve_schedule
from ..tokens import MAX_SLOTS, TokenView, tokenize
from .cases import Case, as_tensor, mistake_hint, random_maps, run_cases, span
from .feedback import CheckReport, Finding

ATOL = 1e-5  # float32 maps: the learner may compute in float32 or float64

REPLACE_PAIRS = {label: EXAMPLES[label] for label in list(EXAMPLES)[:6]}
MAP_SHAPES = ((2, 6), (1, 4), (4, 3))  # (heads, pixels) of the generated maps

REFINE_PAIRS: dict[str, tuple[str, str]] = {
    "words added at the end": ("a big red circle", "a big red circle on a black background"),
    "a word inserted": ("a cat riding a bicycle", "a fluffy cat riding a bicycle"),
    "a word removed": ("a very big dog", "a big dog"),
    "a word changed (one removed, one new)": ("a red car", "a blue car"),
    "a word inserted in a split word's prompt": ("A lion eating", "A hungry hippopotamus eating"),
}


def reference_maps(
    edit: Edit, source: TokenView, target: TokenView, source_maps, target_maps
) -> torch.Tensor:
    """The engine's edited target maps at an injected step (α = 1 for every slot)."""
    schedule = resolve_schedule(1.0, 0.0, 1, target)
    coefficients = step_coefficients(edit.resolve(source, target), schedule)
    mixer = coefficients.value_mixers[0].double()  # (77, 77): M · diag(c_src)
    keep = coefficients.target_keep[0].double()  # (77,): c_tgt
    return source_maps.double() @ mixer + target_maps.double() * keep  # (heads, pixels, 77)


# -------------------------------------------------------------------------------- (b) replace


def check_replace_attention(
    replace_attention: Callable, *, hint: bool = False, reveal: bool = False
) -> CheckReport:
    """Check the learner's ``replace_attention(source_maps, mapper)``.

    ``source_maps`` is (heads, pixels, 77) float32, ``mapper`` the (77, 77) word-swap mapper;
    the answer is the target's (heads, pixels, 77) maps. Cases: every swap kind, several
    head and pixel counts.
    """
    cases = []
    for index, (label, (source, target)) in enumerate(REPLACE_PAIRS.items()):
        heads, pixels = MAP_SHAPES[index % len(MAP_SHAPES)]
        source_view, target_view = tokenize(source), tokenize(target)
        maps = random_maps(index, heads, pixels).float()  # (heads, pixels, 77)
        mapper = word_swap_mapper(source_view, target_view).matrix  # (77, 77)
        expected = reference_maps(Replace(), source_view, target_view, maps, torch.zeros_like(maps))
        name = f"'{label}' ({source!r} → {target!r}), maps of {heads} head(s) × {pixels} pixels"
        judge = _replace_judge(name, maps, mapper, expected, target_view)
        cases.append(Case(name, (maps, mapper), judge, _EINSUM_ERROR))
    return run_cases("replace_attention", replace_attention, cases, hint=hint, reveal=reveal)


_EINSUM_ERROR = (
    "the maps are (heads, pixels, source slot w) and M is (source slot w, target slot n): the "
    "index to sum over is w, shared by the maps' last axis and M's rows"
)


def _replace_judge(name, maps, mapper, expected, target_view):
    mistakes = {
        "you summed over M's columns (M transposed): rows of M are source slots, so the target "
        "slot n is M's column index": maps.double() @ mapper.double().T,
        "your answer is the source's maps unchanged: the mapper moves each source slot's map to "
        "the target slots it feeds": maps.double(),
    }

    def judge(output: object) -> Finding | None:
        answer = as_tensor(output, tuple(expected.shape), "replace_attention")
        if isinstance(answer, str):
            return Finding(name, answer, "keep the heads and pixels axes; only the slot axis "
                           "changes (source slots → target slots)", _show(expected))  # fmt: skip
        slots = ((answer - expected).abs() > ATOL).flatten(0, 1).any(0)  # (77,) bool
        if not slots.any():
            return None
        wrong = slots.nonzero().flatten().tolist()
        largest = float((answer - expected).abs().max())
        what = (
            f"target slot(s) {span(wrong)} ({_labels(target_view, wrong)}) differ; largest "
            f"difference {largest:.3g}"
        )
        why = mistake_hint(
            answer,
            mistakes,
            "target map of slot n = Σ_w M[w, n] · (source map of slot w): a weighted sum of "
            "source maps, with M's column n as the weights",
            ATOL,
        )
        return Finding(name, what, why, _show(expected, wrong))

    return judge


# -------------------------------------------------------------------------------- (d) refine


def check_refine_attention(
    refine_attention: Callable, *, hint: bool = False, reveal: bool = False
) -> CheckReport:
    """Check the learner's ``refine_attention(source_maps, target_maps, source_index, alphas)``.

    Maps are (heads, pixels, 77) float32; ``source_index`` (77,) int64 gives each target
    slot's source slot (−1: none) and ``alphas`` (77,) float32 is 1 where a target slot keeps
    the source's attention, 0 for new tokens (:func:`p2p_teach.alignment.refinement_alignment`).
    """
    cases = []
    for index, (label, (source, target)) in enumerate(REFINE_PAIRS.items()):
        heads, pixels = MAP_SHAPES[index % len(MAP_SHAPES)]
        alignment = refinement_alignment(source, target)
        source_maps = random_maps(10 + index, heads, pixels).float()
        target_maps = random_maps(20 + index, heads, pixels).float()
        expected = reference_maps(
            Refine(), alignment.source, alignment.target, source_maps, target_maps
        )
        name = f"'{label}' ({source!r} → {target!r})"
        args = (source_maps, target_maps, alignment.source_index, alignment.alphas)
        cases.append(Case(name, args, _refine_judge(name, args, expected, alignment), ""))
    return run_cases("refine_attention", refine_attention, cases, hint=hint, reveal=reveal)


def _refine_judge(name, args, expected, alignment):
    source_maps, target_maps, source_index, alphas = (a.double() for a in args)
    same_slot = alphas * source_maps + (1 - alphas) * target_maps
    mistakes = {
        "each aligned slot takes the source map of the same slot number; after an insertion "
        "or a removal the slots shift: use source_index[j]": same_slot,
        "new tokens (alpha 0) came out as zeros: they keep the target's own map": alphas
        * source_maps[..., args[2].clamp(min=0)].double(),
    }
    target = alignment.target

    def judge(output: object) -> Finding | None:
        answer = as_tensor(output, tuple(expected.shape), "refine_attention")
        if isinstance(answer, str):
            return Finding(name, answer, "the answer has the target maps' shape",
                           _show(expected))  # fmt: skip
        slots = ((answer - expected).abs() > ATOL).flatten(0, 1).any(0)  # (77,) bool
        if not slots.any():
            return None
        wrong = slots.nonzero().flatten().tolist()
        kinds = {_slot_kind(j, alignment) for j in wrong}
        what = f"target slot(s) {span(wrong)} ({_labels(target, wrong)}) differ: " + ", ".join(
            sorted(kinds)
        )
        why = mistake_hint(answer, mistakes, _REFINE_HINTS[sorted(kinds)[0]], ATOL)
        return Finding(name, what, why, _show(expected, wrong))

    return judge


_REFINE_HINTS = {
    "aligned slots (alpha 1)": "an aligned target slot j takes the source's map of slot "
    "source_index[j], which need not be slot j",
    "new tokens (alpha 0)": "a new token has no source slot (source_index −1, alpha 0): it "
    "keeps the target's own map",
    "padding slots": "padding follows EOS: its source slot is in source_index like any other; "
    "slots pushed past 77 have index −1 and alpha 0",
}


def _slot_kind(j: int, alignment) -> str:
    if j >= alignment.target.n_used:
        return "padding slots"
    return "aligned slots (alpha 1)" if alignment.alphas[j] > 0 else "new tokens (alpha 0)"


def _labels(view: TokenView, slots: list[int]) -> str:
    labels = [view.slots[j].label for j in slots[:6] if j < MAX_SLOTS]
    return ", ".join(repr(label) for label in labels) + (", …" if len(slots) > 6 else "")


def _show(expected: torch.Tensor, slots: list[int] | None = None) -> str:
    """The expected maps of head 0, pixel 0, at the given slots (or the first 8)."""
    slots = (slots or list(range(8)))[:8]
    values = ", ".join(f"slot {j}: {float(expected[0, 0, j]):.4f}" for j in slots)
    return f"head 0, pixel 0: {values}"
