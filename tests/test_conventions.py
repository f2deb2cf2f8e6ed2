"""``edit(conventions="original")`` against an explicit reference of the original code.

The reference below is written from google/prompt-to-prompt's documented behaviour, not from
the engine: every attention layer materialises ``P = softmax(Q·Kᵀ/√d)``; a controller counts
UNet calls (``cur_step``) and edits the conditional target's probabilities:

* cross-attention: ``P*_tgt = α[c] · edit(P_src) + (1 − α[c]) · P_tgt`` with the table
  ``α`` of ``T + 1`` rows (``get_time_words_attention_alpha``: a window covers
  ``int(start·(T + 1)) ≤ c < int(end·(T + 1))``) read at call ``c``;
* ``edit``: the replacement mapper ``einsum('hpw,wn->hpn')`` (``seq_aligner``'s
  ``get_replacement_mapper``, ported in ``test_mapper.py``), the refinement's index mapper
  with target padding slot k reading source slot k, or the reweighting equalizer on top;
* self-attention: ``P*_tgt = P_src`` for ``int(start·T) ≤ c < int(end·T)`` in small layers.

The same reference with windows counted in denoising steps, the course's mapper and padding
EOS + d → EOS + d must give the engine's default edit: that checks the reference itself.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from test_mapper import _official_replacement_mapper

from p2p_teach import Refine, Replace, Reweight, edit, load_pipeline
from p2p_teach.alignment import refinement_alignment
from p2p_teach.edits import Edit
from p2p_teach.mapper import word_swap_mapper
from p2p_teach.processors import ExplicitAttnProcessor
from p2p_teach.schedules import injected_steps, original_cross_calls, original_self_calls
from p2p_teach.tokens import load_clip_tokenizer, tokenize

STEPS = 8
SEED = 2
SELF_STEPS = 0.4
SOURCE, SWAPPED, REFINED = "a big red circle", "a big cyan circle", "a big red circle on the left"
CASES = {  # name → (target prompt, edit, the reference's edit kind, cross windows)
    "replace": (SWAPPED, Replace, "replace", {"default": 0.8, "cyan": (0.0, 0.5)}),
    "refine": (REFINED, Refine, "refine", 0.8),
    "reweight": (SOURCE, None, "reweight", 0.7),
}


@pytest.fixture(scope="module")
def shapes_pipe(one_thread):
    return load_pipeline("builtin", verbose=False)


def scheduler_for(pipe, name: str):
    import diffusers

    return getattr(diffusers, name).from_config(pipe.scheduler.config)


# -------------------------------------------------------------------------------- reference


def windows(cross_steps, num_steps: int, counting: str):
    """{"default": covered rows, slot range: covered rows} and the self-attention rows."""
    cross = cross_steps if isinstance(cross_steps, dict) else {"default": cross_steps}
    pairs = {key: (0.0, v) if isinstance(v, float) else v for key, v in cross.items()}

    def rows(window, count):  # the original: int(f · count) over calls; here floor(f · T) steps
        return range(int(window[0] * count), int(window[1] * count))

    cross_count = num_steps + 1 if counting == "call" else num_steps
    covered = {key: rows(window, cross_count) for key, window in pairs.items()}
    return covered, rows((0.0, SELF_STEPS), num_steps)


def alpha_table(target: str, cross_steps, num_steps: int, counting: str, rows: int):
    """(rows, 77): the original's ``alpha_time_words`` (a word's window replaces the default)."""
    covered, _ = windows(cross_steps, num_steps, counting)
    table = torch.zeros(rows, 77)
    table[[r for r in covered["default"] if r < rows]] = 1.0
    view = tokenize(target)
    for word, word_rows in covered.items():
        if word != "default":
            slots = view.find_words(word)[0].slots
            table[:, slots.start : slots.stop] = 0.0
            table[[r for r in word_rows if r < rows], slots.start : slots.stop] = 1.0
    return table


def cross_edit(kind: str, source: str, target: str, conventions: str, weights=None):
    """The target's edited maps from the conditional pair, (heads, pixels, 77) each."""
    if kind == "replace":
        if conventions == "original":
            mapper = _official_replacement_mapper(source, target, load_clip_tokenizer())
        else:
            mapper = word_swap_mapper(source, target).matrix
        return lambda p_src, p_tgt: torch.einsum("hpw,wn->hpn", p_src, mapper.to(p_src))
    if kind == "refine":
        alignment = refinement_alignment(source, target)
        index, alphas = alignment.source_index.clone(), alignment.alphas.clone()
        if conventions == "original":  # padding: target slot k reads source slot k
            padding = torch.arange(alignment.target.n_used, 77)
            index[padding], alphas[padding] = padding, 1.0
        return lambda p_src, p_tgt: (
            p_src[..., index.clamp(min=0)] * alphas.to(p_src) + p_tgt * (1 - alphas.to(p_src))
        )
    equalizer = torch.ones(77)
    for word, scale in weights.items():
        equalizer[tokenize(target).find_words(word)[0].slots.start] = scale
    return lambda p_src, p_tgt: p_src * equalizer.to(p_src)


