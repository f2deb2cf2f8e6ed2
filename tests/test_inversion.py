"""Null-text inversion: the DDIM moves, what invert() returns, what it leaves unchanged, saving."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from p2p_teach.inversion import (
    Inversion,
    as_pil,
    check_inversion,
    ddim_move,
    ddim_scheduler,
    encode_image,
    fit_to_side,
    invert,
    psnr,
    reconstruct,
)
from p2p_teach.models import load_pipeline
from p2p_teach.schedules import ScheduleError
from p2p_teach.shapes import data as shapes_data
from p2p_teach.tokens import PromptTooLongError

CAPTION = "a big red circle"


@pytest.fixture(scope="module")
def drawing() -> np.ndarray:
    """A (64, 64, 3) uint8 drawing the built-in model never saw (training: indices < 30,000)."""
    objects = [shapes_data.make_object(np.random.default_rng(1), "center", shape="circle",
                                       colour="red", size="big")]  # fmt: skip
    return shapes_data.build_sample(objects, "white").image


@pytest.fixture(scope="module")
def inverted(pipe, drawing) -> Inversion:
    return invert(pipe, drawing, CAPTION, steps=4, inner_steps=3, guidance=3.0, progress=False)


def test_ddim_move_down_is_the_schedulers_step_and_up_then_down_is_the_identity(pipe):
    scheduler = ddim_scheduler(pipe, 10)
    generator = torch.Generator().manual_seed(0)
    latent, noise = torch.randn(2, 1, 4, 8, 8, generator=generator)
    timestep = int(scheduler.timesteps[3])
    lower = int(scheduler.timesteps[4])
    alphas = scheduler.alphas_cumprod
    expected = scheduler.step(noise, timestep, latent).prev_sample
    down = ddim_move(latent, noise, alphas[timestep], alphas[lower])
    torch.testing.assert_close(down, expected, rtol=1e-5, atol=1e-5)
    back_up = ddim_move(down, noise, alphas[lower], alphas[timestep])
    torch.testing.assert_close(back_up, latent, rtol=1e-4, atol=1e-4)


def test_ddim_scheduler_follows_the_pipeline_config_without_touching_it(pipe):
    before = dict(pipe.scheduler.config)
    scheduler = ddim_scheduler(pipe, 7)
    assert type(scheduler).__name__ == "DDIMScheduler" and not scheduler.config.clip_sample
    assert scheduler.config.beta_schedule == before["beta_schedule"]
    assert scheduler.config.steps_offset == before["steps_offset"]
    assert len(scheduler.timesteps) == 7 and dict(pipe.scheduler.config) == before


def test_inversion_holds_the_trajectory_from_the_images_latent_to_z_T(pipe, inverted, drawing):
    assert inverted.trajectory.shape == (5, 4, 16, 16)
    torch.testing.assert_close(inverted.z_T, inverted.trajectory[-1:])
    with torch.no_grad():
        clean = encode_image(pipe, Image.fromarray(drawing))
    torch.testing.assert_close(inverted.trajectory[:1], clean)
    assert inverted.null_embeddings.shape == (4, 77, pipe.text_encoder.config.hidden_size)
    assert len(inverted.inner_losses) == len(inverted.null_text_errors) == 4
    assert all(1 <= len(losses) <= 3 for losses in inverted.inner_losses)
    assert inverted.timesteps == sorted(inverted.timesteps, reverse=True)
    assert inverted.settings["scheduler"] == "DDIMScheduler"


def test_null_text_lands_closer_to_the_trajectory_than_the_empty_prompt(inverted):
    assert sum(inverted.null_text_errors) < sum(inverted.ddim_errors)


def test_without_inner_steps_null_text_is_plain_ddim_inversion(pipe, drawing):
    plain = invert(pipe, drawing, CAPTION, steps=3, inner_steps=0, guidance=3.0, progress=False)
    _, empty = pipe.encode_prompt(CAPTION, "cpu", 1, True, "")
    for step in range(3):
        torch.testing.assert_close(plain.null_embeddings[step], empty[0])
    assert plain.null_text_errors == pytest.approx(plain.ddim_errors, rel=1e-4, abs=1e-9)
    assert all(losses == [] for losses in plain.inner_losses)


def test_reconstruct_replays_both_reconstructions(pipe, inverted):
    null_text = np.asarray(reconstruct(pipe, inverted), dtype=int)
    assert np.abs(null_text - np.asarray(inverted.reconstruction, dtype=int)).max() <= 1
    plain = np.asarray(reconstruct(pipe, inverted, null_text=False), dtype=int)
    assert np.abs(plain - np.asarray(inverted.ddim_reconstruction, dtype=int)).max() <= 1
    with pytest.raises(ValueError, match="optimised for guidance 3"):
        reconstruct(pipe, inverted, guidance=7.5)
    reconstruct(pipe, inverted, guidance=7.5, null_text=False)  # plain: any guidance


def test_the_pipeline_is_left_as_it_was(pipe, drawing):
    scheduler, processors = pipe.scheduler, dict(pipe.unet.attn_processors)
    config = dict(pipe.scheduler.config)
    pipe.unet.train()  # a training UNet goes back to training
    try:
        invert(pipe, drawing, CAPTION, steps=2, inner_steps=2, guidance=3.0, progress=False)
        assert pipe.unet.training and not pipe.vae.training
    finally:
        pipe.unet.eval()
    assert pipe.scheduler is scheduler and dict(pipe.scheduler.config) == config
    assert dict(pipe.unet.attn_processors) == processors
    parameters = [*pipe.unet.parameters(), *pipe.text_encoder.parameters()]
    assert all(parameter.grad is None for parameter in parameters)


def test_a_failing_callback_leaves_the_modes_restored(pipe, drawing):
    def stop(step):
        if step.phase == "null-text":
            raise KeyboardInterrupt

    pipe.text_encoder.train()
    try:
        with pytest.raises(KeyboardInterrupt):
            invert(pipe, drawing, CAPTION, steps=2, guidance=3.0, progress=False, callback=stop)
        assert pipe.text_encoder.training and not pipe.unet.training
    finally:
        pipe.text_encoder.eval()


def test_callback_sees_both_phases_step_by_step(pipe, drawing):
    seen = []
    invert(pipe, drawing, CAPTION, steps=3, inner_steps=2, guidance=3.0, progress=False,
           callback=seen.append)  # fmt: skip
    assert [(step.phase, step.step) for step in seen] == [
        ("ddim", 0), ("ddim", 1), ("ddim", 2), ("null-text", 0), ("null-text", 1),
        ("null-text", 2),
    ]  # fmt: skip
    last = seen[-1]
    assert last.latents.shape == (2, 4, 16, 16) and len(last.preview()) == 2
    assert seen[0].preview() is None and seen[0].trajectory_preview().size == (64, 64)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"caption": ""}, ValueError, "caption"),
        ({"caption": "word " * 80}, PromptTooLongError, None),
        ({"steps": 0}, ScheduleError, "steps=0"),
        ({"inner_steps": -1}, ValueError, "inner_steps=-1"),
        ({"inner_steps": 2.5}, ValueError, "inner_steps=2.5"),
        ({"guidance": -1.0}, ValueError, "guidance=-1"),
        ({"learning_rate": 0.0}, ValueError, "learning_rate"),
        ({"image": "photo.png"}, TypeError, "PIL.Image.open"),
        ({"image": [[1, 2]]}, TypeError, "PIL image"),
        ({"image": np.zeros((8, 8, 5))}, ValueError, "shape"),
        ({"image": np.full((8, 8, 3), np.nan)}, ValueError, "NaN"),
        ({"callback": 3}, TypeError, "callable"),
    ],
)
def test_bad_input_is_refused_with_the_fix(pipe, drawing, kwargs, error, match):
    arguments = {"image": drawing, "caption": CAPTION, "steps": 2, "progress": False, **kwargs}
    image, caption = arguments.pop("image"), arguments.pop("caption")
    with pytest.raises(error, match=match):
        invert(pipe, image, caption, **arguments)
    with pytest.raises(TypeError, match="StableDiffusionPipeline"):
        invert(object(), drawing, CAPTION)


def test_images_are_read_in_every_form_and_resized_with_a_message(capsys, drawing):
    expected = np.asarray(Image.fromarray(drawing))
    as_float = drawing.astype(np.float32) / 255
    as_tensor = torch.from_numpy(as_float).permute(2, 0, 1)  # (3, H, W)
    with_alpha = np.concatenate([drawing, np.full((64, 64, 1), 255, np.uint8)], axis=-1)
    for form in (Image.fromarray(drawing), drawing, as_float, as_tensor, with_alpha):
        assert np.array_equal(np.asarray(as_pil(form)), expected)
    grey = as_pil(np.full((5, 5), 0.5))
    assert grey.mode == "RGB" and np.asarray(grey)[0, 0].tolist() == [128, 128, 128]
    assert fit_to_side(Image.fromarray(drawing), 64) is not None
    assert capsys.readouterr().out == ""
    wide = Image.new("RGB", (200, 100), (10, 20, 30))
    wide.paste((250, 0, 0), (0, 0, 50, 100))  # a red band only left of the centre square
    fitted = fit_to_side(wide, 64)
    assert fitted.size == (64, 64) and np.asarray(fitted)[:, :, 0].max() <= 11
    assert "200×100, centre-cropped to 100×100, resized to 64×64" in capsys.readouterr().out


def test_psnr_is_ten_log_of_four_over_the_mse():
    reference = np.zeros((4, 4, 3), np.uint8)
    image = reference.copy()
    image[0, 0, 0] = 255  # one value off by the whole range: 2 in [-1, 1]
    mse = 2.0**2 / reference.size
    assert psnr(reference, image) == pytest.approx(10 * math.log10(4 / mse))
    with pytest.raises(ValueError, match="cannot be compared"):
        psnr(reference, np.zeros((5, 5, 3), np.uint8))


def test_save_and_load_round_trip_atomically(inverted, tmp_path):
    folder = inverted.save(tmp_path / "inv")
    loaded = Inversion.load(folder)
    for name in ("z_T", "null_embeddings", "trajectory"):
        torch.testing.assert_close(getattr(loaded, name), getattr(inverted, name))
    assert loaded.settings == inverted.settings and loaded.caption == CAPTION
    assert loaded.inner_losses == inverted.inner_losses
    assert loaded.timesteps == inverted.timesteps
    for name in ("image", "reconstruction", "ddim_reconstruction"):
        assert np.array_equal(
            np.asarray(getattr(loaded, name)), np.asarray(getattr(inverted, name))
        )
    inverted.save(folder)  # replacing a saved inversion is fine
    assert sorted(p.name for p in tmp_path.iterdir()) == ["inv"]  # no temporary left
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not part of a saved result"):
        inverted.save(tmp_path / "other")
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"
    with pytest.raises(FileNotFoundError, match="not a saved inversion"):
        Inversion.load(tmp_path / "other")


def test_check_inversion_names_the_mismatch(pipe, inverted):
    check_inversion(pipe, inverted, steps=4, guidance=3.0)
    with pytest.raises(ValueError, match="steps=5, but the inversion has 4"):
        check_inversion(pipe, inverted, steps=5)
    with pytest.raises(ValueError, match="optimised for guidance 3"):
        check_inversion(pipe, inverted, guidance=2.0)
    with pytest.raises(TypeError, match="must be an Inversion"):
        check_inversion(pipe, "inv")


def test_null_text_inversion_beats_plain_ddim_on_the_builtin_model(drawing):
    builtin = load_pipeline("builtin", verbose=False)
    result = invert(builtin, drawing, CAPTION, steps=10, guidance=7.5, progress=False)
    with pytest.raises(ValueError, match="another model"):
        check_inversion(load_pipeline("tiny-random", verbose=False), result)
    assert result.psnr > 28 and result.psnr > result.ddim_psnr + 4


def test_edit_arguments_start_from_the_inversion_and_refuse_conflicts(pipe, inverted):
    given = inverted.edit_arguments(pipe)
    assert given["steps"] == 4 and given["guidance"] == 3.0
    assert given["latents"] is inverted.z_T and given["null_embeddings"] is inverted.null_embeddings
    scheduler = given["scheduler"]
    assert type(scheduler).__name__ == "DDIMScheduler"
    assert [int(t) for t in scheduler.timesteps] == inverted.timesteps
    with pytest.raises(ValueError, match="drop latents="):
        inverted.edit_arguments(pipe, latents=inverted.z_T)
    with pytest.raises(ValueError, match="drop null_embeddings="):
        inverted.edit_arguments(pipe, null_embeddings=inverted.null_embeddings)
    with pytest.raises(ValueError, match="steps=9, but the inversion has 4"):
        inverted.edit_arguments(pipe, steps=9)


def test_edit_from_an_inversion_reconstructs_the_source_and_refuses_mismatches(pipe, inverted):
    from p2p_teach.engine import edit

    result = edit(pipe, CAPTION, "a big blue circle", inversion=inverted, progress=False)
    source = np.asarray(result.source_image, dtype=int)
    assert np.abs(source - np.asarray(inverted.reconstruction, dtype=int)).max() <= 2
    settings = result.settings
    assert settings["steps"] == 4 and settings["guidance"] == 3.0
    assert settings["scheduler"] == "DDIMScheduler" and settings["latents_given"]
    assert settings["null_embeddings_given"]
    assert type(pipe.scheduler).__name__ == "PNDMScheduler"  # the pipeline's is not used
    with pytest.raises(ValueError, match="steps=25, but the inversion has 4"):
        edit(pipe, CAPTION, "a big blue circle", inversion=inverted, steps=25)
    with pytest.raises(ValueError, match="optimised for guidance 3"):
        edit(pipe, CAPTION, "a big blue circle", inversion=inverted, guidance=7.5)
    with pytest.raises(ValueError, match="inverted under the caption"):
        edit(pipe, "a big green circle", "a big blue circle", inversion=inverted)
    with pytest.raises(TypeError, match="must be an Inversion"):
        edit(pipe, CAPTION, "a big blue circle", inversion="inverted.safetensors")


def test_a_saved_inversion_edits_as_the_original(pipe, inverted, tmp_path):
    from p2p_teach.engine import edit

    loaded = Inversion.load(inverted.save(tmp_path / "inv"))
    kwargs = {"progress": False, "record": "none"}
    first = edit(pipe, CAPTION, "a big blue circle", inversion=inverted, **kwargs)
    second = edit(pipe, CAPTION, "a big blue circle", inversion=loaded, **kwargs)
    torch.testing.assert_close(first.latents, second.latents)


def _unet_text_inputs(pipe, run) -> list[torch.Tensor]:
    """The encoder_hidden_states of every UNet call while ``run()`` runs (a test-only hook)."""
    seen = []
    handle = pipe.unet.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(kwargs["encoder_hidden_states"].clone()),
        with_kwargs=True,
    )
    try:
        run()
    finally:
        handle.remove()
    return seen


@pytest.mark.parametrize("share", [0.0, 0.5, 1.0])
def test_the_target_takes_the_null_embeddings_in_its_window_only(pipe, inverted, share):
    from p2p_teach.engine import edit

    result = None

    def run():
        nonlocal result
        result = edit(pipe, CAPTION, "a big blue circle", inversion=inverted, progress=False,
                      record="none", target_null_steps=share)  # fmt: skip

    texts = _unet_text_inputs(pipe, run)  # one (4, 77, d) batch per step
    assert result.settings.target_null_steps == share and len(texts) == inverted.steps
    with torch.no_grad():
        empty = pipe.encode_prompt("", pipe.device, 1, False)[0][0]  # (77, d)
    stop = math.floor(share * inverted.steps)
    for step, text in enumerate(texts):  # rows: uncond source, uncond target, cond ×2
        torch.testing.assert_close(text[0], inverted.null_embeddings[step])  # the source: always
        expected = inverted.null_embeddings[step] if step < stop else empty
        torch.testing.assert_close(text[1], expected)


def test_the_target_null_window_follows_the_model_and_is_checked(pipe, inverted):
    from p2p_teach.defaults import SD_V1, SHAPES
    from p2p_teach.engine import edit, plan_edit

    assert (SD_V1.target_null_steps, SHAPES.target_null_steps) == (1.0, 0.2)
    given = inverted.edit_arguments(pipe)
    plan = plan_edit(pipe, CAPTION, "a big blue circle", steps=4, guidance=3.0,
                     latents=given["latents"],
                     null_embeddings=given["null_embeddings"])  # fmt: skip
    assert plan.settings.target_null_steps == 1.0 and plan.target_null_stop == 4  # SD v1's
    plain = plan_edit(pipe, CAPTION, "a big blue circle", steps=4, target_null_steps=0.5)
    assert plain.settings.target_null_steps is None  # no null embeddings: nothing to window
    for bad in (1.5, -0.1, True, "0.2"):
        with pytest.raises(ValueError, match=r"target_null_steps=.*in \[0, 1\]\. Fix: e\.g\. 0\.2"):
            edit(pipe, CAPTION, "a big blue circle", inversion=inverted, target_null_steps=bad)
