"""Phase 7 and fine-tunes: a run's weights written as a ``StableDiffusionPipeline`` folder, and
an exported folder read back as the start of a fine-tune."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch

from p2p_teach.shapes import model as shapes_model

from .checkpoints import log, save_atomic
from .schedule import ema_state_dict


def check_export_folder(folder: Path) -> None:
    """Refuse an export folder whose contents an export would destroy: raises ``ValueError``.

    An export replaces its folder whole, so the folder must be new, empty, or an exported
    pipeline (it has a ``model_index.json``).
    """
    if not folder.exists():
        return
    if not folder.is_dir():
        raise ValueError(f"export folder {folder} is a file; pass a new or empty folder, or an "
                         "exported pipeline folder to replace")  # fmt: skip
    if any(folder.iterdir()) and not (folder / "model_index.json").exists():
        raise ValueError(f"export folder {folder} is not empty and holds no pipeline (no "
                         "model_index.json), and an export replaces the whole folder; pass a "
                         "new or empty folder, or an exported pipeline folder")  # fmt: skip


def export_pipeline(
    unet_state: dict,
    text_state: dict,
    vae_state: dict,
    scaling_factor: float,
    folder: str | Path,
    dtype: torch.dtype = torch.float32,
) -> Path:
    """Write a ``StableDiffusionPipeline`` folder (safetensors, real CLIP tokenizer files).

    The pipeline is written to a hidden sibling folder first and then renamed into place, so
    a failed export leaves ``folder`` as it was. ``folder`` must pass
    :func:`check_export_folder`: an existing pipeline there is replaced whole.
    """
    from diffusers import StableDiffusionPipeline

    from p2p_teach.tokens import load_clip_tokenizer, write_clip_tokenizer_files

    folder = Path(folder)
    check_export_folder(folder)
    unet = shapes_model.build_unet()
    unet.load_state_dict(unet_state)
    text_encoder = shapes_model.build_text_encoder()
    text_encoder.load_state_dict(text_state)
    vae = shapes_model.build_vae()
    vae.load_state_dict(vae_state)
    vae.register_to_config(scaling_factor=float(scaling_factor))
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=load_clip_tokenizer(),
        unet=unet,
        scheduler=shapes_model.build_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.to(dtype=dtype)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = folder.with_name(f".{folder.name}.export-new")
    previous = folder.with_name(f".{folder.name}.export-old")
    if previous.exists() and not folder.exists():  # an earlier swap stopped half-way
        os.replace(previous, folder)
    for leftover in (staging, previous):
        if leftover.exists():
            shutil.rmtree(leftover)
    pipe.save_pretrained(str(staging), safe_serialization=True)
    tokenizer_dir = staging / "tokenizer"
    if tokenizer_dir.exists():
        shutil.rmtree(tokenizer_dir)
    write_clip_tokenizer_files(tokenizer_dir)
    if folder.exists():
        os.replace(folder, previous)  # a rename: the old pipeline stays whole until the swap
    os.replace(staging, folder)
    if previous.exists():
        shutil.rmtree(previous)
    return folder


def export_from_run(out: Path, folder: Path, dtype: torch.dtype) -> Path:
    """Export the run in ``out`` to ``folder``: ``final.pt``, or the latest checkpoint."""
    if (out / "final.pt").exists():
        final = torch.load(out / "final.pt", weights_only=False)
    else:  # a run still training: the EMA weights of its latest checkpoint
        state = torch.load(out / "unet_ckpt.pt", weights_only=False)
        unet = shapes_model.build_unet()
        unet.load_state_dict(state["unet"])
        final = {
            "unet": ema_state_dict(unet, state["ema"]),
            "text_encoder": torch.load(out / "text_final.pt"),
            "vae": torch.load(out / "vae_final.pt"),
            "scaling_factor": torch.load(out / "latents.pt")["scaling_factor"],
        }
        log(f"export: checkpoint at step {state['step']}")
    vae_state = final["vae"]
    if (out / "vae_decoder_final.pt").exists():
        vae_state = torch.load(out / "vae_decoder_final.pt")
        log("export: with the fine-tuned decoder")
    return export_pipeline(
        final["unet"], final["text_encoder"], vae_state, final["scaling_factor"], folder, dtype
    )


def init_from_pipeline(folder: Path | None, out: Path) -> dict | None:
    """Start this run from an exported pipeline (a fine-tune): its VAE and text encoder become
    the run's ``vae_final.pt`` and ``text_final.pt``, so those phases are skipped; its UNet
    and scaling factor are kept in ``init.pt``, which is returned.

    A run whose ``init.pt`` exists is a fine-tune: that file is returned, with or without
    ``folder``. None (train from scratch) when there is neither.
    """
    init_path = out / "init.pt"
    if init_path.exists():
        return torch.load(init_path, weights_only=False)
    if folder is None:
        return None
    from p2p_teach.shapes import load_shapes_pipeline

    pipe = load_shapes_pipeline(folder, dtype=torch.float32)
    save_atomic(pipe.vae.state_dict(), out / "vae_final.pt")
    save_atomic(pipe.text_encoder.state_dict(), out / "text_final.pt")
    init = {"unet": pipe.unet.state_dict(), "scaling_factor": pipe.vae.config.scaling_factor}
    save_atomic(init, init_path)
    log(f"init: VAE, text encoder and UNet from {folder}")
    return init
