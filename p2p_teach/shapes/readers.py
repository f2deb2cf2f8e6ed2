"""Read an edit's two images on the built-in model: object masks, colours, shapes, IoU.

The lessons measure their claims with these (over several seeds), using the evaluation's
definitions (:mod:`p2p_teach.shapes.evaluate`): the object is every pixel far from the
background, its colour the palette colour nearest its median. A shape is read here by
template: the object's silhouette, cropped to its bounding square, against each candidate
shape drawn by the data generator, the best IoU wins (no classifier to train, so a notebook
cell reads a shape in microseconds; ``tests/test_claims.py`` checks it on drawn shapes).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from . import data as shapes_data
from .evaluate import (
    MIN_OBJECT_PIXELS,
    foreground,
    half_masks,
    object_colour,
    silhouette_crop,
    swap_iou,
)


def as_array(image) -> np.ndarray:
    """(64, 64, 3) uint8 RGB of a PIL image or an array."""
    if isinstance(image, np.ndarray):
        return image
    return np.asarray(image.convert("RGB"))


@functools.cache
def _template(shape: str) -> np.ndarray:
    """(32, 32) float silhouette of ``shape`` drawn big in the centre, cropped as objects are."""
    obj = shapes_data.ShapeObject(shape, "red", "big", "center", (32.0, 32.0), 13.5)
    sample = shapes_data.build_sample([obj], "white")
    return silhouette_crop(sample.masks[0]).numpy()[0]  # (32, 32)


def read_shape(mask: np.ndarray, candidates: tuple[str, ...] = shapes_data.SHAPES) -> str | None:
    """The candidate shape whose template silhouette best matches ``mask`` (None: no object)."""
    if mask.sum() < MIN_OBJECT_PIXELS:
        return None
    crop = silhouette_crop(mask).numpy()[0] > 0.5  # (32, 32)
    scores = {}
    for shape in candidates:
        template = _template(shape) > 0.5
        union = np.logical_or(crop, template).sum()
        scores[shape] = np.logical_and(crop, template).sum() / max(union, 1)
    return max(scores, key=scores.get)


@dataclass(frozen=True)
class EditReading:
    """What one edit's images show.

    Attributes:
        iou: object mask IoU of source and edit (0 when either has no object).
        colour, source_colour: palette names of the objects' colours (None: no object).
        shape, source_shape: shapes read among the candidates asked for (None: not read).
        changed_pixels: mean absolute pixel difference of the two images (0–255).
    """

    iou: float
    colour: str | None
    source_colour: str | None
    shape: str | None = None
    source_shape: str | None = None
    changed_pixels: float = 0.0


def read_edit(result, shapes: tuple[str, ...] | None = None) -> EditReading:
    """Read an :class:`~p2p_teach.engine.EditResult` (``shapes``: the candidates to read)."""
    source, edited = as_array(result.source_image), as_array(result.edited_image)
    source_mask, edited_mask = foreground(source), foreground(edited)
    return EditReading(
        iou=swap_iou(source_mask, edited_mask),
        colour=object_colour(edited, edited_mask),
        source_colour=object_colour(source, source_mask),
        shape=read_shape(edited_mask, shapes) if shapes else None,
        source_shape=read_shape(source_mask, shapes) if shapes else None,
        changed_pixels=float(np.abs(source.astype(np.int16) - edited).mean()),
    )


def half_colour(image, position: str) -> str | None:
    """The colour of the object in the half of the image at ``position`` (left/right/top/bottom)."""
    array = as_array(image)
    mask = foreground(array) & half_masks(position)
    return object_colour(array, mask)
