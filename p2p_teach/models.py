"""Getting a Stable Diffusion pipeline: built-in offline models, local folders, hub ids, or yours.

Every path ends in a plain diffusers ``StableDiffusionPipeline``; nothing in p2p_teach needs a
subclass. :func:`load_pipeline` says plainly which model it runs (:func:`describe_pipeline`).

Built-in models need no network:

- ``"shapes"`` (the default): the Stable Diffusion v1 architecture at small size, trained on
  procedural 64×64 images of coloured shapes and shipped inside the package (fp16, 28 MB). It
  runs at guidance 2; its word attention sits on the object it draws; colours, shapes and
  positions come out as named almost always (``p2p_teach/shapes/MODEL_CARD.md``).
- ``"tiny-random"``: the Stable Diffusion v1 architecture at toy size with random weights (built
  from configs, deterministic for a seed) and the real CLIP tokenizer. Tokens and mappers are
  real; its attention maps and images are noise. It builds in about a second on a CPU.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from .schedules import DEFAULT_SELF_RATIO, DEFAULT_SELF_STEPS
from .shapes import GUIDANCE as SHAPES_GUIDANCE
from .shapes import SELF_MAX_RATIO as SHAPES_SELF_MAX_RATIO
from .shapes import SELF_STEPS as SHAPES_SELF_STEPS
from .tokens import BOS_ID, EOS_ID, MAX_SLOTS, VOCAB_SIZE, load_clip_tokenizer

logger = logging.getLogger(__name__)

BUILTIN_PREFIX = "p2p_teach/"
DEFAULT_MODEL = "builtin"
HUB_EXAMPLES = ("stable-diffusion-v1-5/stable-diffusion-v1-5", "CompVis/stable-diffusion-v1-4")
SD_GUIDANCE = 7.5  # Stable Diffusion v1's classifier-free guidance scale


class ModelNotAvailableError(RuntimeError):
    """A model could not be loaded (for example: hub weights not cached and no network)."""


@dataclass(frozen=True)
class BuiltinModel:
    name: str
    summary: str  # one line a learner reads before trusting the pictures
    build: Callable[[int], object]  # seed -> StableDiffusionPipeline
    guidance: float = SD_GUIDANCE  # the classifier-free guidance scale the model runs at
    # self-attention is injected in layers of side ≤ this share of the latent's side
    self_max_ratio: float = DEFAULT_SELF_RATIO
    # self-attention is injected over this share of the steps (from the first)
    self_steps: float = DEFAULT_SELF_STEPS


def _sd_v1_scheduler_config() -> dict:
    """The PNDM scheduler exactly as Stable Diffusion v1 ships it."""
    return {
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "num_train_timesteps": 1000,
        "set_alpha_to_one": False,
        "skip_prk_steps": True,
        "steps_offset": 1,
        "prediction_type": "epsilon",
    }


def build_tiny_random_pipeline(seed: int = 0):
    """SD v1's architecture at toy size, random weights, real tokenizer; deterministic per seed.

    UNet: cross-attention at 16×16 and 8×8 (down and up) and 4×4 (mid), like SD's 64/32/16/8
    ladder scaled down. VAE: 64×64×3 ↔ 16×16×4. Text encoder: CLIP, hidden size 32, 77 slots.
    """
    from diffusers import (
        AutoencoderKL,
        PNDMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(
            sample_size=16,
            in_channels=4,
            out_channels=4,
            block_out_channels=(32, 64, 64),
            layers_per_block=1,
            down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=32,
            attention_head_dim=8,
            norm_num_groups=32,
        )
        vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            block_out_channels=(32, 32, 32),
            down_block_types=("DownEncoderBlock2D",) * 3,
            up_block_types=("UpDecoderBlock2D",) * 3,
            latent_channels=4,
            layers_per_block=1,
            norm_num_groups=32,
            sample_size=64,
        )
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                vocab_size=VOCAB_SIZE,
                hidden_size=32,
                intermediate_size=64,
                num_hidden_layers=2,
                num_attention_heads=4,
                max_position_embeddings=MAX_SLOTS,
                bos_token_id=BOS_ID,
                eos_token_id=EOS_ID,
                pad_token_id=EOS_ID,
            )
        )
    pipe = StableDiffusionPipeline(
        vae=vae.eval(),
        text_encoder=text_encoder.eval(),
        tokenizer=load_clip_tokenizer(),
        unet=unet.eval(),
        scheduler=PNDMScheduler(**_sd_v1_scheduler_config()),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.register_to_config(_name_or_path=f"{BUILTIN_PREFIX}tiny-random")
    pipe.set_progress_bar_config(disable=True)
    return pipe


def build_shapes_pipeline(seed: int = 0):
    """The shipped shapes model (``seed`` is unused: its weights are trained)."""
    from .shapes import load_shapes_pipeline

    return load_shapes_pipeline()  # named p2p_teach/shapes: it runs at its own guidance


BUILTIN_MODELS: dict[str, BuiltinModel] = {
    "shapes": BuiltinModel(
        "shapes",
        "built-in offline model 'shapes': Stable Diffusion v1 architecture at small size, "
        "trained on 64×64 pictures of one or two coloured shapes (captions like 'a big red "
        "circle on the left'); runs at guidance 2. For photos load an SD v1.x hub id on a GPU.",
        build_shapes_pipeline,
        guidance=SHAPES_GUIDANCE,
        self_max_ratio=SHAPES_SELF_MAX_RATIO,
        self_steps=SHAPES_SELF_STEPS,
    ),
    "tiny-random": BuiltinModel(
        "tiny-random",
        "built-in offline model 'tiny-random': Stable Diffusion v1 architecture at toy size with "
        "RANDOM weights and the real CLIP tokenizer. Tokens and mappers are real; images and "
        "attention maps are noise. For real pictures load an SD v1.x hub id on a GPU.",
        build_tiny_random_pipeline,
    ),
}
BUILTIN_DEFAULT = "shapes"


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def default_dtype(device: torch.device | str) -> torch.dtype:
    """fp16 on CUDA (bf16 where the GPU prefers it is a user choice), fp32 on CPU."""
    return torch.float16 if torch.device(device).type == "cuda" else torch.float32


def load_pipeline(
    model: object = DEFAULT_MODEL,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    seed: int = 0,
    verbose: bool = True,
):
    """Return a ``StableDiffusionPipeline`` from a name, a folder, a hub id, or a pipeline.

    Args:
        model: ``"builtin"`` (the default offline model, ``"shapes"``), a built-in name
            (``"shapes"``, ``"tiny-random"``),
            a local folder saved with ``save_pretrained``, a hub id such as
            ``"stable-diffusion-v1-5/stable-diffusion-v1-5"``, or a pipeline you already have
            (returned as it is, moved to ``device``/``dtype`` if you give them).
        device: defaults to CUDA when available, else the CPU.
        dtype: defaults to fp16 on CUDA and fp32 on the CPU.
        seed: weight seed of the random built-in model ``"tiny-random"``.
        verbose: print one line saying which model runs.

    Raises:
        ModelNotAvailableError: the weights are not here and cannot be downloaded; the message
            says how to get them and what runs instead.
    """
    from diffusers import DiffusionPipeline, StableDiffusionPipeline

    if isinstance(model, DiffusionPipeline):
        pipe = model
        pipe = _move(pipe, device, dtype)
    elif not isinstance(model, (str, os.PathLike)):
        raise TypeError(
            f"model must be a name, a folder, a hub id or a pipeline, not {type(model).__name__}"
        )
    else:
        name = str(model)
        builtin = name.removeprefix(BUILTIN_PREFIX)
        builtin = BUILTIN_DEFAULT if builtin == "builtin" else builtin
        device = torch.device(device) if device is not None else default_device()
        if builtin in BUILTIN_MODELS:
            pipe = _move(BUILTIN_MODELS[builtin].build(seed), device, dtype)
        elif Path(name).expanduser().is_dir():
            pipe = StableDiffusionPipeline.from_pretrained(
                str(Path(name).expanduser()), **_dtype_kwarg(dtype or default_dtype(device))
            ).to(device)
        elif Path(name).expanduser().exists() or name.startswith((".", "/", "~")):
            raise ModelNotAvailableError(
                f"{name!r} is not a folder. Fix: pass a folder written by "
                "pipe.save_pretrained(folder), a hub id, or 'builtin'."
            )
        else:
            pipe = _from_hub(name, device, dtype or default_dtype(device))
    if not isinstance(pipe, StableDiffusionPipeline):
        raise TypeError(
            f"p2p_teach edits StableDiffusionPipeline (SD v1.x); got {type(pipe).__name__}"
        )
    if verbose:
        print(f"p2p_teach: {describe_pipeline(pipe)}")
    return pipe


def _move(pipe, device: torch.device | str | None, dtype: torch.dtype | None):
    """Move a pipeline only where it is not already (``.to`` on a no-op still warns)."""
    unet = pipe.unet
    if device is not None and torch.device(device) != unet.device:
        pipe = pipe.to(torch.device(device))
    if dtype is not None and dtype != unet.dtype:
        pipe = pipe.to(dtype=dtype)
    return pipe


def _dtype_kwarg(dtype: torch.dtype) -> dict:
    """diffusers renamed ``torch_dtype`` to ``dtype``; pass whichever this version reads."""
    from diffusers.pipelines import pipeline_utils

    return {"dtype" if hasattr(pipeline_utils, "_resolve_dtype") else "torch_dtype": dtype}


def _from_hub(model_id: str, device: torch.device, dtype: torch.dtype):
    from diffusers import StableDiffusionPipeline

    builtin_names = ", ".join(repr(n) for n in BUILTIN_MODELS)
    try:
        return StableDiffusionPipeline.from_pretrained(model_id, **_dtype_kwarg(dtype)).to(device)
    except (OSError, ValueError, ConnectionError) as error:  # hub errors subclass these
        raise ModelNotAvailableError(
            f"could not load {model_id!r}: its weights are not in the local Hugging Face cache "
            f"and the hub could not be reached ({type(error).__name__}). To get them, on a "
            f"machine with network run `hf download {model_id}` (about 4–5 GB for SD v1.x), "
            "or copy a folder saved with pipe.save_pretrained() and pass its path. Meanwhile "
            f"load_pipeline('builtin') runs offline (built-in models: {builtin_names})."
        ) from error


def builtin_name(pipe) -> str | None:
    """The built-in model's name if ``pipe`` is one, else None."""
    path = str(getattr(pipe, "name_or_path", "") or "")
    name = path.removeprefix(BUILTIN_PREFIX)
    return name if path.startswith(BUILTIN_PREFIX) and name in BUILTIN_MODELS else None


