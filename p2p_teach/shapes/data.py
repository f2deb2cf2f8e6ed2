"""Procedural shapes: 64×64 images of one or two flat shapes, with captions and ground truth.

Every sample is a pure function of ``(seed, index)``: the same pair always gives the same
image, caption, masks and attributes. A sample has one or two objects. Each object has a shape,
a colour, a size and a position. The caption names the position, so that a model can learn
layout from the text, except in a chosen share of one-object samples (``position_unnamed_share``,
0 by default): there the seed alone decides where the object goes, as it decides the layout of
most of Stable Diffusion's images. Two-object samples always name both sides, and put the
objects on opposite ones (left/right or top/bottom).

Some names are split by CLIP into several pieces, which is what a Prompt-to-Prompt lesson
needs: ``hexagon`` is hex·agon, ``cyan`` is cy·an and ``chartreuse`` is char·tre·use.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
from PIL import Image, ImageDraw

IMAGE_SIZE = 64
_SUPERSAMPLE = 4  # shapes are drawn at 4× and box-filtered down, for smooth edges

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "heart", "hexagon")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "orange": (250, 140, 0),
    "yellow": (245, 225, 20),
    "chartreuse": (140, 245, 0),
    "green": (20, 140, 40),
    "cyan": (0, 220, 235),
    "blue": (30, 60, 220),
    "purple": (130, 40, 180),
    "pink": (255, 120, 200),
    "brown": (130, 75, 25),
}
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "white": (245, 245, 245),
    "gray": (128, 128, 128),
    "black": (20, 20, 20),
}
SIZES: dict[str, tuple[float, float]] = {"small": (8.0, 10.0), "big": (12.5, 14.5)}  # radius, px
POSITIONS: dict[str, tuple[float, float]] = {  # object centre (x, y) in pixels
    "left": (17.0, 32.0),
    "right": (47.0, 32.0),
    "top": (32.0, 17.0),
    "bottom": (32.0, 47.0),
    "center": (32.0, 32.0),
}
POSITION_PHRASES: dict[str, str] = {
    "left": "on the left",
    "right": "on the right",
    "top": "at the top",
    "bottom": "at the bottom",
    "center": "in the center",
}
OPPOSITE_PAIRS: tuple[tuple[str, str], ...] = (("left", "right"), ("top", "bottom"))
_JITTER = 2.5  # px of random offset of an object's centre
TWO_OBJECT_SHARE = 0.4
BACKGROUND_IN_CAPTION_SHARE = 0.5
SIZE_IN_CAPTION_SHARE = 0.8


@dataclass(frozen=True)
class ShapeObject:
    """One drawn object and the words that name it."""

    shape: str
    colour: str
    size: str
    position: str
    centre: tuple[float, float]
    radius: float
    size_in_caption: bool = True
    position_in_caption: bool = True

    def words(self) -> list[str]:
        """The object's words in caption order, e.g. ``['a', 'big', 'red', 'circle']``."""
        size = [self.size] if self.size_in_caption else []
        return ["a", *size, self.colour, self.shape]

    def position_words(self) -> list[str]:
        """``['on', 'the', 'left']``, or ``[]`` when the caption leaves the position out."""
        return POSITION_PHRASES[self.position].split() if self.position_in_caption else []

    def phrase(self) -> str:
        """``'a big red circle on the left'``."""
        return " ".join(self.words() + self.position_words())


@dataclass
class ShapeSample:
    """One image with its caption and ground truth.

    ``masks[k]`` is the (64, 64) boolean mask of ``objects[k]``, the visible part: a later
    object is drawn over an earlier one. The two objects of a sample sit on opposite sides,
    but big ones with their jitter can still touch: seed 0's sample 464 overlaps by 7 pixels,
    which belong to the later object's mask only.
    ``word_objects`` gives, for each caption word, the index of the object it describes
    (colour, shape and size words) or -1 for other words.
    """

    image: np.ndarray  # (64, 64, 3) uint8
    caption: str
    objects: list[ShapeObject]
    masks: np.ndarray  # (n_objects, 64, 64) bool
    background: str
    words: list[str] = field(default_factory=list)
    word_objects: list[int] = field(default_factory=list)


