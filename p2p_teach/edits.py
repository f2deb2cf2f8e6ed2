"""The edits of Prompt-to-Prompt: Replace, Refine, Reweight and LocalBlend, composable.

Every cross-attention edit says how the target's attention map ``P*`` (pixels × 77 target
slots) is built from the source's map ``P_src`` and the target's own map ``P_tgt``. Per target
slot ``j`` and step ``k``, with the schedule's α (:mod:`p2p_teach.schedules`):

    P*[:, j] = α_kj · w_j · (a_j · (P_src M)[:, j] + (1 − a_j) · P_tgt[:, j])
               + (1 − α_kj) · P_tgt[:, j]

* ``M`` (77×77, rows source slots, columns target slots) moves source maps onto target slots;
* ``a`` (77,) is 1 where a target slot takes the source's map and 0 where it keeps its own;
* ``w`` (77,) scales target slots (reweighting).

This is the original code's composition (``AttentionReplace``, ``AttentionRefine`` and
``AttentionReweight`` with its ``prev_controller``), written as one formula:

* :class:`Replace` (word swap): ``M`` = the word-swap mapper, ``a = 1``, ``w = 1``;
* :class:`Refine` (words added or removed): ``M`` = the alignment's one-hot matrix,
  ``a`` = the alignment's alphas (0 for new tokens), ``w = 1``;
* :class:`Reweight`: ``w`` = the word scales, on top of a ``base`` Replace or Refine (or the
  identity when source and target prompts are the same);
* :class:`NoEdit`: no injection at all (the "empty edit": both prompts generated plainly).

Collected per slot, ``P* = P_src · (M · diag(c_src)) + P_tgt · diag(c_tgt)`` with
``c_src = α·a·w`` and ``c_tgt = α·(1 − a)·w + (1 − α)``. :func:`step_coefficients` computes
these per step once, before the loop, on the attention's device and dtype.

:class:`LocalBlend` is not an attention edit: after each step it keeps the source's latents
outside a mask made from the attention maps of chosen words, so only that region changes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from numbers import Real
from typing import TYPE_CHECKING, ClassVar, Literal

import torch
import torch.nn.functional as F

from .schedules import (
    CrossSteps,
    InjectionSchedule,
    ScheduleError,
    parse_cross_steps,
    parse_window,
    window_steps,
)
from .tokens import MAX_SLOTS, TokenView

if TYPE_CHECKING:
    from .mapper import MapperRule

StepMode = Literal["none", "source", "mixed"]
# Replace's default share of the cross window for swapped words of unequal piece counts: the
# first quarter, where the layout is decided (python -m p2p_teach.shapes.swap_study measures it)
UNEQUAL_SWAP_SHARE = 0.25


@dataclass(frozen=True)
class TokenEdit:
    """An edit resolved for two prompts, before time enters: ``M``, ``a`` and ``w``.

    Attributes:
        mapper: (77, 77) float32, rows source slots, columns target slots.
        source_share: (77,) float32, ``a``: 1 where a target slot takes the source's map.
        weights: (77,) float32, ``w``: the scale of each target slot.
        injects: False for the empty edit (no cross- or self-attention injection).
    """

    mapper: torch.Tensor = field(repr=False)
    source_share: torch.Tensor = field(repr=False)
    weights: torch.Tensor = field(repr=False)
    injects: bool = True


class Edit:
    """Base class of the attention edits. Subclasses implement :meth:`resolve`."""

    kind: ClassVar[str] = "edit"

    def resolve(self, source: TokenView, target: TokenView) -> TokenEdit:  # pragma: no cover
        raise NotImplementedError

    def describe(self) -> dict:
        """JSON-ready description, stored in the edit's settings."""
        return {"kind": self.kind}

    def cross_windows(
        self, cross_steps: CrossSteps, source: TokenView, target: TokenView
    ) -> CrossSteps:
        """The cross-attention windows this edit runs with: ``cross_steps`` as given, except
        where an edit adds windows of its own (:class:`Replace` for swaps whose piece counts
        differ)."""
        return cross_steps


