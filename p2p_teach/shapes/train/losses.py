"""The UNet's losses: min-SNR-weighted epsilon loss with more weight on the objects' pixels,
and the grounding loss that pushes each word's cross-attention inside its object's mask."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

MIN_SNR_GAMMA = 5.0


def grounding_loss(
    maps: list[tuple[str, torch.Tensor]], masks: torch.Tensor, owners: torch.Tensor
) -> torch.Tensor:
    """Mean over layers and grounded tokens of 1 − (attention mass inside the token's mask).

    ``maps``: (batch, pixels, tokens) per layer; ``masks``: (batch, objects, 64, 64) float;
    ``owners``: (batch, tokens) object index per token, -1 for tokens without an object.
    """
    valid = owners >= 0  # (batch, tokens)
    if not bool(valid.any()):
        return masks.new_zeros(())
    owner_index = owners.clamp_min(0).long()  # (batch, tokens)
    by_resolution: dict[int, torch.Tensor] = {}
    losses = []
    for _name, probs in maps:
        pixels = probs.shape[1]
        side = int(round(math.sqrt(pixels)))
        if side not in by_resolution:
            pooled = F.adaptive_avg_pool2d(masks, side)  # (batch, objects, side, side)
            flat = pooled.flatten(2)  # (batch, objects, pixels)
            gather_index = owner_index[:, :, None].expand(-1, -1, pixels)  # (batch, tokens, px)
            by_resolution[side] = torch.gather(flat, 1, gather_index)  # (batch, tokens, pixels)
        token_masks = by_resolution[side]
        token_maps = probs.transpose(1, 2)  # (batch, tokens, pixels)
        inside = (token_maps * token_masks).sum(-1) / token_maps.sum(-1).clamp_min(1e-8)
        losses.append(((1.0 - inside) * valid).sum() / valid.sum())
    return torch.stack(losses).mean()


def object_weights(masks: torch.Tensor, weight: float, side: int = 16) -> torch.Tensor:
    """Per-latent-pixel loss weights (batch, 1, side, side): 1 + ``weight`` × object coverage.

    A flat background is easy to denoise; the objects' pixels carry shape and position. With
    the default ``weight`` of 3 a pixel the objects cover counts 4× a background pixel.
    The weights depend on the masks, which the noisy latent does not fully reveal, so they
    move the optimum as well as the gradient: at each pixel the best prediction becomes
    ``E[w·ε | x_t] / E[w | x_t]`` instead of ``E[ε | x_t]`` (``w``: the pixel's weight over
    its sample's mean weight, as the loss divides it), leaning towards the noise of the
    samples with an object there. The two agree where ``x_t`` tells the masks apart (low
    noise) and differ most at high noise.
    """
    coverage = F.adaptive_avg_pool2d(masks.float().amax(1, keepdim=True), side)
    return 1.0 + weight * coverage  # (batch, 1, side, side)


def min_snr_weight(
    timesteps: torch.Tensor, alphas_cumprod: torch.Tensor, gamma: float = MIN_SNR_GAMMA
) -> torch.Tensor:
    """Min-SNR-γ loss weights for epsilon prediction, ``min(SNR, γ) / SNR`` per timestep.

    ``SNR(t) = ᾱ_t / (1 − ᾱ_t)``: 1 where the SNR is at most γ (the noisy steps), less where
    the image is nearly clean. Same shape as ``timesteps``.
    """
    snr = alphas_cumprod[timesteps] / (1 - alphas_cumprod[timesteps])
    return snr.clamp(max=gamma) / snr


def denoising_loss(
    prediction: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor,
    alphas_cumprod: torch.Tensor, masks: torch.Tensor, object_weight: float,
) -> torch.Tensor:  # fmt: skip
    """The epsilon loss of a batch: per sample, the squared error weighted per latent pixel by
    :func:`object_weights` (over its mean weight), then by :func:`min_snr_weight`; the mean.

    ``prediction`` and ``noise``: (batch, 4, 16, 16); ``masks``: (batch, objects, 64, 64).
    """
    weight = min_snr_weight(timesteps, alphas_cumprod)  # (batch,)
    pixel_weight = object_weights(masks, object_weight)  # (batch, 1, 16, 16)
    per_sample = (pixel_weight * (prediction - noise) ** 2).mean(dim=(1, 2, 3))
    per_sample = per_sample / pixel_weight.mean(dim=(1, 2, 3))
    return (weight * per_sample).mean()
