"""The edit engine on the built-in model: equality with diffusers for the empty edit, the step
loop with PNDM/DDIM/Euler, what each edit changes, local blend, the live callback, dtypes,
the result files, and bad input that leaves the pipeline untouched."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from diffusers import (
    DDIMScheduler,
    EulerDiscreteScheduler,
    HeunDiscreteScheduler,
    PNDMScheduler,
    StableDiffusionPipeline,
)

from p2p_teach.edits import (
    LocalBlend,
    NoEdit,
    Refine,
    Replace,
    Reweight,
    apply_blend,
    blend_mask,
)
from p2p_teach.engine import EditResult, StepInfo, UnsupportedSchedulerError, edit, plan_scheduler
from p2p_teach.mapper import WordCountMismatchError
from p2p_teach.models import load_pipeline
from p2p_teach.processors import PromptToPromptProcessor
from p2p_teach.schedules import ScheduleError
from p2p_teach.tokens import PromptTooLongError, WordNotFoundError

SOURCE = "photo of a cat riding on a bicycle"
TARGET = "photo of a cat riding on a motorcycle"
STEPS = 5


def with_scheduler(pipe, scheduler_class, **config):
    """The same modules with another scheduler (the fixture's pipeline is left as it is)."""
    components = {**pipe.components}
    components["scheduler"] = scheduler_class.from_config(pipe.scheduler.config, **config)
    return StableDiffusionPipeline(**components, requires_safety_checker=False)


def decode_np(pipe, latents):
    """Latents (n, 4, h, w) → images (n, H, W, 3) in [0, 1], as the pipeline decodes them."""
    with torch.no_grad():
        images = pipe.vae.decode(latents / pipe.vae.config.scaling_factor).sample
    return pipe.image_processor.postprocess(images, output_type="np")


def run(pipe, source=SOURCE, target=TARGET, **kwargs):
    kwargs.setdefault("steps", STEPS)
    kwargs.setdefault("progress", False)
    return edit(pipe, source, target, **kwargs)


@pytest.fixture(scope="module")
def empty(pipe):
    return run(pipe, edit=None, seed=1)


@pytest.fixture(scope="module")
def replaced(pipe):
    return run(pipe, edit=Replace(), seed=1)


# --------------------------------------------------------------------------------------------
# The empty edit is plain diffusers generation
# --------------------------------------------------------------------------------------------


def test_empty_edit_equals_the_stock_pipeline_with_pndm(pipe, empty):
    assert empty.settings.scheduler == "PNDMScheduler"
    for index, prompt in enumerate((SOURCE, TARGET)):
        generator = torch.Generator().manual_seed(1)  # the seed's z_T is the pipeline's
        stock = pipe(prompt, generator=generator, num_inference_steps=STEPS, guidance_scale=7.5,
                     output_type="np").images  # fmt: skip
        ours = decode_np(pipe, empty.latents[index : index + 1])
        assert np.abs(ours - stock).max() <= 1e-5
        image = np.asarray(empty.images[index], dtype=int)
        assert np.abs(image - np.round(stock[0] * 255)).max() <= 1


@pytest.mark.parametrize("scheduler_class", [DDIMScheduler, EulerDiscreteScheduler])
def test_empty_edit_equals_the_stock_pipeline_with_other_schedulers(pipe, scheduler_class):
    other = with_scheduler(pipe, scheduler_class)
    z_T = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(5))
    result = run(other, edit=NoEdit(), latents=z_T, guidance=5.0, record="none")
    assert result.history is None
    stock = other(SOURCE, latents=z_T, num_inference_steps=STEPS, guidance_scale=5.0,
                  output_type="np").images  # fmt: skip
    assert np.abs(decode_np(pipe, result.latents[:1]) - stock).max() <= 1e-5
    pair = other([SOURCE, TARGET], latents=z_T.repeat(2, 1, 1, 1), num_inference_steps=STEPS,
                 guidance_scale=5.0, output_type="latent").images  # fmt: skip
    torch.testing.assert_close(result.latents, pair, rtol=1e-5, atol=1e-5)