@dataclass(frozen=True)
class NoEdit(Edit):
    """The empty edit: source and target are generated plainly, side by side, from one z_T."""

    kind: ClassVar[str] = "none"

    def resolve(self, source: TokenView, target: TokenView) -> TokenEdit:
        return TokenEdit(
            mapper=torch.eye(MAX_SLOTS),
            source_share=torch.zeros(MAX_SLOTS),
            weights=torch.ones(MAX_SLOTS),
            injects=False,
        )


@dataclass(frozen=True)
class Replace(Edit):
    """Word swap: target slots take the source's maps through the word-swap mapper.

    Args:
        rule: ``"course"`` (the recitation's mapper, default) or ``"original"`` (the original
            code's mapper, which misaligns later tokens when piece counts differ).
        unequal_share: a swapped word whose piece count differs from its replacement's
            (1-to-N, N-to-1, N-to-M: the mapper gives it a blend of the old word's maps) takes
            the source's maps over this share of the cross-attention window only, then its
            own (0: never), unless ``cross_steps`` names the word. ``None`` injects it over
            the whole window like every other slot. Swaps with equal piece counts are
            untouched. The default, :data:`UNEQUAL_SWAP_SHARE` (a quarter: 5 of 25 steps at
            0.8), was measured on the built-in model (``python -m
            p2p_teach.shapes.swap_study``): over the whole window, a third of such colour
            swaps came out in a colour between the two; over its first quarter, none did.
    """

    rule: MapperRule = "course"
    unequal_share: float | None = UNEQUAL_SWAP_SHARE
    kind: ClassVar[str] = "replace"

    def __post_init__(self) -> None:
        from .mapper import check_rule

        check_rule(self.rule, "Replace(rule=...)")
        share = self.unequal_share
        if share is not None and (
            isinstance(share, bool) or not isinstance(share, Real) or not 0.0 <= share <= 1.0
        ):
            raise ValueError(
                f"Replace(unequal_share={share!r}): the share of the cross-attention window "
                "in [0, 1], or None. Fix: e.g. Replace(unequal_share=0.0), or None to inject "
                "such words over the whole window."
            )

    def cross_windows(
        self, cross_steps: CrossSteps, source: TokenView, target: TokenView
    ) -> CrossSteps:
        """``cross_steps``, with a window of its own for every swapped target word whose piece
        count differs from the source word's (its first ``unequal_share`` of the default
        window), unless ``cross_steps`` names it already. Unchanged when no such word."""
        from .mapper import find_swaps

        if self.unequal_share is None:
            return cross_steps
        unequal = [
            swap.target_word.core_text
            for swap in find_swaps(source, target, whole_words=self.rule == "original")
            if swap.n_source != swap.n_target
        ]
        if not unequal:
            return cross_steps
        windows = parse_cross_steps(cross_steps)
        start, end = windows["default"]
        own = (start, start + self.unequal_share * (end - start))
        named = {key.lower() for key in windows}
        return {**windows, **{word: own for word in unequal if word.lower() not in named}}

    def resolve(self, source: TokenView, target: TokenView) -> TokenEdit:
        from .mapper import WordCountMismatchError, word_swap_mapper

        try:
            mapper = word_swap_mapper(source, target, rule=self.rule)
        except WordCountMismatchError as error:
            raise WordCountMismatchError(
                f"{error} In edit(): edit=Refine()."
            ) from None
        return TokenEdit(mapper.matrix.float(), torch.ones(MAX_SLOTS), torch.ones(MAX_SLOTS))

    def describe(self) -> dict:
        """Kind and rule; ``unequal_share`` too when it is not the default (the windows it
        adds are in the settings' ``cross_steps`` either way), so that default edits are
        described as before it existed."""
        description = {"kind": self.kind, "rule": self.rule}
        if self.unequal_share != UNEQUAL_SWAP_SHARE:
            description["unequal_share"] = self.unequal_share
        return description


