"""The explicit baseline: the same edit with attention probabilities materialised everywhere.

The original Prompt-to-Prompt code and the diffusers community pipeline compute
``P = softmax(Q·Kᵀ/√d)`` in every attention layer (``attn.get_attention_scores``), hand ``P``
to a controller that edits the conditional target's probabilities, and multiply ``P·V``. This
module implements that strategy as attention processors of its own:

* :class:`ExplicitAttention`: plain attention through explicit probabilities (every layer the
  edit does not touch, so that *every* layer materialises ``P`` as in the original code);
* :class:`ExplicitPromptToPromptProcessor`: the edit, applied to probabilities:
  ``P*_tgt = P_src · value_mixers[k] + P_tgt · diag(target_keep[k])`` per head in
  cross-attention, ``P*_tgt = P_src`` in self-attention on injection steps.

The edit's semantics are not re-implemented: the per-step coefficients, modes, self-injection
steps, recorded layers and the history all come from the engine (``p2p_teach.edits``,
``p2p_teach.processors.EditRun``, ``p2p_teach.history``). :func:`explicit_edit` runs the
engine's own :func:`p2p_teach.engine.edit` loop with these processors in place of its fused
ones, so the only difference from the engine is the attention strategy.

Unlike the original's ``AttentionStore``, nothing else is stored (the original also keeps every
map of ≤ 32×32 layers, self-attention included), so this baseline is a lower bound on the
original code's cost.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch

from p2p_teach import engine
from p2p_teach.processors import ExplicitAttnProcessor, PromptToPromptProcessor

if TYPE_CHECKING:
    from p2p_teach.engine import EditResult


class ExplicitAttention(ExplicitAttnProcessor):
    """Attention through materialised probabilities, ``bmm(softmax(Q·Kᵀ/√d), V)``, no edit."""


class ExplicitPromptToPromptProcessor(ExplicitAttnProcessor, PromptToPromptProcessor):
    """The engine's edit on materialised probabilities (the engine's constructor and plan).

    Args:
        layer: the layer this processor serves.
        run: the engine's shared :class:`~p2p_teach.processors.EditRun` (step, coefficients,
            history).
        record, blend, inject_self: as the engine's ``PromptToPromptProcessor``.
    """

    def edit_probabilities(self, attn: Any, probabilities: torch.Tensor) -> torch.Tensor:
        """Edit the conditional target's probabilities (in place) as the engine's plan says."""
        batch_heads, pixels, tokens = probabilities.shape
        # (batch·heads, pixels, tokens) → (batch, heads, pixels, tokens), a view
        per_head = probabilities.view(-1, attn.heads, pixels, tokens)
        if self.layer.cross:
            self._edit_cross(per_head)
        elif self.inject_self and self.run.coefficients.self_inject[self.run.row]:
            per_head[self.run.cond_target] = per_head[self.run.cond_source]
        return probabilities

    def _edit_cross(self, probabilities: torch.Tensor) -> None:
        """Edit the conditional target's (heads, pixels, 77) probabilities in place, and record."""
        run = self.run
        step, row, source, target = run.step, run.row, run.cond_source, run.cond_target
        coefficients = run.coefficients
        if coefficients.modes[row] != "none":
            mixer = coefficients.value_mixers[row]  # (77, 77)
            keep = coefficients.target_keep[row]  # (77,)
            # (heads, pixels, 77) @ (77, 77) + (heads, pixels, 77) · (77,)
            probabilities[target] = probabilities[source] @ mixer + probabilities[target] * keep
        if run.record_call and (self.record or self.blend):
            maps = probabilities[[source, target]].float().mean(dim=1)  # (2, pixels, 77)
            if self.record and run.history is not None:
                run.history.record(self.layer.name, step, maps)
            if self.blend:
                run.add_blend_maps(maps, self.layer)


@contextmanager
def explicit_attention(pipe: Any) -> Iterator[None]:
    """Within the block, every attention layer of ``pipe`` materialises its probabilities."""
    unet = pipe.unet
    previous = unet.attn_processors  # name → processor, a fresh dict
    try:
        unet.set_attn_processor({name: ExplicitAttention() for name in previous})
        yield
    finally:
        unet.set_attn_processor(dict(previous))


def explicit_edit(pipe: Any, source_prompt: str, target_prompt: str, **kwargs: Any) -> EditResult:
    """:func:`p2p_teach.engine.edit` with the explicit attention strategy; same arguments.

    Layers the edit does not touch get :class:`ExplicitAttention`; the engine builds
    :class:`ExplicitPromptToPromptProcessor` where it would build its own processor.
    """
    with explicit_attention(pipe):
        return engine.edit(
            pipe, source_prompt, target_prompt,
            processor_class=ExplicitPromptToPromptProcessor, **kwargs,
        )  # fmt: skip
