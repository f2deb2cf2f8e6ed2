"""Where one pixel attends in self-attention, in the source and the target, with and without
self-attention injection, at one step: what "self-attention carries the geometry" looks like.

    view = self_attention_view(pipe, "a big red circle", "a big blue circle",
                               pixel=(40, 30), step=5, seed=1, steps=20)
    view.maps["with"]["target"]   # (H, W): where that target pixel attends, injected
    self_attention_figure(view)

Two edits run (the same seed): one injects self-attention over the first ``inject`` share of
the steps (the model's own share by default), the other only *after* the chosen step, so that
every step up to and including it is exactly the run without self-injection. During each, a
processor (a :class:`~p2p_teach.processors.PromptToPromptProcessor` subclass, through
``edit(processor_class=...)``) reads the chosen layer's queries and keys at the chosen step,
after any injection, and keeps the softmax row of the chosen pixel, averaged over heads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from .processors import PromptToPromptProcessor, attention_probabilities


@dataclass(frozen=True)
class SelfAttentionView:
    """One pixel's self-attention rows at one step.

    Attributes:
        pixel: (row, column) in image pixels, as asked.
        cell: (row, column) of that pixel in the layer's grid.
        layer: the self-attention layer read (its name) and ``side`` its grid's side.
        step: the 0-based step.
        maps: ``{"without" | "with": {"source" | "target": (side, side) float32}}``; each map
            sums to 1 (a softmax row).
        images: the same keys: the final images of each run.
        injected: whether the "with" run injected self-attention at ``step``.
    """

    pixel: tuple[int, int]
    cell: tuple[int, int]
    layer: str
    side: int
    step: int
    maps: dict[str, dict[str, torch.Tensor]]
    images: dict[str, dict[str, Any]]
    injected: bool


class _Probe:
    """What the probing processors share: which layer, step and pixel; what they read."""

    def __init__(self, layer: str, step: int, pixel_index: int) -> None:
        self.layer, self.step, self.pixel_index = layer, step, pixel_index
        self.rows: dict[str, torch.Tensor] = {}

    def read(self, query: torch.Tensor, key: torch.Tensor, source: int, target: int) -> None:
        """Keep the chosen pixel's softmax row of the conditional source and target."""
        if self.rows:  # PNDM's first step calls the UNet twice: keep the first call's
            return
        for name, index in (("source", source), ("target", target)):
            # (heads, 1 pixel, head_dim) against (heads, pixels, head_dim)
            one = query[index : index + 1, :, self.pixel_index : self.pixel_index + 1]
            probabilities = attention_probabilities(one, key[index : index + 1])
            self.rows[name] = (
                probabilities[0, :, 0].mean(dim=0).cpu()
            )  # (heads, pixels) → (pixels,)


def _probe_class(probe: _Probe) -> type[PromptToPromptProcessor]:
    """A processor class that reads ``probe``'s layer at its step, after any injection."""

    class ProbingProcessor(PromptToPromptProcessor):
        def _self_attention(self, query, key, value, attention_mask):
            run = self.run
            if self.inject_self and run.coefficients.self_inject[run.step]:
                # P*_self = P_src,self: the target attends with the source's queries and keys
                query[run.cond_target] = query[run.cond_source]
                key[run.cond_target] = key[run.cond_source]
            if self.layer.name == probe.layer and run.step == probe.step:
                probe.read(query, key, run.cond_source, run.cond_target)
            return torch.nn.functional.scaled_dot_product_attention(
                query, key, value, attn_mask=attention_mask
            )

    return ProbingProcessor


def self_attention_layers(pipe: Any, latent_side: int) -> list[Any]:
    """The UNet's self-attention layers (:class:`~p2p_teach.history.LayerInfo`), finest first."""
    from .layers import plan_layers

    layers = [
        layer for layer in plan_layers(pipe.unet, latent_side, latent_side) if not layer.cross
    ]
    return sorted(layers, key=lambda layer: -layer.side)


def self_attention_view(
    pipe: Any,
    source: str,
    target: str,
    *,
    pixel: tuple[int, int],
    step: int,
    seed: int = 0,
    steps: int = 20,
    side: int | None = None,
    inject: float | None = None,
    **edit_kwargs: Any,
) -> SelfAttentionView:
    """Read where ``pixel`` attends at ``step`` in a self-attention layer of ``side`` (the
    finest by default), in two edits: self-attention injected over ``inject`` of the steps
    (default: the model's own share), and not injected up to ``step``.

    Raises:
        ValueError: the pixel is outside the image, the step outside ``0 … steps − 2`` (the
            run without injection needs a later step to hold its window), or no
            self-attention layer where the model injects has that side.
    """
    from .defaults import model_defaults
    from .engine import edit
    from .schedules import self_injection_max_side

    image_side = pipe.unet.config.sample_size * pipe.vae_scale_factor
    latent_side = pipe.unet.config.sample_size
    row, column = pixel
    if not (0 <= row < image_side and 0 <= column < image_side):
        raise ValueError(f"pixel={pixel}: rows and columns run from 0 to {image_side - 1}")
    if not 0 <= step < steps - 1:
        raise ValueError(f"step={step}: choose a step from 0 to {steps - 2}")
    defaults = model_defaults(pipe)
    ratio = edit_kwargs.pop("self_max_ratio", None) or defaults.self_max_ratio
    max_side = self_injection_max_side(latent_side, ratio)
    layers = [layer for layer in self_attention_layers(pipe, latent_side) if layer.side <= max_side]
    chosen = [layer for layer in layers if side is None or layer.side == side]
    if not chosen:
        sides = sorted({layer.side for layer in layers})
        raise ValueError(
            f"side={side}: this model injects self-attention at the sides {sides}. Fix: pick "
            "one of them, or side=None for the finest."
        )
    layer = chosen[0]
    cell = (row * layer.height // image_side, column * layer.width // image_side)
    inject = defaults.self_steps if inject is None else inject
    runs = {"with": inject, "without": ((step + 1) / steps, 1.0)}  # no injection up to step
    maps: dict[str, dict[str, torch.Tensor]] = {}
    images: dict[str, dict[str, Any]] = {}
    for name, self_steps in runs.items():
        probe = _Probe(layer.name, step, cell[0] * layer.width + cell[1])
        result = edit(pipe, source, target, seed=seed, steps=steps, self_steps=self_steps,
                      self_max_ratio=ratio, record="none", progress=False,
                      processor_class=_probe_class(probe), **edit_kwargs)  # fmt: skip
        if not probe.rows:
            raise RuntimeError(f"layer {layer.name} was not run at step {step}")
        # (pixels,) → (height, width)
        maps[name] = {k: v.view(layer.height, layer.width) for k, v in probe.rows.items()}
        images[name] = {"source": result.source_image, "target": result.edited_image}
    from .schedules import parse_window, window_steps

    injected = step in window_steps(parse_window(inject, "inject"), steps)
    return SelfAttentionView(pixel, cell, layer.name, layer.side, step, maps, images, injected)
