"""The edit widgets without a browser: set values, press buttons, check figures and state."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from p2p_teach.engine import edit
from p2p_teach.figures.images import image_png
from p2p_teach.models import load_pipeline
from p2p_teach.timeline import mean_word_map
from p2p_teach.widgets import (
    AttentionTimeline,
    EditRunner,
    InjectionSweep,
    LocalBlendPanel,
    RefinePanel,
    ReweightPanel,
)

SOURCE = "photo of a cat riding on a bicycle"
TARGET = "photo of a cat riding on a motorcycle"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png(image_widget) -> bytes:
    return bytes(image_widget.value)


@pytest.fixture(scope="module")
def swap(pipe):
    return edit(pipe, SOURCE, TARGET, steps=3, seed=1, progress=False)


# -------------------------------------------------------------------- edit runner


def test_runner_shows_every_step_live_then_the_result(pipe):
    runner = EditRunner(pipe, SOURCE, TARGET, steps=3, threaded=False)
    seen = []  # what the view showed at each update of the target preview
    bar = []  # at each move of the progress bar: its step, and the pictures' step

    def on_target_image(change):
        seen.append((runner.progress.value, runner.progress.description, runner.running))

    def on_progress(change):
        if change["new"]:
            pictures = (len(runner.steps_seen), runner.maps_picture is not None)
            bar.append((change["new"], runner.progress.description, *pictures))

    runner.target_image.observe(on_target_image, names="value")
    runner.progress.observe(on_progress, names="value")
    assert runner.save_button.disabled and png(runner.source_image) == b""
    runner.run_button.click()

    assert runner.status.value.startswith("Done"), runner.status.value
    assert runner.steps_seen == [0, 1, 2]
    # one live preview per step while running, shown before the bar moves to that step (one
    # step counter: the bar never runs ahead of the pictures), then the final image
    assert seen[:3] == [(0, "step 0/3", True), (1, "step 1/3", True), (2, "step 2/3", True)]
    assert bar == [(1, "step 1/3", 1, True), (2, "step 2/3", 2, True), (3, "step 3/3", 3, True)]
    assert len(seen) == 4 and seen[3][:2] == (3, "step 3/3")
    assert png(runner.target_image) == image_png(runner.result.edited_image, min_size=192)
    assert runner.progress.value == runner.progress.max == 3
    assert runner.progress.bar_style == "success"
    assert png(runner.maps_image).startswith(PNG_MAGIC)
    assert runner.maps_picture is not None and runner.maps_picture.height > 96
    assert png(runner.source_image).startswith(PNG_MAGIC)
    titles = [axis.get_title() for axis in runner.result_figure.axes]
    assert titles == [SOURCE, TARGET]
    assert not runner.save_button.disabled and not runner.running
    assert "p2p-running" not in runner._dom_classes


def test_runner_settings_follow_the_controls(pipe):
    runner = EditRunner(pipe, threaded=False)
    runner.source_text.value, runner.target_text.value = "a red cube", "a blue cube"
    runner.seed_input.value, runner.steps_slider.value = 7, 2
    runner.guidance_slider.value = 3.0
    runner.cross_slider.value, runner.self_slider.value = 0.5, 0.0
    runner.edit_dropdown.value = "replace"
    assert runner.edit_arguments() == {
        "source_prompt": "a red cube", "target_prompt": "a blue cube", "edit": "replace",
        "seed": 7, "steps": 2, "guidance": 3.0, "cross_steps": 0.5, "self_steps": 0.0,
    }  # fmt: skip
    result = runner.run()
    assert result is not None and result is runner.result
    assert result.settings.seed == 7 and result.settings.cross_steps["default"] == (0, 0.5)
    # the result is the engine's own for the same settings
    direct = edit(pipe, "a red cube", "a blue cube", seed=7, steps=2, guidance=3.0,
                  cross_steps=0.5, self_steps=0.0, progress=False)  # fmt: skip
    assert np.array_equal(np.asarray(result.edited_image), np.asarray(direct.edited_image))


def test_a_second_run_while_one_runs_is_refused_politely(pipe):
    runner = EditRunner(pipe, SOURCE, TARGET, steps=2, threaded=False)
    answers = []
    original = runner._on_step

    def press_again_during_the_run(info):
        original(info)
        answers.append(runner.request_run())  # the user presses Run mid-run

    runner._on_step = press_again_during_the_run
    runner.run_button.click()
    assert answers == [False, False] and runner.refusals == 2
    assert runner.steps_seen == [0, 1]  # one run only, not restarted
    assert runner.status.value.startswith("Done")


def test_threaded_run_refuses_a_second_press_then_finishes(pipe):
    runner = EditRunner(pipe, SOURCE, TARGET, steps=2, threaded=True)
    assert runner.request_run() is True
    assert runner.running and runner.run_button.disabled
    assert "p2p-running" in runner._dom_classes
    runner.run_button.click()  # pressed again at once: refused, nothing else happens
    assert runner.refusals == 1
    assert runner.status.value.startswith("An edit is already running")
    result = runner.wait(timeout=120)
    assert result is not None and not runner.running and not runner.run_button.disabled
    assert runner.steps_seen == [0, 1]
    assert runner.status.value.startswith("Done")


def test_bad_input_is_reported_in_the_status_and_the_runner_recovers(pipe):
    runner = EditRunner(pipe, SOURCE, "a bicycle", steps=2, threaded=False)
    assert runner.run() is None
    assert runner.error.startswith("WordCountMismatchError")
    assert runner.status.value.startswith("Could not run the edit.")
    assert runner.progress.bar_style == "danger"
    assert not runner.running and not runner.run_button.disabled
    assert runner.save_button.disabled  # nothing to save
    runner.target_text.value = "a bicycle"
    runner.edit_dropdown.value = "refine"
    assert runner.run() is not None


def test_save_writes_the_result(pipe, tmp_path):
    runner = EditRunner(pipe, SOURCE, TARGET, steps=2, threaded=False)
    assert runner.save(tmp_path / "early") is None
    assert runner.status.value.startswith("Nothing to save")
    runner.run()
    runner.save_folder.value = str(tmp_path / "saved")
    runner.save_button.click()
    folder = tmp_path / "saved"
    assert runner.status.value.startswith(f"Saved to {folder}")
    assert {"source.png", "edited.png", "settings.json", "history.safetensors"} <= {
        path.name for path in folder.iterdir()
    }
    assert json.loads((folder / "settings.json").read_text())["target_prompt"] == TARGET


# -------------------------------------------------------------------- attention timeline


def test_timeline_starts_on_the_swapped_word_with_a_shared_scale(swap):
    timeline = AttentionTimeline(swap)
    assert timeline.choice.label == "bicycle → motorcycle"
    labels = [label for label, _ in timeline.slot_dropdown.options]
    assert {"BOS", "EOS", "padding"} <= set(labels)
    source_maps = swap.history.word_maps("bicycle", "source", resolution=16)
    target_maps = swap.history.word_maps("motorcycle", "target", resolution=16)
    expected = max(float(source_maps.max()), float(target_maps.max()))
    assert timeline.vmax == pytest.approx(expected)
    bare = [axis.images[0] for axis in timeline.figure.axes[2:4]]
    assert [image.norm.vmax for image in bare] == pytest.approx([expected, expected])
    assert png(timeline.timeline_image).startswith(PNG_MAGIC)
    assert "p2p-timeline-slider" in timeline.step_slider._dom_classes


def test_timeline_slider_and_play_move_through_steps_with_a_cache(swap):
    timeline = AttentionTimeline(swap)
    first = png(timeline.timeline_image)
    timeline.step_slider.value = 2
    assert timeline.step_label.value.startswith("step <b>3</b> of 3")
    assert png(timeline.timeline_image) != first
    # the same scale at every step of one selection
    assert all(axis.images[0].norm.vmax == timeline.vmax for axis in timeline.figure.axes[2:4])
    timeline.play.value = 1  # the Play control drives the slider
    assert timeline.step_slider.value == 1
    renders = timeline.renders
    timeline.step_slider.value = 0
    timeline.step_slider.value = 2
    assert timeline.renders == renders  # drawn before: read from the cache
    assert png(timeline.timeline_image) != first


def test_timeline_word_and_layer_selectors_change_the_maps(swap):
    timeline = AttentionTimeline(swap, slot="BOS")
    bos_vmax = timeline.vmax
    torch.testing.assert_close(timeline.current_maps[0], swap.history.slot_maps(0, "source",
                               resolution=16))  # fmt: skip
    timeline.slot_dropdown.value = [c.label for c in timeline.choices].index("padding")
    assert timeline.vmax != bos_vmax
    eight_up = [option.label for option in timeline.layer_options].index("8×8 up")
    timeline.layer_dropdown.value = eight_up
    assert timeline.current_maps[0].shape == (3, 8, 8)
    assert "8×8 up" in timeline.figure._suptitle.get_text()
    with pytest.raises(ValueError, match="not one of"):
        AttentionTimeline(swap, slot="dog")


def test_timeline_needs_a_history_and_handles_new_words(pipe):
    no_history = edit(pipe, "a cat", "a dog", steps=1, record="none", progress=False)
    with pytest.raises(ValueError, match="no attention history"):
        AttentionTimeline(no_history)
    refined = edit(pipe, "a cat", "a fluffy cat", edit="refine", steps=2, progress=False)
    timeline = AttentionTimeline(refined)
    assert timeline.choice.label == "(new) fluffy"
    assert timeline.status.value.endswith("not in the source prompt (shown empty)")
    assert float(timeline.figure.axes[2].images[0].get_array().max()) == 0.0


# -------------------------------------------------------------------- injection sweep


def test_sweep_widget_computes_once_and_sliders_read_the_cache(pipe):
    sweep = InjectionSweep(pipe, SOURCE, [TARGET, "photo of a cat riding on a train"],
                           fractions=(0.0, 0.5, 1.0), steps=1, threaded=False)  # fmt: skip
    assert sweep.status.value.startswith("Not computed yet")
    assert png(sweep.grid_image) == b""
    assert sweep.grid_image.layout.display == "none"  # hidden: no broken-image icon
    sweep.compute_button.click()
    assert sweep.grid_image.layout.display is None
    assert sweep.cache.misses == 3 and len(sweep.cache) == 3
    assert sweep.status.value.startswith("Done: 3 edits computed, 0 from the cache")
    assert sweep.sweeps[(TARGET, "cross")].fixed == 0.0  # injection_sweep's own default
    titles = [axis.get_title() for axis in sweep.grid_figure.axes]
    assert titles == ["source", "0 (w/o injection)", "0.5", "1 (full injection)"]
    scores = sweep.scores[(TARGET, "cross")]  # no masks on this model: layout similarity
    assert not scores.bounded and set(scores.curves["layout similarity to the source"]) == {
        0.0, 0.5, 1.0}  # fmt: skip
    assert "also rises when the edit fails" in scores.note

    before = png(sweep.cell_image)
    sweep.fraction_slider.value = 0.0  # moving the slider never runs an edit
    assert sweep.cache.misses == 3
    assert png(sweep.cell_image) != before
    assert "(from the cache)" in sweep.status.value

    sweep.compute_button.click()  # computed already: nothing runs
    assert sweep.cache.misses == 3
    assert sweep.status.value.startswith("Done: 0 edits computed, 3 from the cache")

    sweep.vary_buttons.value = "self"
    assert sweep.status.value.startswith("Not computed yet")
    sweep.target_dropdown.value = "photo of a cat riding on a train"
    result = sweep.compute()
    assert result is not None and result.varied == "self" and result.fixed == 0.8
    assert sweep.cache.misses == 6
    sweep.vary_buttons.value = "cross"  # back to a cached row: shown without computing
    sweep.target_dropdown.value = TARGET
    assert sweep.cache.misses == 6 and png(sweep.grid_image).startswith(PNG_MAGIC)
    axis = sweep.scores_figure.axes[0]  # the row on show only
    curves = [line.get_label() for line in axis.get_lines() if not line.get_label().startswith("_")]
    assert curves == ["layout similarity to the source"]
    assert axis.get_title() == "cross-attention varied, → …a cat riding on a motorcycle"
    assert "layout similarity to the source" in sweep.status.value


def test_sweep_widget_refuses_while_computing(pipe):
    sweep = InjectionSweep(pipe, SOURCE, [TARGET], fractions=(0.0, 1.0), steps=1, threaded=True)
    assert sweep.request_compute() is True
    sweep.compute_button.click()
    assert sweep.refusals == 1 and sweep.status.value.startswith("A sweep is already computing")
    sweep.wait(timeout=120)
    assert not sweep.running and (TARGET, "cross") in sweep.sweeps


# -------------------------------------------------------------------- panels


def test_reweight_panel_scales_the_word_attention(pipe):
    panel = ReweightPanel(pipe, SOURCE, word="bicycle", weight=2.5, cross=1.0, steps=2,
                          threaded=False)  # fmt: skip
    panel.prompt_text.value = "a red house"  # the word list follows the prompt
    assert panel.word_dropdown.options == ("a", "red", "house")
    panel.prompt_text.value = SOURCE
    panel.word_dropdown.value = "bicycle"
    panel.run_button.click()
    assert panel.error is None and panel.status.value.startswith("Done")
    assert panel.result.settings.edit == {"kind": "reweight", "weights": {"bicycle": 2.5},
                                             "base": None}  # fmt: skip
    history = panel.result.history
    source = history.word_maps("bicycle", "source")
    target = history.word_maps("bicycle", "target")
    # injected at every step: the target's map of the word is the source's, scaled
    torch.testing.assert_close(target, 2.5 * source, rtol=2e-2, atol=1e-3)
    assert [a.get_title() for a in panel.result_figure.axes] == ["plain (weight 1)",
                                                                 "'bicycle' × 2.5"]  # fmt: skip
    assert png(panel.result_image).startswith(PNG_MAGIC)
    # the maps panel: the word's map averaged over the steps, source and target on one scale
    axes = [axis for axis in panel.maps_figure.axes if axis.images]
    assert len(axes) == 2 and axes[0].get_ylabel() == "bicycle (mean over steps)"
    shown = [np.asarray(axis.images[0].get_array()) for axis in axes]
    expected = [mean_word_map(history, "bicycle", side).numpy() for side in ("source", "target")]
    for picture, mean_map in zip(shown, expected):
        np.testing.assert_allclose(picture, mean_map, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(shown[1], 2.5 * shown[0], rtol=2e-2, atol=1e-3)
    clims = {axis.images[0].get_clim() for axis in axes}
    assert len(clims) == 1 and clims.pop()[1] == pytest.approx(float(shown[1].max()), rel=1e-5)


def test_refine_panel_shows_the_alignment(pipe):
    panel = RefinePanel(pipe, "a cat", "a fluffy cat", steps=2, threaded=False)
    panel.run()
    assert panel.result.settings.kind == "refine"
    assert "fluffy" in panel.alignment_view.value
    assert panel.status.value.startswith("Done: 1 new token(s)")


def test_local_blend_panel_keeps_the_mask_and_reports_bad_words(pipe):
    # the trained built-in model: its colour and shape words attend to the object, so the mask
    # covers part of the latent (random weights attend nearly evenly: the mask would be full)
    shapes = load_pipeline("shapes", verbose=False)
    blend = LocalBlendPanel(shapes, "a big red circle", "a big blue circle", "red circle",
                            "blue circle", threshold=0.3, steps=6, threaded=False)  # fmt: skip
    blend.run()
    assert blend.error is None
    side = shapes.unet.config.sample_size
    assert blend.mask.shape == (side, side)
    assert set(blend.mask.unique().tolist()) == {0.0, 1.0}  # a binary mask, neither empty nor full
    assert 0.0 < float(blend.mask.mean()) < 1.0
    assert "% of the latent may change" in blend.status.value

    panel = LocalBlendPanel(pipe, SOURCE, TARGET, "bicycle", "motorcycle", threshold=0.3,
                            steps=3, threaded=False)  # fmt: skip
    panel.run()
    assert panel.error is None
    assert set(panel.mask.unique().tolist()) <= {0.0, 1.0}
    assert len(panel.result_figure.axes) == 3
    assert panel.result.settings.blend["threshold"] == 0.3
    panel.source_word_text.value = "dog"
    assert panel.run() is None
    assert "dog" in panel.status.value and "bicycle" in panel.status.value  # lists the words
    assert not panel.running
