"""Measure the shapes model: ``python -m p2p_teach.shapes.evaluate [--quick] [--weights DIR]``.

Every measure reads generated images against what the prompt asked for, using the data
generator's own definitions (palette, anchor positions, shapes):

- **colour**: the median colour of the object's pixels (pixels far from the background, which
  is read off the image border) is nearest, in the palette, to the colour named;
- **shape**: a small CNN, trained here in seconds on silhouettes of generated ground-truth
  images, recognises the shape named (its accuracy on held-out ground truth is reported too);
- **position**: the object's centroid is nearest to the anchor of the position named (5-way);
- **two objects**: each half of the image (left/right or top/bottom) holds an object of the
  colour named for it;
- **attention**: share of the colour and shape words' cross-attention mass inside the object's
  mask, divided by the mask's share of the image, averaged over steps and layers (1.0 means
  no better than chance);
- **Prompt-to-Prompt colour swap** (through :func:`p2p_teach.engine.edit`): median IoU of the
  object masks of source and edit (0 where either holds no object: a failed swap), with
  cross-attention injection over 0.8 of the steps and without any injection (same seed),
  the share of edits whose object takes the new colour,
  and the time of a 2-prompt edit at 25 steps; also with self-attention injected only in
  Stable Diffusion's layers or over its 0.4 of the steps, with the size left to the seed, and
  with the position left to the seed (``a big red circle``: where the object goes is the
  seed's, and injection should keep it there); and on other prompts and seeds, to check
  that the edit settings chosen on these swaps hold beyond them;
- **shape swap** (``a big red circle`` → ``a big red square``): the new shape should be drawn
  in the source's colour and place; injection held too long keeps the old one, so these also
  run with both injections over fewer steps;
- **side-word swap** (``on the left`` → ``on the right``): with injection the object should
  stay where the source put it, without it the object should move;
- **guidance**: colour, shape and position accuracy at several classifier-free guidance scales
  (other prompts and seeds), which is how the model's scale (``p2p_teach.shapes.GUIDANCE``)
  was chosen; every other measure runs at that scale.

``--quick`` runs a handful of samples (a CI test, under a minute on two CPU cores).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # spinning threads stall on a shared CPU

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from p2p_teach.schedules import DEFAULT_SELF_RATIO, DEFAULT_SELF_STEPS  # noqa: E402
from p2p_teach.shapes import GUIDANCE, SELF_MAX_RATIO, SELF_STEPS  # noqa: E402
from p2p_teach.shapes import data as shapes_data  # noqa: E402
from p2p_teach.shapes import model as shapes_model  # noqa: E402

if TYPE_CHECKING:
    from diffusers import StableDiffusionPipeline
    from PIL import Image

    from p2p_teach.shapes.train import CaptionIds

BACKGROUND_DISTANCE = 60.0  # RGB distance from the background that counts as object
MIN_OBJECT_PIXELS = 15
CROP_SIDE = 32

# --------------------------------------------------------------------------------------------
# Reading images
# --------------------------------------------------------------------------------------------


def background_colour(image: np.ndarray) -> np.ndarray:
    """Median RGB of the 2-pixel border of a (64, 64, 3) uint8 image."""
    border = np.concatenate(
        [image[:2].reshape(-1, 3), image[-2:].reshape(-1, 3),
         image[:, :2].reshape(-1, 3), image[:, -2:].reshape(-1, 3)]
    )  # (border pixels, 3)  # fmt: skip
    return np.median(border.astype(np.float32), axis=0)


def foreground(image: np.ndarray) -> np.ndarray:
    """(64, 64) bool: pixels whose colour is far from the background's."""
    distance = np.linalg.norm(image.astype(np.float32) - background_colour(image), axis=-1)
    return distance > BACKGROUND_DISTANCE


def object_colour(image: np.ndarray, mask: np.ndarray) -> str | None:
    """Palette name of the median colour under ``mask``; None when the mask is (nearly) empty."""
    if mask.sum() < MIN_OBJECT_PIXELS:
        return None
    return shapes_data.nearest_colour(np.median(image[mask].astype(np.float32), axis=0))


