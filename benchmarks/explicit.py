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
from typing import Any
from unittest import mock

import torch

from p2p_teach import engine
from p2p_teach.history import LayerInfo
from p2p_teach.processors import EditRun


def _project(attn, hidden_states, encoder_hidden_states, attention_mask, temb):
    """The part of diffusers' ``AttnProcessor`` before attention: norms and projections.

    Returns:
        query (batch·heads, pixels, head_dim), key and value (batch·heads, tokens, head_dim),
        the prepared mask, the residual, and what :func:`_finish` needs to undo the layout.
    """
    residual = hidden_states
    if attn.spatial_norm is not None:
        hidden_states = attn.spatial_norm(hidden_states, temb)
    input_ndim = hidden_states.ndim
    shape_4d = None
    if input_ndim == 4:
        batch_size, channel, height, width = hidden_states.shape
        shape_4d = (batch_size, channel, height, width)
        # (batch, channels, H·W) → (batch, pixels, channels)
        hidden_states = hidden_states.view(batch_size, channel, height * width).transpose(1, 2)
    batch_size, sequence_length, _ = (
        hidden_states.shape if encoder_hidden_states is None else encoder_hidden_states.shape
    )
    attention_mask = attn.prepare_attention_mask(attention_mask, sequence_length, batch_size)
    if attn.group_norm is not None:
        hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
    query = attn.to_q(hidden_states)
    if encoder_hidden_states is None:
        encoder_hidden_states = hidden_states
    elif attn.norm_cross:
        encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
    key = attn.to_k(encoder_hidden_states)
    value = attn.to_v(encoder_hidden_states)
    query = attn.head_to_batch_dim(query)  # (batch, pixels, inner) → (batch·heads, pixels, d)
    key = attn.head_to_batch_dim(key)  # (batch, tokens, inner) → (batch·heads, tokens, d)
    value = attn.head_to_batch_dim(value)  # (batch, tokens, inner) → (batch·heads, tokens, d)
    return query, key, value, attention_mask, residual, shape_4d


def _finish(attn, hidden_states, residual, shape_4d):
    """The part after attention: heads back, output projection, residual, rescale."""
    # (batch·heads, pixels, d) → (batch, pixels, inner)
    hidden_states = attn.batch_to_head_dim(hidden_states)
    hidden_states = attn.to_out[0](hidden_states)  # linear projection
    hidden_states = attn.to_out[1](hidden_states)  # dropout
    if shape_4d is not None:
        # (batch, pixels, channels) → (batch, channels, H, W)
        hidden_states = hidden_states.transpose(-1, -2).reshape(*shape_4d)
    if attn.residual_connection:
        hidden_states = hidden_states + residual
    return hidden_states / attn.rescale_output_factor


class ExplicitAttention:
    """Attention through materialised probabilities, ``bmm(softmax(Q·Kᵀ/√d), V)``, no edit."""

    def __call__(
        self,
        attn,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> torch.Tensor:
        query, key, value, mask, residual, shape_4d = _project(
            attn, hidden_states, encoder_hidden_states, attention_mask, temb
        )
        probabilities = attn.get_attention_scores(query, key, mask)  # (batch·heads, pixels, tokens)
        hidden_states = torch.bmm(probabilities, value)  # (batch·heads, pixels, d)
        return _finish(attn, hidden_states, residual, shape_4d)


class ExplicitPromptToPromptProcessor:
    """The engine's edit on materialised probabilities (same constructor as the engine's).

    Args:
        layer: the layer this processor serves.
        run: the engine's shared :class:`~p2p_teach.processors.EditRun` (step, coefficients,
            history).
        record, blend, inject_self: as the engine's ``PromptToPromptProcessor``.
    """

    def __init__(
        self,
        layer: LayerInfo,
        run: EditRun,
        *,
        record: bool = False,
        blend: bool = False,
        inject_self: bool = False,
    ) -> None:
        self.layer = layer
        self.run = run
        self.record = record and layer.cross
        self.blend = blend and layer.cross
        self.inject_self = inject_self and not layer.cross

    def __call__(
        self,
        attn,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> torch.Tensor:
        query, key, value, mask, residual, shape_4d = _project(
            attn, hidden_states, encoder_hidden_states, attention_mask, temb
        )
        probabilities = attn.get_attention_scores(query, key, mask)  # (batch·heads, pixels, tokens)
        batch_heads, pixels, tokens = probabilities.shape
        # (batch·heads, pixels, tokens) → (batch, heads, pixels, tokens), a view
        probabilities = probabilities.view(-1, attn.heads, pixels, tokens)
        if self.layer.cross:
            self._edit_cross(probabilities)
        elif self.inject_self and self.run.coefficients.self_inject[self.run.step]:
            probabilities[self.run.cond_target] = probabilities[self.run.cond_source]
        probabilities = probabilities.view(batch_heads, pixels, tokens)  # back to (batch·heads, …)
        hidden_states = torch.bmm(probabilities, value)  # (batch·heads, pixels, d)
        return _finish(attn, hidden_states, residual, shape_4d)

    def _edit_cross(self, probabilities: torch.Tensor) -> None:
        """Edit the conditional target's (heads, pixels, 77) probabilities in place, and record."""
        run = self.run
        step, source, target = run.step, run.cond_source, run.cond_target
        coefficients = run.coefficients
        if coefficients.modes[step] != "none":
            mixer = coefficients.value_mixers[step]  # (77, 77)
            keep = coefficients.target_keep[step]  # (77,)
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
    """Within the block, every attention layer of ``pipe`` materialises its probabilities, and
    the engine builds :class:`ExplicitPromptToPromptProcessor` where it would build its own."""
    unet = pipe.unet
    previous = unet.attn_processors  # name → processor, a fresh dict
    try:
        unet.set_attn_processor({name: ExplicitAttention() for name in previous})
        with mock.patch.object(engine, "PromptToPromptProcessor", ExplicitPromptToPromptProcessor):
            yield
    finally:
        unet.set_attn_processor(dict(previous))


def explicit_edit(pipe: Any, source_prompt: str, target_prompt: str, **kwargs: Any):
    """:func:`p2p_teach.engine.edit` with the explicit attention strategy; same arguments."""
    with explicit_attention(pipe):
        return engine.edit(pipe, source_prompt, target_prompt, **kwargs)