def shape_polygon(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]] | None:
    """Vertices of ``shape`` centred at (cx, cy) with half-extent ``r``; None for a circle."""
    if shape == "circle":
        return None
    if shape == "square":
        s = r * 0.88
        return [(cx - s, cy - s), (cx + s, cy - s), (cx + s, cy + s), (cx - s, cy + s)]
    if shape == "triangle":
        angles = [-90.0, 30.0, 150.0]
        return [
            (cx + r * math.cos(math.radians(a)), cy + 0.15 * r + r * math.sin(math.radians(a)))
            for a in angles
        ]
    if shape == "star":
        points = []
        for k in range(10):
            radius = r if k % 2 == 0 else r * 0.45
            angle = math.radians(-90.0 + 36.0 * k)
            points.append((cx + radius * math.cos(angle), cy + radius * math.sin(angle)))
        return points
    if shape == "hexagon":
        return [
            (cx + r * math.cos(math.radians(60.0 * k)), cy + r * math.sin(math.radians(60.0 * k)))
            for k in range(6)
        ]
    if shape == "heart":
        points = []
        for k in range(48):
            t = 2.0 * math.pi * k / 48
            x = 16.0 * math.sin(t) ** 3
            y = 13.0 * math.cos(t) - 5.0 * math.cos(2 * t) - 2.0 * math.cos(3 * t) - math.cos(4 * t)
            points.append((cx + r * x / 16.0, cy - r * (y + 2.5) / 15.0))
        return points
    raise ValueError(f"unknown shape {shape!r}; known: {', '.join(SHAPES)}")


def _draw_mask(obj: ShapeObject) -> np.ndarray:
    """Coverage of ``obj`` in [0, 1] at 64×64, drawn at 4× and box-filtered."""
    big = IMAGE_SIZE * _SUPERSAMPLE
    canvas = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(canvas)
    cx, cy = obj.centre[0] * _SUPERSAMPLE, obj.centre[1] * _SUPERSAMPLE
    r = obj.radius * _SUPERSAMPLE
    polygon = shape_polygon(obj.shape, cx, cy, r)
    if polygon is None:
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
    else:
        draw.polygon(polygon, fill=255)
    small = canvas.resize((IMAGE_SIZE, IMAGE_SIZE), Image.BOX)
    return np.asarray(small, dtype=np.float32) / 255.0