class Controller:
    """The original's ``AttentionControlEdit``: its state is the UNet call counter."""

    def __init__(self, edit_maps, alpha, self_rows, self_max_pixels):
        self.edit_maps, self.alpha, self.self_rows = edit_maps, alpha, self_rows
        self.self_max_pixels, self.row = self_max_pixels, 0

    def forward(self, probabilities: torch.Tensor, is_cross: bool) -> None:
        """Edit the (batch, heads, pixels, tokens) probabilities' conditional target in place."""
        p_src, p_tgt = probabilities[2], probabilities[3]  # [u_src, u_tgt, c_src, c_tgt]
        if is_cross:
            alpha = self.alpha[self.row].to(p_tgt)  # (77,)
            probabilities[3] = self.edit_maps(p_src, p_tgt) * alpha + (1 - alpha) * p_tgt
        elif self.row in self.self_rows and p_tgt.shape[-2] <= self.self_max_pixels:
            probabilities[3] = p_src


class ReferenceAttention(ExplicitAttnProcessor):
    def __init__(self, controller: Controller, is_cross: bool):
        self.controller, self.is_cross = controller, is_cross

    def edit_probabilities(self, attn, probabilities):
        per_head = probabilities.view(4, attn.heads, *probabilities.shape[1:])
        self.controller.forward(per_head, self.is_cross)
        return probabilities


@torch.no_grad()
def reference_edit(pipe, target, kind, cross_steps, conventions, weights=None):
    """The edit as the original code runs it (``conventions="original"``) or with this
    toolkit's counts (``"p2p_teach"``); returns the edited image as uint8."""
    from diffusers.utils.torch_utils import randn_tensor

    scheduler = copy.deepcopy(pipe.scheduler)
    scheduler.set_timesteps(STEPS)
    counting = "call" if conventions == "original" else "step"
    calls = len(scheduler.timesteps)
    call_steps = list(range(calls)) if calls == STEPS else [0, *range(STEPS)]
    rows = calls if counting == "call" else STEPS
    row_of_call = (lambda c: c) if counting == "call" else (lambda c: call_steps[c])
    _, self_rows = windows(cross_steps, STEPS, counting)
    controller = Controller(
        cross_edit(kind, SOURCE, target, conventions, weights),
        alpha_table(target, cross_steps, STEPS, counting, rows),
        self_rows,
        self_max_pixels=math.inf,  # the built-in model injects self-attention in every layer
    )
    unet = pipe.unet
    previous = unet.attn_processors
    unet.set_attn_processor({
        name: ReferenceAttention(controller, ".attn2." in name) for name in previous
    })  # fmt: skip
    try:
        cond, uncond = pipe.encode_prompt([SOURCE, target], "cpu", 1, True, None)
        context = torch.cat([uncond, cond])  # (4, 77, d)
        generator = torch.Generator("cpu").manual_seed(SEED)
        shape = (1, unet.config.in_channels, unet.config.sample_size, unet.config.sample_size)
        z_t = randn_tensor(shape, generator=generator, dtype=context.dtype)
        latents = (z_t * scheduler.init_noise_sigma).expand(2, *shape[1:]).clone()
        guidance = 2.0
        for call, t in enumerate(scheduler.timesteps):
            controller.row = row_of_call(call)
            model_input = scheduler.scale_model_input(torch.cat([latents] * 2), t)
            noise = unet(model_input, t, encoder_hidden_states=context).sample
            uncond_noise, text_noise = noise.chunk(2)
            noise = uncond_noise + guidance * (text_noise - uncond_noise)
            latents = scheduler.step(noise, t, latents).prev_sample
        images = pipe.vae.decode(latents / pipe.vae.config.scaling_factor).sample
    finally:
        unet.set_attn_processor(dict(previous))
    return np.asarray(pipe.image_processor.postprocess(images, output_type="pil")[1])


