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
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from .compat import dtype_kwarg
from .defaults import (
    BUILTIN_PREFIX,
    SD_V1_SCHEDULER_CONFIG,
    TINY_RANDOM,
    mark,
    model_defaults,
)
from .tokens import BOS_ID, EOS_ID, MAX_SLOTS, VOCAB_SIZE, load_clip_tokenizer

if TYPE_CHECKING:
    from diffusers import DiffusionPipeline, StableDiffusionPipeline

DEFAULT_MODEL = "builtin"
HUB_EXAMPLES = ("stable-diffusion-v1-5/stable-diffusion-v1-5", "CompVis/stable-diffusion-v1-4")


class ModelNotAvailableError(RuntimeError):
    """A model could not be loaded (for example: hub weights not cached and no network)."""


@dataclass(frozen=True)
class BuiltinModel:
    """A built-in model: its name, the line that introduces it, and how to build it (its
    default settings are :mod:`p2p_teach.defaults`', set on its UNet by the builder)."""

    name: str
    summary: str  # one line a learner reads before trusting the pictures
    build: Callable[[int], StableDiffusionPipeline]  # seed -> pipeline


def build_tiny_random_pipeline(seed: int = 0) -> StableDiffusionPipeline:
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
        scheduler=PNDMScheduler(**SD_V1_SCHEDULER_CONFIG),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.register_to_config(_name_or_path=f"{BUILTIN_PREFIX}tiny-random")
    pipe.set_progress_bar_config(disable=True)
    mark(pipe, TINY_RANDOM)
    return pipe


def build_shapes_pipeline(seed: int = 0) -> StableDiffusionPipeline:
    """The shipped shapes model (``seed`` is unused: its weights are trained)."""
    from .shapes import load_shapes_pipeline

    return load_shapes_pipeline()  # marked with its own defaults (guidance, self-attention)