def render(objects: list[ShapeObject], background: str) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``objects`` over a flat background; returns the image and the visible masks."""
    image = np.empty((IMAGE_SIZE, IMAGE_SIZE, 3), np.float32)
    image[:] = BACKGROUNDS[background]
    visible = np.zeros((len(objects), IMAGE_SIZE, IMAGE_SIZE), np.float32)
    for k, obj in enumerate(objects):
        coverage = _draw_mask(obj)  # (64, 64) in [0, 1]
        visible[:k] *= 1.0 - coverage[None]  # (1, 64, 64): earlier objects lose what k covers
        visible[k] = coverage
        alpha = coverage[..., None]  # (64, 64, 1), broadcast over RGB
        image = image * (1.0 - alpha) + alpha * np.array(COLOURS[obj.colour], np.float32)
    return np.clip(image + 0.5, 0, 255).astype(np.uint8), visible >= 0.5


def make_object(
    rng: np.random.Generator,
    position: str,
    *,
    shape: str | None = None,
    colour: str | None = None,
    size: str | None = None,
    exclude_colours: tuple[str, ...] = (),
) -> ShapeObject:
    """A random object at ``position``; any attribute given is kept."""
    colours = [c for c in COLOURS if c not in exclude_colours]
    shape = shape or SHAPES[rng.integers(len(SHAPES))]
    colour = colour or colours[rng.integers(len(colours))]
    size = size or ("small", "big")[rng.integers(2)]
    low, high = SIZES[size]
    radius = float(rng.uniform(low, high))
    x, y = POSITIONS[position]
    dx, dy = rng.uniform(-_JITTER, _JITTER, size=2)
    return ShapeObject(
        shape=shape,
        colour=colour,
        size=size,
        position=position,
        centre=(x + float(dx), y + float(dy)),
        radius=radius,
        size_in_caption=bool(rng.random() < SIZE_IN_CAPTION_SHARE),
    )


def caption_words(
    objects: list[ShapeObject], background: str | None
) -> tuple[list[str], list[int]]:
    """Caption words and, per word, the object it describes (-1 for none).

    One object: ``a big red circle on the left``. Two: ``a red circle on the left and a
    small blue star on the right``. An optional ``, on a black background`` tail is written as
    the words ``on a black background`` (the comma is dropped: CLIP would give it a token).
    """
    words: list[str] = []
    owners: list[int] = []
    for k, obj in enumerate(objects):
        if k > 0:
            words.append("and")
            owners.append(-1)
        for word in obj.words():
            words.append(word)
            owners.append(k if word in (obj.colour, obj.shape, obj.size) else -1)
        for word in obj.position_words():
            words.append(word)
            owners.append(-1)
    if background is not None:
        tail = ["on", "a", background, "background"]
        words += tail
        owners += [-1] * len(tail)
    return words, owners


def sample(index: int, seed: int = 0, position_unnamed_share: float = 0.0) -> ShapeSample:
    """The sample number ``index`` of the dataset with ``seed``: deterministic.

    ``position_unnamed_share``: the share of one-object samples whose caption leaves the
    position out (the drawing is the same either way).
    """
    return build_sample(*sample_layout(index, seed, position_unnamed_share))


def sample_layout(
    index: int, seed: int = 0, position_unnamed_share: float = 0.0
) -> tuple[list[ShapeObject], str, str | None]:
    """The objects, background and named background (or None) of sample ``index``, undrawn."""
    if not 0.0 <= position_unnamed_share <= 1.0:
        raise ValueError(
            f"position_unnamed_share must be in [0, 1], got {position_unnamed_share}"
        )
    rng = np.random.default_rng([seed, index])
    background = list(BACKGROUNDS)[rng.integers(len(BACKGROUNDS))]
    if rng.random() < TWO_OBJECT_SHARE:
        pair = OPPOSITE_PAIRS[rng.integers(len(OPPOSITE_PAIRS))]
        if rng.random() < 0.5:
            pair = (pair[1], pair[0])
        first = make_object(rng, pair[0])
        second = make_object(rng, pair[1], exclude_colours=(first.colour,))
        objects = [first, second]
    else:
        objects = [make_object(rng, list(POSITIONS)[rng.integers(len(POSITIONS))])]
        # a stream of its own, so that every other draw is the same whatever the share
        if np.random.default_rng([seed, index, 1]).random() < position_unnamed_share:
            objects = [replace(objects[0], position_in_caption=False)]
    named_background = background if rng.random() < BACKGROUND_IN_CAPTION_SHARE else None
    return objects, background, named_background


def build_sample(
    objects: list[ShapeObject], background: str, named_background: str | None = None
) -> ShapeSample:
    """Render given objects and caption them (``named_background`` goes in the caption)."""
    image, masks = render(objects, background)
    words, owners = caption_words(objects, named_background)
    return ShapeSample(
        image=image,
        caption=" ".join(words),
        objects=objects,
        masks=masks,
        background=background,
        words=words,
        word_objects=owners,
    )


def nearest_colour(rgb: np.ndarray, palette: dict[str, tuple[int, int, int]] = COLOURS) -> str:
    """Name of the palette colour nearest to ``rgb`` (Euclidean in RGB)."""
    names = list(palette)
    table = np.array([palette[n] for n in names], np.float32)  # (colours, 3)
    return names[int(np.argmin(((table - np.asarray(rgb, np.float32)) ** 2).sum(-1)))]


def nearest_position(x: float, y: float) -> str:
    """Which of the five anchor positions is nearest to the point (x, y)."""
    names = list(POSITIONS)
    anchors = np.array([POSITIONS[n] for n in names], np.float32)  # (5, 2)
    return names[int(np.argmin(((anchors - np.array([x, y], np.float32)) ** 2).sum(-1)))]
