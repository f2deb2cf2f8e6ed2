"""Running word swaps through an edit function and reading what each edit did."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import torch

from p2p_teach.shapes import SELF_MAX_RATIO, SELF_STEPS
from p2p_teach.shapes import data as shapes_data

from .classifier import classify_shape
from .readers import background_name, foreground, object_colour, object_position, swap_iou
from .settings import EvalSettings
from .specs import ObjectSpec, PromptSwap

if TYPE_CHECKING:
    from diffusers import StableDiffusionPipeline


CROSS_STEPS = 0.8  # the cross-attention injection the targets are measured at
# the colour swaps also run with cross-attention injected over fewer steps, which leaves the new
# colour more steps of its own attention
SHORTER_CROSS = 0.7
# a new shape needs more steps of its own attention than a new colour: the source's maps hold
# its outline (the slides' bicycle → train), so the shape swaps also run with both injections
# over this share of the steps
SHAPE_SWAP_STEPS = 0.4


def run_swaps(
    pipe: StableDiffusionPipeline,
    swaps: list[tuple[PromptSwap, ObjectSpec]],
    settings: EvalSettings,
    edit_fn: Callable[..., object],
    classifier: torch.nn.Module | None = None,
    **edit_kwargs: object,
) -> dict[str, list]:
    """Each swap edited once with ``edit_fn(..., **edit_kwargs)``: ``edit="replace",
    cross_steps=0.8`` for Prompt-to-Prompt, ``edit="none"`` for both prompts generated plainly
    (the source is the same either way: it never sees the target).

    Per swap: mask IoU of source and edit (:func:`swap_iou`: 0 when either holds no object),
    background kept, the edit's colour and position, the source's, and the seconds of the
    edit; with a ``classifier``, also both shapes.
    """
    runs: dict[str, list] = {key: [] for key in (
        "iou", "background_kept", "colour", "position", "source_colour", "source_position",
        "shape", "source_shape", "seconds",
    )}  # fmt: skip
    for swap, _spec in swaps:
        start = time.perf_counter()
        result = edit_fn(
            pipe, swap.source, swap.target, seed=swap.seed, steps=settings.steps,
            guidance=settings.guidance, record="none", progress=False, **edit_kwargs,
        )  # fmt: skip
        runs["seconds"].append(time.perf_counter() - start)
        source = np.asarray(result.source_image.convert("RGB"))
        edited = np.asarray(result.edited_image.convert("RGB"))
        source_mask, edited_mask = foreground(source), foreground(edited)
        runs["iou"].append(swap_iou(source_mask, edited_mask))
        runs["background_kept"].append(background_name(edited) == background_name(source))
        runs["colour"].append(object_colour(edited, edited_mask))
        runs["position"].append(object_position(edited_mask))
        runs["source_colour"].append(object_colour(source, source_mask))
        runs["source_position"].append(object_position(source_mask))
        if classifier is not None:
            runs["shape"].append(classify_shape(classifier, edited_mask))
            runs["source_shape"].append(classify_shape(classifier, source_mask))
    return runs


def summarise_colour_swaps(
    injected: dict[str, list], plain: dict[str, list], swaps: list[tuple[PromptSwap, ObjectSpec]]
) -> dict:
    """Median and mean IoU with and without injection, background kept, edit success."""
    new_colours = [swap.new_word for swap, _ in swaps]
    source_colours = [spec.colour for _, spec in swaps]
    return {
        "iou_median_injected": float(statistics.median(injected["iou"])),
        "iou_median_no_injection": float(statistics.median(plain["iou"])),
        "iou_mean_injected": float(np.mean(injected["iou"])),
        "iou_mean_no_injection": float(np.mean(plain["iou"])),
        "background_kept_injected": float(np.mean(injected["background_kept"])),
        "background_kept_no_injection": float(np.mean(plain["background_kept"])),
        "edit_success_share": matching_share(injected["colour"], new_colours),
        "source_colour_right_share": matching_share(injected["source_colour"], source_colours),
    }


def position_shares(positions: list[str | None]) -> dict[str, float]:
    """Share of images at each of the five positions (and ``none``: no object found)."""
    names = [*shapes_data.POSITIONS, None]
    return {str(name).lower(): positions.count(name) / len(positions) for name in names}


def matching_share(read: list[str | None], wanted: list[str | None]) -> float:
    """Share of pairs where what was read off an image is what was wanted."""
    return float(np.mean([a == b for a, b in zip(read, wanted, strict=True)]))


def kept_position_share(runs: dict[str, list]) -> float:
    """Share of the :func:`run_swaps` edits whose object is where the source's is."""
    return matching_share(runs["position"], runs["source_position"])


def run_injected(
    pipe: StableDiffusionPipeline,
    swaps: list[tuple[PromptSwap, ObjectSpec]],
    settings: EvalSettings,
    edit_fn: Callable[..., object],
    classifier: torch.nn.Module | None = None,
    *,
    cross_steps: float = CROSS_STEPS,
    self_steps: float = SELF_STEPS,
    self_max_ratio: float = SELF_MAX_RATIO,
) -> dict[str, list]:
    """:func:`run_swaps` with Prompt-to-Prompt word swaps, at the shapes model's own injection
    settings unless told: also for a training run's folder, which ``edit`` does not know as
    the built-in model (it would use Stable Diffusion's layers and steps)."""
    return run_swaps(pipe, swaps, settings, edit_fn, classifier, edit="replace",
                     cross_steps=cross_steps, self_steps=self_steps,
                     self_max_ratio=self_max_ratio)  # fmt: skip
