"""The attention layers of a Stable Diffusion UNet: where each sits, how big its maps are, and
which ones an edit records, injects in, or reads for LocalBlend.

    layers = plan_layers(pipe.unet, 64, 64)          # SD v1 at 512²: a 64×64 latent
    [layer.label for layer in layers if layer.cross][:2]    # ['down0 64×64', 'down0 64×64']
    [layer.side for layer in kept_layers(layers, "auto", 64)]  # the 16×16 and 8×8 layers

A layer is named by its key in ``unet.attn_processors`` (diffusers' processor name), e.g.
``"down_blocks.1.attentions.0.transformer_blocks.0.attn2.processor"``: ``attn2`` is
cross-attention (text), ``attn1`` self-attention. Nothing here runs the UNet.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

Place = Literal["down", "mid", "up"]
KeepSetting = str | int | Iterable[int]

_KEEP_FIX = (
    "use 'auto', 'all', 'none', a largest side such as 16, or a set of sides such as {16, 8}"
)


@dataclass(frozen=True)
class LayerInfo:
    """One attention layer of the UNet: its diffusers name, place and resolution.

    Attributes:
        name: the key of ``unet.attn_processors``, e.g.
            ``"down_blocks.1.attentions.0.transformer_blocks.0.attn2.processor"``.
        place: ``"down"``, ``"mid"`` or ``"up"``.
        height, width: the map's size in latent pixels at this layer.
        cross: True for cross-attention (text), False for self-attention.
    """

    name: str
    place: Place
    height: int
    width: int
    cross: bool = True

    @property
    def side(self) -> int:
        """The larger of height and width (the usual "16×16" label)."""
        return max(self.height, self.width)

    @property
    def size(self) -> tuple[int, int]:
        return (self.height, self.width)

    @property
    def pixels(self) -> int:
        return self.height * self.width

    @property
    def label(self) -> str:
        """Short label, e.g. ``"down1 16×16"`` (the block index follows the place)."""
        block = self.name.split(".")[1] if self.place != "mid" else "0"
        return f"{self.place}{block} {self.height}×{self.width}"


def layer_place(name: str) -> Place:
    """``"down"``, ``"mid"`` or ``"up"`` from a diffusers attention processor name."""
    for prefix, place in (("down_blocks", "down"), ("mid_block", "mid"), ("up_blocks", "up")):
        if name.startswith(prefix):
            return place  # type: ignore[return-value]
    raise ValueError(f"cannot tell the place (down/mid/up) of attention layer {name!r}")


def plan_layers(unet: Any, latent_height: int, latent_width: int) -> list[LayerInfo]:
    """Every attention layer of an SD-shaped UNet with its place and map size.

    Sizes follow the UNet's structure: a down block's maps are smaller by the downsamplers of
    the blocks before it, the mid block's by all of them, and up blocks grow back. Each
    stride-2 downsampling gives ``ceil(side / 2)``.
    """
    down_factors, factor = [], 1
    for block in unet.down_blocks:
        down_factors.append(factor)
        if getattr(block, "downsamplers", None) is not None:
            factor *= 2
    mid_factor = factor  # after every downsampler
    up_factors, factor = [], mid_factor
    for block in unet.up_blocks:
        up_factors.append(factor)
        if getattr(block, "upsamplers", None) is not None:
            factor //= 2

    layers = []
    for name in unet.attn_processors:
        place = layer_place(name)
        parts = name.split(".")
        if place == "down":
            scale = down_factors[int(parts[1])]
        elif place == "up":
            scale = up_factors[int(parts[1])]
        else:
            scale = mid_factor
        module = unet.get_submodule(name.removesuffix(".processor"))
        cross = bool(getattr(module, "is_cross_attention", ".attn2." in name))
        height, width = math.ceil(latent_height / scale), math.ceil(latent_width / scale)
        layers.append(LayerInfo(name, place, height, width, cross))
    return layers


def check_keep(keep: object) -> str | int | frozenset[int]:
    """A ``record`` setting, validated: ``"auto"``, ``"all"``, ``"none"``, a largest side (int
    ≥ 1), or a collection of sides (returned as a frozenset).

    Raises:
        ValueError: anything else, with the settings that work.
    """
    if isinstance(keep, str):
        if keep not in ("auto", "all", "none"):
            raise ValueError(f"record={keep!r}: {_KEEP_FIX}.")
        return keep
    if isinstance(keep, bool) or (isinstance(keep, int) and keep < 1):
        raise ValueError(f"record={keep!r}: {_KEEP_FIX}.")
    if isinstance(keep, int):
        return keep
    try:
        sides = list(keep)  # type: ignore[call-overload]
    except TypeError:
        raise ValueError(f"record={keep!r}: {_KEEP_FIX}.") from None
    if not all(isinstance(side, int) and not isinstance(side, bool) for side in sides):
        raise ValueError(f"record={keep!r}: {_KEEP_FIX}.")
    return frozenset(sides)


def keep_layer(layer: LayerInfo, keep: KeepSetting, latent_side: int) -> bool:
    """Whether the history keeps a layer under the ``record`` setting ``keep`` (checked by
    :func:`check_keep`): only cross-attention layers are kept; ``"auto"`` keeps those of side
    ≤ a quarter of the latent's side, and any of side ≤ 16."""
    keep = check_keep(keep)
    if not layer.cross or keep == "none":
        return False
    if keep == "auto":
        return layer.side <= max(16, latent_side // 4)
    if keep == "all":
        return True
    if isinstance(keep, int):
        return layer.side <= keep
    return layer.side in keep


def kept_layers(
    layers: Iterable[LayerInfo], keep: KeepSetting, latent_side: int
) -> list[LayerInfo]:
    """The layers the history keeps under ``keep`` (see :func:`keep_layer`), in order."""
    keep = check_keep(keep)
    return [layer for layer in layers if keep_layer(layer, keep, latent_side)]


def blend_layers(layers: Iterable[LayerInfo]) -> list[LayerInfo]:
    """The layers LocalBlend may read: cross-attention outside the mid block."""
    return [layer for layer in layers if layer.cross and layer.place != "mid"]


def blend_resolution(layers: Iterable[LayerInfo], latent_side: int, wanted: int | None) -> int:
    """The cross-attention side LocalBlend reads (see :class:`p2p_teach.edits.LocalBlend`):
    ``wanted`` if this UNet has down/up cross-attention of that side, else the largest side
    ≤ a quarter of the latent's (the original's 16×16 of 64×64), else the smallest."""
    sides = sorted({layer.side for layer in blend_layers(layers)})
    if not sides:
        raise ValueError("this UNet has no down/up cross-attention layers for LocalBlend")
    if wanted is not None:
        if wanted not in sides:
            raise ValueError(
                f"LocalBlend resolution={wanted}: this model's down/up cross-attention sides "
                f"are {sides}. Fix: pick one of them, or resolution=None."
            )
        return wanted
    small = [side for side in sides if side <= latent_side // 4]
    return max(small) if small else min(sides)
