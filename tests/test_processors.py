"""Attention processors: fused SDPA injection equals the explicit softmax(QKᵀ)·M·V form, layer
planning matches the UNet, and the previous processors always come back."""

from __future__ import annotations

import math

import pytest
import torch
from diffusers.models.attention_processor import Attention, AttnProcessor2_0

from p2p_teach.alignment import refinement_alignment
from p2p_teach.edits import Refine, Replace, Reweight, step_coefficients
from p2p_teach.history import AttentionHistory, LayerInfo
from p2p_teach.mapper import word_swap_mapper
from p2p_teach.processors import (
    EditRun,
    PromptToPromptProcessor,
    attention_processors,
    plan_layers,
)
from p2p_teach.schedules import resolve_schedule
from p2p_teach.tokens import tokenize

SWAP = ("a lion eating a bun", "a hippopotamus eating a bun")  # 1 → 3 pieces
REFINE = ("a cat riding a bicycle", "a fluffy cat riding a red bicycle")
REWEIGHT = {"hippopotamus": -2.0, "eating": 3.0}


# --------------------------------------------------------------------------------------------
# An explicit reference, written from the paper's definitions (not from the engine's formula)
# --------------------------------------------------------------------------------------------


def reference_editor(kind, source, target, alpha, weights=None):
    """P* per the original code: base map from the source, reweighted, blended by α.

    Returns a function (p_src, p_tgt) → P*, maps of shape (..., pixels, 77); alpha and
    weights are (77,) over target slots.
    """
    source_view, target_view = tokenize(source), tokenize(target)
    alignment = refinement_alignment(source_view, target_view)
    mapper = word_swap_mapper(source_view, target_view).matrix if kind != "refine" else None

    def edit_target(p_src, p_tgt):
        if kind == "refine":
            index = alignment.source_index.clamp_min(0)  # gather the aligned source column
            keep = alignment.alphas.to(p_src.dtype)
            base = p_src[..., index] * keep + p_tgt * (1 - keep)
        else:
            base = torch.einsum("...pw,wn->...pn", p_src, mapper.to(p_src.dtype))
        if weights is not None:
            base = base * weights
        return alpha * base + (1 - alpha) * p_tgt

    return edit_target


def explicit_attention(attn, hidden, context, edit_target=None, inject_self=False):
    """softmax(QKᵀ/√d)·V for a batch [u_src, u_tgt, c_src, c_tgt], editing entry 3's map."""
    batch = hidden.shape[0]
    query, key, value = attn.to_q(hidden), attn.to_k(context), attn.to_v(context)
    heads = attn.heads
    head_dim = key.shape[-1] // heads
    # (batch, length, heads·head_dim) → (batch, heads, length, head_dim)
    query = query.view(batch, -1, heads, head_dim).transpose(1, 2)
    key = key.view(batch, -1, heads, head_dim).transpose(1, 2)
    value = value.view(batch, -1, heads, head_dim).transpose(1, 2)
    probs = (query @ key.transpose(-1, -2) / math.sqrt(head_dim)).softmax(-1)
    probs = probs.clone()  # (batch, heads, pixels, tokens)
    if edit_target is not None:
        probs[3] = edit_target(probs[2], probs[3])
    if inject_self:
        probs[3] = probs[2]
    out = probs @ value  # (batch, heads, pixels, head_dim)
    out = out.transpose(1, 2).reshape(batch, -1, heads * head_dim)  # (batch, pixels, channels)
    return attn.to_out[0](out), probs


# --------------------------------------------------------------------------------------------
# Random tensors
# --------------------------------------------------------------------------------------------


def _case(kind):
    """(prompts, edit, weights over target slots or None, a kept word of the target)."""
    if kind == "replace":
        return SWAP, Replace(), None, "eating"
    if kind == "refine":
        return REFINE, Refine(), None, "riding"
    source, target = SWAP
    weights = torch.ones(77)
    view = tokenize(target)
    for word, scale in REWEIGHT.items():
        found = view.find_word(word)
        weights[found.start : found.stop] = scale
    return SWAP, Reweight(REWEIGHT, base=Replace()), weights, "bun"