BUILTIN_MODELS: dict[str, BuiltinModel] = {
    "shapes": BuiltinModel(
        "shapes",
        "built-in offline model 'shapes': Stable Diffusion v1 architecture at small size, "
        "trained on 64×64 pictures of one or two coloured shapes (captions like 'a big red "
        "circle on the left'); runs at guidance 2. For photos load an SD v1.x hub id on a GPU.",
        build_shapes_pipeline,
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


def choose_dtype(device: torch.device | str, dtype: torch.dtype | None = None) -> torch.dtype:
    """The dtype a model loaded by name runs in: ``dtype`` if given, else fp16 on CUDA and
    fp32 elsewhere (bf16 where a GPU prefers it is a user choice), for every model."""
    if dtype is not None:
        return dtype
    return torch.float16 if torch.device(device).type == "cuda" else torch.float32


# Messages printed while diffusers and transformers import and build a pipeline that say
# nothing about the model being loaded (transformers falls back to its PIL image processors,
# which a Stable Diffusion pipeline does not use for generation).
_IRRELEVANT_LOG_MESSAGES = (re.compile(r"requires torchvision \(not installed\); falling back to"),)
_IRRELEVANT_LOGGERS = ("transformers.utils.import_utils",)


class _DropIrrelevant(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(pattern.search(message) for pattern in _IRRELEVANT_LOG_MESSAGES)


@contextmanager
def _quiet_loading() -> Iterator[None]:
    """Hide the known-irrelevant loading messages above, only while this block runs."""
    dropper = _DropIrrelevant()
    loggers = [logging.getLogger(name) for name in _IRRELEVANT_LOGGERS]
    for each in loggers:
        each.addFilter(dropper)
    try:
        yield
    finally:
        for each in loggers:
            each.removeFilter(dropper)


def load_pipeline(
    model: object = DEFAULT_MODEL,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    seed: int = 0,
    verbose: bool = True,
) -> StableDiffusionPipeline:
    """Return a ``StableDiffusionPipeline`` from a name, a folder, a hub id, or a pipeline.

    Args:
        model: ``"builtin"`` (the default offline model, ``"shapes"``), a built-in name
            (``"shapes"``, ``"tiny-random"``),
            a local folder saved with ``save_pretrained``, a hub id such as
            ``"stable-diffusion-v1-5/stable-diffusion-v1-5"``, or a pipeline you already have
            (returned as it is, moved to ``device``/``dtype`` if you give them; a pipeline with
            CPU offload enabled stays where the offload puts it).
        device: defaults to CUDA when available, else the CPU.
        dtype: defaults to fp16 on CUDA and fp32 on the CPU, for every model loaded by name
            (:func:`choose_dtype`); a pipeline you pass keeps its own unless you give one.
        seed: weight seed of the random built-in model ``"tiny-random"``.
        verbose: print one line saying which model runs.

    Raises:
        ModelNotAvailableError: the weights are not here and cannot be downloaded, or the hub
            id is wrong or gated; the message says how to get them and what runs instead.
    """
    with _quiet_loading():
        pipe = _load(model, device, dtype, seed)
    if verbose:
        print(f"p2p_teach: {describe_pipeline(pipe)}")
    return pipe


def _load(
    model: object, device: torch.device | str | None, dtype: torch.dtype | None, seed: int
) -> StableDiffusionPipeline:
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
            pipe = _move(BUILTIN_MODELS[builtin].build(seed), device, choose_dtype(device, dtype))
        elif Path(name).expanduser().is_dir():
            pipe = StableDiffusionPipeline.from_pretrained(
                str(Path(name).expanduser()), **dtype_kwarg(choose_dtype(device, dtype))
            ).to(device)
        elif Path(name).expanduser().exists() or name.startswith((".", "/", "~")):
            raise ModelNotAvailableError(
                f"{name!r} is not a folder. Fix: pass a folder written by "
                "pipe.save_pretrained(folder), a hub id, or 'builtin'."
            )
        else:
            pipe = _from_hub(name, device, choose_dtype(device, dtype))
    if not isinstance(pipe, StableDiffusionPipeline):
        raise TypeError(
            f"p2p_teach edits StableDiffusionPipeline (SD v1.x); got {type(pipe).__name__}"
        )
    return pipe


def same_device(a: torch.device | str, b: torch.device | str) -> bool:
    """Whether two devices are one: ``"cuda"`` is the current CUDA device (``"cuda:0"`` unless
    set otherwise); a CPU is a CPU whatever its index."""
    first, second = torch.device(a), torch.device(b)
    if first.type != second.type:
        return False
    if first.type == "cpu" or first.index == second.index:
        return True
    return _device_index(first) == _device_index(second)


def _device_index(device: torch.device) -> int:
    if device.index is not None:
        return device.index
    if device.type == "cuda" and torch.cuda.is_available():
        return torch.cuda.current_device()
    return 0


def is_offloaded(pipe: DiffusionPipeline) -> bool:
    """Whether diffusers places the pipeline's modules itself: model or sequential CPU offload
    (accelerate's ``_hf_hook`` on a component), group offloading, or a device map."""
    if getattr(pipe, "hf_device_map", None):
        return True
    components = getattr(pipe, "components", {}) or {}
    for module in components.values():
        if not isinstance(module, torch.nn.Module):
            continue
        if hasattr(module, "_hf_hook"):
            return True
        registry = getattr(module, "_diffusers_hook", None)
        get_hook = getattr(registry, "get_hook", None)
        if get_hook is not None and get_hook("group_offloading") is not None:
            return True
    return False


def _move(
    pipe: StableDiffusionPipeline, device: torch.device | str | None, dtype: torch.dtype | None
) -> StableDiffusionPipeline:
    """Move a pipeline only where it is not already (``.to`` on a no-op still warns). An
    offloaded pipeline is not moved: the offload places it, and ``.to`` on one raises."""
    unet = pipe.unet
    offloaded = is_offloaded(pipe)
    if device is not None and not offloaded and not same_device(device, unet.device):
        pipe = pipe.to(torch.device(device))
    if dtype is not None and dtype != unet.dtype:
        if offloaded:
            raise ValueError(
                f"the pipeline has CPU offload enabled, so load_pipeline does not change its "
                f"dtype ({unet.dtype} → {dtype}). Fix: load it in the dtype you want "
                "(from_pretrained(..., torch_dtype=...)) before enabling offload, or leave "
                "dtype unset."
            )
        pipe = pipe.to(dtype=dtype)
    return pipe


def _hub_error(error: BaseException, kind: str) -> BaseException | None:
    """The first error of huggingface_hub's class ``kind`` in ``error``'s chain (diffusers
    re-raises hub errors as ``OSError`` from them), or None."""
    from huggingface_hub import errors

    wanted = getattr(errors, kind, None)
    if wanted is None:
        return None
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, wanted):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _from_hub(model_id: str, device: torch.device, dtype: torch.dtype) -> StableDiffusionPipeline:
    from diffusers import StableDiffusionPipeline

    builtin_names = ", ".join(repr(n) for n in BUILTIN_MODELS)
    meanwhile = (
        f"Meanwhile load_pipeline('builtin') runs offline (built-in models: {builtin_names})."
    )
    try:
        return StableDiffusionPipeline.from_pretrained(model_id, **dtype_kwarg(dtype)).to(device)
    except (OSError, ValueError, ConnectionError) as error:  # hub errors subclass these
        if _hub_error(error, "GatedRepoError") is not None:
            raise ModelNotAvailableError(
                f"could not load {model_id!r}: it is a gated model, and this machine is not "
                f"logged in with an account that accepted its licence. Fix: accept the licence "
                f"on https://huggingface.co/{model_id}, then run `hf auth login` (or set "
                f"HF_TOKEN) and try again. {meanwhile}"
            ) from error
        if _hub_error(error, "RepositoryNotFoundError") is not None:
            raise ModelNotAvailableError(
                f"could not load {model_id!r}: the hub has no such model, or it is private. "
                f"Fix: check the id (SD v1.x ids: {', '.join(HUB_EXAMPLES)}); for a private "
                f"model run `hf auth login` first. {meanwhile}"
            ) from error
        raise ModelNotAvailableError(
            f"could not load {model_id!r}: its weights are not in the local Hugging Face cache "
            f"and the hub could not be reached ({type(error).__name__}: {error}). To get them, "
            f"on a machine with network run `hf download {model_id}` (about 4–5 GB for SD "
            "v1.x), or copy a folder saved with pipe.save_pretrained() and pass its path. "
            f"{meanwhile}"
        ) from error


def count_parameters(module: torch.nn.Module | None) -> int:
    return 0 if module is None else sum(p.numel() for p in module.parameters())


def describe_pipeline(pipe: StableDiffusionPipeline) -> str:
    """One plain line: which model this is, its size, device and dtype."""
    name = model_defaults(pipe).builtin
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
