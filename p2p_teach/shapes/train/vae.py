"""Phases 2, 3 and 6: the VAE, the cached latents, and the decoder's fine-tune."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from p2p_teach.shapes import model as shapes_model

from .checkpoints import log, resume_phase, save_atomic, save_phase
from .dataset import held_out_images, images_to_tensor
from .schedule import PhaseClock, lr_at, optimiser_step, set_lr

if TYPE_CHECKING:
    from diffusers import AutoencoderKL


def train_vae(
    dataset: dict[str, torch.Tensor], out: Path, minutes: float, seed: int, ckpt_minutes: float
) -> AutoencoderKL:
    """Train the VAE for ``minutes`` of wall clock (resuming ``vae_ckpt.pt``); returns it."""
    torch.manual_seed(seed)
    vae = shapes_model.build_vae()
    optimizer = torch.optim.AdamW(vae.parameters(), lr=1e-3, weight_decay=0.0)
    ckpt_path = out / "vae_ckpt.pt"
    step, elapsed, _ = resume_phase(ckpt_path, "vae", vae, optimizer, "vae")
    n_images = dataset["images"].shape[0]
    clock = PhaseClock(minutes, elapsed, ckpt_minutes)
    while clock.running():
        warm = min(1.0, (step + 1) / 100)
        set_lr(optimizer, 1e-3 * warm * (0.55 + 0.45 * math.cos(math.pi * clock.fraction())))
        index = torch.randint(0, n_images, (16,))
        pixels = images_to_tensor(dataset["images"][index])
        posterior = vae.encode(pixels).latent_dist
        recon = vae.decode(posterior.sample()).sample
        mse = F.mse_loss(recon, pixels)
        kl = posterior.kl().mean() / pixels[0].numel()
        loss = mse + 1e-4 * kl
        optimiser_step(optimizer, loss, vae.parameters())
        step += 1
        if step % 50 == 0:
            psnr = 10 * math.log10(4.0 / max(mse.item(), 1e-10))  # of this training batch
            log(f"vae step {step} mse {mse.item():.5f} batch psnr {psnr:.1f} dB "
                f"kl {kl.item():.3f}")  # fmt: skip
        if clock.checkpoint_due():
            save_phase(ckpt_path, "vae", vae, optimizer, step, clock.elapsed)
            log(f"vae: checkpoint at step {step}")
    log(f"vae: done, {step} steps")
    return vae


@torch.no_grad()
def encode_latents(vae: AutoencoderKL, images: torch.Tensor, batch: int = 128) -> torch.Tensor:
    """Posterior means of all images, (n, 4, 16, 16), unscaled."""
    vae.eval()
    chunks = []
    for begin in range(0, images.shape[0], batch):
        pixels = images_to_tensor(images[begin : begin + batch])
        chunks.append(vae.encode(pixels).latent_dist.mean)
    return torch.cat(chunks)


@torch.no_grad()  # called inside the decoder's training loop: build no graph
def vae_psnr(vae: AutoencoderKL, images: torch.Tensor, batch: int = 128) -> float:
    """Per-image mean PSNR of encode (posterior mean) → decode on uint8 ``images``, in dB.

    ``mean_i 10·log10(2² / MSE_i)``: pixels in [-1, 1] (a range of 2), the reconstruction
    clamped to it, ``MSE_i`` over image i's pixels and channels, then the mean over images.
    """
    psnrs = []
    for begin in range(0, images.shape[0], batch):
        pixels = images_to_tensor(images[begin : begin + batch])  # (batch, 3, 64, 64)
        recon = vae.decode(vae.encode(pixels).latent_dist.mean).sample.clamp(-1, 1)
        mse = ((recon - pixels) ** 2).mean(dim=(1, 2, 3))  # (batch,)
        psnrs.append(10 * torch.log10(4.0 / mse.clamp_min(1e-10)))
    return float(torch.cat(psnrs).mean())


def finetune_decoder(out: Path, minutes: float, seed: int, ckpt_minutes: float) -> dict:
    """Fine-tune the VAE decoder on the cached latents, encoder frozen (as SD's ft-MSE VAE).

    The latent space the UNet learns is unchanged: only the decoder (and ``post_quant_conv``)
    moves. Runs after the UNet phase; resumes ``vae_decoder_ckpt.pt``. Trains on every cached
    latent; the PSNR it logs (:func:`vae_psnr`) is on :func:`held_out_images`, samples past
    the training set. Returns the VAE state dict, also saved as ``vae_decoder_final.pt``.
    """
    torch.manual_seed(seed + 2)
    dataset = torch.load(out / "data.pt")
    latents = torch.load(out / "latents.pt")["latents"]  # (n, 4, 16, 16), unscaled means
    images = dataset["images"][: latents.shape[0]]
    vae = shapes_model.build_vae()
    vae.load_state_dict(torch.load(out / "vae_final.pt"))
    params = list(vae.decoder.parameters()) + list(vae.post_quant_conv.parameters())
    optimizer = torch.optim.AdamW(params, lr=5e-4, weight_decay=0.0)
    ckpt_path = out / "vae_decoder_ckpt.pt"
    step, elapsed, _ = resume_phase(ckpt_path, "vae", vae, optimizer, "decoder")
    clock = PhaseClock(minutes, elapsed, ckpt_minutes)
    held_out = held_out_images(latents.shape[0], seed)  # (256, 64, 64, 3), never trained on

    while clock.running():
        set_lr(optimizer, lr_at(5e-4, step, clock.fraction(), 50))
        index = torch.randint(0, latents.shape[0], (16,))
        pixels = images_to_tensor(images[index])  # (16, 3, 64, 64)
        noisy_latents = latents[index] + 0.02 * torch.randn_like(latents[index])
        recon = vae.decode(noisy_latents).sample
        loss = F.mse_loss(recon, pixels)
        optimiser_step(optimizer, loss, params)
        step += 1
        if step % 100 == 0:
            psnr = vae_psnr(vae, held_out[:64])
            log(f"decoder step {step} loss {loss.item():.5f} PSNR on 64 unseen images "
                f"{psnr:.2f} dB")  # fmt: skip
        if clock.checkpoint_due():
            save_phase(ckpt_path, "vae", vae, optimizer, step, clock.elapsed)
    save_phase(ckpt_path, "vae", vae, optimizer, step, clock.elapsed)
    save_atomic(vae.state_dict(), out / "vae_decoder_final.pt")
    log(f"decoder: done, {step} steps; PSNR on {held_out.shape[0]} unseen images "
        f"{vae_psnr(vae, held_out):.2f} dB")  # fmt: skip
    return vae.state_dict()
