"""Colour swaps on the built-in model, measured: ``python -m p2p_teach.shapes.swap_study``.

A word swap whose two words have different CLIP piece counts (``pink`` → ``char·tre·use``,
``cy·an`` → ``pink``) feeds the new word's pieces a share of the old word's maps (the mapper's
n×m block). This module measures how often such swaps land (the edit's object takes the new
colour) and how well they keep the source's object (mask IoU), on prompts and seeds that the
lessons do not use, for any set of :func:`p2p_teach.edit` settings:

    swaps = heldout_colour_swaps(24, pieces="unequal")
    score = score_swaps(pipe, swaps, cross_steps=0.8)   # SwapScore(success=…, median_iou=…)

The readers are the evaluation's (:mod:`p2p_teach.shapes.evaluate`): the object is every pixel
far from the background, its colour the palette colour nearest its median.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np

from p2p_teach.shapes import data as shapes_data
from p2p_teach.shapes.evaluate import foreground, object_colour, swap_iou

Pieces = Literal["equal", "unequal", "any"]
HELDOUT_SEED = 31_000  # the first seed of the held-out swaps (the lessons use seeds < 100)


def piece_count(word: str) -> int:
    """How many CLIP pieces ``word`` has (``chartreuse``: 3)."""
    from p2p_teach.tokens import tokenize

    return len(tokenize(word).find_word(word).slots)


@dataclass(frozen=True)
class ColourSwap:
    """One colour swap: a prompt, its colour word's replacement and the seed."""

    source: str
    old: str
    new: str
    seed: int

    @property
    def target(self) -> str:
        return " ".join(self.new if w == self.old else w for w in self.source.split())

    @property
    def case(self) -> str:
        """``"1-to-3"`` for pink → chartreuse: the two words' piece counts."""
        return f"{piece_count(self.old)}-to-{piece_count(self.new)}"


def heldout_colour_swaps(
    count: int, pieces: Pieces = "any", seed: int = HELDOUT_SEED
) -> list[ColourSwap]:
    """``count`` colour swaps of random one-object prompts (shape, size, place named or left
    to the seed), none of them a lesson's prompt, with seeds from ``seed`` on.

    ``pieces``: ``"unequal"`` keeps only swaps whose words differ in piece count (1-to-N,
    N-to-1, N-to-M), ``"equal"`` only the others, ``"any"`` both.
    """
    rng = np.random.default_rng(seed)
    colours = list(shapes_data.COLOURS)
    counts = {colour: piece_count(colour) for colour in colours}
    swaps: list[ColourSwap] = []
    while len(swaps) < count:
        old, new = (str(c) for c in rng.choice(colours, size=2, replace=False))
        unequal = counts[old] != counts[new]
        if (pieces == "unequal" and not unequal) or (pieces == "equal" and unequal):
            continue
        shape = str(rng.choice(shapes_data.SHAPES))
        size = str(rng.choice(["big", "small"]))
        words = ["a", size, old, shape]
        if rng.random() < 0.5:
            words += shapes_data.POSITION_PHRASES[
                str(rng.choice(list(shapes_data.POSITIONS)))
            ].split()
        swaps.append(ColourSwap(" ".join(words), old, new, seed + len(swaps)))
    return swaps


@dataclass(frozen=True)
class SwapScore:
    """How a set of colour swaps came out.

    Attributes:
        count: swaps edited.
        success: share whose edited object has the new colour.
        median_iou: median mask IoU of source and edit (0 where either has no object).
        misses: ``"old → new read as colour"`` for each swap that missed.
        ious: each swap's object IoU, in order.
    """

    count: int
    success: float
    median_iou: float
    misses: tuple[str, ...]
    ious: tuple[float, ...] = ()

    @property
    def lost(self) -> int:
        """Swaps whose object is not kept (IoU below 0.5: moved, shrunk or gone)."""
        return sum(iou < 0.5 for iou in self.ious)

    def __str__(self) -> str:
        return (f"{self.success:.0%} new colour, median object IoU {self.median_iou:.2f}, "
                f"{self.lost} objects lost ({self.count} swaps)")  # fmt: skip


EditSettingsFor = Callable[[ColourSwap], dict]