def _builtin_setting(pipe, field: str, otherwise: float) -> float:
    """A setting (``guidance``, ``self_max_ratio``, ``self_steps``) of the built-in model
    ``pipe`` is, or ``otherwise`` (Stable Diffusion v1's) for any other pipeline."""
    name = builtin_name(pipe)
    return getattr(BUILTIN_MODELS[name], field) if name is not None else otherwise


def default_guidance(pipe) -> float:
    """The classifier-free guidance scale ``pipe`` is meant to run at.

    A built-in model's own scale (the shapes model follows its captions closely and runs at
    :data:`p2p_teach.shapes.GUIDANCE`), else Stable Diffusion v1's 7.5.
    """
    return _builtin_setting(pipe, "guidance", SD_GUIDANCE)


def default_self_max_ratio(pipe) -> float:
    """The share of the latent's side up to which ``pipe``'s edits inject self-attention.

    Stable Diffusion's is the original's 16×16 of a 64×64 latent (0.25). The shapes model's
    16×16 latent would keep only its 4×4 middle block that way, where injection does little;
    it injects in every layer (:data:`p2p_teach.shapes.SELF_MAX_RATIO`).
    """
    return _builtin_setting(pipe, "self_max_ratio", DEFAULT_SELF_RATIO)


def default_self_steps(pipe) -> float:
    """The share of the steps (from the first) over which ``pipe``'s edits inject self-attention.

    Stable Diffusion's is the original's 0.4. The shapes model's colour swaps keep the object's
    outline a little closer with 0.6, so its edits inject over that
    (:data:`p2p_teach.shapes.SELF_STEPS`).
    """
    return _builtin_setting(pipe, "self_steps", DEFAULT_SELF_STEPS)


def count_parameters(module: torch.nn.Module | None) -> int:
    return 0 if module is None else sum(p.numel() for p in module.parameters())


def describe_pipeline(pipe) -> str:
    """One plain line: which model this is, its size, device and dtype."""
    name = builtin_name(pipe)
    unet = pipe.unet
    where = f"{unet.device.type}, {str(unet.dtype).removeprefix('torch.')}"
    size = (
        f"UNet {count_parameters(unet) / 1e6:.1f}M, text encoder "
        f"{count_parameters(pipe.text_encoder) / 1e6:.1f}M, VAE "
        f"{count_parameters(pipe.vae) / 1e6:.1f}M parameters"
    )
    if name is not None:
        return f"{BUILTIN_MODELS[name].summary} ({size}; {where})"
    source = getattr(pipe, "name_or_path", None) or "a pipeline built in memory"
    return f"model {source!s} ({type(pipe).__name__}; {size}; {where})"
