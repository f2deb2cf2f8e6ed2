"""Numbers behind two claims of the recitation, as pure functions on maps and images.

*"The composition is determined in the early steps"*: a word's cross-attention map is spread
out at first and gathers onto its object as denoising goes on. :func:`concentration` measures
how gathered one map is, as one minus its normalised entropy:

    p = map / sum(map);   H(p) = −Σ p log p;   concentration = 1 − H(p) / log(N)

for N pixels: 0 for a uniform map, 1 for all the mass on one pixel, whatever the resolution.
:func:`top_k_mass` is a second, more literal reading: the share of the mass held by the
brightest ``fraction`` of the pixels.

*Injection step*: the longer the source's attention is injected, the more of the source's
layout the edited image keeps. :func:`layout_similarity` measures how much layout two images
share: the Pearson correlation of where their edges are, after area-averaging each image's
edge strength (the colour gradient's magnitude) to a coarse grid (``grid``×``grid``). Edges
stay where they are when an object only changes colour, even when a dark object turns light
(a red circle turning cyan on gray), which a correlation of the brightness itself would read
as an inverted layout. 1 for the same layout, about 0 for unrelated images.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

_EPS = 1e-12


def _as_maps(maps: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Maps as a float64 tensor of shape (..., N): trailing (H, W) flattened."""
    tensor = torch.as_tensor(np.asarray(maps) if not isinstance(maps, torch.Tensor) else maps)
    if tensor.ndim < 2:
        raise ValueError(
            f"an attention map is (H, W) or (..., H, W); got shape {tuple(tensor.shape)}"
        )
    tensor = tensor.detach().to("cpu", torch.float64)
    if not bool(tensor.isfinite().all()):
        raise ValueError("attention maps are finite; got NaN or infinite values")
    if bool((tensor < 0).any()):
        raise ValueError("attention maps are non-negative; got negative values")
    return tensor.flatten(-2)  # (..., H, W) -> (..., H·W)


def concentration(maps: torch.Tensor | np.ndarray) -> torch.Tensor:
    """1 − normalised entropy of each map: 0 uniform, 1 one pixel. Shape (..., H, W) → (...).

    A map of all zeros counts as uniform (0): it says nothing about where the word is.
    """
    flat = _as_maps(maps)  # (..., N)
    n_pixels = flat.shape[-1]
    if n_pixels == 1:
        return torch.ones(flat.shape[:-1], dtype=torch.float64)
    total = flat.sum(-1, keepdim=True)  # (..., 1)
    probabilities = torch.where(total > _EPS, flat / total.clamp_min(_EPS), 1.0 / n_pixels)
    entropy = -(probabilities * torch.log(probabilities.clamp_min(_EPS))).sum(-1)  # (...)
    return (1.0 - entropy / math.log(n_pixels)).clamp(0.0, 1.0)


def top_k_mass(maps: torch.Tensor | np.ndarray, fraction: float = 0.1) -> torch.Tensor:
    """Share of each map's mass in its brightest ``fraction`` of pixels. (..., H, W) → (...).

    A uniform map gives about ``fraction``; a map on one pixel gives 1. All-zero maps count as
    uniform.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction={fraction!r}: the share of pixels kept, in (0, 1]")
    flat = _as_maps(maps)  # (..., N)
    n_pixels = flat.shape[-1]
    k = max(1, round(fraction * n_pixels))
    total = flat.sum(-1)  # (...)
    top = flat.topk(k, dim=-1).values.sum(-1)  # (...)
    uniform_share = torch.full_like(total, k / n_pixels)
    return torch.where(total > _EPS, top / total.clamp_min(_EPS), uniform_share)


def as_rgb(image: Image.Image | np.ndarray | torch.Tensor) -> np.ndarray:
    """An image as an (H, W, C) float64 array in [0, 1]: C = 3 for RGB, 1 for grayscale.

    Arrays and tensors may be (H, W), (H, W, C) or a tensor's (C, H, W); integer ones are
    0–255, float ones 0–1 (or 0–255 when any value is above 1).
    """
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"), dtype=np.float64) / 255.0  # (H, W, 3)
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu()
        if image.ndim == 3 and image.shape[0] in (1, 3) and image.shape[-1] not in (1, 3):
            image = image.permute(1, 2, 0)  # (C, H, W) -> (H, W, C)
        image = image.numpy()
    raw = np.asarray(image)
    array = raw.astype(np.float64)
    if np.issubdtype(raw.dtype, np.integer) or array.max(initial=0.0) > 1.0:  # 0–255
        array = array / 255.0
    if array.ndim == 2:
        array = array[..., None]  # (H, W) -> (H, W, 1)
    if array.ndim != 3 or array.shape[-1] not in (1, 3):
        raise ValueError(
            f"an image is (H, W), (H, W, 3) or a tensor's (3, H, W); got shape {array.shape}"
        )
    return array


def edge_strength(image: Image.Image | np.ndarray | torch.Tensor) -> torch.Tensor:
    """(H − 2, W − 2) magnitude of the colour gradient, √(Σ_channels ∂x² + ∂y²), by central
    differences on the interior pixels (the border has no neighbour on one side).

    Zero on flat regions, large on the outline of an object, whatever its colour.
    """
    array = as_rgb(image)  # (H, W, C)
    dx = (array[1:-1, 2:] - array[1:-1, :-2]) / 2  # (H − 2, W − 2, C)
    dy = (array[2:, 1:-1] - array[:-2, 1:-1]) / 2  # (H − 2, W − 2, C)
    return torch.from_numpy(np.sqrt((dx**2 + dy**2).sum(-1)))  # (H − 2, W − 2)


def layout_similarity(
    image_a: Image.Image | np.ndarray | torch.Tensor,
    image_b: Image.Image | np.ndarray | torch.Tensor,
    grid: int = 8,
) -> float:
    """How much layout two images share: correlation of where their edges are (−1 … 1).

    Each image's :func:`edge_strength` is area-averaged to ``grid``×``grid`` cells; the result
    is the Pearson correlation of the two grids. 1: edges in the same places (the same
    objects in the same places, in any colours); about 0: unrelated. Images without edges
    (flat) have no layout to compare and give 0, unless they are identical (1).
    """
    coarse = []
    for image in (image_a, image_b):
        edges = edge_strength(image)[None, None]  # (H, W) -> (1, 1, H, W)
        coarse.append(F.adaptive_avg_pool2d(edges, grid).flatten())  # (grid·grid,)
    a, b = coarse[0] - coarse[0].mean(), coarse[1] - coarse[1].mean()
    norm = float(a.norm() * b.norm())
    if norm < _EPS:
        identical = np.array_equal(as_rgb(image_a), as_rgb(image_b))
        return 1.0 if identical else 0.0
    return float((a * b).sum() / norm)
