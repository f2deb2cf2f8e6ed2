"""What the prompts ask for: object specs, and the word swaps the edits make."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from p2p_teach.shapes import data as shapes_data

from .settings import EvalSettings


@dataclass(frozen=True)
class ObjectSpec:
    """What a prompt asks for one object."""

    shape: str
    colour: str
    size: str
    position: str

    def words(self) -> list[str]:
        return ["a", self.size, self.colour, self.shape]

    def phrase(self) -> str:
        return " ".join(self.words()) + " " + shapes_data.POSITION_PHRASES[self.position]


def single_object_specs(n: int, seed: int = 2024) -> list[ObjectSpec]:
    """``n`` prompts cycling evenly through shapes, colours, positions and sizes (shuffled)."""
    rng = np.random.default_rng(seed)

    def cycled(values: list[str]) -> list[str]:
        picked = [values[k % len(values)] for k in range(n)]
        return [picked[k] for k in rng.permutation(n)]

    shapes = cycled(list(shapes_data.SHAPES))
    colours = cycled(list(shapes_data.COLOURS))
    positions = cycled(list(shapes_data.POSITIONS))
    sizes = cycled(["big", "small"])
    return [ObjectSpec(*attrs) for attrs in zip(shapes, colours, sizes, positions, strict=True)]


def two_object_specs(n: int, seed: int = 2025) -> list[tuple[ObjectSpec, ObjectSpec]]:
    """``n`` two-object prompts: half left/right, half top/bottom, two different colours."""
    rng = np.random.default_rng(seed)
    colours = list(shapes_data.COLOURS)
    specs = []
    for k in range(n):
        pair = shapes_data.OPPOSITE_PAIRS[k % 2]
        first_colour, second_colour = rng.choice(colours, size=2, replace=False)
        specs.append(tuple(
            ObjectSpec(
                str(shapes_data.SHAPES[rng.integers(len(shapes_data.SHAPES))]),
                str(colour), ("big", "small")[rng.integers(2)], position,
            )
            for colour, position in zip((first_colour, second_colour), pair, strict=True)
        ))  # fmt: skip
    return specs


def swap_specs(n: int, seed: int = 2026) -> list[tuple[ObjectSpec, str]]:
    """``n`` colour swaps: a single-object prompt and a new colour for its object."""
    specs = single_object_specs(n, seed)
    rng = np.random.default_rng(seed + 1)
    swaps = []
    for spec in specs:
        others = [c for c in shapes_data.COLOURS if c != spec.colour]
        swaps.append((spec, str(others[rng.integers(len(others))])))
    return swaps


def half_masks(position: str) -> np.ndarray:
    """(64, 64) bool: the half of the image on the side of ``position``."""
    half = np.zeros((64, 64), bool)
    if position == "left":
        half[:, :32] = True
    elif position == "right":
        half[:, 32:] = True
    elif position == "top":
        half[:32] = True
    elif position == "bottom":
        half[32:] = True
    else:
        raise ValueError(f"no half for position {position!r}")
    return half


@dataclass(frozen=True)
class PromptSwap:
    """One word swap: the source prompt's words, the swapped word's index and its new word."""

    words: tuple[str, ...]
    index: int
    new_word: str
    seed: int

    @property
    def source(self) -> str:
        return " ".join(self.words)

    @property
    def target(self) -> str:
        return " ".join(self.new_word if k == self.index else w for k, w in enumerate(self.words))


def colour_swaps(
    settings: EvalSettings, name_size: bool, name_position: bool = True, other: bool = False
) -> list[tuple[PromptSwap, ObjectSpec]]:
    """The colour swaps of ``swap_specs``; ``name_size=False`` leaves the size to the seed,
    ``name_position=False`` the position (``a red circle`` → ``a blue circle``).

    ``other=True``: ``settings.other_swaps`` swaps of other prompts and seeds, which check
    that the edit settings chosen on the main swaps hold beyond them.
    """
    count, specs_seed, first_seed = (
        (settings.other_swaps, 4242, settings.seed + 5000) if other
        else (settings.swaps, 2026, settings.seed + 77)
    )  # fmt: skip
    swaps = []
    for k, (spec, new_colour) in enumerate(swap_specs(count, specs_seed)):
        words = [w for w in spec.words() if name_size or w != spec.size]
        if name_position:
            words += shapes_data.POSITION_PHRASES[spec.position].split()
        swaps.append((PromptSwap(tuple(words), words.index(spec.colour), new_colour,
                           first_seed + k), spec))  # fmt: skip
    return swaps


def position_swaps(settings: EvalSettings) -> list[tuple[PromptSwap, ObjectSpec]]:
    """Layout-word swaps: the object's side for its opposite (left↔right, top↔bottom)."""
    opposite = {a: b for pair in shapes_data.OPPOSITE_PAIRS for a, b in (pair, pair[::-1])}
    swaps = []
    for k, spec in enumerate(single_object_specs(4 * settings.position_swaps, seed=2027)):
        if spec.position not in opposite or len(swaps) == settings.position_swaps:
            continue
        words = spec.words() + shapes_data.POSITION_PHRASES[spec.position].split()
        swaps.append((PromptSwap(tuple(words), len(words) - 1, opposite[spec.position],
                           settings.seed + 177 + k), spec))  # fmt: skip
    return swaps


def shape_swaps(settings: EvalSettings) -> list[tuple[PromptSwap, ObjectSpec]]:
    """Shape-word swaps with the place left to the seed (``a big red circle`` → ``a big red
    square``): what self-attention injection must not hold too long."""
    rng = np.random.default_rng(2029)
    swaps = []
    for k, spec in enumerate(single_object_specs(settings.swaps, seed=2028)):
        others = [s for s in shapes_data.SHAPES if s != spec.shape]
        words = spec.words()
        swaps.append((PromptSwap(tuple(words), words.index(spec.shape),
                           str(others[rng.integers(len(others))]), settings.seed + 277 + k),
                      spec))  # fmt: skip
    return swaps