@dataclass(frozen=True)
class Refine(Edit):
    """Refinement (words added or removed): aligned target slots take their source slot's map,
    new tokens keep their own.

    Args:
        padding: ``"eos"`` (default): target padding slot ``EOS + d`` continues source slot
            ``EOS + d``; ``"slot"``: padding slot ``k`` reads source slot ``k``, as the
            original code does (:func:`p2p_teach.alignment.refinement_alignment`).
    """

    padding: str = "eos"
    kind: ClassVar[str] = "refine"

    def __post_init__(self) -> None:
        if self.padding not in ("eos", "slot"):
            raise ValueError(
                f"Refine(padding={self.padding!r}): 'eos' (this toolkit's) or 'slot' (the "
                "original code's). Fix: Refine() or Refine(padding='slot')."
            )

    def resolve(self, source: TokenView, target: TokenView) -> TokenEdit:
        from .alignment import refinement_alignment

        alignment = refinement_alignment(source, target, padding=self.padding)
        return TokenEdit(
            alignment.as_matrix().float(), alignment.alphas.float(), torch.ones(MAX_SLOTS)
        )

    def describe(self) -> dict:
        if self.padding == "eos":  # 0.1.0's description, unchanged
            return {"kind": self.kind}
        return {"kind": self.kind, "padding": self.padding}


MAX_SCALE = 1e4  # a larger |Reweight scale| overflows the attention logits after it


def _check_scale(word: str, scale: object) -> None:
    """A Reweight scale: a finite number of at most :data:`MAX_SCALE` in size, or a ValueError
    naming the word and the fix."""
    if not isinstance(scale, Real) or isinstance(scale, bool) or not math.isfinite(scale):
        raise ValueError(
            f"Reweight weight of {word!r} must be a finite number, not {scale!r}. "
            f"Fix: e.g. Reweight({{{word!r}: 3.0}}) (scales from -2 to 6 are typical)."
        )
    if abs(scale) > MAX_SCALE:
        raise ValueError(
            f"Reweight weight of {word!r} is {scale!r}, beyond ±{MAX_SCALE:g}: the scaled "
            "attention overflows (the attention logits of the next layers become inf, then "
            f"NaN). Fix: scales from -2 to 6 are typical, e.g. Reweight({{{word!r}: 3.0}})."
        )


@dataclass(frozen=True)
class Reweight(Edit):
    """Scale the attention of target words (several at once; negative values allowed).

    Args:
        weights: target-prompt word → scale, e.g. ``{"smiling": 4.0, "doll": -1.0}``. Every
            piece of the word is scaled.
        base: the edit it composes over (:class:`Replace` or :class:`Refine`), like the
            original's ``prev_controller``. ``None`` (the default) needs the same prompt for
            source and target: the source's maps are reweighted as they are.

    As in the original, weights act during the cross-attention injection steps only.
    """

    weights: Mapping[str, float] = field(default_factory=dict)
    base: Replace | Refine | None = None
    kind: ClassVar[str] = "reweight"

    def __post_init__(self) -> None:
        weights = self.weights
        if not isinstance(weights, Mapping):
            pairs = [] if isinstance(weights, (str, bytes)) else list(weights or [])
            if not all(isinstance(p, (tuple, list)) and len(p) == 2 for p in pairs) or not pairs:
                raise TypeError(
                    f"Reweight takes a dict of target words and scales, not "
                    f"{type(weights).__name__} {weights!r:.60}. Fix: e.g. "
                    "Reweight({'smiling': 3.0}) (or a list of (word, scale) pairs)."
                )
            object.__setattr__(self, "weights", dict(pairs))
        for word, scale in self.weights.items():
            if not isinstance(word, str):
                raise TypeError(
                    f"Reweight's words must be strings (words of the target prompt), not "
                    f"{word!r}. Fix: e.g. Reweight({{'smiling': 3.0}})."
                )
            _check_scale(word, scale)

    def resolve(self, source: TokenView, target: TokenView) -> TokenEdit:
        if not self.weights:
            raise ValueError(
                "Reweight needs at least one word: Fix: e.g. Reweight({'smiling': 3.0})."
            )
        if self.base is None:
            if source.ids != target.ids:
                raise ValueError(
                    "Reweight without a base edit reweights the source's own maps, so source "
                    f"and target prompts must be the same; got {source.prompt!r} and "
                    f"{target.prompt!r}. Fix: compose it, Reweight(weights, base=Replace()) "
                    "for a word swap or base=Refine() for added words."
                )
            base = TokenEdit(torch.eye(MAX_SLOTS), torch.ones(MAX_SLOTS), torch.ones(MAX_SLOTS))
        elif isinstance(self.base, (Replace, Refine)):
            base = self.base.resolve(source, target)
        else:
            raise TypeError(
                f"Reweight's base must be Replace(), Refine() or None, not {self.base!r}"
            )
        weights = torch.ones(MAX_SLOTS)  # (77 target slots,)
        for word_text, scale in self.weights.items():
            _check_scale(word_text, scale)  # again: the mapping may have changed since
            for word in target.find_words(word_text):  # every copy; lists words if none
                weights[word.core_start : word.core_stop] = float(scale)  # not its "," etc.
        return TokenEdit(base.mapper, base.source_share, weights)

    def cross_windows(
        self, cross_steps: CrossSteps, source: TokenView, target: TokenView
    ) -> CrossSteps:
        """The base edit's windows (a Replace's own for unequal swaps)."""
        if self.base is None:
            return cross_steps
        return self.base.cross_windows(cross_steps, source, target)

    def describe(self) -> dict:
        return {
            "kind": self.kind,
            "weights": {word: float(scale) for word, scale in self.weights.items()},
            "base": None if self.base is None else self.base.describe(),
        }