@pytest.mark.parametrize("kind", ["replace", "refine", "reweight"])
@pytest.mark.parametrize("cross_steps", [1.0, "per-word", 0.0])
@pytest.mark.parametrize("record", [False, True])
def test_fused_injection_equals_explicit_form_on_random_tensors(kind, cross_steps, record):
    torch.manual_seed(0)
    (source, target), chosen, weights, kept_word = _case(kind)
    expected_mode = {1.0: "mixed" if kind == "refine" else "source", 0.0: "none"}.get(
        cross_steps, "mixed"
    )
    if cross_steps == "per-word":  # some slots injected, the kept word's not: "mixed"
        cross_steps = {"default": 1.0, kept_word: 0.0}
    source_view, target_view = tokenize(source), tokenize(target)
    schedule = resolve_schedule(cross_steps, 0.0, 1, target_view)
    coefficients = step_coefficients(chosen.resolve(source_view, target_view), schedule)
    layer = LayerInfo("down_blocks.0.attentions.0.transformer_blocks.0.attn2.processor",
                      "down", 4, 5)  # fmt: skip
    history = AttentionHistory([layer], source_view, target_view, [999.0], slots="all")
    run = EditRun(coefficients, cond_source=2, cond_target=3, history=history)
    attn = Attention(query_dim=32, cross_attention_dim=24, heads=4, dim_head=8).eval()
    attn.set_processor(PromptToPromptProcessor(layer, run, record=record))
    hidden = torch.randn(4, 20, 32)  # (batch, pixels, channels)
    context = torch.randn(4, 77, 24)  # (batch, tokens, text channels)

    alpha = schedule.cross[0]

    edit_target = reference_editor(kind, source, target, alpha, weights)

    with torch.no_grad():
        fused = attn(hidden, encoder_hidden_states=context)
        explicit, probs = explicit_attention(attn, hidden, context, edit_target)
    assert coefficients.modes[0] == expected_mode
    torch.testing.assert_close(fused, explicit, rtol=1e-5, atol=1e-5)
    if record:
        history.end_step(0)
        stored = history.layer_maps(layer.name, "target", 0).view(20, 77)
        torch.testing.assert_close(stored, probs[3].mean(0), rtol=2e-3, atol=1e-3)  # fp16
        stored = history.layer_maps(layer.name, "source", 0).view(20, 77)
        torch.testing.assert_close(stored, probs[2].mean(0), rtol=2e-3, atol=1e-3)


def test_self_attention_injection_uses_the_source_probabilities():
    torch.manual_seed(1)
    (source, target), chosen, _, _ = _case("replace")
    source_view, target_view = tokenize(source), tokenize(target)
    schedule = resolve_schedule(1.0, 1.0, 1, target_view)
    coefficients = step_coefficients(chosen.resolve(source_view, target_view), schedule)
    layer = LayerInfo("mid_block.attentions.0.transformer_blocks.0.attn1.processor", "mid",
                      4, 4, cross=False)  # fmt: skip
    run = EditRun(coefficients, cond_source=2, cond_target=3)
    attn = Attention(query_dim=32, heads=4, dim_head=8).eval()
    attn.set_processor(PromptToPromptProcessor(layer, run, inject_self=True))
    hidden = torch.randn(4, 16, 32)
    with torch.no_grad():
        fused = attn(hidden)
        explicit, _ = explicit_attention(attn, hidden, hidden, inject_self=True)
        plain, _ = explicit_attention(attn, hidden, hidden)
    torch.testing.assert_close(fused, explicit, rtol=1e-5, atol=1e-5)
    assert (fused[3] - plain[3]).abs().max() > 1e-3  # the injection did change the target
    torch.testing.assert_close(fused[:3], plain[:3], rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------------------------
# The built-in model
# --------------------------------------------------------------------------------------------


class ExplicitReference:
    """Cross-attention by explicit probabilities, target map edited per the original code."""

    def __init__(self, edit_target):
        self.edit_target = edit_target

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None,
                 temb=None, **kwargs):  # fmt: skip
        residual = hidden_states
        out, _ = explicit_attention(attn, hidden_states, encoder_hidden_states, self.edit_target)
        out = attn.to_out[1](out)
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor


