"""What the benchmark runs: the edit settings, the targets, and each mode's configurations."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

VARIANTS = ("stock", "edit", "explicit")
SOURCE_PROMPT = "photo of a cat riding on a bicycle"
TARGET_PROMPT = "photo of a cat riding on a motorcycle"
CROSS_STEPS = 0.8
SELF_STEPS = 0.4
GUIDANCE = 7.5
SEED = 1
HISTORY_STEPS_TARGET = 50  # the history target is stated for a 50-step edit

# Targets of the benchmark issue (ratios measured in the same run).
TARGETS: dict[str, dict[str, float]] = {
    "small": {"time": 1.15, "memory": 1.10},
    "sd15": {"time": 1.05, "memory": 1.10, "history_mb_50_steps": 10.0},
}


@dataclass(frozen=True)
class Case:
    """One benchmark configuration: which model, image size, steps and repetitions."""

    name: str
    model: str  # "builtin" or "sd15"
    height: int
    width: int
    steps: int
    repetitions: int
    record: Any = "auto"
    variants: tuple[str, ...] = VARIANTS
    memory: bool = True
    memory_runs: int = 1  # measured runs per memory subprocess (the median is reported)

    @property
    def target_key(self) -> str:
        return "sd15" if self.model == "sd15" else "small"

    @classmethod
    def from_dict(cls, fields: dict) -> Case:
        """The case ``dataclasses.asdict`` gave (after a JSON round trip)."""
        return cls(**{**fields, "variants": tuple(fields["variants"])})


def plan(mode: str) -> tuple[list[Case], dict | None]:
    """The configurations of a mode (smoke, quick or full) and the scaling settings."""
    if mode == "smoke":
        return [Case("small 64² · 2 steps", "builtin", 64, 64, 2, 1)], None
    if mode == "quick":
        cases = [
            Case("small 64² · 25 steps", "builtin", 64, 64, 25, 5, memory_runs=3),
            Case("SD v1.5 arch 256² · 3 steps", "sd15", 256, 256, 3, 3, memory_runs=2),
        ]
        scaling = {"steps": [10, 25, 50], "record": ["none", [4], 8, "all"], "repetitions": 3}
        return cases, scaling
    cases = [
        Case("small 64² · 25 steps", "builtin", 64, 64, 25, 10, memory_runs=5),
        Case("SD v1.5 arch 256² · 5 steps", "sd15", 256, 256, 5, 5, memory_runs=2),
        Case("SD v1.5 arch 512² · 3 steps", "sd15", 512, 512, 3, 3),
    ]
    scaling = {"steps": [10, 25, 50], "record": ["none", [4], 8, "all"], "repetitions": 5}
    return cases, scaling
