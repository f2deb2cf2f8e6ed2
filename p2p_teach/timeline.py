"""What the attention timeline can show, as plain data over an :class:`AttentionHistory`.

The timeline puts a source map and a target map side by side. What is a "slot" on both sides?

* a **word pair**: word k of the source and word k of the target when the prompts have as many
  words (``"bicycle → motorcycle"`` for a swap, ``"cat"`` where they agree); with different
  word counts (refinement), every target word, paired with the same word in the source if it
  is there;
* **BOS**, **EOS** (each prompt's own EOS slot) and **padding** (the history sums padding into
  one column unless recorded with ``record_slots="all"``).

:func:`slot_choices` lists them, :func:`choice_maps` returns their maps over the steps,
:func:`layer_choices` lists the resolution/place groups a history holds,
:func:`concentration_by_word` measures how each word's map gathers over the steps
(:func:`p2p_teach.measures.concentration`) and :func:`early_late_means` compares its first and
last quarter; :func:`mean_word_map` averages a word's map over the steps. For a finished edit,
:func:`algorithm_trace` and :func:`injected_steps` say where the source's maps were injected
(:func:`sweep_windows` for a whole sweep). Pure functions: no model, no widgets.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from PIL import Image

from .history import AttentionHistory, Place
from .measures import concentration, top_k_mass
from .settings import EditSettings
from .tokens import TokenView, WordNotFoundError

if TYPE_CHECKING:
    from .sweep import SweepResult

ImageLike = Image.Image | np.ndarray | torch.Tensor

# a word index, a slot index, "padding", or None (not in this prompt)
SlotKey = (
    tuple[Literal["word"], int] | tuple[Literal["slot"], int] | Literal["padding"] | None
)


@dataclass(frozen=True)
class SlotChoice:
    """One entry of the timeline's word/slot selector: what to show for source and target."""

    label: str  # e.g. "bicycle → motorcycle", "cat", "BOS", "EOS", "padding"
    source: SlotKey
    target: SlotKey
    kind: Literal["word", "bos", "eos", "padding"]
    changed: bool = False  # True for swapped, added or removed words


@dataclass(frozen=True)
class LayerChoice:
    """One entry of the resolution/place selector: which recorded layers to average."""

    label: str  # e.g. "16×16 (down + up)", "8×8 up", "all kept layers"
    resolution: int | None  # a side, or None for all
    place: Place | None  # or None for all places


def _word_key(view: TokenView, text: str) -> SlotKey:
    try:
        return ("word", view.find_word(text).index)
    except WordNotFoundError:
        return None


def slot_choices(source: TokenView, target: TokenView) -> list[SlotChoice]:
    """The selector's entries: word pairs first (changed words marked), then BOS, EOS, padding."""
    choices: list[SlotChoice] = []
    if len(source.words) == len(target.words):
        for source_word, target_word in zip(source.words, target.words):
            changed = source_word.text != target_word.text
            label = f"{source_word.text} → {target_word.text}" if changed else target_word.text
            choices.append(
                SlotChoice(
                    label,
                    ("word", source_word.index),
                    ("word", target_word.index),
                    "word",
                    changed,
                )
            )
    else:
        target_texts = {word.text for word in target.words}
        for target_word in target.words:
            source_key = _word_key(source, target_word.text)
            label = target_word.text if source_key else f"(new) {target_word.text}"
            choices.append(
                SlotChoice(
                    label, source_key, ("word", target_word.index), "word", source_key is None
                )
            )
        for source_word in source.words:
            if source_word.text not in target_texts:
                choices.append(
                    SlotChoice(
                        f"(removed) {source_word.text}",
                        ("word", source_word.index),
                        None,
                        "word",
                        True,
                    )
                )
    choices.append(SlotChoice("BOS", ("slot", 0), ("slot", 0), "bos"))
    choices.append(
        SlotChoice("EOS", ("slot", source.eos_index), ("slot", target.eos_index), "eos")
    )
    choices.append(SlotChoice("padding", "padding", "padding", "padding"))
    return choices