def object_position(mask: np.ndarray) -> str | None:
    """Nearest anchor position to the mask's centroid; None for an empty mask."""
    if mask.sum() < MIN_OBJECT_PIXELS:
        return None
    ys, xs = np.nonzero(mask)
    return shapes_data.nearest_position(float(xs.mean()) + 0.5, float(ys.mean()) + 0.5)


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boolean masks; 0.0 when both are empty (no object on
    either side is no match)."""
    union = np.logical_or(a, b).sum()
    return 0.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def swap_iou(source_mask: np.ndarray, edited_mask: np.ndarray) -> float:
    """Mask IoU of a swap's source and edit, 0.0 (a failed swap) when either is (nearly)
    empty: fewer than ``MIN_OBJECT_PIXELS`` pixels, where the other readers find no object."""
    if min(source_mask.sum(), edited_mask.sum()) < MIN_OBJECT_PIXELS:
        return 0.0
    return mask_iou(source_mask, edited_mask)


def silhouette_crop(mask: np.ndarray) -> torch.Tensor:
    """The mask cropped to a square around its bounding box, resized to (1, 32, 32)."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return torch.zeros(1, CROP_SIDE, CROP_SIDE)
    cy, cx = (ys.min() + ys.max() + 1) / 2, (xs.min() + xs.max() + 1) / 2
    half = max(ys.max() + 1 - ys.min(), xs.max() + 1 - xs.min()) / 2 + 1
    padded = np.pad(mask.astype(np.float32), 64)  # (192, 192): crops never leave the array
    top, left = int(round(cy - half)) + 64, int(round(cx - half)) + 64
    side = int(round(2 * half))
    crop = torch.from_numpy(padded[top : top + side, left : left + side].copy())  # (side, side)
    batched = crop[None, None]  # (1, 1, side, side)
    resized = F.interpolate(batched, size=(CROP_SIDE, CROP_SIDE), mode="area")  # (1, 1, 32, 32)
    return resized[0]  # (1, 32, 32)


# --------------------------------------------------------------------------------------------
# Shape classifier
# --------------------------------------------------------------------------------------------


def build_classifier() -> torch.nn.Module:
    """A small CNN over (1, 32, 32) silhouettes, one output per shape."""
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(32, 64, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(64 * 4 * 4, len(shapes_data.SHAPES)),
    )  # fmt: skip