def test_without_guidance_the_batch_is_just_the_two_prompts(pipe):
    z_T = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(6))
    result = run(pipe, edit=None, latents=z_T, guidance=1.0, steps=3, progress=True)
    stock = pipe(SOURCE, latents=z_T, num_inference_steps=3, guidance_scale=1.0,
                 output_type="np").images  # fmt: skip
    assert np.abs(decode_np(pipe, result.latents[:1]) - stock).max() <= 1e-5


# --------------------------------------------------------------------------------------------
# Steps come from the loop
# --------------------------------------------------------------------------------------------


def test_pndm_makes_n_plus_one_unet_calls_for_n_steps_and_both_first_calls_are_step_0(pipe):
    plan = plan_scheduler(pipe.scheduler, 6, torch.device("cpu"))
    assert len(plan.timesteps) == 7
    assert plan.call_steps == (0, 0, 1, 2, 3, 4, 5)
    # what the processors see at every UNet call: (step, record this call?)
    seen = []

    def before_unet_call(module, args):
        processor = next(
            p for p in module.attn_processors.values() if isinstance(p, PromptToPromptProcessor)
        )
        seen.append((processor.run.step, processor.run.record_call))

    handle = pipe.unet.register_forward_pre_hook(before_unet_call)
    try:
        result = run(pipe, steps=6, seed=1)
    finally:
        handle.remove()
    assert seen == [(0, True), (0, False), (1, True), (2, True), (3, True), (4, True), (5, True)]
    assert result.history.steps_recorded == 6
    ddim = plan_scheduler(DDIMScheduler.from_config(pipe.scheduler.config), 6, "cpu")
    assert ddim.call_steps == tuple(range(6)) and len(ddim.timesteps) == 6


def test_callback_sees_every_step_once_with_its_maps_and_a_preview(pipe):
    seen: list[StepInfo] = []
    result = run(pipe, seed=2, callback=seen.append)
    assert [info.step for info in seen] == list(range(STEPS))
    unique = list(dict.fromkeys(plan_scheduler(pipe.scheduler, STEPS, "cpu").timesteps.tolist()))
    assert [info.timestep for info in seen] == unique
    assert list(result.history.timesteps) == unique
    assert result.history.steps_recorded == STEPS
    last = seen[-1]
    assert last.latents.shape == (2, 4, 16, 16)
    torch.testing.assert_close(last.latents.float().cpu(), result.latents)
    assert set(last.maps) == {layer.name for layer in result.history.layers}
    for name, maps in last.maps.items():
        layer = result.history.layer(name)
        assert maps.shape == (2, layer.height, layer.width, result.history.n_columns)
        torch.testing.assert_close(maps.float(), result.history.at_step(STEPS - 1)[name].float())
    source_preview, target_preview = seen[0].preview()
    assert source_preview.size == (64, 64) and target_preview.size == (64, 64)
    assert seen[0].preview()[0] is source_preview  # decoded once, then cached
    # at the last step the x0 prediction is (nearly) the final latents
    torch.testing.assert_close(last.predicted_latents.float(), result.latents, rtol=0.05,
                               atol=0.05 * float(result.latents.abs().max()))  # fmt: skip


def test_linear_preview_and_ddim_x0(pipe):
    other = with_scheduler(pipe, DDIMScheduler)
    seen: list[StepInfo] = []
    run(other, steps=2, callback=seen.append, preview="linear", record="none")
    assert all(info.maps == {} and info.history is None for info in seen)
    images = seen[0].preview()
    assert images[0].size == (16, 16)  # the linear map works at latent size
    assert seen[0].predicted_latents is not None


# --------------------------------------------------------------------------------------------
# What the edits change
# --------------------------------------------------------------------------------------------


def test_replace_changes_the_target_only(empty, replaced):
    torch.testing.assert_close(replaced.latents[0], empty.latents[0], rtol=1e-6, atol=1e-6)
    assert (replaced.latents[1] - empty.latents[1]).abs().max() > 1e-2


def test_no_injection_windows_give_the_plain_target(pipe, empty):
    result = run(pipe, edit=Replace(), seed=1, cross_steps=0.0, self_steps=0.0)
    torch.testing.assert_close(result.latents, empty.latents, rtol=1e-5, atol=1e-5)