def score_swaps(
    pipe,
    swaps: Iterable[ColourSwap],
    settings_for: EditSettingsFor | None = None,
    steps: int = 25,
    **edit_kwargs: object,
) -> SwapScore:
    """Edit every swap with :func:`p2p_teach.edit` (``**edit_kwargs``, and per swap
    ``settings_for(swap)`` if given) and score the images."""
    from p2p_teach.engine import edit

    ious, hits, misses = [], [], []
    for swap in swaps:
        extra = settings_for(swap) if settings_for is not None else {}
        result = edit(pipe, swap.source, swap.target, seed=swap.seed, steps=steps,
                      record="none", progress=False, **edit_kwargs, **extra)  # fmt: skip
        source = np.asarray(result.source_image.convert("RGB"))  # (64, 64, 3)
        edited = np.asarray(result.edited_image.convert("RGB"))
        source_mask, edited_mask = foreground(source), foreground(edited)
        ious.append(swap_iou(source_mask, edited_mask))
        colour = object_colour(edited, edited_mask)
        hits.append(colour == swap.new)
        if colour != swap.new:
            misses.append(f"{swap.old} → {swap.new} read as {colour}")
    return SwapScore(len(hits), float(np.mean(hits)), float(statistics.median(ious)),
                     tuple(misses), tuple(ious))  # fmt: skip


def word_window(fraction: float) -> EditSettingsFor:
    """Per swap: cross-attention over 0.8 of the steps, the new word's over ``fraction``."""

    def settings(swap: ColourSwap) -> dict:
        return {"cross_steps": {"default": 0.8, swap.new: fraction}}

    return settings


# name -> (edit() keyword arguments, per-swap settings): the candidates the study compares.
# "whole window" injects the swapped word like every other slot (the paper's, and this
# package's default before unequal swaps got a window of their own)
CANDIDATES: dict[str, tuple[dict, EditSettingsFor | None]] = {
    "defaults": ({}, None),
    "course rule, whole window 0.8": ({"edit": ("course", None)}, None),
    "original rule, whole window 0.8": ({"edit": ("original", None)}, None),
    "new word's window 0.4": ({"edit": ("course", None)}, word_window(0.4)),
    "new word's window 0.2": ({"edit": ("course", None)}, word_window(0.2)),
    "new word's window 0": ({"edit": ("course", None)}, word_window(0.0)),
    "original rule, new word's window 0": ({"edit": ("original", None)}, word_window(0.0)),
    "cross 0.4": ({"edit": ("course", None), "cross_steps": 0.4}, None),
}


def _edit_kwargs(kwargs: dict) -> dict:
    """``edit=(rule, unequal_share)`` as a :class:`~p2p_teach.edits.Replace`."""
    if "edit" in kwargs:
        from p2p_teach.edits import Replace

        rule, share = kwargs["edit"]
        return {**kwargs, "edit": Replace(rule=rule, unequal_share=share)}
    return kwargs


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--unequal", type=int, default=24, help="swaps with n≠m pieces")
    parser.add_argument("--equal", type=int, default=8, help="1-to-1 swaps")
    parser.add_argument("--only", nargs="*", help="candidate names to run (default: all)")
    parser.add_argument(
        "--sets",
        nargs="*",
        default=["unequal", "equal"],
        help="which swap sets to run: unequal, equal",
    )
    parser.add_argument("--out", help="write the scores as JSON here")
    args = parser.parse_args(argv)

    from p2p_teach.shapes import load_shapes_pipeline

    pipe = load_shapes_pipeline()
    sets = {
        "unequal": heldout_colour_swaps(args.unequal, "unequal"),
        "equal": heldout_colour_swaps(args.equal, "equal", seed=HELDOUT_SEED + 500),
    }
    scores: dict = {}
    for name, (kwargs, settings_for) in CANDIDATES.items():
        if args.only and name not in args.only:
            continue
        for kind, swaps in sets.items():
            if kind not in args.sets:
                continue
            start = time.perf_counter()
            score = score_swaps(pipe, swaps, settings_for, **_edit_kwargs(kwargs))
            scores.setdefault(name, {})[kind] = asdict(score)
            print(f"{name:<28} {kind:<8} {score}  [{time.perf_counter() - start:.0f} s]",
                  flush=True)  # fmt: skip
            if args.out:
                with open(args.out, "w", encoding="utf-8") as handle:
                    json.dump(scores, handle, indent=1)
    return scores


if __name__ == "__main__":
    main()
