"""The evaluation: every measure of the generated images, and :func:`evaluate`, which runs them."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from p2p_teach.shapes import data as shapes_data

from .classifier import classify_shape, train_shape_classifier
from .generation import attention_ratio, generate, token_slots
from .readers import MIN_OBJECT_PIXELS, foreground, object_colour, object_position
from .settings import EvalSettings
from .specs import ObjectSpec, half_masks, single_object_specs, two_object_specs
from .swap_results import colour_swap_results, shape_swap_results

if TYPE_CHECKING:
    from diffusers import StableDiffusionPipeline


def read_single(
    image: np.ndarray, spec: ObjectSpec, classifier: torch.nn.Module
) -> tuple[np.ndarray, bool, bool, bool]:
    """The object mask of a generated image, and whether its colour, shape and position are
    the ones ``spec`` asked for."""
    mask = foreground(image)
    return (
        mask,
        object_colour(image, mask) == spec.colour,
        classify_shape(classifier, mask) == spec.shape,
        object_position(mask) == spec.position,
    )


def guidance_sweep(
    pipe: StableDiffusionPipeline, settings: EvalSettings, classifier: torch.nn.Module
) -> list[dict]:
    """Colour, shape and position accuracy of single-object prompts at each guidance scale.

    Other prompts and seeds than the main measures (``single_object_specs`` seed 99), so the
    scale chosen here is not tuned on the numbers it is reported with.
    """
    specs = single_object_specs(settings.sweep_prompts, seed=99)
    rows = []
    for guidance in settings.sweep_guidances:
        hits = []
        for k, spec in enumerate(specs):
            images, _ = generate(
                pipe, spec.phrase(), settings.sweep_samples, settings.seed + 300 + 1000 * k,
                settings.steps, guidance, record=False,
            )  # fmt: skip
            hits += [read_single(image, spec, classifier)[1:] for image in images]
        colour, shape, position = (float(v) for v in np.mean(hits, axis=0))
        rows.append({"guidance": guidance, "colour_accuracy": colour, "shape_accuracy": shape,
                     "position_accuracy": position, "images": len(hits)})  # fmt: skip
    return rows


def single_object_results(
    pipe: StableDiffusionPipeline, settings: EvalSettings, classifier: torch.nn.Module,
    grid_path: Path | None = None,
) -> dict:  # fmt: skip
    """Single-object prompts: colour, shape and position accuracy, images without an object,
    and the attention ratio of the colour and shape words; a grid of samples if asked."""
    t0 = time.time()
    colour_hits, shape_hits, position_hits, empty = [], [], [], 0
    colour_ratios, shape_ratios = [], []
    grid_rows = []
    for k, spec in enumerate(single_object_specs(settings.single_prompts)):
        words = spec.words() + shapes_data.POSITION_PHRASES[spec.position].split()
        images, maps = generate(
            pipe, " ".join(words), settings.samples, settings.seed + 1000 * k,
            settings.steps, settings.guidance, record=True,
        )  # fmt: skip
        colour_slots = token_slots(words, {spec.colour})
        shape_slots = token_slots(words, {spec.shape})
        grid_rows.append((" ".join(words), images))
        for index, image in enumerate(images):
            mask, colour_hit, shape_hit, position_hit = read_single(image, spec, classifier)
            if mask.sum() < MIN_OBJECT_PIXELS:
                empty += 1
            colour_hits.append(colour_hit)
            shape_hits.append(shape_hit)
            position_hits.append(position_hit)
            if mask.sum() >= MIN_OBJECT_PIXELS:
                colour_ratios.append(attention_ratio(maps, index, colour_slots, mask))
                shape_ratios.append(attention_ratio(maps, index, shape_slots, mask))
    n_single = len(colour_hits)
    ratios = colour_ratios + shape_ratios
    results = {
        "prompts": settings.single_prompts,
        "images": n_single,
        "colour_accuracy": float(np.mean(colour_hits)),
        "shape_accuracy": float(np.mean(shape_hits)),
        "position_accuracy": float(np.mean(position_hits)),
        "no_object_share": empty / n_single,
        "attention_ratio_colour_mean": float(np.mean(colour_ratios)) if colour_ratios else 0.0,
        "attention_ratio_shape_mean": float(np.mean(shape_ratios)) if shape_ratios else 0.0,
        "attention_ratio_mean": float(np.mean(ratios)) if colour_ratios else 0.0,
        "attention_ratio_median": float(np.median(ratios)) if colour_ratios else 0.0,
        "seconds": time.time() - t0,
    }
    if grid_path is not None:
        save_grid(grid_rows, grid_path, settings.seed)
    return results


def save_grid(rows: list[tuple[str, np.ndarray]], path: Path, seed: int = 0) -> None:
    """Save the first 12 rows of (samples, 64, 64, 3) images as one labelled picture: each
    row's prompt on its left, the samples numbered on top."""
    labelled_grid(rows[:12], seed).save(path)