def test_recorded_target_maps_are_the_injected_source_maps_inside_the_window(pipe):
    # bicycle → motorcycle are one piece each: the mapper is the identity on used slots, so
    # while cross-attention is injected the edited target's maps equal the source's.
    result = run(pipe, seed=3, cross_steps=0.6, self_steps=0.0)  # steps 0–2 of 5
    history = result.history
    for step in range(STEPS):
        for layer in history.layers:
            source = history.layer_maps(layer.name, "source", step)
            target = history.layer_maps(layer.name, "target", step)
            if step < 3:
                torch.testing.assert_close(target, source, rtol=0, atol=1e-3)
            elif layer.side > 4:
                assert (target - source).abs().max() > 1e-3


def test_self_injection_changes_the_target_beyond_cross_injection(pipe):
    cross_only = run(pipe, seed=4, self_steps=0.0, record="none")
    with_self = run(pipe, seed=4, self_steps=1.0, self_max_ratio=1.0, record="none")
    torch.testing.assert_close(with_self.latents[0], cross_only.latents[0])
    assert (with_self.latents[1] - cross_only.latents[1]).abs().max() > 1e-3
    assert with_self.settings.self_max_side == 16 and cross_only.settings.self_max_side == 4


def test_fused_and_recorded_layers_give_the_same_edit(pipe):
    # unrecorded layers inject through SDPA, recorded ones compute P·V explicitly
    prompts = ("a cat riding a bicycle", "a fluffy cat riding a bicycle")
    fused = run(pipe, *prompts, seed=7, record="none", edit=Refine())
    explicit = run(pipe, *prompts, seed=7, record="all", edit=Refine())
    scale = float(fused.latents.abs().max())
    torch.testing.assert_close(fused.latents, explicit.latents, rtol=0, atol=1e-5 * scale)


def test_reweight_several_words_with_a_negative_scale(pipe, empty, replaced):
    weights = {"motorcycle": 3.0, "cat": -1.0}
    result = run(pipe, seed=1, edit=Reweight(weights, base=Replace()))
    torch.testing.assert_close(result.latents[0], empty.latents[0], rtol=1e-6, atol=1e-6)
    assert (result.latents[1] - replaced.latents[1]).abs().max() > 1e-3
    assert result.settings.edit == {
        "kind": "reweight", "weights": weights, "base": {"kind": "replace", "rule": "course"},
    }  # fmt: skip
    same = run(pipe, SOURCE, SOURCE, seed=1, edit=Reweight({"bicycle": 0.0}))
    assert (same.latents[1] - same.latents[0]).abs().max() > 1e-3


def test_local_blend_mask_unions_source_and_target_peaks():
    word_maps = torch.zeros(2, 4, 4)  # (source/target, H, W)
    word_maps[0, 0, 0] = 2.0  # a source peak in a corner
    word_maps[1, 2, 3] = 5.0  # a target peak elsewhere (its own scale)
    word_maps[1, 0, 0] = 1.0  # below half of the target's maximum
    mask = blend_mask(word_maps, (8, 8), threshold=0.5)
    assert mask.shape == (1, 1, 8, 8)
    expected = torch.zeros(4, 4, dtype=torch.bool)
    expected[0:2, 0:2] = True  # the source peak, max-pooled 3×3
    expected[1:4, 2:4] = True  # the target peak, max-pooled 3×3
    expected = expected.repeat_interleave(2, 0).repeat_interleave(2, 1)  # nearest, to 8×8
    assert torch.equal(mask[0, 0].bool(), expected)
    latents = torch.randn(2, 4, 8, 8)
    blended = apply_blend(latents, mask)
    assert torch.equal(blended[0], latents[0])
    torch.testing.assert_close(blended[1][:, expected], latents[1][:, expected])
    assert torch.equal(blended[1][:, ~expected], latents[0][:, ~expected])


