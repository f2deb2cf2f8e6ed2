"""Reference solutions of notebook 07's exercises, written the way a learner would write them.

Each function is the filled-in blank of the notebook, in the explicit form (loops, one einsum,
plain tensor operations), independent of the toolkit's implementation; the checkers compare
them (and the learner's) with the toolkit. Peek only after trying: the checkers' hints are
meant to get you there first.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

SLOTS = 77


def build_mapper(swaps) -> torch.Tensor:
    """The course's word-swap mapper, (77, 77), rows source slots, columns target slots."""
    mapper = torch.zeros(SLOTS, SLOTS)
    swap_at = {swap.source_slots.start: swap for swap in swaps}
    i = j = 0
    while i < SLOTS and j < SLOTS:
        swap = swap_at.get(i)
        if swap is None:  # an unchanged slot: i → j
            mapper[i, j] = 1.0
            i, j = i + 1, j + 1
            continue
        n, m = len(swap.source_slots), len(swap.target_slots)
        if n == m:  # piece k → piece k
            for k in range(n):
                mapper[i + k, j + k] = 1.0
        else:  # every piece shares: a block of 1/max(n, m)
            mapper[i : i + n, j : j + m] = 1.0 / max(n, m)
        i, j = i + n, j + m
    return mapper


def replace_attention(source_maps: torch.Tensor, mapper: torch.Tensor) -> torch.Tensor:
    """The target's maps from the source's: (heads, pixels, 77) through M, one einsum."""
    # target map of slot n = Σ_w M[w, n] · source map of slot w
    return torch.einsum("hpw,wn->hpn", source_maps, mapper.to(source_maps.dtype))


def injection_table(num_steps: int, default: tuple, word_windows: dict) -> torch.Tensor:
    """τ as a (steps, 77) table: 1 where target slot j takes the source's map at step k."""
    table = torch.zeros(num_steps, SLOTS)

    def steps(window: tuple) -> range:  # floor(start·T) ≤ k < floor(end·T)
        start, end = window
        return range(math.floor(start * num_steps + 1e-9), math.floor(end * num_steps + 1e-9))

    for k in steps(default):
        table[k, :] = 1.0
    for slots, window in word_windows.items():
        table[:, slots.start : slots.stop] = 0.0  # the word's own window replaces the default
        for k in steps(window):
            table[k, slots.start : slots.stop] = 1.0
    return table


def refine_attention(
    source_maps: torch.Tensor,
    target_maps: torch.Tensor,
    source_index: torch.Tensor,
    alphas: torch.Tensor,
) -> torch.Tensor:
    """Refinement: aligned target slots take their source slot's map, new ones keep their own."""
    aligned = source_maps[..., source_index.clamp(min=0)]  # (heads, pixels, 77), by target slot
    alphas = alphas.to(source_maps.dtype)
    return alphas * aligned + (1 - alphas) * target_maps


def local_blend_mask(word_maps: torch.Tensor, latent_size: tuple, threshold: float) -> torch.Tensor:
    """The local-blend mask, (1, 1, h, w): where the source's or the target's word is."""
    maps = word_maps[:, None].float()  # (2, 1, H, W)
    maps = F.max_pool2d(maps, kernel_size=3, stride=1, padding=1)  # spread each peak by one
    maps = F.interpolate(maps, size=tuple(latent_size), mode="nearest")  # (2, 1, h, w)
    maps = maps / maps.amax(dim=(2, 3), keepdim=True)  # each map's maximum → 1
    mask = maps > threshold  # (2, 1, h, w)
    return (mask[0:1] | mask[1:2]).float()  # source ∪ target
