"""Attention processors that edit the target's attention from the source's, inside fused SDPA.

diffusers lets a model's attention be replaced layer by layer with *processors*: callables that
receive the ``Attention`` module and its input and return its output. This is the only hook
p2p_teach uses (no monkeypatching). :func:`attention_processors` installs processors for one
run and always puts the pipeline's own processors back, also after an exception or Ctrl-C.

:class:`PromptToPromptProcessor` mirrors diffusers' ``AttnProcessor2_0`` step for step (spatial
norm, group norm, projections, heads, SDPA, output projection, residual, rescale) and changes
one thing: the attention of the conditional target (the UNet batch is
``[uncond source, uncond target, cond source, cond target]`` with classifier-free guidance).

Why no attention probabilities are needed. The edited target map is (see :mod:`p2p_teach.edits`)
``P* = P_src · M · diag(c_src) + P_tgt · diag(c_tgt)``, and attention multiplies it by the
values, so

    P* · V_tgt = P_src · (M · diag(c_src) · V_tgt) + P_tgt · (diag(c_tgt) · V_tgt)
               = sdpa(Q_src, K_src, V₁) + sdpa(Q_tgt, K_tgt, V₂)

with ``V₁ = M·diag(c_src)·V_tgt`` and ``V₂ = diag(c_tgt)·V_tgt``, since
``sdpa(Q, K, V) = softmax(Q·Kᵀ/√d)·V``. The mapper and the weights fold into the values (a
77×77 product per layer); the second term is skipped when ``c_tgt = 0`` (every slot injected).
Self-attention injection, ``P*_self = P_src,self``, is ``sdpa(Q_src, K_src, V_tgt)``. So the
edit runs inside PyTorch's fused attention, and probabilities (``softmax(Q·Kᵀ/√d)``) are
computed only for the conditional pair of the layers whose maps are recorded or used by
LocalBlend, on the first UNet call of each step; there the pair's output is ``P·V`` from those
same probabilities (no second attention), and the unconditional pair still uses SDPA.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
import torch.nn.functional as F

from .edits import StepCoefficients
from .history import AttentionHistory
from .layers import LayerInfo
from .layers import plan_layers as plan_layers  # re-exported: where it lived before layers.py

if TYPE_CHECKING:
    from diffusers.models.attention_processor import Attention


def attention_probabilities(
    query: torch.Tensor, key: torch.Tensor, attention_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """``softmax(Q·Kᵀ/√d)`` per head, in float32 (SDPA's default scale, as AttnProcessor2_0).

    Args:
        query: (batch, heads, pixels, head_dim).
        key: (batch, heads, tokens, head_dim).
        attention_mask: optional additive mask broadcastable to (batch, heads, pixels, tokens).

    Returns:
        (batch, heads, pixels, tokens) float32; average over dim 1 for the head-averaged maps.
    """
    scale = query.shape[-1] ** -0.5
    # (batch, heads, pixels, head_dim) @ (batch, heads, head_dim, tokens)
    scores = torch.matmul(query.float(), key.float().transpose(-1, -2)) * scale
    if attention_mask is not None:  # (batch, heads, pixels, tokens) scores
        scores = scores + attention_mask.float()
    return scores.softmax(dim=-1)


class AttentionInputs(NamedTuple):
    """An attention layer's inputs after the norms and the q/k/v projections.

    ``query`` is (batch, pixels, inner), ``key`` and ``value`` (batch, tokens, inner);
    ``residual`` and ``shape_4d`` are what :func:`project_output` needs to finish the layer.
    """

    query: torch.Tensor
    key: torch.Tensor
    value: torch.Tensor
    residual: torch.Tensor
    shape_4d: tuple[int, int, int, int] | None


def project_inputs(
    attn: Attention,
    hidden_states: torch.Tensor,
    encoder_hidden_states: torch.Tensor | None = None,
    temb: torch.Tensor | None = None,
) -> AttentionInputs:
    """The part of diffusers' attention processors before attention, in their order: spatial
    norm, (batch, C, H, W) → (batch, pixels, C), group norm, the query, the cross-attention
    norm, the keys and values."""
    residual = hidden_states
    if attn.spatial_norm is not None:
        hidden_states = attn.spatial_norm(hidden_states, temb)
    shape_4d = None
    if hidden_states.ndim == 4:
        batch_size, channel, height, width = hidden_states.shape
        shape_4d = (batch_size, channel, height, width)
        # (batch, channels, H·W) → (batch, pixels, channels)
        hidden_states = hidden_states.view(batch_size, channel, height * width).transpose(1, 2)
    if attn.group_norm is not None:
        # group norm over channels: (batch, channels, pixels), then back
        hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
    query = attn.to_q(hidden_states)
    if encoder_hidden_states is None:
        encoder_hidden_states = hidden_states
    elif attn.norm_cross:
        encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
    key = attn.to_k(encoder_hidden_states)
    value = attn.to_v(encoder_hidden_states)
    return AttentionInputs(query, key, value, residual, shape_4d)


def project_output(
    attn: Attention, hidden_states: torch.Tensor, inputs: AttentionInputs
) -> torch.Tensor:
    """The part after attention: output projection of (batch, pixels, inner), the input's
    layout back, the residual and the rescale."""
    hidden_states = attn.to_out[0](hidden_states)  # linear projection
    hidden_states = attn.to_out[1](hidden_states)  # dropout
    if inputs.shape_4d is not None:
        # (batch, pixels, channels) → (batch, channels, H, W)
        hidden_states = hidden_states.transpose(-1, -2).reshape(*inputs.shape_4d)
    if attn.residual_connection:
        hidden_states = hidden_states + inputs.residual
    return hidden_states / attn.rescale_output_factor


class ExplicitAttnProcessor:
    """diffusers' ``AttnProcessor``: ``softmax(Q·Kᵀ/√d)`` materialised, then ``P·V``.

    The strategy of the original Prompt-to-Prompt code. Subclasses see (and may edit) the
    probabilities in :meth:`edit_probabilities`; this class leaves them as they are.
    """

    def edit_probabilities(self, attn: Attention, probabilities: torch.Tensor) -> torch.Tensor:
        """Hook on the (batch·heads, pixels, tokens) probabilities; returns those to use."""
        return probabilities

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> torch.Tensor:
        inputs = project_inputs(attn, hidden_states, encoder_hidden_states, temb)
        batch_size, sequence_length, _ = inputs.key.shape
        mask = attn.prepare_attention_mask(attention_mask, sequence_length, batch_size)
        query = attn.head_to_batch_dim(inputs.query)  # (batch·heads, pixels, head_dim)
        key = attn.head_to_batch_dim(inputs.key)  # (batch·heads, tokens, head_dim)
        value = attn.head_to_batch_dim(inputs.value)  # (batch·heads, tokens, head_dim)
        probabilities = attn.get_attention_scores(query, key, mask)  # (batch·heads, px, tokens)
        probabilities = self.edit_probabilities(attn, probabilities)
        hidden_states = torch.bmm(probabilities, value)  # (batch·heads, pixels, head_dim)
        hidden_states = attn.batch_to_head_dim(hidden_states)  # (batch, pixels, inner)
        return project_output(attn, hidden_states, inputs)


@dataclass
class EditRun:
    """State shared by the processors of one edit and its denoising loop.

    The loop sets :attr:`step` (the denoising step, not a count of UNet calls) and
    :attr:`record_call` (True on the first UNet call of each step) before every UNet call.

    Attributes:
        coefficients: per-step mixers, keeps, modes and self-injection flags.
        cond_source, cond_target: batch indices of the conditional source and target.
        history: where recorded maps go (None: record nothing).
        blend_source_slots, blend_target_slots: LocalBlend's word slots (None: no blend).
        blend_sum: (2, H, W) float32 sum of the blend layers' word maps over the recorded calls.
        blend_count: how many layer maps were added to ``blend_sum``.
    """

    coefficients: StepCoefficients
    cond_source: int
    cond_target: int
    history: AttentionHistory | None = None
    blend_source_slots: torch.Tensor | None = None
    blend_target_slots: torch.Tensor | None = None
    step: int = 0
    record_call: bool = True
    blend_sum: torch.Tensor | None = field(default=None, repr=False)
    blend_count: int = 0

    def add_blend_maps(self, maps: torch.Tensor, layer: LayerInfo) -> None:
        """Add one layer's (2, pixels, 77) maps, summed over the blend words, to the blend sum."""
        source = maps[0].index_select(-1, self.blend_source_slots).sum(-1)  # (pixels,)
        target = maps[1].index_select(-1, self.blend_target_slots).sum(-1)  # (pixels,)
        word_maps = torch.stack([source, target]).view(2, layer.height, layer.width)  # (2, H, W)
        self.blend_sum = word_maps if self.blend_sum is None else self.blend_sum + word_maps
        self.blend_count += 1


class PromptToPromptProcessor:
    """``AttnProcessor2_0`` with Prompt-to-Prompt's edit of the conditional target.

    Args:
        layer: the layer this processor serves (name, place, size, cross or self).
        run: the shared :class:`EditRun`.
        record: store this (cross-attention) layer's maps in the run's history.
        blend: add this layer's word maps to the run's LocalBlend sum.
        inject_self: inject self-attention here on the steps the schedule says.
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

    def __repr__(self) -> str:
        return (
            f"PromptToPromptProcessor({self.layer.name!r}, record={self.record}, "
            f"blend={self.blend}, inject_self={self.inject_self})"
        )

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> torch.Tensor:
        inputs = project_inputs(attn, hidden_states, encoder_hidden_states, temb)
        batch_size, sequence_length, inner_dim = inputs.key.shape
        if inputs.query.shape[1] != self.layer.pixels:
            raise RuntimeError(
                f"attention layer {self.layer.name} got {inputs.query.shape[1]} pixels but "
                f"{self.layer.height}×{self.layer.width} were planned: this UNet is not "
                "shaped like Stable Diffusion v1's"
            )

        if attention_mask is not None:
            attention_mask = attn.prepare_attention_mask(
                attention_mask, sequence_length, batch_size
            )
            # (batch·heads, 1 or pixels, tokens) → (batch, heads, 1 or pixels, tokens) for SDPA
            attention_mask = attention_mask.view(
                batch_size, attn.heads, -1, attention_mask.shape[-1]
            )

        head_dim = inner_dim // attn.heads
        # (batch, pixels, heads·head_dim) → (batch, heads, pixels, head_dim)
        query = inputs.query.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        # (batch, tokens, heads·head_dim) → (batch, heads, tokens, head_dim)
        key = inputs.key.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        value = inputs.value.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)

        if self.layer.cross:
            hidden_states = self._cross_attention(query, key, value, attention_mask)
        else:
            hidden_states = self._self_attention(query, key, value, attention_mask)

        # (batch, heads, pixels, head_dim) → (batch, pixels, heads·head_dim)
        hidden_states = hidden_states.transpose(1, 2).reshape(batch_size, -1, attn.heads * head_dim)
        return project_output(attn, hidden_states.to(query.dtype), inputs)

    # ------------------------------------------------------------------ the edit

    def _self_attention(self, query, key, value, attention_mask):
        run = self.run
        if self.inject_self and run.coefficients.self_inject[run.step]:
            # P*_self = P_src,self: the target attends with the source's queries and keys.
            query[run.cond_target] = query[run.cond_source]
            key[run.cond_target] = key[run.cond_source]
        return F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask)

    def _cross_attention(self, query, key, value, attention_mask):
        run = self.run
        step, source, target = run.step, run.cond_source, run.cond_target
        coefficients = run.coefficients
        mode = coefficients.modes[step]

        if run.record_call and (self.record or self.blend):
            return self._recorded_cross_attention(query, key, value, attention_mask)

        if mode == "none":
            return F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask)

        # V₁ = M·diag(c_src)·V_tgt: (77, 77) @ (heads, 77, head_dim) → (heads, 77, head_dim)
        source_values = torch.matmul(coefficients.value_mixers[step], value[target])
        if mode == "source":  # c_tgt = 0: P*·V = sdpa(Q_src, K_src, V₁), in the same batch
            query[target] = query[source]
            key[target] = key[source]
            value[target] = source_values
            return F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask)

        # mixed: one more batch entry carries sdpa(Q_src, K_src, V₁); the target's own entry
        # becomes sdpa(Q_tgt, K_tgt, V₂) with V₂ = diag(c_tgt)·V_tgt.
        batch = query.shape[0]
        keep = coefficients.target_keep[step][:, None]  # (77, 1)
        query = torch.cat([query, query[source : source + 1]])  # (batch + 1, heads, pixels, d)
        key = torch.cat([key, key[source : source + 1]])  # (batch + 1, heads, tokens, d)
        value = torch.cat([value, source_values[None]])  # (batch + 1, heads, tokens, d)
        value[target] = value[target] * keep
        if attention_mask is not None:
            attention_mask = torch.cat([attention_mask, attention_mask[source : source + 1]])
        out = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask)
        hidden_states = out[:batch]  # (batch, heads, pixels, head_dim)
        hidden_states[target] += out[batch]
        return hidden_states

    def _recorded_cross_attention(self, query, key, value, attention_mask):
        """A recorded layer: the conditional pair's probabilities are materialised for the
        history, so its output is computed from them (``P·V``) rather than a second time by
        SDPA; the unconditional entries go through SDPA as usual."""
        run = self.run
        step, source, target = run.step, run.cond_source, run.cond_target
        coefficients = run.coefficients
        mode = coefficients.modes[step]
        pair = slice(source, target + 1)  # the conditional pair [source, target]
        if target != source + 1:
            raise ValueError(
                f"the conditional source and target are batch entries {source} and {target}; "
                "the fused pair needs them adjacent (the engine's order is [u_src, u_tgt, "
                "c_src, c_tgt])"
            )
        pair_mask = None if attention_mask is None else attention_mask[pair]
        probs = attention_probabilities(query[pair], key[pair], pair_mask)  # (2, heads, pixels, 77)
        values = value[pair].float()  # (2, heads, 77, head_dim)
        maps = probs.mean(dim=1)  # (2, pixels, 77), head-averaged
        if mode == "none":
            pair_out = torch.matmul(probs, values)  # (2, heads, pixels, head_dim)
        else:
            mixer = coefficients.value_mixers[step].float()  # (77, 77)
            keep = coefficients.target_keep[step].float()  # (77,)
            source_values = torch.matmul(mixer, values[1])  # (heads, 77, head_dim): V₁
            target_out = torch.matmul(probs[0], source_values)  # (heads, pixels, head_dim)
            if mode == "mixed":
                target_out = target_out + torch.matmul(probs[1], values[1] * keep[:, None])
            source_out = torch.matmul(probs[0], values[0])  # (heads, pixels, head_dim)
            pair_out = torch.stack([source_out, target_out])  # (2, heads, pixels, head_dim)
            edited = maps[0] @ mixer + maps[1] * keep  # (pixels, 77): the target after editing
            maps = torch.stack([maps[0], edited])  # (2, pixels, 77)
        if self.record and run.history is not None:
            run.history.record(self.layer.name, step, maps)
        if self.blend:
            run.add_blend_maps(maps, self.layer)

        pair_out = pair_out.to(query.dtype)
        if source == 0:  # no guidance: the batch is the pair
            return pair_out
        unconditional = F.scaled_dot_product_attention(
            query[:source], key[:source], value[:source],
            attn_mask=None if attention_mask is None else attention_mask[:source],
        )  # (uncond batch, heads, pixels, head_dim)  # fmt: skip
        return torch.cat([unconditional, pair_out])  # (batch, heads, pixels, head_dim)


# --------------------------------------------------------------------------------------------
# Which layer gets which processor
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LayerRole:
    """What a :class:`PromptToPromptProcessor` does in one layer (its constructor's flags)."""

    record: bool = False  # store this cross-attention layer's maps in the history
    blend: bool = False  # add this layer's word maps to LocalBlend's sum
    inject_self: bool = False  # inject the source's self-attention here


def layer_roles(
    layers: Iterable[LayerInfo],
    *,
    recorded: Collection[str] = (),
    blend_side: int | None = None,
    self_max_side: int = 0,
    injects: bool = True,
    injects_self: bool = True,
) -> dict[str, LayerRole]:
    """The layers an edit touches, and what it does in each; the others keep their processors.

    Args:
        layers: the UNet's attention layers (:func:`p2p_teach.layers.plan_layers`).
        recorded: names of the layers whose maps the history keeps.
        blend_side: the cross-attention side LocalBlend reads (None: no LocalBlend).
        self_max_side: self-attention is injected in layers of side ≤ this.
        injects: the edit injects the source's maps at all (every edit but the empty one).
        injects_self: some step injects self-attention.

    Cross-attention layers are edited when the edit injects, and otherwise only where they are
    recorded or read by LocalBlend (down/up layers of ``blend_side``); self-attention layers
    of side ≤ ``self_max_side`` inject, when some step injects self-attention.
    """
    roles = {}
    for layer in layers:
        record = layer.name in recorded
        blend = layer.cross and layer.place != "mid" and layer.side == blend_side
        inject_self = not layer.cross and injects and injects_self and layer.side <= self_max_side
        if (layer.cross and (injects or record or blend)) or inject_self:
            roles[layer.name] = LayerRole(record, blend, inject_self)
    return roles


def build_processors(
    layers: Iterable[LayerInfo],
    roles: Mapping[str, LayerRole],
    run: EditRun,
    processor_class: type[PromptToPromptProcessor] = PromptToPromptProcessor,
) -> dict[str, PromptToPromptProcessor]:
    """One processor of ``processor_class`` per layer with a role, sharing ``run``."""
    return {
        layer.name: processor_class(
            layer, run, record=role.record, blend=role.blend, inject_self=role.inject_self
        )
        for layer in layers
        if (role := roles.get(layer.name)) is not None
    }


@contextmanager
def attention_processors(
    pipe_or_unet: Any, processors: Mapping[str, Any]
) -> Iterator[dict[str, Any]]:
    """Install attention processors for the duration of a ``with`` block.

    Args:
        pipe_or_unet: a pipeline (its ``.unet`` is used) or a UNet.
        processors: processor name → processor, for some or all layers; the other layers keep
            the processors they have.

    Yields:
        The previous processors (name → processor).

    The previous processors are put back when the block ends, however it ends: normally, by an
    exception, or by ``KeyboardInterrupt``. One thread at a time may hold a UNet's block: two
    edits at once would each put back the other's processors.

    Raises:
        PipelineBusyError: another thread holds this UNet's block (an edit is running there).
        KeyError: a name is not an attention layer of the UNet.
    """
    unet = getattr(pipe_or_unet, "unet", pipe_or_unet)
    with _exclusive(unet):
        previous = unet.attn_processors  # name → processor, a fresh dict
        unknown = sorted(set(processors) - set(previous))
        if unknown:
            raise KeyError(
                f"not attention layers of this UNet: {unknown[:3]}. Fix: use names from "
                f"unet.attn_processors, e.g. {sorted(previous)[:1]}"
            )
        try:
            unet.set_attn_processor({**previous, **processors})  # a fresh dict: it is consumed
            yield dict(previous)
        finally:
            unet.set_attn_processor(dict(previous))


class PipelineBusyError(RuntimeError):
    """A UNet's processors are already swapped by an edit running in another thread."""


_UNET_LOCKS: weakref.WeakKeyDictionary[torch.nn.Module, threading.RLock] = (
    weakref.WeakKeyDictionary()
)
_UNET_LOCKS_GUARD = threading.Lock()


@contextmanager
def _exclusive(unet: torch.nn.Module) -> Iterator[None]:
    """Hold the UNet's lock for the block, or raise :class:`PipelineBusyError` at once."""
    lock = _unet_lock(unet)
    if not lock.acquire(blocking=False):
        raise PipelineBusyError(
            "this pipeline is running an edit in another thread (another widget's run, or a "
            "background run). Fix: wait for it to finish (e.g. widget.wait()), or give each "
            "widget a pipeline of its own."
        )
    try:
        yield
    finally:
        lock.release()


def _unet_lock(unet: torch.nn.Module) -> threading.RLock:
    """The UNet's lock (re-entrant: the same thread may nest blocks, as a callback might)."""
    with _UNET_LOCKS_GUARD:
        lock = _UNET_LOCKS.get(unet)
        if lock is None:
            lock = _UNET_LOCKS[unet] = threading.RLock()
        return lock