def test_local_blend_keeps_the_source_outside_the_mask(pipe, replaced):
    seen: list[StepInfo] = []
    # threshold 1: no map exceeds its own maximum, so from the start step the mask is empty
    # and the target's latents become the source's
    blend = LocalBlend("bicycle", "motorcycle", threshold=1.0, start=0.4)
    result = run(pipe, seed=1, blend=blend, callback=seen.append)
    assert result.settings.blend_resolution == 8  # the tiny model: 16×16 latent → 8×8 maps
    assert [info.blend_mask is None for info in seen] == [True, True, False, False, False]
    assert (seen[1].latents[1] - seen[1].latents[0]).abs().max() > 0
    for info in seen[2:]:
        assert not info.blend_mask.any()
        torch.testing.assert_close(info.latents[1], info.latents[0])
    # threshold 0: every pixel may change; the edit is the plain replace
    everywhere = run(pipe, seed=1, blend=LocalBlend("bicycle", "motorcycle", threshold=0.0))
    torch.testing.assert_close(everywhere.latents, replaced.latents)


# --------------------------------------------------------------------------------------------
# Devices and dtypes
# --------------------------------------------------------------------------------------------


def test_bfloat16_on_cpu_follows_float32(pipe):
    low = load_pipeline("tiny-random", dtype=torch.bfloat16, verbose=False)
    result = run(low, seed=1, steps=2)
    reference = run(pipe, seed=1, steps=2)
    assert result.settings.dtype == "bfloat16"
    assert torch.isfinite(result.latents).all()
    for ours, theirs in zip(result.images, reference.images):
        difference = np.abs(np.asarray(ours, float) - np.asarray(theirs, float)) / 255
        assert difference.mean() < 0.02
    assert all(maps.dtype == torch.float16 for maps in result.history.at_step(0).values())


# --------------------------------------------------------------------------------------------
# Results on disk
# --------------------------------------------------------------------------------------------


def test_result_save_and_load_round_trip(replaced, tmp_path):
    json.dumps(replaced.settings.to_json())  # JSON-ready
    folder = replaced.save(tmp_path / "edit")
    assert {p.name for p in folder.iterdir()} == {
        "source.png", "edited.png", "settings.json", "history.safetensors", "latents.safetensors",
    }  # fmt: skip
    loaded = EditResult.load(folder)
    assert loaded.settings == replaced.settings
    for ours, theirs in zip(loaded.images, replaced.images):
        assert np.array_equal(np.asarray(ours), np.asarray(theirs))
    assert torch.equal(loaded.latents, replaced.latents)
    for layer in replaced.history.layers:
        assert torch.equal(
            loaded.history.layer_maps(layer.name), replaced.history.layer_maps(layer.name)
        )
    settings = loaded.settings
    assert (settings.source_prompt, settings.target_prompt) == (SOURCE, TARGET)
    assert (settings.seed, settings.steps, settings.guidance) == (1, STEPS, 7.5)
    assert settings.cross_steps == {"default": (0.0, 0.8)}
    assert settings.self_steps == (0.0, 0.4)
    assert settings.scheduler == "PNDMScheduler" and settings.model.endswith("tiny-random")


# --------------------------------------------------------------------------------------------
# Bad input: a clear error, and the pipeline exactly as before
# --------------------------------------------------------------------------------------------


def snapshot(pipe):
    """Everything an edit could disturb: processor identities and the scheduler's state."""
    state = {}
    for key, value in vars(pipe.scheduler).items():
        if isinstance(value, np.ndarray):
            value = torch.from_numpy(value.copy())
        if isinstance(value, torch.Tensor):
            state[key] = ("tensor", value.clone())
        elif isinstance(value, (list, tuple)):
            state[key] = ("list", [v.clone() if isinstance(v, torch.Tensor) else v for v in value])
        else:
            state[key] = ("value", value)
    return {
        "processors": {name: id(p) for name, p in pipe.unet.attn_processors.items()},
        "scheduler": id(pipe.scheduler),
        "state": state,
    }


def assert_same(before, after):
    assert before["processors"] == after["processors"]
    assert before["scheduler"] == after["scheduler"]
    assert before["state"].keys() == after["state"].keys()
    for key, (kind, value) in before["state"].items():
        other = after["state"][key][1]
        if kind == "tensor":
            assert torch.equal(value, other), key
        elif kind == "list":
            assert len(value) == len(other), key
            for a, b in zip(value, other):
                assert torch.equal(a, b) if isinstance(a, torch.Tensor) else a == b, key
        else:
            assert value == other or value is other, key


