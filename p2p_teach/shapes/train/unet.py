"""Phase 5: the UNet, on the cached latents and frozen caption embeddings.

Epsilon loss with min-SNR weighting and more weight on the objects' pixels, EMA, 10% empty
captions (for classifier-free guidance), bf16 autocast, and the grounding loss on
cross-attention (:mod:`~p2p_teach.shapes.train.losses`).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from p2p_teach.shapes import model as shapes_model

from .checkpoints import log, resume_phase, save_phase
from .config import TrainConfig
from .dataset import EMPTY_CAPTION_SHARE, position_owners
from .losses import denoising_loss, grounding_loss
from .schedule import (
    PhaseClock,
    ema_decay_at,
    ema_state_dict,
    lr_at,
    optimiser_step,
    set_lr,
    update_ema,
)

if TYPE_CHECKING:
    from diffusers import DDPMScheduler


@dataclass(frozen=True)
class UnetData:
    """What the UNet trains on, cached by the earlier phases (n samples)."""

    latents: torch.Tensor  # (n, 4, 16, 16): the VAE's posterior means, unscaled
    scaling_factor: float
    text_hidden: torch.Tensor  # (n, 77, hidden) fp16: the captions' frozen embeddings
    empty_hidden: torch.Tensor  # (77, hidden): the empty caption's
    input_ids: torch.Tensor  # (n, 77): the captions' token ids
    masks: torch.Tensor  # (n, 2, 64, 64) bool: the objects' masks
    owners: torch.Tensor  # (n, 77) long: the object each token grounds in (-1: none)

    def with_position_owners(self) -> UnetData:
        """The same data with each position word grounded in the object it places."""
        return dataclasses.replace(self, owners=position_owners(self.input_ids, self.owners))

    def batch(self, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """A random batch: scaled latents, caption embeddings, token owners and masks, with
        :data:`EMPTY_CAPTION_SHARE` of the captions replaced by the empty one."""
        index = torch.randint(0, self.latents.shape[0], (size,))
        clean = self.latents[index] * self.scaling_factor  # (batch, 4, 16, 16)
        hidden = self.text_hidden[index].float()  # (batch, 77, hidden)
        owners = self.owners[index]  # (batch, 77)
        drop = torch.rand(size) < EMPTY_CAPTION_SHARE
        hidden[drop] = self.empty_hidden.float()
        owners[drop] = -1
        return clean, hidden, owners, self.masks[index]  # masks: (batch, 2, 64, 64) bool


def unet_losses(
    unet: torch.nn.Module, record: shapes_model.AttentionRecord, noise_scheduler: DDPMScheduler,
    batch: tuple[torch.Tensor, ...], config: TrainConfig, ground_now: bool,
) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """The epsilon loss of one noised batch and, if ``ground_now``, its grounding loss (else 0).

    ``record`` is the UNet's attention recording, on only while the grounding loss needs it.
    """
    clean, hidden, owners, masks = batch
    noise = torch.randn_like(clean)
    timesteps = torch.randint(0, 1000, (clean.shape[0],))
    noisy = noise_scheduler.add_noise(clean, noise, timesteps)
    record.clear()
    record.active = ground_now
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.bf16):
        prediction = unet(noisy, timesteps, hidden).sample.float()
    alphas_cumprod = noise_scheduler.alphas_cumprod.float()
    loss = denoising_loss(prediction, noise, timesteps, alphas_cumprod, masks,
                          config.object_weight)  # fmt: skip
    ground = torch.zeros(())
    if ground_now:
        maps = [(name, probs.float()) for name, probs in record.maps]
        ground = grounding_loss(maps, masks.float(), owners)
    record.clear()
    record.active = False
    return loss, ground


def train_unet(data: UnetData, config: TrainConfig, init_state: dict | None = None) -> dict:
    """Train the UNet for ``config.minutes`` on frozen caption embeddings; its EMA state dict.

    ``init_state``: weights to start from (a fine-tune) instead of a fresh initialisation,
    when there is no checkpoint yet. Resumes ``unet_ckpt.pt`` in ``config.out``.
    """
    torch.manual_seed(config.seed + 1)
    unet = shapes_model.build_unet()
    if init_state is not None:
        unet.load_state_dict(init_state)
    record = shapes_model.AttentionRecord()
    noise_scheduler = shapes_model.build_noise_scheduler()
    params = list(unet.parameters())
    optimizer = torch.optim.AdamW(params, lr=config.lr, betas=(0.9, 0.99), weight_decay=0.0)
    ema = [p.detach().clone() for p in params]
    ckpt_path = config.out / "unet_ckpt.pt"
    step, elapsed, state = resume_phase(ckpt_path, "unet", unet, optimizer, "unet")
    for target, saved in zip(ema, state.get("ema", ema), strict=True):
        target.copy_(saved)
    if config.ground_positions:
        data = data.with_position_owners()
    clock = PhaseClock(config.minutes, elapsed, config.checkpoint_minutes)
    progress = _Progress(config.minutes)

    def checkpoint() -> None:
        save_phase(ckpt_path, "unet", unet, optimizer, step, clock.elapsed, ema=ema)
        log(f"unet: checkpoint at step {step} ({clock.elapsed / 60:.1f} min)")

    # The cross-attention layers record into `record` (the grounding loss reads it).
    with shapes_model.recording(unet, record):
        while clock.running():
            lr = lr_at(config.lr, step, clock.fraction(), config.warmup)
            set_lr(optimizer, lr)
            ground_now = config.ground_weight > 0 and step % config.ground_every == 0
            batch = data.batch(config.batch)
            loss, ground = unet_losses(unet, record, noise_scheduler, batch, config, ground_now)
            total = loss + config.ground_weight * ground if ground_now else loss
            optimiser_step(optimizer, total, params)
            update_ema(ema, params, ema_decay_at(step, config.ema_decay))
            step += 1
            progress.add(step, loss.item(), ground.item(), lr, clock.elapsed)
            if clock.checkpoint_due():
                checkpoint()
    checkpoint()
    log(f"unet: done, {step} steps")
    return ema_state_dict(unet, ema)


class _Progress:
    """The UNet's running losses, logged every 100 steps or every minute."""

    def __init__(self, minutes: float) -> None:
        self.minutes = minutes
        self.last_log = time.time()
        self.loss, self.ground, self.n = 0.0, 0.0, 0

    def add(self, step: int, loss: float, ground: float, lr: float, elapsed: float) -> None:
        """Add a step's losses; log their means (and reset them) when a log line is due."""
        self.loss += loss
        self.ground += ground
        self.n += 1
        if not (time.time() - self.last_log > 60 or step % 100 == 0):
            return
        rate = self.n / max(time.time() - self.last_log, 1e-6)
        log(f"unet step {step} loss {self.loss / self.n:.4f} ground {self.ground / self.n:.4f} "
            f"lr {lr:.2e} {rate:.2f} it/s {elapsed / 60:.1f}/{self.minutes:.0f} min")  # fmt: skip
        self.loss, self.ground, self.n = 0.0, 0.0, 0
        self.last_log = time.time()
