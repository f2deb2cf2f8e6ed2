"""The run, phase after phase: each phase is skipped when its output is already in ``--out``."""

from __future__ import annotations

import dataclasses
import time

import torch

from p2p_teach.shapes import model as shapes_model

from .checkpoints import log, save_atomic, unet_minutes_trained
from .config import TrainConfig, check_cached_lengths, check_resume
from .dataset import CaptionIds, build_dataset, held_out_images
from .export import export_from_run, init_from_pipeline
from .text import encode_captions, train_text_encoder
from .unet import UnetData, train_unet
from .vae import encode_latents, finetune_decoder, train_vae, vae_psnr

# What a run writes to --out; a new run (without --resume) refuses a folder holding any of them.
RUN_FILES = ("data.pt", "vae_ckpt.pt", "vae_final.pt", "latents.pt", "text_ckpt.pt",
             "text_final.pt", "init.pt", "unet_ckpt.pt", "final.pt",
             "vae_decoder_ckpt.pt", "vae_decoder_final.pt")  # fmt: skip


def prepare_run_folder(config: TrainConfig) -> TrainConfig:
    """Create ``config.out`` and write its ``args.json``; returns the settings to run with.

    A new run refuses a folder that holds an earlier run's files; a resumed one must keep the
    settings its cached data depend on (:func:`~.config.check_resume`).
    """
    out = config.out
    out.mkdir(parents=True, exist_ok=True)
    if config.resume:
        config = check_resume(out, config)
    else:
        for name in RUN_FILES:
            if (out / name).exists():
                raise SystemExit(f"{out / name} exists: pass --resume or use another --out")
    (out / "args.json").write_text(config.to_json())
    log(f"args: {dataclasses.asdict(config)}")
    return config


def dataset_phase(config: TrainConfig) -> dict[str, torch.Tensor]:
    """Phase 1: the drawn samples (``data.pt``)."""
    data_path = config.out / "data.pt"
    if data_path.exists():
        dataset = torch.load(data_path)
        check_cached_lengths(config.n_images, **{f"data.pt's {key}": value
                                                 for key, value in dataset.items()})  # fmt: skip
        return dataset
    t0 = time.time()
    dataset = build_dataset(config.n_images, config.seed, config.position_unnamed_share)
    save_atomic(dataset, data_path)
    log(f"data: {config.n_images} samples in {time.time() - t0:.0f} s")
    return dataset


def vae_phase(config: TrainConfig, dataset: dict[str, torch.Tensor]) -> dict:
    """Phase 2: the VAE's state dict (``vae_final.pt``)."""
    vae_path = config.out / "vae_final.pt"
    if vae_path.exists():
        return torch.load(vae_path)
    vae = train_vae(dataset, config.out, config.vae_minutes, config.seed,
                    config.checkpoint_minutes)  # fmt: skip
    vae_state = vae.state_dict()
    save_atomic(vae_state, vae_path)
    return vae_state


def latents_phase(
    config: TrainConfig, vae_state: dict, images: torch.Tensor, init: dict | None
) -> tuple[torch.Tensor, float]:
    """Phase 3: every image's latent (unscaled) and the scaling factor (``latents.pt``).

    A fine-tune (``init``) keeps the scale its UNet was trained at. The VAE's PSNR is logged on
    samples it never saw.
    """
    latents_path = config.out / "latents.pt"
    if latents_path.exists():
        saved = torch.load(latents_path)
        check_cached_lengths(config.n_images, **{"latents.pt": saved["latents"]})
        return saved["latents"], saved["scaling_factor"]
    vae = shapes_model.build_vae()
    vae.load_state_dict(vae_state)
    vae.eval()
    t0 = time.time()
    latents = encode_latents(vae, images)
    scaling_factor = float(1.0 / latents.std()) if init is None else init["scaling_factor"]
    save_atomic({"latents": latents, "scaling_factor": scaling_factor}, latents_path)
    log(f"latents: {tuple(latents.shape)} in {time.time() - t0:.0f} s, scaling factor "
        f"{scaling_factor:.4f}")  # fmt: skip
    held_out = held_out_images(config.n_images, config.seed)
    log(f"vae: PSNR {vae_psnr(vae, held_out):.2f} dB (per-image mean) on "
        f"{held_out.shape[0]} unseen samples, {config.n_images} on")  # fmt: skip
    return latents, scaling_factor


def text_phase(
    config: TrainConfig, input_ids: torch.Tensor
) -> tuple[dict, torch.Tensor, torch.Tensor]:
    """Phase 4: the text encoder's state dict (``text_final.pt``), and the frozen embeddings
    of every caption (n, 77, hidden) and of the empty caption (77, hidden)."""
    text_path = config.out / "text_final.pt"
    if text_path.exists():
        text_state = torch.load(text_path)
    else:
        text_state = train_text_encoder(
            config.out, config.text_minutes, config.seed, kind=config.text_targets,
            ckpt_minutes=config.checkpoint_minutes,
        )  # fmt: skip
        save_atomic(text_state, text_path)
    text_encoder = shapes_model.build_text_encoder()
    text_encoder.load_state_dict(text_state)
    t0 = time.time()
    text_hidden = encode_captions(text_encoder, input_ids)  # (n, 77, hidden)
    empty_ids, _ = CaptionIds().encode([], [])
    empty_hidden = encode_captions(text_encoder, torch.tensor([empty_ids]))[0]  # (77, hidden)
    log(f"text: {text_hidden.shape[0]} caption embeddings in {time.time() - t0:.0f} s")
    return text_state, text_hidden, empty_hidden


def unet_phase(
    config: TrainConfig, data: UnetData, text_state: dict, vae_state: dict, init: dict | None
) -> None:
    """Phase 5: the UNet (``final.pt``, with the run's other components), trained further
    when a finished run is resumed with a larger ``--minutes``."""
    out = config.out
    trained = unet_minutes_trained(out)
    if (out / "final.pt").exists() and trained >= config.minutes:
        return
    if (out / "final.pt").exists():
        log(f"unet: extending the finished run from {trained:.1f} to {config.minutes:g} min")
    unet_state = train_unet(data, config, init_state=None if init is None else init["unet"])
    final = {"unet": unet_state, "text_encoder": text_state, "vae": vae_state,
             "scaling_factor": data.scaling_factor}  # fmt: skip
    save_atomic(final, out / "final.pt")


def run_phases(config: TrainConfig) -> None:
    """Run every phase (see :mod:`p2p_teach.shapes.train`), then export the pipeline."""
    config = prepare_run_folder(config)
    out = config.out
    init = init_from_pipeline(config.init_from, out)  # None: from scratch
    dataset = dataset_phase(config)
    vae_state = vae_phase(config, dataset)
    latents, scaling_factor = latents_phase(config, vae_state, dataset["images"], init)
    text_state, text_hidden, empty_hidden = text_phase(config, dataset["input_ids"])
    data = UnetData(latents, scaling_factor, text_hidden, empty_hidden, dataset["input_ids"],
                    dataset["masks"], dataset["owners"].long())  # fmt: skip
    unet_phase(config, data, text_state, vae_state, init)
    if init is not None:
        log("decoder: kept from the pipeline the run started from")
    elif config.decoder_minutes > 0 and not (out / "vae_decoder_final.pt").exists():
        finetune_decoder(out, config.decoder_minutes, config.seed, config.checkpoint_minutes)
    export_from_run(out, out / "pipeline", torch.float32)
    log(f"exported fp32 pipeline to {out / 'pipeline'}")
    if config.export is not None:
        export_from_run(out, config.export, torch.float16)
        log(f"exported fp16 pipeline to {config.export}")
