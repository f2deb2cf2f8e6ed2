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
share: the Pearson correlation of their grayscale images after area-averaging to a coarse grid
(``grid``×``grid``), which keeps the arrangement of light and dark regions and drops texture
and colour. 1 for the same layout, about 0 for unrelated images.
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


def _grayscale(image: Image.Image | np.ndarray | torch.Tensor) -> torch.Tensor:
    """An image as a (1, 1, H, W) float64 tensor of luminance in [0, 1]."""
    if isinstance(image, Image.Image):
        array = np.asarray(image.convert("L"), dtype=np.float64) / 255.0  # (H, W)
    else:
        array = np.asarray(image, dtype=np.float64)
        if array.ndim == 3:  # (H, W, 3) RGB, in [0, 1] or [0, 255]
            array = array @ np.array([0.299, 0.587, 0.114])  # (H, W)
        if array.max(initial=0.0) > 1.0:
            array = array / 255.0
    if array.ndim != 2:
        raise ValueError(f"an image is (H, W) or (H, W, 3); got shape {array.shape}")
    return torch.from_numpy(array)[None, None]  # (H, W) -> (1, 1, H, W)


def layout_similarity(
    image_a: Image.Image | np.ndarray | torch.Tensor,
    image_b: Image.Image | np.ndarray | torch.Tensor,
    grid: int = 8,
) -> float:
    """How much layout two images share: correlation of their coarse grayscale (−1 … 1).

    Both images are turned to grayscale and area-averaged to ``grid``×``grid`` cells; the
    result is the Pearson correlation of the two grids. 1: same arrangement of light and dark;
    about 0: unrelated; negative: inverted. Two flat images have no layout to compare and give
    0, unless they are identical (1).
    """
    coarse = []
    for image in (image_a, image_b):
        gray = _grayscale(image)  # (1, 1, H, W)
        coarse.append(F.adaptive_avg_pool2d(gray, grid).flatten())  # (grid·grid,)
    a, b = coarse[0] - coarse[0].mean(), coarse[1] - coarse[1].mean()
    norm = float(a.norm() * b.norm())
    if norm < _EPS:
        return 1.0 if torch.allclose(coarse[0], coarse[1]) else 0.0
    return float((a * b).sum() / norm)
