"""The full Stable Diffusion v1.5 architecture with random weights, built offline from configs.

The three model configs below are SD v1.5's own (``unet/``, ``vae/`` and ``text_encoder/``
``config.json`` of the released checkpoint), written out as dicts so nothing is downloaded. The
weights are random (each library's default initialisation), so images are noise, but every
layer, shape and FLOP is what a real SD v1.5 run costs. The tokenizer is the real CLIP one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from p2p_teach.defaults import SD_V1_SCHEDULER_CONFIG

if TYPE_CHECKING:
    from diffusers import StableDiffusionPipeline

SD15_UNET_CONFIG: dict = {
    "act_fn": "silu",
    "attention_head_dim": 8,
    "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False,
    "cross_attention_dim": 768,
    "down_block_types": [
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "DownBlock2D",
    ],
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "out_channels": 4,
    "sample_size": 64,
    "up_block_types": [
        "UpBlock2D",
        "CrossAttnUpBlock2D",
        "CrossAttnUpBlock2D",
        "CrossAttnUpBlock2D",
    ],
}

SD15_VAE_CONFIG: dict = {
    "act_fn": "silu",
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "in_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "out_channels": 3,
    "sample_size": 512,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
}

# CLIP ViT-L/14's text tower, as SD v1.5 ships it (the odd bos/eos/pad ids are the checkpoint's).
SD15_TEXT_ENCODER_CONFIG: dict = {
    "attention_dropout": 0.0,
    "bos_token_id": 0,
    "dropout": 0.0,
    "eos_token_id": 2,
    "hidden_act": "quick_gelu",
    "hidden_size": 768,
    "initializer_factor": 1.0,
    "initializer_range": 0.02,
    "intermediate_size": 3072,
    "layer_norm_eps": 1e-05,
    "max_position_embeddings": 77,
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "pad_token_id": 1,
    "projection_dim": 768,
    "vocab_size": 49408,
}


SD15_NAME = "sd15-arch-random"


def build_sd15_random_pipeline(seed: int = 0) -> StableDiffusionPipeline:
    """A ``StableDiffusionPipeline`` with SD v1.5's architecture and random fp32 weights (CPU).

    UNet 860M, CLIP-L text encoder 123M, VAE 84M parameters; about 4.3 GB of fp32 weights.
    """
    from diffusers import (
        AutoencoderKL,
        PNDMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    from p2p_teach.tokens import load_clip_tokenizer

    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(**SD15_UNET_CONFIG)
        vae = AutoencoderKL(**SD15_VAE_CONFIG)
        text_encoder = CLIPTextModel(CLIPTextConfig(**SD15_TEXT_ENCODER_CONFIG))
    pipe = StableDiffusionPipeline(
        vae=vae.eval(),
        text_encoder=text_encoder.eval(),
        tokenizer=load_clip_tokenizer(),
        unet=unet.eval(),
        scheduler=PNDMScheduler(**SD_V1_SCHEDULER_CONFIG),  # as SD v1.5 ships it
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.register_to_config(_name_or_path=SD15_NAME)
    pipe.set_progress_bar_config(disable=True)
    return pipe
