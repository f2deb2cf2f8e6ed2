"""The Stable Diffusion components at small size, and a cross-attention processor that records.

The architecture is Stable Diffusion v1's, scaled down for 64×64 images:

- ``AutoencoderKL``: 64×64×3 → 16×16×4 (two downsamplings, as SD's 512 → 64 uses three);
- ``UNet2DConditionModel``: cross-attention at 16×16 and 8×8 (and the 4×4 middle block),
  plain resnets at 4×4, epsilon prediction;
- ``CLIPTextModel`` with the full 49,408-entry CLIP vocabulary, read by the real CLIP tokenizer;
- a ``PNDMScheduler`` configured exactly as SD v1's.

:class:`RecordingCrossAttnProcessor` is an ordinary diffusers attention processor, installed for
a ``with`` block by :func:`recording` (through :func:`p2p_teach.processors.attention_processors`,
which always puts the UNet's own back). It computes cross-attention probabilities explicitly
and, while its :class:`AttentionRecord` is switched on, keeps the head-averaged maps, with their
gradient, for the grounding loss in training and for the attention measurements in evaluation.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ..compat import dtype_kwarg
from ..defaults import SD_V1_SCHEDULER_CONFIG
from ..processors import ExplicitAttnProcessor, attention_processors

if TYPE_CHECKING:
    from diffusers import AutoencoderKL, DDPMScheduler, PNDMScheduler, UNet2DConditionModel
    from diffusers.models.attention_processor import Attention
    from transformers import CLIPTextModel

TEXT_HIDDEN = 128
MAX_TOKENS = 77

VAE_CONFIG: dict = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ("DownEncoderBlock2D",) * 3,
    "up_block_types": ("UpDecoderBlock2D",) * 3,
    "block_out_channels": (32, 64, 64),
    "layers_per_block": 1,
    "latent_channels": 4,
    "norm_num_groups": 32,
    "sample_size": 64,
    "scaling_factor": 1.0,  # set from the trained encoder's latent spread
}

UNET_CONFIG: dict = {
    "sample_size": 16,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    "block_out_channels": (64, 128, 128),
    "layers_per_block": 1,
    "cross_attention_dim": TEXT_HIDDEN,
    "attention_head_dim": 4,  # diffusers reads this SD v1 field as the number of heads
    "norm_num_groups": 32,
}

TEXT_CONFIG: dict = {
    "vocab_size": 49408,
    "hidden_size": TEXT_HIDDEN,
    "intermediate_size": 4 * TEXT_HIDDEN,
    "num_hidden_layers": 3,
    "num_attention_heads": 4,
    "max_position_embeddings": MAX_TOKENS,
    "hidden_act": "quick_gelu",
    "bos_token_id": 49406,
    "eos_token_id": 49407,
    "pad_token_id": 49407,
    "projection_dim": TEXT_HIDDEN,
}

SCHEDULER_CONFIG: dict = SD_V1_SCHEDULER_CONFIG  # the sampler is SD v1's PNDM


def build_vae() -> AutoencoderKL:
    """A fresh (randomly initialised) small ``AutoencoderKL``."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(**VAE_CONFIG)


def build_unet() -> UNet2DConditionModel:
    """A fresh small ``UNet2DConditionModel``."""
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(**UNET_CONFIG)


def build_text_encoder() -> CLIPTextModel:
    """A fresh small ``CLIPTextModel`` with the full CLIP vocabulary."""
    from transformers import CLIPTextConfig, CLIPTextModel

    return CLIPTextModel(CLIPTextConfig(**TEXT_CONFIG))


def build_scheduler() -> PNDMScheduler:
    """SD v1's PNDM scheduler."""
    from diffusers import PNDMScheduler

    return PNDMScheduler(**SCHEDULER_CONFIG)


def build_noise_scheduler() -> DDPMScheduler:
    """The training-time noise schedule (same betas as the sampler)."""
    from diffusers import DDPMScheduler

    keep = ("beta_start", "beta_end", "beta_schedule", "num_train_timesteps", "prediction_type")
    return DDPMScheduler(**{k: SCHEDULER_CONFIG[k] for k in keep})


@dataclass
class AttentionRecord:
    """Head-averaged cross-attention maps, one per cross-attention call while ``active``.

    Each entry of ``maps`` is ``(layer_name, probs)`` with probs of shape
    (batch, pixels, tokens), with gradient when recorded in training.
    ``keep_batch`` picks a slice of the batch to keep (e.g. the conditional half under
    classifier-free guidance); None keeps all of it.
    """

    active: bool = False
    keep_batch: slice | None = None
    detach: bool = False
    maps: list[tuple[str, torch.Tensor]] = field(default_factory=list)

    def clear(self) -> None:
        """Forget recorded maps."""
        self.maps.clear()


class RecordingCrossAttnProcessor(ExplicitAttnProcessor):
    """Cross-attention with explicit probabilities, recorded into an :class:`AttentionRecord`.

    Numerically it is diffusers' ``AttnProcessor``; only cross-attention layers get it.
    """

    def __init__(self, name: str, record: AttentionRecord) -> None:
        self.name = name
        self.record = record

    def edit_probabilities(self, attn: Attention, probabilities: torch.Tensor) -> torch.Tensor:
        """Record the head-averaged maps while the record is on; the probabilities stay."""
        if self.record.active:
            # (batch·heads, pixels, tokens) → (batch, heads, pixels, tokens)
            per_head = probabilities.view(-1, attn.heads, *probabilities.shape[1:])
            kept = per_head.mean(1)  # (batch, pixels, tokens)
            if self.record.keep_batch is not None:
                kept = kept[self.record.keep_batch]
            if self.record.detach:
                kept = kept.detach()
            self.record.maps.append((self.name, kept))
        return probabilities


@contextmanager
def recording(unet: UNet2DConditionModel, record: AttentionRecord) -> Iterator[None]:
    """Record every cross-attention layer of ``unet`` into ``record`` inside a ``with`` block.

    The layers get :class:`RecordingCrossAttnProcessor` through
    :func:`p2p_teach.processors.attention_processors`, so the UNet's own processors come back
    when the block ends, however it ends; self-attention keeps its processors.
    """
    cross = {
        name: RecordingCrossAttnProcessor(name, record)
        for name in unet.attn_processors
        if name.endswith("attn2.processor")
    }
    with attention_processors(unet, cross):
        yield


def load_components(folder: str | Path, dtype: torch.dtype = torch.float32) -> dict:
    """Load the pipeline components saved in ``folder`` (a ``save_pretrained`` folder)."""
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(str(folder), **dtype_kwarg(dtype))
    return dict(pipe.components)
