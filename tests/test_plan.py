"""plan_edit: an edit checked and planned without running the UNet; _denoise runs a plan (the
same plan twice gives the same edit); per-step null-text embeddings replace the unconditional
half of the batch; the conventions field is checked and kept."""

from __future__ import annotations

import pytest
import torch

from p2p_teach.edits import NoEdit
from p2p_teach.engine import EditPlan, _denoise, edit, plan_edit
from p2p_teach.layers import kept_layers, plan_layers
from p2p_teach.schedules import self_injection_max_side

SOURCE = "photo of a cat riding on a bicycle"
TARGET = "photo of a cat riding on a motorcycle"


@pytest.fixture
def no_unet_calls(pipe):
    """The UNet raises if anything calls it during the test."""

    def refuse(module, args):
        raise AssertionError("the UNet ran")

    handle = pipe.unet.register_forward_pre_hook(refuse)
    yield
    handle.remove()


def test_a_plan_is_made_without_running_the_unet(pipe, no_unet_calls):
    plan = plan_edit(pipe, SOURCE, TARGET, steps=3, seed=2, self_steps=1.0)
    assert isinstance(plan, EditPlan) and plan.num_steps == 3 and plan.settings.seed == 2
    # PNDM: 4 UNet calls for 3 steps, both first calls belong to step 0
    assert plan.calls.call_steps == (0, 0, 1, 2) and plan.calls.first_calls == (0, 2, 3)
    timesteps = plan.calls.timesteps.tolist()
    assert plan.calls.step_timesteps == (timesteps[0], timesteps[2], timesteps[3])
    layers = plan_layers(pipe.unet, 16, 16)
    assert plan.layers == tuple(layers)
    assert plan.recorded == tuple(kept_layers(layers, "auto", 16))
    # a word swap edits every cross-attention layer; self-attention only up to the side
    side = self_injection_max_side(16, plan.settings.self_max_ratio)
    expected = {layer.name for layer in layers if layer.cross or layer.side <= side}
    assert set(plan.roles) == expected
    assert all(plan.roles[layer.name].record for layer in plan.recorded)
    assert plan.cond_rows == (2, 3) and plan.do_guidance
    assert plan.conventions == "p2p_teach" and plan.null_embeddings is None


def test_the_empty_edit_touches_only_recorded_layers(pipe, no_unet_calls):
    plan = plan_edit(pipe, SOURCE, TARGET, edit=NoEdit(), steps=2, record="none")
    assert plan.roles == {} and plan.recorded == ()


def test_a_plan_runs_twice_to_the_same_edit_as_edit_itself(pipe):
    kwargs = dict(steps=3, seed=5, record="none", progress=False)
    plan = plan_edit(pipe, SOURCE, TARGET, **kwargs)
    first, second = _denoise(pipe, plan), _denoise(pipe, plan)
    direct = edit(pipe, SOURCE, TARGET, **kwargs)
    assert torch.equal(first.latents, second.latents)
    assert torch.equal(first.latents, direct.latents)
    assert first.settings == direct.settings


def _unet_text_inputs(pipe):
    """A list that receives the encoder_hidden_states of every UNet call, and the hook."""
    seen = []

    def keep(module, args, kwargs):
        seen.append(kwargs["encoder_hidden_states"].clone())

    return seen, pipe.unet.register_forward_pre_hook(keep, with_kwargs=True)


def test_null_embeddings_replace_the_unconditional_rows_at_each_step(pipe):
    steps, width = 3, pipe.unet.config.cross_attention_dim
    null = torch.randn(steps, 77, width, generator=torch.Generator().manual_seed(0))
    seen, handle = _unet_text_inputs(pipe)
    try:
        result = edit(pipe, SOURCE, TARGET, steps=steps, null_embeddings=null, record="none",
                      progress=False)  # fmt: skip
        plain_seen_from = len(seen)
        edit(pipe, SOURCE, TARGET, steps=steps, record="none", progress=False)
    finally:
        handle.remove()
    call_steps = (0, 0, 1, 2)  # PNDM
    plain = seen[plain_seen_from]  # (4, 77, d): the empty prompt's rows, then the prompts'
    for call, step in enumerate(call_steps):
        batch = seen[call]  # (4, 77, d)
        assert torch.equal(batch[0], null[step]) and torch.equal(batch[1], null[step])
        assert torch.equal(batch[2:], plain[2:])  # the prompts' rows are untouched
    assert not torch.equal(plain[0], null[0])
    assert result.settings.null_embeddings_given


def test_null_embeddings_equal_to_the_empty_prompt_change_nothing(pipe):
    steps = 2
    _, uncond = pipe.encode_prompt([""], pipe.device, 1, True, None)  # (1, 77, d)
    null = uncond.expand(steps, -1, -1).clone()
    kwargs = dict(steps=steps, seed=3, record="none", progress=False)
    given = edit(pipe, SOURCE, TARGET, null_embeddings=null, **kwargs)
    plain = edit(pipe, SOURCE, TARGET, **kwargs)
    torch.testing.assert_close(given.latents, plain.latents, rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (dict(null_embeddings=torch.zeros(3, 77, 32)), ValueError, r"\(2, 77, 32\)"),
        (dict(null_embeddings="empty"), TypeError, "must be a torch.Tensor"),
        (dict(null_embeddings=torch.zeros(2, 77, 32), guidance=1.0), ValueError, "guidance > 1"),
        (dict(conventions="paper"), ValueError, "conventions='paper'"),
    ],
)
def test_bad_plans_are_refused_with_the_fix(pipe, no_unet_calls, kwargs, error, message):
    with pytest.raises(error, match=message):
        plan_edit(pipe, SOURCE, TARGET, steps=2, **kwargs)


def test_the_original_conventions_are_kept_in_the_plan_and_settings(pipe, no_unet_calls):
    plan = plan_edit(pipe, SOURCE, TARGET, steps=2, conventions="original")
    assert plan.conventions == "original" and plan.settings.conventions == "original"