def changed_choices(source: TokenView, target: TokenView) -> list[SlotChoice]:
    """The word entries that changed (swapped, added, removed); all words if none changed."""
    words = [choice for choice in slot_choices(source, target) if choice.kind == "word"]
    changed = [choice for choice in words if choice.changed]
    return changed or words


def layer_choices(history: AttentionHistory) -> list[LayerChoice]:
    """The resolution/place groups of a history, largest resolution first, then "all"."""
    choices: list[LayerChoice] = []
    for height, width in history.resolutions:
        side = max(height, width)
        places = sorted(
            {layer.place for layer in history.layers if layer.side == side},
            key=("down", "mid", "up").index,
        )
        choices.append(LayerChoice(f"{height}×{width} ({' + '.join(places)})", side, None))
        if len(places) > 1:
            choices.extend(
                LayerChoice(f"{height}×{width} {place}", side, place) for place in places
            )
    choices.append(LayerChoice("all kept layers (resized, averaged)", None, None))
    return choices


def key_maps(
    history: AttentionHistory,
    key: SlotKey,
    prompt: Literal["source", "target"],
    layers: LayerChoice,
    size: tuple[int, int] | None = None,
) -> torch.Tensor | None:
    """The (steps, H, W) maps of one key of one prompt, or None when the key is None.

    ``size`` defaults to the largest selected layer's size; pass a common size to compare
    choices made at different resolutions.
    """
    if key is None:
        return None
    selection = {"resolution": layers.resolution, "place": layers.place, "size": size}
    if key == "padding":
        return history.slot_maps("padding", prompt, **selection)
    kind, index = key
    if kind == "word":
        return history.word_maps(index, prompt, **selection)
    return history.slot_maps(index, prompt, **selection)