EDIT_NAMES: dict[str, type[Edit]] = {"none": NoEdit, "replace": Replace, "refine": Refine}


def with_conventions(edit: Edit, conventions: str) -> Edit:
    """The edit as the original code makes it (``conventions="original"``): the original's
    mapper rule for a word swap (and no window of its own for a swapped word), its padding
    for a refinement (also under a reweighting); unchanged for ``"p2p_teach"`` and for the
    empty edit."""
    if conventions != "original":
        return edit
    if isinstance(edit, Replace):
        return Replace(rule="original", unequal_share=None)  # one window for every word
    if isinstance(edit, Refine):
        return Refine(padding="slot")
    if isinstance(edit, Reweight) and edit.base is not None:
        return Reweight(edit.weights, base=with_conventions(edit.base, conventions))
    return edit


def as_edit(edit: Edit | str | None) -> Edit:
    """An :class:`Edit` from an edit, a name (``"replace"``, ``"refine"``, ``"none"``) or None."""
    if edit is None:
        return NoEdit()
    if isinstance(edit, Edit):
        return edit
    if isinstance(edit, str) and edit.lower() in EDIT_NAMES:
        return EDIT_NAMES[edit.lower()]()
    raise ValueError(
        f"edit={edit!r}: use Replace(), Refine(), Reweight({{word: scale}}), NoEdit(), or one "
        f"of the names {list(EDIT_NAMES)}."
    )


# --------------------------------------------------------------------------------------------
# Per-step coefficients, computed once before the loop
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StepCoefficients:
    """What the processors need at each step, on the attention's device and dtype.

    Attributes:
        value_mixers: (T, 77, 77); ``value_mixers[k] = M · diag(c_src[k])``. The source-map term
            of ``P*`` folds into the values: ``P_src · value_mixers[k] · V_tgt``.
        target_keep: (T, 77); ``c_tgt[k]``, the share of each target slot's own map.
        modes: per step, ``"none"`` (P* = P_tgt: nothing to do), ``"source"`` (c_tgt = 0: one
            fused attention with the source's queries and keys) or ``"mixed"`` (both terms).
        self_inject: per step, inject self-attention (False everywhere for the empty edit).
    """

    value_mixers: torch.Tensor = field(repr=False)
    target_keep: torch.Tensor = field(repr=False)
    modes: tuple[StepMode, ...]
    self_inject: tuple[bool, ...]