def engine_edit(pipe, target, edit_class, cross_steps, conventions, weights=None):
    chosen: Edit = Reweight(weights) if edit_class is None else edit_class()
    result = edit(
        pipe, SOURCE, target, edit=chosen, steps=STEPS, seed=SEED, cross_steps=cross_steps,
        self_steps=SELF_STEPS, guidance=2.0, record="none", progress=False,
        **({} if conventions == "p2p_teach" else {"conventions": conventions}),
    )  # fmt: skip
    return np.asarray(result.edited_image)


def difference(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max())


# -------------------------------------------------------------------------------- the tests


@pytest.mark.parametrize("scheduler_name", ["PNDMScheduler", "DDIMScheduler"])
@pytest.mark.parametrize("case", list(CASES))
def test_conventions_match_the_explicit_reference(shapes_pipe, scheduler_name, case):
    target, edit_class, kind, cross_steps = CASES[case]
    weights = {"red": 2.0} if kind == "reweight" else None
    pipe = shapes_pipe
    saved = pipe.scheduler
    pipe.scheduler = scheduler_for(pipe, scheduler_name)
    try:
        images = {
            conventions: (
                engine_edit(pipe, target, edit_class, cross_steps, conventions, weights),
                reference_edit(pipe, target, kind, cross_steps, conventions, weights),
            )
            for conventions in ("p2p_teach", "original")
        }
    finally:
        pipe.scheduler = saved
    for conventions, (engine_image, reference_image) in images.items():
        assert difference(engine_image, reference_image) <= 1, conventions
    if scheduler_name == "PNDMScheduler":  # the call count moves the window's end
        assert difference(images["p2p_teach"][0], images["original"][0]) > 1


def test_original_windows_count_unet_calls():
    pndm = (0, *range(25))  # PNDM's first step makes two UNet calls
    assert original_cross_calls((0.0, 0.8), 25) == range(0, 20)
    assert len(injected_steps(original_cross_calls((0.0, 0.8), 25), pndm)) == 19
    assert len(injected_steps(original_cross_calls((0.0, 0.8), 25), tuple(range(25)))) == 20
    assert len(injected_steps(original_cross_calls((0.0, 0.6), 25), pndm)) == 14
    assert len(injected_steps(original_self_calls((0.0, 0.4), 25), pndm)) == 9
    assert original_cross_calls((0.0, 0.5), 25) == range(0, 13)  # T + 1 rows: 13, not 12


def test_conventions_original_makes_the_original_edits():
    from p2p_teach.edits import NoEdit, with_conventions

    # the original gives every word one window: no shorter window for an unequal swap
    assert with_conventions(Replace(), "original") == Replace(rule="original", unequal_share=None)
    assert Replace().unequal_share is not None
    assert with_conventions(Refine(), "original") == Refine(padding="slot")
    reweight = with_conventions(Reweight({"red": 2.0}, base=Refine()), "original")
    assert reweight.base == Refine(padding="slot") and reweight.weights == {"red": 2.0}
    assert with_conventions(Reweight({"red": 2.0}), "original") == Reweight({"red": 2.0})
    assert with_conventions(NoEdit(), "original") == NoEdit()
    assert with_conventions(Replace(), "p2p_teach") == Replace()
    assert Refine().describe() == {"kind": "refine"}  # 0.1.0's settings unchanged
    assert Refine(padding="slot").describe() == {"kind": "refine", "padding": "slot"}
    with pytest.raises(ValueError, match="Refine\\(padding='end'\\)"):
        Refine(padding="end")


def test_only_our_conventions_give_an_unequal_swap_its_own_window(pipe):
    def ranges(conventions):
        result = edit(
            pipe, "a big pink circle", "a big chartreuse circle", steps=8, seed=0,
            conventions=conventions, record="none", progress=False,
        )  # fmt: skip
        return result.settings.cross_step_ranges

    assert set(ranges("original")) == {"default"}  # pink → char·tre·use, one window for all
    ours = ranges("p2p_teach")
    assert "chartreuse" in ours and ours["chartreuse"][1] < ours["default"][1]


def test_original_settings_record_windows_in_unet_calls(pipe):
    result = edit(
        pipe, "a cat riding a bicycle", "a cat riding a motorcycle", steps=25, seed=0,
        cross_steps=0.8, self_steps=0.4, conventions="original", record="none", progress=False,
    )  # fmt: skip
    settings = result.settings
    assert settings.conventions == "original" and settings.edit["rule"] == "original"
    assert settings.cross_step_ranges["default"] == (0, 20)  # calls 0–19: steps 0–18 (PNDM)
    assert settings.self_step_range == (0, 10)
    with pytest.raises(ValueError, match="conventions='originals'"):
        edit(pipe, "a cat", "a dog", steps=2, conventions="originals")