def labelled_grid(rows: list[tuple[str, np.ndarray]], seed: int):
    """A sample grid (PIL image) with each row's prompt written on its left and the samples
    numbered on top: rows of (prompt, (n, 64, 64, 3) uint8 images)."""
    from PIL import Image, ImageDraw

    from p2p_teach.shapes import GUIDANCE

    label_width, header = 300, 16
    count = max(len(images) for _, images in rows)
    canvas = Image.new("RGB", (label_width + 64 * count, header + 64 * len(rows)), "white")
    draw = ImageDraw.Draw(canvas)
    for column in range(count):
        draw.text((label_width + 64 * column + 4, 2), f"sample {column}", fill="black")
    for row, (prompt, images) in enumerate(rows):
        top = header + 64 * row
        draw.text((4, top + 26), prompt, fill="black")
        for column, image in enumerate(images):
            canvas.paste(Image.fromarray(image), (label_width + 64 * column, top))
    draw.text((4, 2), f"guidance {GUIDANCE:g}, seed {seed} + 1000 × row", fill="black")
    return canvas


def two_object_results(pipe: StableDiffusionPipeline, settings: EvalSettings) -> dict:
    """Two-object prompts: the share of images whose halves both hold the colour named."""
    t0 = time.time()
    both_hits = []
    for k, (first, second) in enumerate(two_object_specs(settings.two_object_prompts)):
        words = first.words() + shapes_data.POSITION_PHRASES[first.position].split()
        words += ["and"] + second.words() + shapes_data.POSITION_PHRASES[second.position].split()
        images, _ = generate(
            pipe, " ".join(words), settings.samples, settings.seed + 500 + 1000 * k,
            settings.steps, settings.guidance, record=False,
        )  # fmt: skip
        for image in images:
            mask = foreground(image)
            ok = all(
                object_colour(image, mask & half_masks(spec.position)) == spec.colour
                for spec in (first, second)
            )
            both_hits.append(ok)
    return {
        "prompts": settings.two_object_prompts,
        "images": len(both_hits),
        "both_right_share": float(np.mean(both_hits)),
        "seconds": time.time() - t0,
    }


def evaluate(
    pipe: StableDiffusionPipeline, settings: EvalSettings, grid_path: Path | None = None
) -> dict:
    """Run every measure; returns a JSON-ready dict of results."""
    results: dict = {"settings": settings.__dict__.copy()}
    t0 = time.time()
    classifier, classifier_accuracy = train_shape_classifier(
        settings.classifier_train, settings.classifier_steps
    )
    results["shape_classifier_heldout_accuracy"] = classifier_accuracy
    results["classifier_seconds"] = time.time() - t0
    results["single_object"] = single_object_results(pipe, settings, classifier, grid_path)
    results["two_objects"] = two_object_results(pipe, settings)
    results["colour_swap"] = colour_swap_results(pipe, settings)
    results["shape_swap"] = shape_swap_results(pipe, settings, classifier)
    if settings.sweep_guidances:
        t0 = time.time()
        results["guidance_sweep"] = guidance_sweep(pipe, settings, classifier)
        results["guidance_sweep_seconds"] = time.time() - t0
    return results
