"""Generating images with the conditional cross-attention maps recorded, and reading the maps."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from p2p_teach.shapes import model as shapes_model
from p2p_teach.shapes.train.dataset import CaptionIds

if TYPE_CHECKING:
    from diffusers import StableDiffusionPipeline


def generate(
    pipe: StableDiffusionPipeline,
    prompt: str,
    n: int,
    seed: int,
    steps: int,
    guidance: float,
    record: bool,
) -> tuple[np.ndarray, list[tuple[str, torch.Tensor]]]:
    """``n`` images of ``prompt`` (uint8, (n, 64, 64, 3)) and, if asked, the conditional
    cross-attention maps of every UNet call: (layer, (n, pixels, 77))."""
    attention = shapes_model.AttentionRecord(
        active=record, keep_batch=slice(n, None) if guidance > 1 else None, detach=True
    )
    with torch.no_grad(), shapes_model.recording(pipe.unet, attention):
        result = pipe(
            [prompt] * n,
            num_inference_steps=steps,
            guidance_scale=guidance,
            generator=torch.Generator().manual_seed(seed),
            output_type="np",
        )
    images = (np.clip(result.images, 0, 1) * 255 + 0.5).astype(np.uint8)  # (n, 64, 64, 3)
    return images, list(attention.maps)


@functools.lru_cache(maxsize=1)
def _caption_ids() -> CaptionIds:  # cached: loading the tokenizer takes a moment
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