BAD_INPUTS = [
    (dict(cross_steps=1.3), ScheduleError, "fractions must lie in [0, 1]"),
    (dict(self_steps=(0.6, 0.2)), ScheduleError, "comes after the end"),
    (dict(cross_steps={"dog": 0.5}), WordNotFoundError, "'motorcycle'"),
    (dict(steps=0), ScheduleError, "steps=0"),
    (dict(guidance=-1.0), ValueError, "guidance=-1.0"),
    (dict(edit=Reweight({"dog": 2.0}, base=Replace())), WordNotFoundError, "'motorcycle'"),
    (dict(blend=LocalBlend("dog")), WordNotFoundError, "'bicycle'"),
    (dict(target="a big cat riding on a bicycle"), WordCountMismatchError, "edit=Refine()"),
    (dict(target="cat " * 80), PromptTooLongError, "Fix: shorten it"),
    (dict(height=66), ValueError, "multiples of 4"),  # the tiny VAE downsamples by 4
    (dict(edit="swap"), ValueError, "Replace()"),
    (dict(edit=Reweight({"cat": 2.0})), ValueError, "base=Replace()"),
    (dict(latents=torch.zeros(1, 4, 8, 8)), ValueError, "(1, 4, 16, 16)"),
    (dict(record=16.0), ValueError, "record=16.0"),
    (dict(record_slots="some"), ValueError, "record_slots='some'"),
    (dict(self_max_ratio=2.0), ScheduleError, "self_max_ratio=2.0"),
    (dict(seed=-1), ValueError, "seed=-1"),
    (dict(seed=2**64), ValueError, "to 2**64 - 1"),
    (dict(blend="bicycle"), TypeError, "blend=LocalBlend('bicycle')"),
]


@pytest.mark.parametrize(("kwargs", "error", "message"), BAD_INPUTS)
def test_bad_input_is_refused_clearly_and_the_pipeline_is_untouched(pipe, kwargs, error, message):
    before = snapshot(pipe)
    with pytest.raises(error) as raised:
        run(pipe, **kwargs)
    assert message in str(raised.value)
    assert_same(before, snapshot(pipe))


def test_unsupported_scheduler_is_refused_with_the_fix(pipe):
    for other in (with_scheduler(pipe, HeunDiscreteScheduler),
                  with_scheduler(pipe, PNDMScheduler, skip_prk_steps=False)):  # fmt: skip
        before = snapshot(other)
        with pytest.raises(UnsupportedSchedulerError, match="Fix: pipe.scheduler ="):
            run(other)
        assert_same(before, snapshot(other))


@pytest.mark.parametrize("interruption", [RuntimeError("stop"), KeyboardInterrupt()])
def test_an_exception_in_the_callback_leaves_the_pipeline_untouched(pipe, interruption):
    before = snapshot(pipe)

    def callback(info):
        if info.step == 1:
            raise interruption

    with pytest.raises(type(interruption)):
        run(pipe, callback=callback)
    assert_same(before, snapshot(pipe))


def test_a_numpy_seed_is_the_same_seed(pipe):
    numpy = pytest.importorskip("numpy")
    assert run(pipe, seed=numpy.int64(3), steps=2).settings.seed == 3


def test_model_hooks_are_freed_after_the_edit_even_on_an_error(pipe, monkeypatch):
    """As pipe(...) does, the edit hands offloaded models back (maybe_free_model_hooks)."""
    calls = []
    free = lambda: calls.append("freed")  # noqa: E731
    monkeypatch.setattr(pipe, "maybe_free_model_hooks", free, raising=False)
    run(pipe, steps=2, record="none")
    assert calls == ["freed"]

    def callback(info):
        raise RuntimeError("stop")

    with pytest.raises(RuntimeError, match="stop"):
        run(pipe, steps=2, record="none", callback=callback)
    assert calls == ["freed", "freed"]
