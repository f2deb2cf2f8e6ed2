"""Reading generated images: background, object mask, colour, position, silhouette."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from p2p_teach.shapes import data as shapes_data

BACKGROUND_DISTANCE = 60.0  # RGB distance from the background that counts as object
MIN_OBJECT_PIXELS = 15
CROP_SIDE = 32


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


def background_name(image: np.ndarray) -> str:
    """The dataset background nearest to the image's border colour."""
    return shapes_data.nearest_colour(background_colour(image), shapes_data.BACKGROUNDS)