def _single_object_silhouettes(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    crops, labels = [], []
    for _ in range(n):
        position = list(shapes_data.POSITIONS)[rng.integers(5)]
        obj = shapes_data.make_object(rng, position)
        background = list(shapes_data.BACKGROUNDS)[rng.integers(3)]
        item = shapes_data.build_sample([obj], background)
        crops.append(silhouette_crop(foreground(item.image)))
        labels.append(shapes_data.SHAPES.index(obj.shape))
    return torch.stack(crops), torch.tensor(labels)  # (n, 1, 32, 32), (n,)


def train_shape_classifier(
    n_train: int = 2400, steps: int = 300, seed: int = 7
) -> tuple[torch.nn.Module, float]:
    """Train the classifier on generated silhouettes; returns it and its held-out accuracy."""
    torch.manual_seed(seed)
    crops, labels = _single_object_silhouettes(n_train, seed)
    test_crops, test_labels = _single_object_silhouettes(max(200, n_train // 4), seed + 1)
    classifier = build_classifier()
    optimizer = torch.optim.Adam(classifier.parameters(), lr=3e-3)
    for _ in range(steps):
        index = torch.randint(0, n_train, (64,))
        batch = crops[index]
        # augment: random dilation or erosion by one pixel, like a slightly fat or thin object
        choice = torch.rand(64)[:, None, None, None]
        dilated = F.max_pool2d(batch, 3, 1, 1)
        eroded = -F.max_pool2d(-batch, 3, 1, 1)
        batch = torch.where(choice < 0.2, dilated, torch.where(choice < 0.4, eroded, batch))
        loss = F.cross_entropy(classifier(batch), labels[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    classifier.eval()
    with torch.no_grad():
        accuracy = (classifier(test_crops).argmax(1) == test_labels).float().mean().item()
    return classifier, accuracy


@torch.no_grad()
def classify_shape(classifier: torch.nn.Module, mask: np.ndarray) -> str | None:
    """Shape name for an object mask; None when the mask is (nearly) empty."""
    if mask.sum() < MIN_OBJECT_PIXELS:
        return None
    crop = silhouette_crop(mask)[None]  # (1, 1, 32, 32): a batch of one
    logits = classifier(crop)  # (1, shapes)
    return shapes_data.SHAPES[int(logits.argmax())]


# --------------------------------------------------------------------------------------------
# Prompts
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ObjectSpec:
    """What a prompt asks for one object."""

    shape: str
    colour: str
    size: str
    position: str

    def words(self) -> list[str]:
        return ["a", self.size, self.colour, self.shape]

    def phrase(self) -> str:
        return " ".join(self.words()) + " " + shapes_data.POSITION_PHRASES[self.position]


def single_object_specs(n: int, seed: int = 2024) -> list[ObjectSpec]:
    """``n`` prompts cycling evenly through shapes, colours, positions and sizes (shuffled)."""
    rng = np.random.default_rng(seed)

    def cycled(values: list[str]) -> list[str]:
        picked = [values[k % len(values)] for k in range(n)]
        return [picked[k] for k in rng.permutation(n)]

    shapes = cycled(list(shapes_data.SHAPES))
    colours = cycled(list(shapes_data.COLOURS))
    positions = cycled(list(shapes_data.POSITIONS))
    sizes = cycled(["big", "small"])
    return [ObjectSpec(*attrs) for attrs in zip(shapes, colours, sizes, positions, strict=True)]


def two_object_specs(n: int, seed: int = 2025) -> list[tuple[ObjectSpec, ObjectSpec]]:
    """``n`` two-object prompts: half left/right, half top/bottom, two different colours."""
    rng = np.random.default_rng(seed)
    colours = list(shapes_data.COLOURS)
    specs = []
    for k in range(n):
        pair = shapes_data.OPPOSITE_PAIRS[k % 2]
        first_colour, second_colour = rng.choice(colours, size=2, replace=False)
        specs.append(tuple(
            ObjectSpec(
                str(shapes_data.SHAPES[rng.integers(len(shapes_data.SHAPES))]),
                str(colour), ("big", "small")[rng.integers(2)], position,
            )
            for colour, position in zip((first_colour, second_colour), pair, strict=True)
        ))  # fmt: skip
    return specs


def swap_specs(n: int, seed: int = 2026) -> list[tuple[ObjectSpec, str]]:
    """``n`` colour swaps: a single-object prompt and a new colour for its object."""
    specs = single_object_specs(n, seed)
    rng = np.random.default_rng(seed + 1)
    swaps = []
    for spec in specs:
        others = [c for c in shapes_data.COLOURS if c != spec.colour]
        swaps.append((spec, str(others[rng.integers(len(others))])))
    return swaps


def half_masks(position: str) -> np.ndarray:
    """(64, 64) bool: the half of the image on the side of ``position``."""
    half = np.zeros((64, 64), bool)
    if position == "left":
        half[:, :32] = True
    elif position == "right":
        half[:, 32:] = True
    elif position == "top":
        half[:32] = True
    elif position == "bottom":
        half[32:] = True
    else:
        raise ValueError(f"no half for position {position!r}")
    return half


# --------------------------------------------------------------------------------------------
# Generation with attention recording
# --------------------------------------------------------------------------------------------


def load_pipeline(folder: str | Path | None = None) -> StableDiffusionPipeline:
    """The shapes pipeline in float32 on the CPU (the shipped weights by default)."""
    from p2p_teach.shapes import load_shapes_pipeline

    return load_shapes_pipeline(folder)


def generate(
    pipe: StableDiffusionPipeline, prompt: str, n: int, seed: int, steps: int, guidance: float,
    record: bool,
) -> tuple[np.ndarray, list[tuple[str, torch.Tensor]]]:
    """``n`` images of ``prompt`` (uint8, (n, 64, 64, 3)) and, if asked, the conditional
    cross-attention maps of every UNet call: (layer, (n, pixels, 77))."""
    attention = shapes_model.AttentionRecord(
        active=record, keep_batch=slice(n, None) if guidance > 1 else None, detach=True
    )
    previous = shapes_model.install_recording(pipe.unet, attention)
    try:
        with torch.no_grad():
            result = pipe(
                [prompt] * n,
                num_inference_steps=steps,
                guidance_scale=guidance,
                generator=torch.Generator().manual_seed(seed),
                output_type="np",
            )
    finally:
        pipe.unet.set_attn_processor(previous)
    images = (np.clip(result.images, 0, 1) * 255 + 0.5).astype(np.uint8)  # (n, 64, 64, 3)
    return images, list(attention.maps)


@functools.lru_cache(maxsize=1)
def _caption_ids() -> CaptionIds:  # cached: loading the tokenizer takes a moment
    from p2p_teach.shapes.train import CaptionIds

    return CaptionIds()


def token_slots(words: list[str], wanted: set[str]) -> list[int]:
    """Slots (0..76, BOS at 0) of the pieces of the caption words in ``wanted``."""
    _, owners = _caption_ids().encode(words, [0 if w in wanted else -1 for w in words])
    return [slot for slot, owner in enumerate(owners) if owner == 0]


def attention_ratio(
    maps: list[tuple[str, torch.Tensor]], sample: int, slots: list[int], mask: np.ndarray
) -> float:
    """Mean over calls, layers and slots of (mass inside mask / total) / (mask's share)."""
    mask_t = torch.from_numpy(mask.astype(np.float32))[None, None]  # (1, 1, 64, 64)
    pooled: dict[int, torch.Tensor] = {}
    ratios = []
    for _name, probs in maps:
        pixels = probs.shape[1]
        side = int(round(pixels**0.5))
        if side not in pooled:
            pooled[side] = F.adaptive_avg_pool2d(mask_t, side).flatten()  # (pixels,)
        share = pooled[side].mean().clamp_min(1e-6)
        token_maps = probs[sample][:, slots].T  # (slots, pixels)
        inside = (token_maps * pooled[side]).sum(-1) / token_maps.sum(-1).clamp_min(1e-12)
        ratios.append((inside / share).mean())
    return float(torch.stack(ratios).mean())


# --------------------------------------------------------------------------------------------
# The evaluation
# --------------------------------------------------------------------------------------------


@dataclass
class EvalSettings:
    """How much to evaluate."""

    single_prompts: int = 40
    two_object_prompts: int = 16
    samples: int = 8
    swaps: int = 24
    steps: int = 25
    guidance: float = GUIDANCE
    sweep_guidances: tuple[float, ...] = (1.0, 1.5, 2.0, 3.0, 5.0, 7.5)
    sweep_prompts: int = 12
    sweep_samples: int = 4
    position_swaps: int = 12
    timed_edits: int = 5  # 2-prompt edits timed (the median is reported)
    other_swaps: int = 32  # colour swaps of other prompts and seeds (0: none)
    classifier_train: int = 2400
    classifier_steps: int = 300
    seed: int = 0

    @classmethod
    def quick(cls) -> EvalSettings:
        return cls(
            single_prompts=5, two_object_prompts=2, samples=2, swaps=2, position_swaps=2, steps=20,
            timed_edits=1, other_swaps=1,
            sweep_guidances=(), classifier_train=1200, classifier_steps=150,
        )  # fmt: skip


def labelled_grid(rows: list[tuple[str, np.ndarray]], seed: int) -> Image.Image:
    """A sample grid with each row's prompt written on its left and the samples numbered on
    top: rows of (prompt, (n, 64, 64, 3) uint8 images)."""
    from PIL import Image, ImageDraw

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

    # ---- single-object prompts: colour, shape, position, attention -------------------------
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
    results["single_object"] = {
        "prompts": settings.single_prompts,
        "images": n_single,
        "colour_accuracy": float(np.mean(colour_hits)),
        "shape_accuracy": float(np.mean(shape_hits)),
        "position_accuracy": float(np.mean(position_hits)),
        "no_object_share": empty / n_single,
        "attention_ratio_colour_mean": float(np.mean(colour_ratios)) if colour_ratios else 0.0,
        "attention_ratio_shape_mean": float(np.mean(shape_ratios)) if shape_ratios else 0.0,
        "attention_ratio_mean": float(np.mean(colour_ratios + shape_ratios))
        if colour_ratios
        else 0.0,
        "attention_ratio_median": float(np.median(colour_ratios + shape_ratios))
        if colour_ratios
        else 0.0,
        "seconds": time.time() - t0,
    }
    if grid_path is not None:
        labelled_grid(grid_rows[:12], settings.seed).save(grid_path)

    # ---- two-object prompts ------------------------------------------------------------------
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
    results["two_objects"] = {
        "prompts": settings.two_object_prompts,
        "images": len(both_hits),
        "both_right_share": float(np.mean(both_hits)),
        "seconds": time.time() - t0,
    }

    # ---- Prompt-to-Prompt colour swaps -------------------------------------------------------
    results["colour_swap"] = colour_swap_results(pipe, settings)
    if "skipped" not in results["colour_swap"]:
        results["shape_swap"] = shape_swap_results(pipe, settings, classifier)

    # ---- the guidance scale ------------------------------------------------------------------
    if settings.sweep_guidances:
        t0 = time.time()
        results["guidance_sweep"] = guidance_sweep(pipe, settings, classifier)
        results["guidance_sweep_seconds"] = time.time() - t0
    return results


def background_name(image: np.ndarray) -> str:
    """The dataset background nearest to the image's border colour."""
    return shapes_data.nearest_colour(background_colour(image), shapes_data.BACKGROUNDS)


@dataclass(frozen=True)
class Swap:
    """One word swap: the source prompt's words, the swapped word's index and its new word."""

    words: tuple[str, ...]
    index: int
    new_word: str
    seed: int

    @property
    def source(self) -> str:
        return " ".join(self.words)

    @property
    def target(self) -> str:
        return " ".join(self.new_word if k == self.index else w for k, w in enumerate(self.words))


def colour_swaps(
    settings: EvalSettings, name_size: bool, name_position: bool = True, other: bool = False
) -> list[tuple[Swap, ObjectSpec]]:
    """The colour swaps of ``swap_specs``; ``name_size=False`` leaves the size to the seed,
    ``name_position=False`` the position (``a red circle`` → ``a blue circle``).

    ``other=True``: ``settings.other_swaps`` swaps of other prompts and seeds, which check
    that the edit settings chosen on the main swaps hold beyond them.
    """
    count, specs_seed, first_seed = (
        (settings.other_swaps, 4242, settings.seed + 5000) if other
        else (settings.swaps, 2026, settings.seed + 77)
    )  # fmt: skip
    swaps = []
    for k, (spec, new_colour) in enumerate(swap_specs(count, specs_seed)):
        words = [w for w in spec.words() if name_size or w != spec.size]
        if name_position:
            words += shapes_data.POSITION_PHRASES[spec.position].split()
        swaps.append((Swap(tuple(words), words.index(spec.colour), new_colour,
                           first_seed + k), spec))  # fmt: skip
    return swaps


def position_swaps(settings: EvalSettings) -> list[tuple[Swap, ObjectSpec]]:
    """Layout-word swaps: the object's side for its opposite (left↔right, top↔bottom)."""
    opposite = {a: b for pair in shapes_data.OPPOSITE_PAIRS for a, b in (pair, pair[::-1])}
    swaps = []
    for k, spec in enumerate(single_object_specs(4 * settings.position_swaps, seed=2027)):
        if spec.position not in opposite or len(swaps) == settings.position_swaps:
            continue
        words = spec.words() + shapes_data.POSITION_PHRASES[spec.position].split()
        swaps.append((Swap(tuple(words), len(words) - 1, opposite[spec.position],
                           settings.seed + 177 + k), spec))  # fmt: skip
    return swaps


def shape_swaps(settings: EvalSettings) -> list[tuple[Swap, ObjectSpec]]:
    """Shape-word swaps with the place left to the seed (``a big red circle`` → ``a big red
    square``): what self-attention injection must not hold too long."""
    rng = np.random.default_rng(2029)
    swaps = []
    for k, spec in enumerate(single_object_specs(settings.swaps, seed=2028)):
        others = [s for s in shapes_data.SHAPES if s != spec.shape]
        words = spec.words()
        swaps.append((Swap(tuple(words), words.index(spec.shape),
                           str(others[rng.integers(len(others))]), settings.seed + 277 + k),
                      spec))  # fmt: skip
    return swaps


def run_swaps(
    pipe: StableDiffusionPipeline,
    swaps: list[tuple[Swap, ObjectSpec]],
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
    injected: dict[str, list], plain: dict[str, list], swaps: list[tuple[Swap, ObjectSpec]]
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


CROSS_STEPS = 0.8  # the cross-attention injection the targets are measured at
# the colour swaps also run with cross-attention injected over fewer steps, which leaves the new
# colour more steps of its own attention
SHORTER_CROSS = 0.7
# a new shape needs more steps of its own attention than a new colour: the source's maps hold
# its outline (the slides' bicycle → train), so the shape swaps also run with both injections
# over this share of the steps
SHAPE_SWAP_STEPS = 0.4


def run_injected(
    pipe: StableDiffusionPipeline,
    swaps: list[tuple[Swap, ObjectSpec]],
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
    try:
        from p2p_teach.engine import edit
    except ImportError as error:  # the engine is optional for this script
        return {"skipped": f"p2p_teach.engine.edit is not available: {error}"}

    def injected(swaps: list[tuple[Swap, ObjectSpec]], **injection: float) -> dict[str, list]:
        return run_injected(pipe, swaps, settings, edit, **injection)

    def plain(swaps: list[tuple[Swap, ObjectSpec]]) -> dict[str, list]:
        return run_swaps(pipe, swaps, settings, edit, edit="none")

    named, unnamed = colour_swaps(settings, name_size=True), colour_swaps(settings, name_size=False)
    named_injected, named_plain = injected(named), plain(named)
    sd_layers = injected(named, self_max_ratio=DEFAULT_SELF_RATIO)
    sd_steps = injected(named, self_steps=DEFAULT_SELF_STEPS)
    shorter_cross = injected(named, cross_steps=SHORTER_CROSS)
    results = {
        "swaps": settings.swaps,
        "cross_steps": CROSS_STEPS,
        "self_steps": SELF_STEPS,
        **summarise_colour_swaps(named_injected, named_plain, named),
        "self_sd_layers": summarise_colour_swaps(sd_layers, named_plain, named),
        "self_sd_steps": summarise_colour_swaps(sd_steps, named_plain, named),
        "size_unnamed": summarise_colour_swaps(injected(unnamed), plain(unnamed), unnamed),
        "shorter_cross": {
            "cross_steps": SHORTER_CROSS,
            **summarise_colour_swaps(shorter_cross, named_plain, named),
        },
    }
    free = colour_swaps(settings, name_size=True, name_position=False)
    free_injected, free_plain = injected(free), plain(free)
    results["position_unnamed"] = {
        **summarise_colour_swaps(free_injected, free_plain, free),
        "source_position_shares": position_shares(free_injected["source_position"]),
        "kept_source_position_injected": kept_position_share(free_injected),
        "kept_source_position_no_injection": kept_position_share(free_plain),
    }
    if settings.other_swaps:
        results["other_prompts"] = {"swaps": settings.other_swaps}
        for key, name_position in (("place_named", True), ("position_unnamed", False)):
            other = colour_swaps(settings, name_size=True, name_position=name_position,
                                 other=True)  # fmt: skip
            other_plain = plain(other)
            results["other_prompts"][key] = summarise_colour_swaps(
                injected(other), other_plain, other
            )
            results["other_prompts"][key]["shorter_cross"] = summarise_colour_swaps(
                injected(other, cross_steps=SHORTER_CROSS), other_plain, other
            )
    results["edit_seconds_median"] = float(statistics.median(named_injected["seconds"]))
    if settings.position_swaps:
        layout = position_swaps(settings)
        layout_injected, layout_plain = injected(layout), plain(layout)
        new_sides = [swap.new_word for swap, _ in layout]
        moved_injected = matching_share(layout_injected["position"], new_sides)
        moved_plain = matching_share(layout_plain["position"], new_sides)
        results["position_swap"] = {
            "swaps": len(layout),
            "source_position_right_share": matching_share(
                layout_injected["source_position"], [spec.position for _, spec in layout]
            ),
            "kept_source_position_injected": kept_position_share(layout_injected),
            "moved_to_new_position_injected": moved_injected,
            "moved_to_new_position_no_injection": moved_plain,
            "iou_median_injected": float(statistics.median(layout_injected["iou"])),
            "iou_median_no_injection": float(statistics.median(layout_plain["iou"])),
        }  # fmt: skip
    # timing: 2-prompt edits at 25 steps, the pipeline already warm, recording maps (the
    # median of a few, as a shared machine's single runs vary by half)
    swap, _ = named[0]
    seconds = []
    for _ in range(settings.timed_edits):
        start = time.perf_counter()
        edit(pipe, swap.source, swap.target, edit="replace", seed=1, steps=25,
             guidance=settings.guidance, self_steps=SELF_STEPS, self_max_ratio=SELF_MAX_RATIO,
             progress=False)  # fmt: skip
        seconds.append(time.perf_counter() - start)
    results["edit_25_steps_seconds_recording"] = float(statistics.median(seconds))
    return results


def shape_swap_results(
    pipe: StableDiffusionPipeline, settings: EvalSettings, classifier: torch.nn.Module
) -> dict:
    """Shape swaps (place left to the seed): the new shape drawn, the colour and place kept,
    mask IoU; injected as the edits do by default, with SD's self-attention steps, with both
    injections over :data:`SHAPE_SWAP_STEPS` of the steps, and not."""
    from p2p_teach.engine import edit

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

    return {
        "swaps": len(swaps),
        "injected": measured(run_injected(pipe, swaps, settings, edit, classifier)),
        "self_sd_steps": measured(run_injected(pipe, swaps, settings, edit, classifier,
                                               self_steps=DEFAULT_SELF_STEPS)),  # fmt: skip
        "shorter_injection": {
            "cross_steps": SHAPE_SWAP_STEPS,
            "self_steps": SHAPE_SWAP_STEPS,
            **measured(run_injected(pipe, swaps, settings, edit, classifier,
                                    cross_steps=SHAPE_SWAP_STEPS, self_steps=SHAPE_SWAP_STEPS)),
        },  # fmt: skip
        "no_injection": measured(run_swaps(pipe, swaps, settings, edit, classifier, edit="none")),
    }


TARGETS = {  # name: (path of keys into the results, lower bound)
    "colour": (("single_object", "colour_accuracy"), 0.95),
    "shape": (("single_object", "shape_accuracy"), 0.80),
    "position": (("single_object", "position_accuracy"), 0.80),
    "two objects": (("two_objects", "both_right_share"), 0.70),
    "attention ratio": (("single_object", "attention_ratio_mean"), 2.0),
    # a colour swap whose layout the seed decides (no position word), as in the paper
    "swap IoU, seed layout": (("colour_swap", "position_unnamed", "iou_median_injected"), 0.80),
    "swap IoU, place named": (("colour_swap", "iou_median_injected"), 0.80),
    "edit success": (("colour_swap", "edit_success_share"), 0.80),
}


def result_at(results: dict, path: tuple[str, ...]) -> float | None:
    """The value at ``path`` in the nested results, or None where a part is missing."""
    value = results
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def summary(results: dict) -> str:
    """A plain-text table of the results against the targets."""
    lines = ["measure                 value    target"]
    for name, (path, target) in TARGETS.items():
        value = result_at(results, path)
        shown = "n/a" if value is None else f"{value:.3f}"
        lines.append(f"{name:<22} {shown:>7}   ≥ {target}")
    swap = results.get("colour_swap", {})
    if "iou_median_no_injection" in swap:
        for name, section in (("seed layout", swap["position_unnamed"]), ("place named", swap)):
            plain = section["iou_median_no_injection"]
            lines.append(f"{'plain, ' + name:<22} {plain:>7.3f}   clearly lower")
        open_size = swap["size_unnamed"]
        lines.append(f"size unnamed: swap IoU {open_size['iou_median_injected']:.3f} injected, "
                     f"{open_size['iou_median_no_injection']:.3f} not; background kept "
                     f"{open_size['background_kept_injected']:.3f} injected, "
                     f"{open_size['background_kept_no_injection']:.3f} not")  # fmt: skip
        free = swap["position_unnamed"]
        spread = ", ".join(f"{name} {share:.2f}"
                           for name, share in free["source_position_shares"].items())
        lines.append(f"position left to the seed: swap IoU "
                     f"{free['iou_median_injected']:.3f} injected, "
                     f"{free['iou_median_no_injection']:.3f} not; the object stays put "
                     f"{free['kept_source_position_injected']:.3f} injected, "
                     f"{free['kept_source_position_no_injection']:.3f} not; "
                     f"edit success {free['edit_success_share']:.3f}; "
                     f"sources at {spread}")  # fmt: skip
        for key, label in (("self_sd_layers", "self-attention only in SD's layers (4×4 here)"),
                           ("self_sd_steps", f"self-attention over SD's {DEFAULT_SELF_STEPS:g} "
                                             "of the steps"),
                           ("shorter_cross", f"cross-attention over {SHORTER_CROSS:g} of the "
                                             "steps")):  # fmt: skip
            lines.append(f"{label}: swap IoU {swap[key]['iou_median_injected']:.3f}, edit "
                         f"success {swap[key]['edit_success_share']:.3f}")  # fmt: skip
        if "position_swap" in swap:
            kept = swap["position_swap"]["kept_source_position_injected"]
            moved = swap["position_swap"]["moved_to_new_position_no_injection"]
            lines.append(f"side-word swap: the object stays put {kept:.3f} injected; it moves "
                         f"to the new side {moved:.3f} without injection")  # fmt: skip
        if "other_prompts" in swap:
            other = swap["other_prompts"]
            for key, label in (("place_named", "place named"), ("position_unnamed", "seed layout")):
                shorter = other[key]["shorter_cross"]
                lines.append(f"{other['swaps']} other colour swaps, {label}: swap IoU "
                             f"{other[key]['iou_median_injected']:.3f} injected, "
                             f"{other[key]['iou_median_no_injection']:.3f} not; edit success "
                             f"{other[key]['edit_success_share']:.3f}; with cross "
                             f"{SHORTER_CROSS:g}: IoU {shorter['iou_median_injected']:.3f}, "
                             f"success {shorter['edit_success_share']:.3f}")  # fmt: skip
        if "shape_swap" in results:
            parts = [f"{label} {results['shape_swap'][key]['new_shape_share']:.3f}"
                     for key, label in (("injected", "injected"),
                                        ("self_sd_steps", f"self {DEFAULT_SELF_STEPS:g}"),
                                        ("shorter_injection",
                                         f"cross and self {SHAPE_SWAP_STEPS:g}"),
                                        ("no_injection", "none"))]  # fmt: skip
            lines.append("shape swap, new shape drawn: " + ", ".join(parts))
        seconds = swap["edit_25_steps_seconds_recording"]
        lines.append(f"{'2-prompt edit, 25 steps':<22} {seconds:>6.2f}s   < 2 s")
    lines.append(
        f"shape classifier held-out accuracy {results['shape_classifier_heldout_accuracy']:.3f}"
    )
    if results.get("guidance_sweep"):
        lines.append("guidance   colour   shape   position")
        for row in results["guidance_sweep"]:
            accuracies = (row[f"{name}_accuracy"] for name in ("colour", "shape", "position"))
            lines.append(f"{row['guidance']:>8g}   " + "   ".join(f"{a:.3f}" for a in accuracies))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    """Command line: evaluate and print (and optionally save) the results."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights", type=Path, default=None, help="pipeline folder")
    parser.add_argument("--quick", action="store_true", help="a handful of samples (CI)")
    parser.add_argument("--guidance", type=float, default=None)
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--grid", type=Path, default=None, help="save a grid of samples here")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    settings = EvalSettings.quick() if args.quick else EvalSettings()
    if args.guidance is not None:
        settings.guidance = args.guidance
    start = time.time()
    pipe = load_pipeline(args.weights)
    results = evaluate(pipe, settings, args.grid)
    results["total_seconds"] = time.time() - start
    print(summary(results))
    print(f"total {results['total_seconds']:.0f} s")
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main()