@pytest.mark.parametrize("kind", ["replace", "refine", "reweight"])
def test_fused_injection_equals_explicit_form_on_the_builtin_model(pipe, kind):
    (source, target), chosen, weights, kept_word = _case(kind)
    source_view, target_view = tokenize(source), tokenize(target)
    schedule = resolve_schedule({"default": 1.0, kept_word: 0.0}, 0.0, 1, target_view)
    coefficients = step_coefficients(chosen.resolve(source_view, target_view), schedule)
    layers = [layer for layer in plan_layers(pipe.unet, 16, 16) if layer.cross]
    run = EditRun(coefficients, cond_source=2, cond_target=3)
    alpha = schedule.cross[0]

    edit_target = reference_editor(kind, source, target, alpha, weights)

    torch.manual_seed(2)
    latents = torch.randn(4, 4, 16, 16)
    with torch.no_grad():
        cond, uncond = pipe.encode_prompt([source, target], "cpu", 1, True, None)
        embeddings = torch.cat([uncond, cond])
        ours = {layer.name: PromptToPromptProcessor(layer, run) for layer in layers}
        with attention_processors(pipe, ours):
            fused = pipe.unet(latents, 500, encoder_hidden_states=embeddings).sample
        reference = {layer.name: ExplicitReference(edit_target) for layer in layers}
        with attention_processors(pipe, reference):
            explicit = pipe.unet(latents, 500, encoder_hidden_states=embeddings).sample
        plain = pipe.unet(latents, 500, encoder_hidden_states=embeddings).sample
    torch.testing.assert_close(fused, explicit, rtol=1e-4, atol=1e-5)
    assert (fused[3] - plain[3]).abs().max() > 1e-4  # the edit changed the target's output
    torch.testing.assert_close(fused[:3], plain[:3], rtol=1e-4, atol=1e-5)


def test_plan_layers_matches_what_the_unet_feeds_each_layer(pipe):
    seen: dict[str, int] = {}

    class Spy(AttnProcessor2_0):
        def __init__(self, name):
            super().__init__()
            self.name = name

        def __call__(self, attn, hidden_states, *args, **kwargs):
            seen[self.name] = hidden_states.shape[1]
            return super().__call__(attn, hidden_states, *args, **kwargs)

    layers = plan_layers(pipe.unet, 16, 12)  # a non-square latent too
    spies = {layer.name: Spy(layer.name) for layer in layers}
    with torch.no_grad(), attention_processors(pipe, spies):
        pipe.unet(torch.randn(1, 4, 16, 12), 10, encoder_hidden_states=torch.randn(1, 77, 32))
    assert seen == {layer.name: layer.pixels for layer in layers}
    places = {(layer.place, layer.height, layer.width, layer.cross) for layer in layers}
    assert ("down", 16, 12, True) in places and ("mid", 4, 3, True) in places
    assert ("up", 8, 6, False) in places
    cross_names = {layer.name for layer in layers if layer.cross}
    assert cross_names == {name for name in pipe.unet.attn_processors if ".attn2." in name}


# --------------------------------------------------------------------------------------------
# The context manager always restores the previous processors
# --------------------------------------------------------------------------------------------


def _identities(pipe):
    return {name: id(processor) for name, processor in pipe.unet.attn_processors.items()}


def test_processors_are_installed_then_restored(pipe):
    before = _identities(pipe)
    name = next(iter(before))
    marker = AttnProcessor2_0()
    with attention_processors(pipe, {name: marker}) as previous:
        assert pipe.unet.attn_processors[name] is marker
        assert {key: id(value) for key, value in previous.items()} == before
    assert _identities(pipe) == before


@pytest.mark.parametrize("interruption", [RuntimeError("boom"), KeyboardInterrupt()])
def test_processors_are_restored_after_an_exception_or_ctrl_c(pipe, interruption):
    before = _identities(pipe)
    name = next(iter(before))
    with (
        pytest.raises(type(interruption)),
        attention_processors(pipe.unet, {name: AttnProcessor2_0()}),
    ):
        raise interruption
    assert _identities(pipe) == before


def test_unknown_layer_names_are_refused_without_touching_the_unet(pipe):
    before = _identities(pipe)
    with (
        pytest.raises(KeyError, match="not attention layers"),
        attention_processors(pipe, {"nope.processor": AttnProcessor2_0()}),
    ):
        pass
    assert _identities(pipe) == before