def step_coefficients(
    token_edit: TokenEdit,
    schedule: InjectionSchedule,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> StepCoefficients:
    """Combine an edit with its schedule into per-step coefficients (see the module formula);
    one row per row of the schedule (steps, or UNet calls for the original's count)."""
    num_steps = schedule.cross.shape[0]  # rows: T steps, or the UNet calls
    if not token_edit.injects:
        return StepCoefficients(
            value_mixers=torch.zeros(num_steps, MAX_SLOTS, MAX_SLOTS, device=device, dtype=dtype),
            target_keep=torch.ones(num_steps, MAX_SLOTS, device=device, dtype=dtype),
            modes=("none",) * num_steps,
            self_inject=(False,) * num_steps,
        )
    alpha = schedule.cross.float()  # (T, 77 target slots)
    share = token_edit.source_share.float()[None, :]  # (1, 77)
    weights = token_edit.weights.float()[None, :]  # (1, 77)
    source_coef = alpha * share * weights  # (T, 77): c_src
    target_coef = alpha * (1.0 - share) * weights + (1.0 - alpha)  # (T, 77): c_tgt
    value_mixers = token_edit.mapper.float()[None, :, :] * source_coef[:, None, :]  # (T, 77, 77)

    modes: list[StepMode] = []
    for step in range(num_steps):
        if not bool(source_coef[step].any()) and bool((target_coef[step] == 1.0).all()):
            modes.append("none")
        elif not bool(target_coef[step].any()):
            modes.append("source")
        else:
            modes.append("mixed")
    return StepCoefficients(
        value_mixers=value_mixers.to(device=device, dtype=dtype),
        target_keep=target_coef.to(device=device, dtype=dtype),
        modes=tuple(modes),
        self_inject=tuple(bool(v) for v in schedule.self_),
    )


# --------------------------------------------------------------------------------------------
# Local blend
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LocalBlend:
    """Change only where the chosen words are: blend the target's latents into the source's.

    After each step (from ``start`` on), the word maps recorded so far at one cross-attention
    resolution are summed over the words' pieces, averaged over layers and steps, max-pooled
    (3×3), resized to the latent, divided by their maximum and thresholded; the source's mask
    and the target's are united, and ``z*_t ← z_t + mask · (z*_t − z_t)``. This is the
    original's ``LocalBlend``.

    Args:
        source_words: word(s) of the source prompt, e.g. ``"bicycle"``, each its text (every
            copy of it) or its index in the prompt.
        target_words: word(s) of the target prompt; default: the same words.
        threshold: the share of the maximum above which a latent pixel may change (0.3).
        start: the share of the steps before blending begins (0.2, the original's).
        resolution: the side of the cross-attention maps used; ``None`` follows the model: the
            largest down/up cross-attention side ≤ a quarter of the latent's side (16 for SD's
            64×64 latent, as the original), or the smallest such side if none is that small.
        mask_function: the mask's recipe, ``(word_maps (2, H, W), latent_size, threshold) →
            (1, 1, h, w)``; ``None``: :func:`blend_mask` (notebook 07 plugs in a learner's).
    """

    source_words: str | int | Sequence[str | int]
    target_words: str | int | Sequence[str | int] | None = None
    threshold: float = 0.3
    start: float = 0.2
    resolution: int | None = None
    mask_function: Callable[..., torch.Tensor] | None = None

    def resolve(self, source: TokenView, target: TokenView, num_steps: int) -> BlendPlan:
        """Look up the words' slots and the first blended step; validate the numbers."""
        if isinstance(self.threshold, bool) or not (
            isinstance(self.threshold, Real) and 0.0 <= self.threshold <= 1.0
        ):
            raise ValueError(
                f"LocalBlend threshold={self.threshold!r}: it is a share of the map's maximum, "
                "in [0, 1]. Fix: e.g. threshold=0.3."
            )
        try:
            start_window = parse_window((self.start, 1.0), "LocalBlend start")
        except ScheduleError as error:
            raise ScheduleError(
                f"LocalBlend start={self.start!r}: a fraction in [0, 1]. Fix: e.g. start=0.2."
            ) from error
        if self.resolution is not None and (
            isinstance(self.resolution, bool)
            or not isinstance(self.resolution, int)
            or self.resolution < 1
        ):
            raise ValueError(f"LocalBlend resolution={self.resolution!r}: a side ≥ 1, or None")
        if self.mask_function is not None and not callable(self.mask_function):
            raise TypeError("LocalBlend mask_function: a function (word_maps, size, threshold)")
        source_words = _as_words(self.source_words)
        target_words = source_words if self.target_words is None else _as_words(self.target_words)
        if not source_words or not target_words:
            raise ValueError("LocalBlend needs at least one word. Fix: LocalBlend('bicycle').")
        source_slots = _word_slots(source, source_words)
        target_slots = _word_slots(target, target_words)
        return BlendPlan(
            source_slots=tuple(source_slots),
            target_slots=tuple(target_slots),
            threshold=float(self.threshold),
            start_step=window_steps(start_window, num_steps).start,
            resolution=self.resolution,
            mask_function=self.mask_function,
        )

    def describe(self) -> dict:
        described = {
            "source_words": _as_words(self.source_words),
            "target_words": None if self.target_words is None else _as_words(self.target_words),
            "threshold": float(self.threshold),
            "start": float(self.start),
            "resolution": self.resolution,
        }
        if self.mask_function is not None:  # 0.1.0's description otherwise
            described["mask_function"] = getattr(self.mask_function, "__name__", "a function")
        return described


@dataclass(frozen=True)
class BlendPlan:
    """A :class:`LocalBlend` resolved for two prompts and a step count."""

    source_slots: tuple[int, ...]
    target_slots: tuple[int, ...]
    threshold: float
    start_step: int
    resolution: int | None  # None: chosen from the model by the engine
    mask_function: Callable[..., torch.Tensor] | None = None  # None: blend_mask

    def mask(self, word_maps: torch.Tensor, latent_size: tuple[int, int]) -> torch.Tensor:
        """The (1, 1, h, w) mask of the averaged (2, H, W) word maps."""
        function = blend_mask if self.mask_function is None else self.mask_function
        return function(word_maps, latent_size, self.threshold)


def _as_words(words: str | int | Sequence[str | int]) -> list[str | int]:
    """A word or several, each its text or its index in the prompt."""
    return [words] if isinstance(words, (str, int)) else list(words)


def _word_slots(view: TokenView, words: list[str | int]) -> list[int]:
    slots: list[int] = []
    for word_text in words:
        for word in view.find_words(word_text):  # every copy; lists the words if none
            slots.extend(word.core)  # the word proper, not its edge punctuation
    return list(dict.fromkeys(slots))  # a slot named twice (by text and index) counts once


def blend_mask(
    word_maps: torch.Tensor, latent_size: tuple[int, int], threshold: float
) -> torch.Tensor:
    """The local-blend mask from word maps of source and target.

    Args:
        word_maps: (2, H, W), the source's and the target's word maps (any positive scale).
        latent_size: (h, w) of the latents.
        threshold: share of each map's maximum.

    Returns:
        (1, 1, h, w) in the maps' dtype: 1 where the source's or the target's map exceeds the
        threshold (after a 3×3 max-pool and nearest resizing, as the original), else 0.
    """
    maps = word_maps[:, None].float()  # (2, 1, H, W)
    maps = F.max_pool2d(maps, kernel_size=3, stride=1, padding=1)  # (2, 1, H, W)
    maps = F.interpolate(maps, size=latent_size)  # (2, 1, h, w), nearest
    peak = maps.amax(dim=(2, 3), keepdim=True).clamp_min(torch.finfo(maps.dtype).tiny)
    mask = (maps / peak) > threshold  # (2, 1, h, w) bool
    return (mask[:1] | mask[1:]).to(word_maps.dtype)  # (1, 1, h, w): source ∪ target


def apply_blend(latents: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``z*_t ← z_t + mask · (z*_t − z_t)`` on latents (2, C, h, w) = [source, target]."""
    source, target = latents[:1], latents[1:]  # (1, C, h, w) each
    blended = source + mask.to(latents.dtype) * (target - source)  # (1, C, h, w)
    return torch.cat([source, blended])  # (2, C, h, w)
