"""How much to evaluate: :class:`EvalSettings`, the full run's and ``--quick``'s."""

from __future__ import annotations

from dataclasses import dataclass

from p2p_teach.shapes import GUIDANCE


@dataclass
class EvalSettings:
    """How much to evaluate."""

    single_prompts: int = 40
    two_object_prompts: int = 16
    samples: int = 8
    swaps: int = 24
    steps: int = 25
    guidance: float = GUIDANCE
    sweep_guidances: tuple[float, ...] = (1.0, 1.5, 2.0, 3.0, 5.0, 7.5)
    sweep_prompts: int = 12
    sweep_samples: int = 4
    position_swaps: int = 12
    timed_edits: int = 5  # 2-prompt edits timed (the median is reported)
    other_swaps: int = 32  # colour swaps of other prompts and seeds (0: none)
    classifier_train: int = 2400
    classifier_steps: int = 300
    seed: int = 0

    @classmethod
    def quick(cls) -> EvalSettings:
        return cls(
            single_prompts=5, two_object_prompts=2, samples=2, swaps=2, position_swaps=2, steps=20,
            timed_edits=1, other_swaps=1,
            sweep_guidances=(), classifier_train=1200, classifier_steps=150,
        )  # fmt: skip
