"""Per-timestep cross-attention history of an edit: every step, every kept layer, both prompts.

Attention tools usually sum the maps over time, which loses how the layout forms step by step.
:class:`AttentionHistory` keeps, for every denoising step and every kept cross-attention layer
(keyed by its diffusers processor name, with its place down/mid/up and its resolution), the
conditional maps of the source and of the target (the target's *after* editing), averaged over
heads, in float16 on the CPU.

Columns. A map has one column per text slot. To stay small, the history keeps the used slots
(BOS … EOS of the longer prompt) and sums the remaining padding slots into one last column
(``slots="used"``, the default), so every source row still sums to 1; ``slots="all"`` keeps all
77 columns. Queries by word or slot index are the same either way.

Which layers. ``keep="auto"`` (the default) keeps the cross-attention layers whose side is at
most a quarter of the latent's side (the original's 16×16 of SD's 64×64 latent), and always
those of side ≤ 16, whose maps are small; SD at 512² keeps its 16×16 and 8×8 layers, and the
small built-in model (16×16 latent) keeps all of its layers. ``keep`` may also be ``"all"``,
``"none"``, a largest side (int), or a collection of sides.

Memory. ``nbytes = steps × Σ_layers (H·W) × columns × 2 prompts × 2 bytes``. SD v1.5 at 512²
keeping ≤ 16×16 has five 16×16 layers and one 8×8 layer (1,344 pixels): 50 steps cost
50 × 1344 × C × 4 bytes = 268,800·C bytes: 3.0 MB for the recitation's "photo of a cat riding
on a bicycle" pair (10 used slots + 1 padding column), and under 10 MB for up to 37 columns
(all 77 columns would take 20.7 MB).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F

from .layers import LayerInfo, Place
from .layers import keep_layer as keep_layer  # re-exported for callers of the history
from .tokens import MAX_SLOTS, TokenView, WordNotFoundError, tokenize

Prompt = Literal["source", "target"]
StepSelector = int | slice | range | Sequence[int] | None
ResolutionSelector = int | tuple[int, int] | Iterable[int] | None

PROMPTS: tuple[Prompt, ...] = ("source", "target")
FORMAT_VERSION = 1
BYTES_PER_MB = 1_000_000


def estimate_nbytes(layers: Iterable[LayerInfo], num_steps: int, columns: int) -> int:
    """Bytes of a history: steps × Σ pixels × columns × 2 prompts × 2 bytes (float16)."""
    pixels = sum(layer.pixels for layer in layers)
    return num_steps * pixels * columns * len(PROMPTS) * 2


def _n_kept_slots(source: TokenView, target: TokenView, slots: str) -> int:
    if slots == "all":
        return MAX_SLOTS
    if slots == "used":
        return max(source.n_used, target.n_used)
    raise ValueError(f"slots={slots!r}: use 'used' (BOS … EOS plus one padding column) or 'all'")


class AttentionHistory:
    """Cross-attention maps of every step of an edit, for every kept layer, source and target.

    The engine fills it (:meth:`record`) while the edit runs; afterwards, and from a per-step
    callback during the run, read it with:

    * :meth:`layer_maps` — one layer: ``(steps, H, W, columns)``;
    * :meth:`maps` — layers selected by ``resolution`` and ``place``, each resized bilinearly to
      a common size and averaged: ``(steps, H, W, columns)``;
    * :meth:`word_maps` / :meth:`slot_maps` — the same for one word (all its pieces, summed) or
      one slot: ``(steps, H, W)``;
    * :meth:`at_step` — every kept layer at one step (what the live callback gets).

    ``steps`` selects steps: ``None`` (all recorded so far), an int (the step axis is dropped),
    a slice, a range or a list. ``prompt`` is ``"source"`` or ``"target"`` (edited).
    All queries return float32 tensors on the CPU.
    """

    def __init__(
        self,
        layers: Sequence[LayerInfo],
        source: TokenView,
        target: TokenView,
        timesteps: Sequence[float],
        *,
        slots: str = "used",
        pin_memory: bool = False,
    ) -> None:
        self.layers: tuple[LayerInfo, ...] = tuple(layers)
        self.source = source
        self.target = target
        self.timesteps: tuple[float, ...] = tuple(float(t) for t in timesteps)
        self.slots_mode = slots
        self.n_kept = _n_kept_slots(source, target, slots)
        self.has_padding_column = self.n_kept < MAX_SLOTS
        self.n_columns = self.n_kept + int(self.has_padding_column)
        self.steps_recorded = 0
        self._copies_in_flight: set[torch.device] = set()  # GPUs with copies to wait for
        self._layer_by_name = {layer.name: layer for layer in self.layers}
        self._maps: dict[str, torch.Tensor] = {
            # (T steps, 2 prompts, pixels, columns)
            layer.name: torch.zeros(
                (self.num_steps, len(PROMPTS), layer.pixels, self.n_columns),
                dtype=torch.float16,
                pin_memory=pin_memory,
            )
            for layer in self.layers
        }

    # ---------------------------------------------------------------- filling (the engine)

    @property
    def num_steps(self) -> int:
        return len(self.timesteps)

    def compress(self, maps: torch.Tensor) -> torch.Tensor:
        """Keep the used slots and sum the padding into one column: (..., 77) → (..., columns)."""
        if not self.has_padding_column:
            return maps
        padding = maps[..., self.n_kept :].sum(dim=-1, keepdim=True)  # (..., 1)
        return torch.cat([maps[..., : self.n_kept], padding], dim=-1)  # (..., columns)

    def record(self, name: str, step: int, maps: torch.Tensor) -> None:
        """Store one layer's head-averaged maps at one step.

        Args:
            name: the layer's processor name (one of :attr:`layers`).
            step: the denoising step index.
            maps: (2, pixels, 77) [source, edited target], any device and dtype; the copy to
                the CPU is non-blocking (the engine synchronises before reading).
        """
        compressed = self.compress(maps).to(torch.float16)  # (2, pixels, columns)
        self._maps[name][step].copy_(compressed, non_blocking=True)
        if compressed.is_cuda:
            self._copies_in_flight.add(compressed.device)

    def end_step(self, step: int) -> None:
        """Mark steps up to ``step`` as recorded (the engine calls it once per step)."""
        self.steps_recorded = max(self.steps_recorded, step + 1)

    def wait_for_copies(self) -> None:
        """Wait for the non-blocking device-to-CPU copies of :meth:`record` (a no-op on the
        CPU); every reading method calls it, and the engine once the loop ends."""
        for device in self._copies_in_flight:  # the pipeline's GPU, not only the current one
            torch.cuda.synchronize(device)
        self._copies_in_flight.clear()

    # ---------------------------------------------------------------- reading

    def select(
        self,
        resolution: ResolutionSelector = None,
        place: Place | Iterable[Place] | None = None,
    ) -> list[LayerInfo]:
        """Kept layers matching a resolution (a side, ``(H, W)``, or several sides) and place."""
        places = {place} if isinstance(place, str) else None if place is None else set(place)
        if places is not None and not places <= {"down", "mid", "up"}:
            raise ValueError(f"place={place!r}: use 'down', 'mid', 'up' or a list of them")
        chosen = []
        for layer in self.layers:
            if places is not None and layer.place not in places:
                continue
            if resolution is None:
                pass
            elif isinstance(resolution, tuple) and len(resolution) == 2:
                if layer.size != tuple(resolution):
                    continue
            elif isinstance(resolution, int):
                if layer.side != resolution:
                    continue
            elif layer.side not in {int(side) for side in resolution}:  # type: ignore[union-attr]
                continue
            chosen.append(layer)
        if not chosen:
            kept = sorted({(layer.place, layer.height, layer.width) for layer in self.layers})
            raise ValueError(
                f"no kept layer matches resolution={resolution!r}, place={place!r}; the history "
                f"keeps {[f'{p} {h}×{w}' for p, h, w in kept]}. Fix: pick one of those, or "
                "run the edit with record='all'."
            )
        return chosen

    @property
    def resolutions(self) -> list[tuple[int, int]]:
        """The kept (H, W) sizes, largest first."""
        return sorted({layer.size for layer in self.layers}, reverse=True)

    def layer(self, name: str) -> LayerInfo:
        if name not in self._layer_by_name:
            raise KeyError(
                f"layer {name!r} is not kept; kept layers: {[l.name for l in self.layers]}"
            )
        return self._layer_by_name[name]

    def _steps(self, steps: StepSelector) -> tuple[list[int], bool]:
        recorded = range(self.steps_recorded)
        if steps is None:
            return list(recorded), False
        if isinstance(steps, bool):
            raise TypeError("steps must be an int, a slice, a range or a list, not a bool")
        if isinstance(steps, int):
            if not -len(recorded) <= steps < len(recorded):
                raise IndexError(
                    f"step {steps} is not recorded: steps 0–{len(recorded) - 1} are "
                    f"(of {self.num_steps})"
                )
            return [recorded[steps]], True
        if isinstance(steps, slice):
            return list(recorded[steps]), False
        indices = [int(step) for step in steps]
        for step in indices:
            if not 0 <= step < len(recorded):
                raise IndexError(
                    f"step {step} is not recorded: steps 0–{len(recorded) - 1} are "
                    f"(of {self.num_steps})"
                )
        return indices, False

    def _prompt_index(self, prompt: str) -> int:
        if prompt not in PROMPTS:
            raise ValueError(f"prompt={prompt!r}: use 'source' or 'target'")
        return PROMPTS.index(prompt)

    def layer_maps(
        self, name: str, prompt: Prompt = "target", steps: StepSelector = None
    ) -> torch.Tensor:
        """One layer's maps: (steps, H, W, columns) float32 (no step axis for an int step)."""
        layer = self.layer(name)
        indices, squeeze = self._steps(steps)
        self.wait_for_copies()
        stored = self._maps[name][indices, self._prompt_index(prompt)]  # (n, pixels, columns)
        # (n, pixels, columns) → (n, H, W, columns)
        maps = stored.float().view(len(indices), layer.height, layer.width, self.n_columns)
        return maps[0] if squeeze else maps

    def maps(
        self,
        prompt: Prompt = "target",
        *,
        steps: StepSelector = None,
        resolution: ResolutionSelector = None,
        place: Place | Iterable[Place] | None = None,
        size: tuple[int, int] | int | None = None,
    ) -> torch.Tensor:
        """The mean over the selected layers, each resized bilinearly to ``size`` first.

        ``size`` defaults to the largest selected layer size. Returns (steps, H, W, columns)
        float32 (no step axis for an int step).
        """
        layers = self.select(resolution, place)
        if size is None:
            size = max((layer.size for layer in layers), key=lambda hw: hw[0] * hw[1])
        elif isinstance(size, int):
            size = (size, size)
        indices, squeeze = self._steps(steps)
        total = torch.zeros(len(indices), *size, self.n_columns)  # (n, H, W, columns)
        for layer in layers:
            maps = self.layer_maps(layer.name, prompt, indices)  # (n, h, w, columns)
            total += resize_maps(maps, size)
        mean = total / len(layers)
        return mean[0] if squeeze else mean

    def columns(self, prompt: Prompt = "target") -> list[str]:
        """Column labels: the slot labels of the used slots, then ``"padding"`` if summed."""
        view = self.source if prompt == "source" else self.target
        labels = [view.slots[i].label for i in range(self.n_kept)]
        return labels + (["padding"] if self.has_padding_column else [])

    def slot_column(self, slot: int | str) -> int:
        """The column holding a slot (``"padding"`` for the summed padding column)."""
        if slot == "padding":
            if not self.has_padding_column:
                raise ValueError("this history keeps all 77 slots; it has no padding column")
            return self.n_kept
        if isinstance(slot, bool) or not isinstance(slot, int) or not 0 <= slot < MAX_SLOTS:
            raise ValueError(f"slot={slot!r}: an index in 0–76, or 'padding'")
        if slot >= self.n_kept:
            raise ValueError(
                f"slot {slot} is padding, which this history sums into one column (it keeps "
                f"slots 0–{self.n_kept - 1}). Fix: slot_maps('padding'), or record with "
                "slots='all'."
            )
        return slot

    def slot_maps(
        self,
        slot: int | str,
        prompt: Prompt = "target",
        *,
        steps: StepSelector = None,
        resolution: ResolutionSelector = None,
        place: Place | Iterable[Place] | None = None,
        size: tuple[int, int] | int | None = None,
    ) -> torch.Tensor:
        """One slot's maps, aggregated like :meth:`maps`: (steps, H, W)."""
        column = self.slot_column(slot)
        maps = self.maps(prompt, steps=steps, resolution=resolution, place=place, size=size)
        return maps[..., column]

    def word_maps(
        self,
        word: str | int,
        prompt: Prompt = "target",
        *,
        steps: StepSelector = None,
        resolution: ResolutionSelector = None,
        place: Place | Iterable[Place] | None = None,
        size: tuple[int, int] | int | None = None,
        reduce: Literal["sum", "mean"] = "sum",
    ) -> torch.Tensor:
        """A word's maps (the pieces of the word proper, without edge punctuation such as the
        comma of ``"lion,"``; summed or averaged), aggregated like :meth:`maps`.

        Raises:
            WordNotFoundError: the word is not in that prompt (the message lists its words).
        """
        view = self.source if prompt == "source" else self.target
        found = view.find_word(word)
        if found.n_slots == 0:
            raise WordNotFoundError(f"{word!r} occupies no slot of {view.prompt!r}")
        maps = self.maps(prompt, steps=steps, resolution=resolution, place=place, size=size)
        pieces = maps[..., found.core_start : found.core_stop]  # (..., pieces)
        if reduce == "sum":
            return pieces.sum(dim=-1)
        if reduce == "mean":
            return pieces.mean(dim=-1)
        raise ValueError(f"reduce={reduce!r}: use 'sum' or 'mean'")

    def at_step(self, step: int) -> dict[str, torch.Tensor]:
        """Every kept layer at one step: name → (2, H, W, columns) float16 [source, target].

        These are views of the stored maps (no copy).
        """
        if not 0 <= step < self.steps_recorded:
            raise IndexError(f"step {step} is not recorded (0–{self.steps_recorded - 1} are)")
        self.wait_for_copies()
        return {  # (2, pixels, columns) → (2, H, W, columns)
            layer.name: self._maps[layer.name][step].view(
                len(PROMPTS), layer.height, layer.width, self.n_columns
            )
            for layer in self.layers
        }

    # ---------------------------------------------------------------- size and files

    @property
    def nbytes(self) -> int:
        """Bytes held by the stored maps."""
        return sum(maps.numel() * maps.element_size() for maps in self._maps.values())

    @property
    def memory_mb(self) -> float:
        """:attr:`nbytes` in MB (10⁶ bytes)."""
        return self.nbytes / BYTES_PER_MB

    def __repr__(self) -> str:
        sizes: dict[str, int] = {}
        for layer in self.layers:
            key = f"{layer.height}×{layer.width}"
            sizes[key] = sizes.get(key, 0) + 1
        layers = ", ".join(f"{count} at {key}" for key, count in sizes.items()) or "none"
        return (
            f"AttentionHistory({self.steps_recorded}/{self.num_steps} steps; layers: {layers}; "
            f"{self.n_columns} columns; {self.memory_mb:.3f} MB)"
        )

    def save(self, path: str | Path) -> Path:
        """Write the history to one safetensors file (maps plus JSON metadata)."""
        from safetensors.torch import save_file

        path = Path(path)
        self.wait_for_copies()
        metadata = {
            "format_version": FORMAT_VERSION,
            "source_prompt": self.source.prompt,
            "target_prompt": self.target.prompt,
            "timesteps": list(self.timesteps),
            "slots": self.slots_mode,
            "steps_recorded": self.steps_recorded,
            "layers": [asdict(layer) for layer in self.layers],
        }
        tensors = {name: maps.contiguous() for name, maps in self._maps.items()}
        save_file(tensors, str(path), metadata={"p2p_teach_history": json.dumps(metadata)})
        return path

    @classmethod
    def load(cls, path: str | Path) -> AttentionHistory:
        """Read a history written by :meth:`save`."""
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            metadata = json.loads(handle.metadata()["p2p_teach_history"])
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
        if metadata.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{path}: unknown history format {metadata.get('format_version')}")
        history = cls(
            [LayerInfo(**layer) for layer in metadata["layers"]],
            tokenize(metadata["source_prompt"]),
            tokenize(metadata["target_prompt"]),
            metadata["timesteps"],
            slots=metadata["slots"],
        )
        for name, maps in tensors.items():
            history._maps[name].copy_(maps)
        history.steps_recorded = int(metadata["steps_recorded"])
        return history


def resize_maps(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of (n, h, w, columns) maps to (n, H, W, columns)."""
    if tuple(maps.shape[1:3]) == tuple(size):
        return maps
    channels_first = maps.permute(0, 3, 1, 2)  # (n, columns, h, w)
    resized = F.interpolate(channels_first, size=size, mode="bilinear", align_corners=False)
    return resized.permute(0, 2, 3, 1)  # (n, H, W, columns)
