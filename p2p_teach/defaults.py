"""The settings a model's edits run at by default, and how a pipeline carries them.

Stable Diffusion v1 runs at guidance 7.5 and injects self-attention as the original code does
(layers of side ≤ a quarter of the latent's, over the first 0.4 of the steps). The built-in
shapes model runs at its own values (:data:`SHAPES`, measured in ``shapes/MODEL_CARD.md``).

A pipeline's defaults belong to its UNet (the weights decide them): the loader calls
:func:`mark` on a built-in model's UNet, and :func:`model_defaults` looks the UNet up. So the
defaults stay with ``pipe.to(...)``, with a pipeline you build around the same UNet
(``StableDiffusionPipeline(**pipe.components)``), and with ``pipe.unet = other`` they change
with the UNet; a UNet nobody marked (a hub model, a folder, a copy) runs at SD v1's.

This module imports nothing of p2p_teach, so any module may read it.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, replace
from typing import Any


@dataclass(frozen=True)
class ModelDefaults:
    """What an edit uses when it is not told otherwise.

    Attributes:
        guidance: the classifier-free guidance scale.
        self_max_ratio: self-attention is injected in layers whose side is at most this share
            of the latent's side.
        self_steps: self-attention is injected over this share of the steps (from the first).
        target_null_steps: editing from a null-text inversion, the target takes the inversion's
            per-step null embeddings over this share of the steps (from the first), then the
            empty prompt's; the source takes them at every step.
        builtin: the built-in model's name (``"shapes"``, ``"tiny-random"``), None otherwise.
    """

    guidance: float = 7.5
    self_max_ratio: float = 0.25  # the original: ≤ 16×16 of SD's 64×64 latent
    self_steps: float = 0.4  # the original's self_replace_steps for its SD v1 word swaps
    target_null_steps: float = 1.0  # null-text inversion's editing: both prompts, every step
    builtin: str | None = None


BUILTIN_PREFIX = "p2p_teach/"  # the built-in models' names: "p2p_teach/shapes" (display only)

SD_V1 = ModelDefaults()

# The shapes model follows its captions closely, so SD's 7.5 overshoots it (MODEL_CARD.md: the
# guidance sweep). It injects self-attention in every layer: with SD's quarter its 16×16 latent
# would inject only in the 4×4 middle block; in every layer the object's outline stays closer to
# the source's (colour-swap mask IoU 0.91 against 0.87). It injects over the first 0.6 of the
# steps: on the colour swaps 0.6 keeps the outline a little closer than 0.4 (median mask IoU
# 0.91 against 0.90 with the place named, 0.88 against 0.86 with it left to the seed) at the
# same edit success, and 0.8 adds nothing; a new shape wants both injections shorter.
# Edited from a null-text inversion, its target takes the inversion's null embeddings over the
# first 0.2 of the steps only: fitted to rebuild the source, they carry its colours, and over
# every step they pulled 3 of 32 held-out colour swaps to a mixed colour (pink → red came out
# brown); over the first 0.2, all 32 took the new colour, with the same object IoU and the same
# background (benchmarks/inversion.py).
SHAPES = ModelDefaults(
    guidance=2.0, self_max_ratio=1.0, self_steps=0.6, target_null_steps=0.2, builtin="shapes"
)
TINY_RANDOM = replace(SD_V1, builtin="tiny-random")

# The PNDM scheduler exactly as Stable Diffusion v1 ships it (its scheduler_config.json).
SD_V1_SCHEDULER_CONFIG: dict[str, Any] = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "prediction_type": "epsilon",
    "trained_betas": None,
}

_MARKED: weakref.WeakKeyDictionary[Any, ModelDefaults] = weakref.WeakKeyDictionary()


def mark(pipe: Any, defaults: ModelDefaults) -> None:
    """Give ``pipe``'s UNet (and every pipeline that uses it) these defaults."""
    _MARKED[pipe.unet] = defaults


def model_defaults(pipe: Any) -> ModelDefaults:
    """The defaults of ``pipe``'s UNet: those :func:`mark` gave it, else :data:`SD_V1`."""
    unet = getattr(pipe, "unet", None)
    try:
        return _MARKED.get(unet, SD_V1)
    except TypeError:  # an object that cannot be weakly referenced was never marked
        return SD_V1
