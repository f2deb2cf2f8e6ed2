"""The edit lessons' claims about the built-in model, and the measurements behind them.

Notebooks 03–06 state what a learner should see on the built-in shapes model. Each such
statement is a :class:`Claim` in :data:`CLAIMS`: its text, the number that backs it and the
bound that number must meet. A notebook measures the number (over several seeds, with the
functions below), prints it beside its figure with :meth:`Claim.report`, and
``tests/test_claims.py`` measures every claim the same way, so a retrained model or a changed
default that breaks a lesson fails a test.

The measurements read images with :mod:`p2p_teach.shapes.readers` (object masks, colour,
shape by template, mask IoU) and attention with :class:`~p2p_teach.history.AttentionHistory`.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from .shapes.readers import EditReading, read_edit

Comparison = Literal[">=", "<=", "=="]


@dataclass(frozen=True)
class Claim:
    """One statement a lesson makes, with the bound its measured number must meet.

    Attributes:
        key: a short name (``"p2p_keeps_place"``).
        notebook: the notebook that states it (``"03"``).
        text: the statement, as the notebook says it.
        measure: what the number is.
        comparison, bound: the number must be ``>=``, ``<=`` or ``==`` the bound.
    """

    key: str
    notebook: str
    text: str
    measure: str
    comparison: Comparison
    bound: float

    def holds(self, value: float) -> bool:
        """Whether a measured value backs the claim."""
        if self.comparison == ">=":
            return value >= self.bound
        if self.comparison == "<=":
            return value <= self.bound
        return abs(value - self.bound) < 1e-9

    def report(self, value: float, detail: str = "") -> str:
        """One line for the notebook: the claim, the measured value and whether it holds."""
        mark = "holds" if self.holds(value) else "DOES NOT HOLD"
        extra = f" ({detail})" if detail else ""
        return (f"{self.text}\n  measured: {self.measure} = {value:.2f}{extra}; "
                f"needs {self.comparison} {self.bound:g}: {mark}")  # fmt: skip


CLAIMS: tuple[Claim, ...] = (
    # 03: the edit
    Claim(
        "p2p_keeps_object",
        "03",
        "With the same noise and injection, the edit keeps the source's object in place.",
        "median object IoU, source vs edit",
        ">=",
        0.8,
    ),
    Claim(
        "plain_moves_object",
        "03",
        "With the same noise but no injection, the object moves or changes its outline.",
        "median object IoU, source vs plain target",
        "<=",
        0.7,
    ),
    Claim(
        "p2p_new_colour",
        "03",
        "The edited object takes the new colour.",
        "share of seeds with the new colour",
        ">=",
        0.75,
    ),
    Claim(
        "unequal_whole_window_misses",
        "03",
        "A 1-to-3 swap (pink → char·tre·use) injected over the whole window misses the "
        "new colour at one seed or more: it comes out in another colour.",
        "share of seeds with the new colour",
        "<=",
        0.75,
    ),
    Claim(
        "unequal_own_window_lands",
        "03",
        "With the default (the swapped word injected over the first quarter of the window "
        "only), it lands at every seed.",
        "share of seeds with the new colour",
        ">=",
        1.0,
    ),
    # 04: attention per timestep
    Claim(
        "words_on_own_object",
        "04",
        "On a two-object prompt, each colour and shape word's map sits on its own object.",
        "lowest share of a word's map mass in its own object's half",
        ">=",
        0.7,
    ),
    Claim(
        "injected_maps_are_source",
        "04",
        "During injection the target's map of the new word IS the source's map of the old one.",
        "largest difference in the injected steps",
        "<=",
        0.0,
    ),
    Claim(
        "own_maps_after_injection",
        "04",
        "After injection the target's maps are its own.",
        "largest difference in the free steps",
        ">=",
        1e-3,
    ),
    # 05: the injection step
    Claim(
        "short_injection_new_shape",
        "05",
        "Injected over few steps, heart → star draws the star.",
        "share of seeds drawing a star at fraction 0.25",
        ">=",
        0.75,
    ),
    Claim(
        "long_injection_keeps_outline",
        "05",
        "Injected over every step, no star is drawn: the source's outline holds it back.",
        "share of seeds drawing a star at fraction 1",
        "<=",
        0.25,
    ),
    Claim(
        "long_injection_keeps_layout",
        "05",
        "Longer injection keeps more of the source's object.",
        "median object IoU at fraction 1 minus at fraction 0",
        ">=",
        0.2,
    ),
    Claim(
        "colour_lands_full_injection",
        "05",
        "A new colour lands even with cross-attention injected at every step.",
        "share of seeds with the new colour at fraction 1",
        ">=",
        0.75,
    ),
    Claim(
        "self_injection_keeps_layout",
        "05",
        "Without cross-attention injection, self-attention injection alone keeps the "
        "object where the source drew it.",
        "median object IoU with self 0.6 minus without",
        ">=",
        0.2,
    ),
    # 06: beyond replacement
    Claim(
        "refine_adds_size",
        "06",
        "Refining 'a red circle' into 'a big red circle' makes the circle bigger in place.",
        "median area ratio, edit / source",
        ">=",
        1.1,
    ),
    Claim(
        "reweight_removes_colour",
        "06",
        "Reweighting 'red' by −1 takes the red away: the circle comes out in another "
        "colour, in place.",
        "share of seeds whose object is no longer red",
        ">=",
        0.75,
    ),
    Claim(
        "blend_keeps_other_object",
        "06",
        "A local blend on one of two objects recolours it and leaves the other one's colour.",
        "share of seeds with both objects as asked",
        ">=",
        0.75,
    ),
    Claim(
        "blend_latents_outside_equal",
        "06",
        "Outside the blend mask the edited latents are the source's, exactly.",
        "largest latent difference outside the mask",
        "<=",
        0.0,
    ),
    # 08: real images
    Claim(
        "null_window_frees_new_colour",
        "08",
        "Given to the target at every step, the null embeddings (fitted to rebuild the source) "
        "hold its object further from the new colour than over the first 0.2 of the steps.",
        "mean distance of the edited object's colour to the new colour's, at every step minus "
        "at 0.2 (RGB units)",
        ">=",
        5.0,
    ),
)

BY_KEY: dict[str, Claim] = {claim.key: claim for claim in CLAIMS}


def claims_of(notebook: str) -> list[Claim]:
    """The claims one notebook states (``"03"`` … ``"06"``, ``"08"``)."""
    return [claim for claim in CLAIMS if claim.notebook == notebook]


# the built-in model's two-object lesson prompt: the side of each colour and shape word's object
TWO_OBJECT_SIDES: dict[str, str] = {"red": "left", "circle": "left", "blue": "right",
                                    "square": "right"}  # fmt: skip


# --------------------------------------------------------------------------------------------
# Measurements over seeds
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tally:
    """Several seeds' readings of one edit setting, summarised.

    Attributes:
        readings: one :class:`~p2p_teach.shapes.readers.EditReading` per seed.
        success: share of seeds whose edit shows what was asked (new colour or shape).
        median_iou: median object IoU of source and edit.
    """

    readings: tuple[EditReading, ...]
    success: float
    median_iou: float

    def __str__(self) -> str:
        return f"success {self.success:.0%}, median object IoU {self.median_iou:.2f}"


def tally(
    readings: Sequence[EditReading], colour: str | None = None, shape: str | None = None
) -> Tally:
    """Summarise readings: success is the share showing ``colour`` (and ``shape``) if given."""

    def succeeded(reading: EditReading) -> bool:
        return (colour is None or reading.colour == colour) and (
            shape is None or reading.shape == shape
        )

    return Tally(
        tuple(readings),
        float(np.mean([succeeded(r) for r in readings])),
        float(statistics.median(r.iou for r in readings)),
    )


def edit_over_seeds(
    pipe: Any, source: str, target: str, seeds: Iterable[int], **edit_kwargs: Any
) -> list[Any]:
    """One :func:`~p2p_teach.engine.edit` per seed (nothing recorded unless asked): the
    :class:`~p2p_teach.engine.EditResult` of each, in seed order."""
    from .engine import edit

    edit_kwargs.setdefault("record", "none")
    edit_kwargs.setdefault("progress", False)
    return [edit(pipe, source, target, seed=seed, **edit_kwargs) for seed in seeds]


def read_results(
    results: Iterable[Any], shapes: tuple[str, ...] | None = None
) -> list[EditReading]:
    """:func:`~p2p_teach.shapes.readers.read_edit` of each result."""
    return [read_edit(result, shapes) for result in results]


def sweep_over_seeds(
    pipe: Any,
    source: str,
    target: str,
    seeds: Iterable[int],
    *,
    cache: Any = None,
    **sweep_kwargs: Any,
) -> dict[float, list[Any]]:
    """:func:`~p2p_teach.sweep.injection_sweep` at every seed: fraction → results in seed
    order (the cells come from ``cache`` when it holds them)."""
    from .sweep import SweepCache, injection_sweep

    cache = SweepCache() if cache is None else cache
    results: dict[float, list[Any]] = {}
    for seed in seeds:
        sweep = injection_sweep(pipe, source, target, seed=seed, cache=cache, **sweep_kwargs)
        for fraction, result in sweep.cells.items():
            results.setdefault(fraction, []).append(result)
    return results


def word_shares_in_halves(
    history: Any, sides: Mapping[str, str], prompt: Literal["source", "target"] = "source"
) -> dict[str, float]:
    """Each word's share of its map mass in the half of the image of its own object.

    ``sides`` maps words to ``"left"``, ``"right"``, ``"top"`` or ``"bottom"``. The maps are
    the finest recorded layers', averaged over heads, layers of that side and all steps.
    """
    side = max(layer.side for layer in history.layers)
    shares = {}
    for word, place in sides.items():
        maps = history.word_maps(word, prompt, resolution=side)  # (steps, H, W)
        mean = maps.float().mean(dim=0)  # (H, W)
        half = _half(mean.shape, place)
        shares[word] = float(mean[half].sum() / mean.sum().clamp_min(1e-12))
    return shares


def _half(shape: tuple[int, int] | torch.Size, place: str) -> torch.Tensor:
    """(H, W) bool: the half of a map at ``place``."""
    height, width = shape
    half = torch.zeros(height, width, dtype=torch.bool)
    if place == "left":
        half[:, : width // 2] = True
    elif place == "right":
        half[:, width // 2 :] = True
    elif place == "top":
        half[: height // 2] = True
    elif place == "bottom":
        half[height // 2 :] = True
    else:
        raise ValueError(f"place={place!r}: use left, right, top or bottom")
    return half


def injected_map_gaps(
    history: Any, source_word: str, target_word: str, injected: range
) -> tuple[float, float]:
    """Largest |target map − source map| of a swapped word inside the injected steps, and
    the largest outside them (every recorded layer; the maps summed over the words' pieces).

    With a 1-to-1 swap the first is 0: the target's map there IS the source's.
    """
    inside, outside = 0.0, 0.0
    for layer in history.layers:
        source = history.word_maps(source_word, "source", resolution=layer.size)  # (T, H, W)
        target = history.word_maps(target_word, "target", resolution=layer.size)
        gaps = (target.float() - source.float()).abs().flatten(1).amax(dim=1)  # (T,)
        for step, gap in enumerate(gaps.tolist()):
            if step in injected:
                inside = max(inside, gap)
            else:
                outside = max(outside, gap)
    return inside, outside


class LastBlendMask:
    """A per-step callback keeping the local blend's last mask, (h, w) on the CPU."""

    def __init__(self) -> None:
        self.mask: torch.Tensor | None = None

    def __call__(self, info: Any) -> None:  # info: p2p_teach.engine.StepInfo
        if info.blend_mask is not None:
            self.mask = info.blend_mask[0, 0].float().cpu()  # (1, 1, h, w) -> (h, w)


def blend_over_seeds(
    pipe: Any, source: str, target: str, seeds: Iterable[int], **edit_kwargs: Any
) -> list[tuple[Any, torch.Tensor | None]]:
    """One edit per seed (with a ``blend=`` in ``edit_kwargs``): (result, its last mask)."""
    from .engine import edit

    runs = []
    for seed in seeds:
        keeper = LastBlendMask()
        result = edit(pipe, source, target, seed=seed, callback=keeper, record="none",
                      progress=False, **edit_kwargs)  # fmt: skip
        runs.append((result, keeper.mask))
    return runs


def object_area_ratio(result: Any) -> float:
    """Pixels of the edited object ÷ pixels of the source's (the evaluation's masks)."""
    from .shapes.evaluate import foreground
    from .shapes.readers import as_array

    source = foreground(as_array(result.source_image)).sum()
    edited = foreground(as_array(result.edited_image)).sum()
    return float(edited / max(source, 1))


def latent_change_outside(result: Any, mask: torch.Tensor) -> float:
    """Largest |edited − source| latent value where the (h, w) blend ``mask`` is 0."""
    latents = result.latents  # (2, C, h, w): [source, edited]
    outside = mask.reshape(mask.shape[-2:]) == 0  # (h, w)
    difference = (latents[1][:, outside] - latents[0][:, outside]).abs()  # (C, pixels outside)
    return float(difference.max()) if difference.numel() else 0.0


def iou_to_final(previews: Sequence[Any], final: Any) -> list[float]:
    """Object IoU of each step's x0 preview with the final image (0 where either is empty)."""
    from .shapes.evaluate import foreground, swap_iou
    from .shapes.readers import as_array

    final_mask = foreground(as_array(final))
    return [swap_iou(foreground(as_array(preview)), final_mask) for preview in previews]


def outside_mask_change(result: Any, mask: torch.Tensor) -> float:
    """Mean absolute pixel change (0–255) between source and edit where ``mask`` is 0.

    ``mask``: the local blend's last mask, (h, w) or (1, 1, h, w) at latent size; it is
    resized to the image by nearest neighbour.
    """
    from .shapes.readers import as_array

    source = as_array(result.source_image).astype(np.int16)
    edited = as_array(result.edited_image).astype(np.int16)
    mask = mask.float().reshape(1, 1, *mask.shape[-2:])  # (1, 1, h, w)
    size = source.shape[:2]
    full = torch.nn.functional.interpolate(mask, size=size, mode="nearest")[0, 0] > 0
    outside = ~full.numpy()  # (H, W)
    return float(np.abs(source - edited)[outside].mean())


# --------------------------------------------------------------------------------------------
# Scoring one sweep (the sweep widget's plot)
# --------------------------------------------------------------------------------------------


def swapped_word(source: str, target: str) -> tuple[str, str] | None:
    """(old word, new word) when the target swaps exactly one word of the source, else None."""
    source_words, target_words = source.lower().split(), target.lower().split()
    if len(source_words) != len(target_words):
        return None
    changed = [(old, new) for old, new in zip(source_words, target_words) if old != new]
    return changed[0] if len(changed) == 1 else None


@dataclass(frozen=True)
class SweepScores:
    """Measures of one sweep row against the injection fraction, for a plot and a status line.

    Attributes:
        curves: measure name → {fraction: value}.
        bounded: every value lies in [0, 1] (object IoU, success); False for layout similarity
            (−1 … 1).
        cells: fraction → one line saying what that cell's image shows.
        note: what the measures are, and what they cannot tell.
    """

    curves: dict[str, dict[float, float]]
    bounded: bool
    cells: dict[float, str]
    note: str


def sweep_scores(pipe: Any, sweep: Any, source: str, target: str) -> SweepScores:
    """Score every cell of a :class:`~p2p_teach.sweep.SweepResult` of ``source → target``.

    On the built-in model the images have object masks, so a cell is scored by the object IoU
    with the source (how much of its outline is kept) and, for a swap of one colour or shape
    word, whether the new word is drawn (1) or not (0). Other models have no masks: a cell is
    scored by :func:`~p2p_teach.measures.layout_similarity`, which rises with kept layout but
    also when the edit fails (the source's outline stays), so it is labelled as such.
    """
    from .defaults import model_defaults
    from .shapes.data import COLOURS, SHAPES

    fractions = sorted(sweep.cells)
    if model_defaults(pipe).builtin != "shapes":
        from .sweep import layout_survival

        similarity = layout_survival(sweep)
        return SweepScores(
            {"layout similarity to the source": similarity},
            False,
            {f: f"layout similarity to the source {similarity[f]:.2f}" for f in fractions},
            "No object masks on this model: layout similarity (8×8 grid) also rises when the "
            "edit fails and the source's outline stays; read it beside the images.",
        )
    old, new = swapped_word(source, target) or ("", "")
    shapes = (old, new) if old in SHAPES and new in SHAPES else None
    readings = {f: read_edit(sweep.cells[f], shapes) for f in fractions}
    curves = {"object IoU with the source": {f: readings[f].iou for f in fractions}}
    if shapes or new in COLOURS:
        drawn = {f: float((readings[f].shape if shapes else readings[f].colour) == new)
                 for f in fractions}  # fmt: skip
        curves[f"{new} drawn (1 yes, 0 no)"] = drawn
    cells = {
        f: f"object IoU with the source {readings[f].iou:.2f}; read as "
        + (" ".join(part for part in (readings[f].colour, readings[f].shape) if part)
           or "no object")
        for f in fractions
    }
    return SweepScores(
        curves, True, cells,
        "One seed: masks and colours read from the images (p2p_teach.shapes.readers).",
    )  # fmt: skip


# --------------------------------------------------------------------------------------------
# Editing an inversion (notebook 08)
# --------------------------------------------------------------------------------------------


def colour_distance(image: Any, colour: str) -> float:
    """Distance in RGB from the median colour of ``image``'s object to the palette's ``colour``
    (0: exactly the palette's; the palette's colours lie about 100–400 apart). ``inf`` when no
    object is found."""
    from .shapes.data import COLOURS
    from .shapes.evaluate import foreground
    from .shapes.readers import as_array

    if colour not in COLOURS:
        raise ValueError(f"colour={colour!r}: the palette has {', '.join(COLOURS)}")
    array = as_array(image)
    mask = foreground(array)
    if not mask.any():
        return float("inf")
    median = np.median(array[mask].astype(float), axis=0)  # (3,) RGB
    return float(np.linalg.norm(median - np.asarray(COLOURS[colour], dtype=float)))


@dataclass(frozen=True)
class NullWindowComparison:
    """Edits of one inversion to several new colours, at several ``target_null_steps`` shares.

    Attributes:
        results: share → new colour → :class:`~p2p_teach.engine.EditResult`.
        distances: share → new colour → :func:`colour_distance` of the edited image.
    """

    results: dict[float, dict[str, Any]]
    distances: dict[float, dict[str, float]]

    def mean(self, share: float) -> float:
        """The mean distance to the new colour over the colours, at ``share``."""
        return float(np.mean(list(self.distances[share].values())))


def null_window_comparison(
    pipe: Any, inversion: Any, colours: Sequence[str], shares: Sequence[float] = (1.0, 0.2)
) -> NullWindowComparison:
    """Edit ``inversion`` with its caption's colour word replaced by each of ``colours``, at each
    ``target_null_steps`` share, and measure how far each edit's object is from its colour."""
    from .engine import edit
    from .shapes.data import COLOURS

    words = inversion.caption.split()
    old = next((word for word in words if word in COLOURS), None)
    if old is None:
        raise ValueError(f"the caption {inversion.caption!r} names no palette colour to swap")
    results: dict[float, dict[str, Any]] = {}
    for share in shares:
        results[share] = {}
        for colour in colours:
            target = " ".join(colour if word == old else word for word in words)
            results[share][colour] = edit(
                pipe, inversion.caption, target, inversion=inversion, record="none",
                target_null_steps=share, progress=False,
            )  # fmt: skip
    distances = {
        share: {colour: colour_distance(result.edited_image, colour)
                for colour, result in by_colour.items()}
        for share, by_colour in results.items()
    }  # fmt: skip
    return NullWindowComparison(results, distances)
