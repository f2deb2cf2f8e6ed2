"""The Prompt-to-Prompt measures: colour swaps, side-word swaps and shape swaps."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from p2p_teach.engine import edit
from p2p_teach.schedules import DEFAULT_SELF_RATIO, DEFAULT_SELF_STEPS
from p2p_teach.shapes import SELF_MAX_RATIO, SELF_STEPS

from .settings import EvalSettings
from .specs import ObjectSpec, PromptSwap, colour_swaps, position_swaps, shape_swaps
from .swaps import (
    CROSS_STEPS,
    SHAPE_SWAP_STEPS,
    SHORTER_CROSS,
    kept_position_share,
    matching_share,
    position_shares,
    run_injected,
    run_swaps,
    summarise_colour_swaps,
)

if TYPE_CHECKING:
    from diffusers import StableDiffusionPipeline

Swaps = list[tuple[PromptSwap, ObjectSpec]]


@dataclass(frozen=True)
class SwapRunner:
    """Runs word swaps on one pipeline at the evaluation's settings, through ``edit_fn``
    (:func:`p2p_teach.engine.edit`); with a ``classifier``, the runs also read the shapes."""

    pipe: StableDiffusionPipeline
    settings: EvalSettings
    edit_fn: Callable[..., object] = edit
    classifier: torch.nn.Module | None = None

    def injected(self, swaps: Swaps, **injection: float) -> dict[str, list]:
        """:func:`~.swaps.run_injected`: Prompt-to-Prompt edits, the shapes model's injection
        unless ``injection`` says otherwise."""
        return run_injected(self.pipe, swaps, self.settings, self.edit_fn, self.classifier,
                            **injection)  # fmt: skip

    def plain(self, swaps: Swaps) -> dict[str, list]:
        """Both prompts of every swap generated plainly (no injection)."""
        return run_swaps(self.pipe, swaps, self.settings, self.edit_fn, self.classifier,
                         edit="none")  # fmt: skip


def colour_swap_results(pipe: StableDiffusionPipeline, settings: EvalSettings) -> dict:
    """Colour-swap IoU with and without injection, edit success and edit time (engine API).

    The main numbers are for prompts that name the size, with cross-attention injected over
    0.8 of the steps and self-attention as the engine does by default for the shapes model
    (over :data:`~p2p_teach.shapes.SELF_STEPS` of the steps, in every layer).
    ``self_sd_layers`` injects self-attention only where Stable Diffusion's rule puts it
    (layers of at most a quarter of the latent's side: only the 4×4 middle block here),
    ``self_sd_steps`` over Stable Diffusion's 0.4 of the steps; ``size_unnamed`` leaves the size to
    the seed; ``position_unnamed`` leaves out the position (``a big red circle``), so that the
    seed alone decides where the object goes, as it lays out most of Stable Diffusion's images;
    ``position_swap`` swaps the side word instead (left↔right, top↔bottom), where the layout
    is what injection has to hold against the prompt. ``shorter_cross`` injects
    cross-attention over :data:`SHORTER_CROSS` of the steps instead; ``other_prompts`` repeats
    the place-named and seed-layout swaps on other prompts and seeds, at both.
    """
    runner = SwapRunner(pipe, settings)
    named = colour_swaps(settings, name_size=True)
    named_injected = runner.injected(named)
    results = {
        "swaps": settings.swaps,
        "cross_steps": CROSS_STEPS,
        "self_steps": SELF_STEPS,
        **named_colour_swaps(runner, named, named_injected),
        "position_unnamed": seed_layout_colour_swaps(runner),
    }
    if settings.other_swaps:
        results["other_prompts"] = other_colour_swaps(runner)
    results["edit_seconds_median"] = float(statistics.median(named_injected["seconds"]))
    if settings.position_swaps:
        results["position_swap"] = side_word_swaps(runner)
    swap, _ = named[0]
    results["edit_25_steps_seconds_recording"] = timed_edit_seconds(pipe, settings, swap)
    return results


def named_colour_swaps(runner: SwapRunner, named: Swaps, named_injected: dict) -> dict:
    """The colour swaps that name size and place: injected, plainly, with SD's self-attention
    layers or steps, with shorter cross-attention, and with the size left to the seed."""
    named_plain = runner.plain(named)
    sd_layers = runner.injected(named, self_max_ratio=DEFAULT_SELF_RATIO)
    sd_steps = runner.injected(named, self_steps=DEFAULT_SELF_STEPS)
    shorter_cross = runner.injected(named, cross_steps=SHORTER_CROSS)
    unnamed = colour_swaps(runner.settings, name_size=False)
    return {
        **summarise_colour_swaps(named_injected, named_plain, named),
        "self_sd_layers": summarise_colour_swaps(sd_layers, named_plain, named),
        "self_sd_steps": summarise_colour_swaps(sd_steps, named_plain, named),
        "size_unnamed": summarise_colour_swaps(
            runner.injected(unnamed), runner.plain(unnamed), unnamed
        ),
        "shorter_cross": {
            "cross_steps": SHORTER_CROSS,
            **summarise_colour_swaps(shorter_cross, named_plain, named),
        },
    }


def seed_layout_colour_swaps(runner: SwapRunner) -> dict:
    """Colour swaps with the place left to the seed: does injection keep the object put?"""
    free = colour_swaps(runner.settings, name_size=True, name_position=False)
    free_injected, free_plain = runner.injected(free), runner.plain(free)
    return {
        **summarise_colour_swaps(free_injected, free_plain, free),
        "source_position_shares": position_shares(free_injected["source_position"]),
        "kept_source_position_injected": kept_position_share(free_injected),
        "kept_source_position_no_injection": kept_position_share(free_plain),
    }


def other_colour_swaps(runner: SwapRunner) -> dict:
    """The place-named and seed-layout colour swaps again, on other prompts and seeds."""
    results: dict = {"swaps": runner.settings.other_swaps}
    for key, name_position in (("place_named", True), ("position_unnamed", False)):
        other = colour_swaps(runner.settings, name_size=True, name_position=name_position,
                             other=True)  # fmt: skip
        other_plain = runner.plain(other)
        results[key] = summarise_colour_swaps(runner.injected(other), other_plain, other)
        results[key]["shorter_cross"] = summarise_colour_swaps(
            runner.injected(other, cross_steps=SHORTER_CROSS), other_plain, other
        )
    return results


def side_word_swaps(runner: SwapRunner) -> dict:
    """Side-word swaps (left↔right, top↔bottom): injected, the object should stay put; plainly,
    it should move to the new side."""
    layout = position_swaps(runner.settings)
    layout_injected, layout_plain = runner.injected(layout), runner.plain(layout)
    new_sides = [swap.new_word for swap, _ in layout]
    return {
        "swaps": len(layout),
        "source_position_right_share": matching_share(
            layout_injected["source_position"], [spec.position for _, spec in layout]
        ),
        "kept_source_position_injected": kept_position_share(layout_injected),
        "moved_to_new_position_injected": matching_share(layout_injected["position"], new_sides),
        "moved_to_new_position_no_injection": matching_share(layout_plain["position"], new_sides),
        "iou_median_injected": float(statistics.median(layout_injected["iou"])),
        "iou_median_no_injection": float(statistics.median(layout_plain["iou"])),
    }


def timed_edit_seconds(
    pipe: StableDiffusionPipeline, settings: EvalSettings, swap: PromptSwap
) -> float:
    """The median time of ``settings.timed_edits`` 2-prompt edits at 25 steps, the pipeline
    already warm, recording maps (a median, as a shared machine's single runs vary by half)."""
    seconds = []
    for _ in range(settings.timed_edits):
        start = time.perf_counter()
        edit(pipe, swap.source, swap.target, edit="replace", seed=1, steps=25,
             guidance=settings.guidance, self_steps=SELF_STEPS, self_max_ratio=SELF_MAX_RATIO,
             progress=False)  # fmt: skip
        seconds.append(time.perf_counter() - start)
    return float(statistics.median(seconds))


def shape_swap_results(
    pipe: StableDiffusionPipeline, settings: EvalSettings, classifier: torch.nn.Module
) -> dict:
    """Shape swaps (place left to the seed): the new shape drawn, the colour and place kept,
    mask IoU; injected as the edits do by default, with SD's self-attention steps, with both
    injections over :data:`SHAPE_SWAP_STEPS` of the steps, and not."""
    runner = SwapRunner(pipe, settings, classifier=classifier)
    swaps = shape_swaps(settings)
    new_shapes = [swap.new_word for swap, _ in swaps]
    source_shapes = [spec.shape for _, spec in swaps]
    source_colours = [spec.colour for _, spec in swaps]

    def measured(runs: dict[str, list]) -> dict[str, float]:
        return {
            "new_shape_share": matching_share(runs["shape"], new_shapes),
            "source_shape_right_share": matching_share(runs["source_shape"], source_shapes),
            "colour_kept_share": matching_share(runs["colour"], source_colours),
            "kept_source_position_share": kept_position_share(runs),
            "iou_median": float(statistics.median(runs["iou"])),
        }

    shorter = {"cross_steps": SHAPE_SWAP_STEPS, "self_steps": SHAPE_SWAP_STEPS}
    return {
        "swaps": len(swaps),
        "injected": measured(runner.injected(swaps)),
        "self_sd_steps": measured(runner.injected(swaps, self_steps=DEFAULT_SELF_STEPS)),
        "shorter_injection": {**shorter, **measured(runner.injected(swaps, **shorter))},
        "no_injection": measured(runner.plain(swaps)),
    }
