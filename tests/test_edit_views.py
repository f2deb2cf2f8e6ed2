"""Data and figures behind the edit widgets: timeline choices and maps, the sweep, its figures."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.colors import to_rgb
from PIL import Image

from p2p_teach.engine import edit
from p2p_teach.figures.attention import pick_steps, word_steps_figure
from p2p_teach.figures.images import figure_png, image_png, side_by_side
from p2p_teach.figures.sweep import (
    fraction_label,
    fractions_from,
    layout_survival_figure,
    sweep_grid_figure,
)
from p2p_teach.figures.timeline import (
    MAP_CMAP,
    concentration_figure,
    maps_mosaic,
    overlay_image,
    shared_vmax,
    step_lines_figure,
    step_maps_figure,
    timeline_figure,
    upsample_map,
)
from p2p_teach.settings import EditSettings
from p2p_teach.sweep import SweepCache, injection_sweep, layout_survival
from p2p_teach.timeline import (
    PreviewRecorder,
    algorithm_trace,
    changed_choices,
    choice_maps,
    concentration_by_word,
    early_late_means,
    finest_side,
    injected_steps,
    layer_choices,
    mean_word_map,
    slot_choices,
    step_word_maps,
    steps_text,
    sweep_windows,
)
from p2p_teach.tokens import tokenize

SOURCE = "photo of a cat riding on a bicycle"
TARGET = "photo of a cat riding on a motorcycle"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def swap(pipe):
    return edit(pipe, SOURCE, TARGET, steps=3, seed=1, progress=False)


@pytest.fixture(scope="module")
def refine(pipe):
    return edit(pipe, "a cat", "a fluffy cat", edit="refine", steps=2, seed=1, progress=False)


# -------------------------------------------------------------------- timeline data


def test_slot_choices_pair_words_and_offer_bos_eos_padding():
    choices = slot_choices(tokenize(SOURCE), tokenize(TARGET))
    labels = [choice.label for choice in choices]
    assert labels == [
        "photo", "of", "a", "cat", "riding", "on", "a", "bicycle → motorcycle",
        "BOS", "EOS", "padding",
    ]  # fmt: skip
    swapped = choices[7]
    assert swapped.changed and swapped.source == ("word", 7) and swapped.target == ("word", 7)
    assert [c.label for c in changed_choices(tokenize(SOURCE), tokenize(TARGET))] == [
        "bicycle → motorcycle"
    ]
    eos = choices[9]
    assert eos.source == ("slot", 9) and eos.target == ("slot", 9)


def test_slot_choices_for_added_and_removed_words():
    choices = slot_choices(tokenize("a big cat"), tokenize("a very fluffy cat"))
    by_label = {choice.label: choice for choice in choices}
    assert by_label["(new) fluffy"].source is None
    assert by_label["(new) fluffy"].target == ("word", 2)
    assert by_label["(removed) big"].target is None
    assert by_label["cat"].source == ("word", 2) and by_label["cat"].target == ("word", 3)
    assert not by_label["cat"].changed
    # the same number of words pairs them position by position: a swap
    assert "big → fluffy" in [c.label for c in slot_choices(tokenize("a big cat"),
                                                            tokenize("a fluffy cat"))]
    # EOS sits at each prompt's own slot
    choices = slot_choices(tokenize("a cat"), tokenize("a very fluffy cat"))
    eos = next(c for c in choices if c.label == "EOS")
    assert eos.source == ("slot", 3) and eos.target == ("slot", 5)
    # nothing changed: every word is offered
    same = changed_choices(tokenize("a cat"), tokenize("a cat"))
    assert [c.label for c in same] == ["a", "cat"]


def test_layer_choices_follow_the_history(swap):
    labels = [choice.label for choice in layer_choices(swap.history)]
    assert labels[0] == "16×16 (down + up)"
    assert "8×8 up" in labels and "4×4 (mid)" in labels
    assert labels[-1].startswith("all kept layers")
    finest = layer_choices(swap.history)[0]
    assert finest.resolution == 16 and finest.place is None


def test_choice_maps_match_the_history_and_share_a_size(swap):
    history = swap.history
    choice = changed_choices(history.source, history.target)[0]
    eight_up = next(c for c in layer_choices(history) if c.label == "8×8 up")
    source_maps, target_maps = choice_maps(history, choice, eight_up)
    assert source_maps.shape == target_maps.shape == (3, 8, 8)
    expected = history.word_maps("motorcycle", "target", resolution=8, place="up")
    torch.testing.assert_close(target_maps, expected)
    padding = next(c for c in slot_choices(history.source, history.target) if c.kind == "padding")
    pad_source, _ = choice_maps(history, padding, layer_choices(history)[0])
    # 67 padding slots hold most of the mass of a 10-slot prompt's attention
    assert pad_source.shape == (3, 16, 16) and float(pad_source.mean()) > 0.3


def test_choice_maps_of_a_new_word_have_no_source_side(refine):
    choice = next(c for c in slot_choices(refine.history.source, refine.history.target)
                  if c.label == "(new) fluffy")  # fmt: skip
    source_maps, target_maps = choice_maps(refine.history, choice, layer_choices(refine.history)[0])
    assert source_maps is None and target_maps.shape[0] == 2


def test_step_word_maps_takes_one_step(swap):
    pairs = step_word_maps(swap.history, 1)
    assert list(pairs) == ["bicycle → motorcycle"]
    source_map, target_map = pairs["bicycle → motorcycle"]
    torch.testing.assert_close(
        source_map, swap.history.word_maps("bicycle", "source", resolution=16)[1]
    )
    assert target_map.shape == (16, 16)


def test_concentration_by_word_gives_one_value_per_step_and_word(swap):
    values = concentration_by_word(swap.history, "source")
    assert list(values) == ["photo", "of", "a", "cat", "riding", "on", "a (2)", "bicycle"]
    assert all(v.shape == (3,) for v in values.values())
    assert all(bool(((v >= 0) & (v <= 1)).all()) for v in values.values())
    top = concentration_by_word(swap.history, "target", measure="top10")
    assert all(bool((v >= 0.099).all()) for v in top.values())  # never below uniform's share
    with pytest.raises(ValueError, match="measure"):
        concentration_by_word(swap.history, measure="gini")  # type: ignore[arg-type]


def test_early_late_means_average_the_first_and_last_quarter():
    rising = [float(k) for k in range(20)]  # steps 1-5 hold 0..4, steps 16-20 hold 15..19
    means = early_late_means({"rising": rising, "flat": torch.full((8,), 0.5)})
    assert means["rising"] == pytest.approx((sum(range(5)) / 5, sum(range(15, 20)) / 5))
    assert means["flat"] == pytest.approx((0.5, 0.5))
    # odd lengths: both parts have floor(share · steps) values, at least one
    assert early_late_means({"x": [1.0, 2.0, 3.0]})["x"] == pytest.approx((1.0, 3.0))
    assert early_late_means({"x": [1.0, 2.0, 3.0, 5.0]}, share=0.5)["x"] == pytest.approx(
        (1.5, 4.0)
    )
    with pytest.raises(ValueError, match="share"):
        early_late_means({"x": [1.0]}, share=0.0)
    with pytest.raises(ValueError, match="no values"):
        early_late_means({"x": []})


def test_early_late_means_of_a_run_match_the_concentrations(swap):
    values = concentration_by_word(swap.history, "source")
    means = early_late_means(values, share=1 / 3)  # 3 steps: the first and the last
    for word, series in values.items():
        assert means[word] == pytest.approx((float(series[0]), float(series[-1])))


def test_mean_word_map_averages_the_finest_maps_over_the_steps(swap):
    history = swap.history
    assert finest_side(history) == 16
    steps = history.steps_recorded
    per_step = [history.word_maps("bicycle", "source", steps=k, resolution=16)
                for k in range(steps)]  # fmt: skip
    total = sum(per_step)  # of (16, 16) maps
    mean = mean_word_map(history, "bicycle", "source")
    assert mean.shape == (16, 16)
    torch.testing.assert_close(mean, total / steps)
    coarse = mean_word_map(history, "bicycle", "source", resolution=8)
    assert coarse.shape == (8, 8)


def settings_with(**fields) -> EditSettings:
    """The settings saved in tests/data, with some fields changed."""
    saved = json.loads((Path(__file__).parent / "data" / "settings_v0_1_0.json").read_text())
    return replace(EditSettings.from_json(saved), **fields)


def test_injected_steps_read_the_settings_windows():
    settings = settings_with(
        steps=20, cross_step_ranges={"default": (0, 5), "train": (0, 1)}, self_step_range=(0, 0)
    )
    assert injected_steps(settings) == range(0, 5)
    assert injected_steps(settings, "cross", "train") == range(0, 1)
    assert injected_steps(settings, "self") == range(0, 0)
    with pytest.raises(KeyError, match="default, train"):
        injected_steps(settings, "cross", "bicycle")
    assert steps_text(range(0, 5)) == "steps 1–5"
    assert steps_text(range(2, 3)) == "step 3"
    assert steps_text(range(0, 0)) == "no step"


# -------------------------------------------------------------------- the sweep


def test_sweep_caches_cells_and_its_ends_mean_what_the_slide_says(pipe):
    cache = SweepCache()
    sweep = injection_sweep(pipe, SOURCE, TARGET, fractions=(1.0, 0.0), steps=2, seed=3,
                            cache=cache)  # fmt: skip
    assert sweep.fractions == [0.0, 1.0] and cache.misses == 2 and len(cache) == 2
    # fraction 0 with no self-injection: the target is generated freely from the same noise
    plain = edit(pipe, SOURCE, TARGET, edit="none", steps=2, seed=3, progress=False,
                 record="none")  # as the sweep's cells
    assert np.array_equal(np.asarray(sweep.cells[0.0].edited_image),
                          np.asarray(plain.edited_image))  # fmt: skip
    assert sweep.cells[1.0].settings.cross_step_ranges["default"] == (0, 2)
    # the same sweep again runs nothing
    again = injection_sweep(pipe, SOURCE, TARGET, fractions=(0.0, 1.0), steps=2, seed=3,
                            cache=cache)  # fmt: skip
    assert cache.misses == 2 and cache.hits == 2
    assert again.cells[1.0] is sweep.cells[1.0]
    survival = layout_survival(sweep)
    assert set(survival) == {0.0, 1.0} and all(-1.0 <= v <= 1.0 for v in survival.values())
    # self-injection varies with cross fixed at 0.8 by default
    selfs = injection_sweep(pipe, SOURCE, TARGET, vary="self", fractions=(0.5,), steps=2,
                            seed=3, cache=cache)  # fmt: skip
    assert selfs.fixed == 0.8 and selfs.cells[0.5].settings.self_steps == (0.0, 0.5)
    assert sweep_windows(sweep) == [
        "cross 0.0  → the source's cross-attention in no step of 2",
        "cross 1.0  → the source's cross-attention in steps 1–2 of 2",
    ]
    assert sweep_windows(selfs) == ["self 0.5  → the source's self-attention in step 1 of 2"]
    with pytest.raises(ValueError, match="vary"):
        injection_sweep(pipe, SOURCE, TARGET, vary="both")  # type: ignore[arg-type]


# -------------------------------------------------------------------- figures


def test_upsample_and_overlay_keep_the_image_where_the_map_is_zero():
    attention = np.zeros((4, 4))
    attention[0, 0] = 1.0
    big = upsample_map(attention, (8, 8))
    assert big.shape == (8, 8) and big[:2, :2].min() == 1.0 and big[2:, :].max() == 0.0
    image = np.full((8, 8, 3), 0.5)
    painted = overlay_image(image, attention, vmax=1.0)
    assert np.allclose(painted[2:, 2:], 0.5, atol=1 / 255)  # untouched where the map is 0
    assert not np.allclose(painted[:2, :2], 0.5, atol=0.05)
    assert shared_vmax(np.zeros((2, 2)), np.zeros((2, 2))) == 1.0  # never a zero scale
    assert shared_vmax(attention, 3 * attention) == 3.0


def test_timeline_figure_uses_one_colour_scale_for_both_maps():
    image = Image.new("RGB", (16, 16), "grey")
    figure = timeline_figure(image, image, np.ones((4, 4)), 2 * np.ones((4, 4)), vmax=5.0,
                             label="bicycle → motorcycle", step_text="step 1/3")  # fmt: skip
    bare_maps = [axis.images[0] for axis in figure.axes[2:4]]
    assert [m.norm.vmax for m in bare_maps] == [5.0, 5.0]
    assert "bicycle → motorcycle" in figure._suptitle.get_text()
    assert len(figure.axes) == 5  # 2×2 panels and the colour bar
    assert figure_png(figure, tight=False).startswith(PNG_MAGIC)
    default = timeline_figure(image, image, np.ones((4, 4)), 2 * np.ones((4, 4)),
                              show_maps_alone=False)  # fmt: skip
    assert len(default.axes) == 3


def test_maps_mosaic_draws_a_cell_per_map_on_one_scale():
    low, high = np.zeros((2, 2)), np.ones((2, 2))
    picture = maps_mosaic({"a → b": (low, high), "c": (high, low)}, cell=20)
    pixels = np.asarray(picture)
    assert picture.height > 2 * 20 and picture.width > 2 * 20
    top_colour = np.round(np.array(to_rgb(_cmap_top())) * 255)
    bottom_colour = np.round(np.array(_cmap_bottom()) * 255)
    cells = pixels[:, : 120 + 2 * 20 + 3 * 4]  # labels and the two columns of cells
    bar = pixels[:, 120 + 2 * 20 + 3 * 4 :]  # the colour bar and its labels
    found_top = (np.abs(cells.astype(int) - top_colour).sum(-1) <= 3).sum()
    found_bottom = (np.abs(cells.astype(int) - bottom_colour).sum(-1) <= 3).sum()
    assert found_top == 2 * 20 * 20 and found_bottom >= 2 * 20 * 20
    for colour in (top_colour, bottom_colour):  # the bar runs from the top colour to 0's
        assert (np.abs(bar.astype(int) - colour).sum(-1) <= 3).any()
    with pytest.raises(ValueError):
        maps_mosaic({})


def _cmap_top():
    from matplotlib import colormaps

    return colormaps[MAP_CMAP](1.0)[:3]


def _cmap_bottom():
    from matplotlib import colormaps

    return colormaps[MAP_CMAP](0.0)[:3]


def test_step_maps_and_concentration_figures():
    figure = step_maps_figure(
        {"x": (2 * np.ones((3, 3)), np.zeros((3, 3))), "y": (np.eye(3), 0.5 * np.ones((3, 3)))},
        title="t",
    )
    assert len(figure.axes) == 5  # 2 rows × (source, target) and one colour bar
    images = [image for axis in figure.axes for image in axis.images]
    assert len(images) == 4
    # one colour scale for every map: 0 to the largest value shown
    assert {image.get_clim() for image in images} == {(0.0, 2.0)}
    lines = concentration_figure({"cat": [0.1, 0.2, 0.4], "bicycle": [0.0, 0.1, 0.1]})
    plotted = lines.axes[0].get_lines()
    assert [line.get_label() for line in plotted] == ["cat", "bicycle"]
    assert list(plotted[0].get_ydata()) == pytest.approx([0.1, 0.2, 0.4])
    assert lines.axes[0].get_ylim()[0] == 0.0  # a concentration starts at 0


def test_step_lines_figure_takes_a_y_range_for_measures_below_zero():
    similarity = {"x0": [-0.4, 0.3, 0.9]}
    fixed = step_lines_figure(similarity, steps=[1, 2, 3], ylim=(-1.0, 1.0))
    assert fixed.axes[0].get_ylim() == (-1.0, 1.0)
    assert list(fixed.axes[0].get_lines()[0].get_xdata()) == [1, 2, 3]
    default = step_lines_figure(similarity).axes[0]
    assert list(default.get_lines()[0].get_xdata()) == [1, 2, 3]  # steps count from 1
    bottom, top = default.get_ylim()  # data-driven
    assert bottom < -0.4 and top > 0.9
    # concentration_figure passes the range on, so it can draw a similarity too
    assert concentration_figure(similarity, ylim=(-1.0, 1.0)).axes[0].get_ylim() == (-1.0, 1.0)
    with pytest.raises(ValueError, match="one value per step"):
        step_lines_figure(similarity, steps=[1, 2])


def test_word_steps_figure_counts_steps_from_one(swap):
    figure = word_steps_figure(swap.history, max_columns=3)
    panels = [axis for axis in figure.axes if axis.images]
    titles = [axis.get_title() for axis in panels[:3]]
    timesteps = swap.history.timesteps
    assert titles == [f"step {k + 1}\nt={timesteps[k]:g}" for k in range(3)]
    assert titles[0].startswith("step 1\n")


def test_pick_steps_spreads_columns_and_handles_one_column():
    assert pick_steps(5, 3) == [0, 2, 4]
    assert pick_steps(3, 8) == [0, 1, 2]
    assert pick_steps(20, 1) == [0]
    assert pick_steps(1, 1) == [0]
    assert pick_steps(20, 6) == [0, 4, 8, 11, 15, 19]
    with pytest.raises(ValueError, match="max_columns"):
        pick_steps(5, 0)


def test_sweep_figures_label_every_cell():
    images = {f: np.full((8, 8, 3), f) for f in (0.0, 0.5, 1.0)}
    figure = sweep_grid_figure({"cross-attention": images}, source_image=images[0.0], title="x")
    titles = [axis.get_title() for axis in figure.axes]
    assert titles == ["source", "0 (w/o injection)", "0.5", "1 (full injection)"]
    two_rows = sweep_grid_figure({"cross": images, "self": {0.0: images[0.0]}})
    assert sum(1 for axis in two_rows.axes if axis.images) == 4
    plot = layout_survival_figure({"cross": {1.0: 0.9, 0.0: 0.2}})
    line = plot.axes[0].get_lines()[0]
    assert list(line.get_xdata()) == [0.0, 1.0] and list(line.get_ydata()) == [0.2, 0.9]
    assert fraction_label(0.4, "self") == "self 0.4"
    assert fractions_from(5) == [0.0, 0.25, 0.5, 0.75, 1.0]
    with pytest.raises(ValueError):
        fractions_from(1)


def test_image_helpers():
    tiny = Image.new("RGB", (64, 32), "red")
    png = image_png(tiny, min_size=100)
    enlarged = Image.open(__import__("io").BytesIO(png))
    assert enlarged.size == (256, 128)  # zoomed ×4: the shorter side reaches 100
    figure = side_by_side([tiny, np.zeros((4, 4, 3))], ["a", "b"], suptitle="s")
    assert [axis.get_title() for axis in figure.axes] == ["a", "b"]


def test_algorithm_trace_follows_the_schedules():
    settings = settings_with(
        steps=4,
        edit={"kind": "replace"},
        cross_step_ranges={"default": (0, 3)},
        self_step_range=(0, 1),
        self_max_side=16,
    )
    lines = algorithm_trace(settings, [751.0, 501.0, 251.0, 1.0])
    assert lines[0] == (
        "step 1/4  t =  751  cross-attention: source's maps   "
        "self-attention: source's maps (layers ≤ 16×16)"
    )
    assert "cross-attention: source's maps   self-attention: target's own" in lines[2]
    assert lines[3].endswith("cross-attention: target's own    self-attention: target's own")
    per_word = replace(settings, cross_step_ranges={"default": (0, 3), "train": (0, 1)})
    assert "source's maps for other words, train" in algorithm_trace(per_word, [4, 3, 2, 1])[0]
    plain = replace(settings, edit={"kind": "none"})
    assert all("free" in line for line in algorithm_trace(plain, [4, 3, 2, 1]))
    with pytest.raises(ValueError):
        algorithm_trace(settings, [1.0])


def test_algorithm_trace_names_self_attention_layers_and_refinement_new_words():
    settings = settings_with(
        steps=2,
        edit={"kind": "reweight", "base": {"kind": "refine"}, "weights": {"red": 2.0}},
        cross_step_ranges={"default": (0, 1)},
        self_step_range=(0, 1),
        self_max_side=8,
    )
    first, second = algorithm_trace(settings, [2.0, 1.0])
    assert first.endswith(
        "cross-attention: source's maps (new words: own)  "
        "self-attention: source's maps (layers ≤ 8×8)"
    )
    assert second.endswith("cross-attention: target's own    self-attention: target's own")
    replaced = replace(settings, edit={"kind": "replace"})
    assert "(new words: own)" not in algorithm_trace(replaced, [2.0, 1.0])[0]


def test_preview_recorder_keeps_one_preview_per_step(pipe):
    recorder = PreviewRecorder()
    result = edit(pipe, SOURCE, TARGET, steps=3, seed=1, callback=recorder, progress=False)
    assert len(recorder) == 3 and recorder.steps == [0, 1, 2]
    assert recorder.timesteps == list(result.history.timesteps)
    assert recorder.source[0].size == result.source_image.size
    # the last x0 prediction is the final image, up to rounding
    last = np.asarray(recorder.source[-1], dtype=int)
    assert np.abs(last - np.asarray(result.source_image, dtype=int)).mean() < 2.0