def choice_maps(
    history: AttentionHistory,
    choice: SlotChoice,
    layers: LayerChoice,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(source, target) maps of a selector entry over all recorded steps: (steps, H, W) each.

    Both come at the same size (the largest selected layer's), so they share one colour scale
    and one picture. A side is None where the entry has no slot in that prompt.
    """
    size = max((layer.size for layer in history.select(layers.resolution, layers.place)),
               key=lambda hw: hw[0] * hw[1])  # fmt: skip
    return (
        key_maps(history, choice.source, "source", layers, size),
        key_maps(history, choice.target, "target", layers, size),
    )


def concentration_by_word(
    history: AttentionHistory,
    prompt: Literal["source", "target"] = "source",
    *,
    resolution: int | None = None,
    place: Place | None = None,
    measure: Literal["entropy", "top10"] = "entropy",
) -> dict[str, torch.Tensor]:
    """Each word's concentration at every recorded step: word → (steps,) float64.

    ``measure="entropy"`` is 1 − normalised entropy (0 spread, 1 one pixel); ``"top10"`` the
    share of the mass in the brightest 10 % of the pixels. A word that occurs twice is listed
    once per occurrence (``"a"``, ``"a (2)"``).
    """
    view = history.source if prompt == "source" else history.target
    measure_fn = concentration if measure == "entropy" else lambda m: top_k_mass(m, 0.1)
    if measure not in ("entropy", "top10"):
        raise ValueError(f"measure={measure!r}: use 'entropy' or 'top10'")
    values: dict[str, torch.Tensor] = {}
    for word in view.words:
        if word.n_slots == 0:
            continue
        label, repeat = word.text, 2
        while label in values:
            label, repeat = f"{word.text} ({repeat})", repeat + 1
        maps = history.word_maps(word.index, prompt, resolution=resolution, place=place)
        values[label] = measure_fn(maps)  # (steps, H, W) -> (steps,)
    return values


def step_word_maps(
    history: AttentionHistory,
    step: int,
    choices: list[SlotChoice] | None = None,
    layers: LayerChoice | None = None,
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Source and target maps of some selector entries at one step: label → ((H, W), (H, W)).

    Defaults: the changed words (:func:`changed_choices`, at most three) at the finest kept
    resolution. A side with no slot for the entry (an added or removed word) is all zeros.
    """
    layers = layers if layers is not None else layer_choices(history)[0]
    if choices is None:
        choices = changed_choices(history.source, history.target)[:3]
    pairs: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for choice in choices:
        source_maps, target_maps = choice_maps(history, choice, layers)  # (steps, H, W) each
        present = source_maps if source_maps is not None else target_maps
        blank = torch.zeros_like(present[step])  # (H, W)
        pairs[choice.label] = (
            blank if source_maps is None else source_maps[step],
            blank if target_maps is None else target_maps[step],
        )
    return pairs


def algorithm_trace(settings: EditSettings, timesteps: Sequence[float]) -> list[str]:
    """Algorithm 1's loop for a finished edit, one line per step (lines 5–9 of the slide).

    Args:
        settings: an :class:`~p2p_teach.engine.EditResult`'s ``settings``.
        timesteps: the timestep of every step (``result.history.timesteps``).

    Each line says which timestep the step denoises, and whether the source's cross-attention
    maps (line 8, ``M̂_t ← Edit(M_t, M*_t, t)``) and self-attention maps replace the target's there.
    Per-word cross windows are listed when the settings have them; a refinement's new words
    keep their own maps, and self-attention is injected only in layers of side ≤
    ``self_max_side``, as the lines say.
    """
    steps = settings.steps
    if len(timesteps) != steps:
        raise ValueError(f"{len(timesteps)} timesteps for {steps} steps")
    cross_ranges = _cross_ranges(settings)
    self_range = injected_steps(settings, "self")
    injects = settings.kind != "none"
    refines = _base_kind(settings.edit) == "refine"
    side = settings.self_max_side
    self_injected = "source's maps" + (f" (layers ≤ {side}×{side})" if side else "")
    lines = []
    width = len(str(steps))
    for step, timestep in enumerate(timesteps):
        if not injects:
            cross_text, self_text = "free (no edit)", "free"
        else:
            inside = [word for word, steps_in in cross_ranges.items() if step in steps_in]
            if len(cross_ranges) == 1:
                cross_text = "source's maps" if inside else "target's own"
            else:
                named = ", ".join("other words" if word == "default" else word for word in inside)
                cross_text = f"source's maps for {named}" if inside else "target's own"
            if inside and refines:
                cross_text += " (new words: own)"
            self_text = self_injected if step in self_range else "target's own"
        lines.append(
            f"step {step + 1:>{width}}/{steps}  t = {timestep:>4g}  "
            f"cross-attention: {cross_text:<14}  self-attention: {self_text}"
        )
    return lines


def _base_kind(edit: Mapping[str, Any]) -> str:
    """The edit's kind, or its base's for a Reweight over Replace/Refine."""
    base = edit.get("base")
    return _base_kind(base) if edit.get("kind") == "reweight" and base else edit.get("kind", "")


def _cross_ranges(settings: EditSettings) -> dict[str, range]:
    """The settings' cross-attention windows as step ranges: word (or "default") → range."""
    return {word: range(*bounds) for word, bounds in settings.cross_step_ranges.items()}


def injected_steps(
    settings: EditSettings,
    kind: Literal["cross", "self"] = "cross",
    word: str = "default",
) -> range:
    """The 0-based steps in which an edit injected the source's maps.

    Args:
        settings: an :class:`~p2p_teach.engine.EditResult`'s ``settings``.
        kind: ``"cross"`` (cross-attention, line 8 of Algorithm 1) or ``"self"``.
        word: for cross-attention, a word with its own window, or ``"default"`` (the rest).
    """
    if kind == "self":
        return range(*settings.self_step_range)
    if kind != "cross":
        raise ValueError(f"kind={kind!r}: use 'cross' or 'self'")
    ranges = _cross_ranges(settings)
    if word not in ranges:
        raise KeyError(
            f"no cross-attention window for {word!r}; the settings have: {', '.join(ranges)}"
        )
    return ranges[word]


def steps_text(steps: range) -> str:
    """A step range counted from 1, as the lessons do: ``"steps 1–5"``, ``"step 3"``, ``"no step"``.
    """
    if len(steps) == 0:
        return "no step"
    if len(steps) == 1:
        return f"step {steps.start + 1}"
    return f"steps {steps.start + 1}–{steps.stop}"


def sweep_windows(sweep: SweepResult) -> list[str]:
    """One line per cell of an injection sweep: which steps took the source's maps.

    E.g. ``"cross 0.25 → the source's cross-attention in steps 1–5 of 20"``.
    """
    lines = []
    for fraction in sweep.fractions:
        settings = sweep.cells[fraction].settings
        window = steps_text(injected_steps(settings, sweep.varied))
        lines.append(
            f"{sweep.varied} {fraction:<4} → the source's {sweep.varied}-attention in {window} "
            f"of {settings.steps}"
        )
    return lines


def finest_side(history: AttentionHistory) -> int:
    """The side of the finest (largest) recorded layer, e.g. 16 for 16×16."""
    if not history.layers:
        raise ValueError("the history holds no layers; record some (edit(..., record='auto'))")
    return max(layer.side for layer in history.layers)


def mean_word_map(
    history: AttentionHistory,
    word: str | int,
    prompt: Literal["source", "target"],
    *,
    resolution: int | None = None,
) -> torch.Tensor:
    """A word's map averaged over all recorded steps: (H, W).

    ``resolution`` defaults to the finest kept layers (:func:`finest_side`).
    """
    side = finest_side(history) if resolution is None else resolution
    maps = history.word_maps(word, prompt, resolution=side)  # (steps, H, W)
    return maps.mean(dim=0)  # (steps, H, W) -> (H, W)


def early_late_means(
    values: Mapping[str, Sequence[float] | torch.Tensor | np.ndarray],
    share: float = 0.25,
) -> dict[str, tuple[float, float]]:
    """Each series' mean over its first and its last ``share`` of the steps: label → (early, late).

    Both parts hold ``floor(share · steps)`` values (at least one), e.g. steps 1–5 and 16–20 of
    20 for the default quarter. Pass :func:`concentration_by_word`'s output to see whether a
    word's map gathers (late > early) or spreads out as denoising goes on.
    """
    if not 0.0 < share <= 1.0:
        raise ValueError(f"share={share!r}: the fraction of the steps in each part, in (0, 1]")
    means: dict[str, tuple[float, float]] = {}
    for label, series in values.items():
        array = np.asarray(series, dtype=np.float64).reshape(-1)  # (steps,)
        if array.size == 0:
            raise ValueError(f"{label!r} has no values; pass one value per step")
        count = max(1, math.floor(share * array.size + 1e-9))
        means[label] = (float(array[:count].mean()), float(array[-count:].mean()))
    return means


class PreviewRecorder:
    """A per-step callback for :func:`~p2p_teach.engine.edit` that keeps every x0 preview.

    ``edit(..., callback=recorder)``; afterwards ``recorder.steps``, ``recorder.timesteps``,
    ``recorder.source`` and ``recorder.target`` (PIL images, one per step) show how the
    picture forms: the x0 prediction at step k is what the image would be if denoising stopped
    there.
    """

    def __init__(self) -> None:
        self.steps: list[int] = []
        self.timesteps: list[float] = []
        self.source: list = []
        self.target: list = []

    def __call__(self, info) -> None:  # info: p2p_teach.engine.StepInfo
        preview = info.preview()
        if preview is None:
            return
        self.steps.append(info.step)
        self.timesteps.append(info.timestep)
        self.source.append(preview[0])
        self.target.append(preview[1])

    def __len__(self) -> int:
        return len(self.steps)
