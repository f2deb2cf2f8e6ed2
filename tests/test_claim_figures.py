"""The lesson figures: labelled seed grids, the trade-off plot, word maps with their bars, the
injected steps marked on per-step figures, and the timeline's injected-step note."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from p2p_teach.engine import edit
from p2p_teach.figures.attention import layers_text, word_steps_figure
from p2p_teach.figures.claims import seed_grid_figure, tradeoff_figure, word_maps_figure
from p2p_teach.figures.timeline import INJECTED_NOTE, step_lines_figure
from p2p_teach.widgets import AttentionTimeline

RED = np.zeros((64, 64, 3), np.uint8)
RED[..., 0] = 200


@pytest.fixture(scope="module")
def swap(pipe):
    return edit(pipe, "a red cat", "a blue cat", steps=4, seed=1, cross_steps=0.5,
                progress=False)  # fmt: skip


def test_seed_grid_labels_rows_columns_and_notes():
    figure = seed_grid_figure({"source": [RED, RED], "edit": [RED, RED]}, [3, 7],
                              notes={"edit": ["IoU 0.9", "IoU 0.1"]})  # fmt: skip
    axes = figure.axes
    assert [a.get_title() for a in axes[:2]] == ["source", "edit"]  # the first row
    labels = {a.get_ylabel() for a in axes} | {a.get_xlabel() for a in axes}
    assert {"seed 3", "seed 7", "IoU 0.9", "IoU 0.1"} <= labels
    with pytest.raises(ValueError, match="one image per seed"):
        seed_grid_figure({"source": [RED]}, [1, 2])


def test_tradeoff_figure_plots_each_curve_in_fraction_order():
    figure = tradeoff_figure({"new shape": {1.0: 0.0, 0.0: 1.0}, "IoU": {0.0: 0.5, 1.0: 0.8}})
    lines = figure.axes[0].get_lines()
    assert [list(line.get_xdata()) for line in lines] == [[0.0, 1.0], [0.0, 1.0]]
    assert list(lines[0].get_ydata()) == [1.0, 0.0]


def test_word_maps_figure_has_a_colour_bar_per_word_and_names_the_layers():
    maps = {"red": torch.rand(4, 4), "cat": torch.rand(4, 4)}
    figure = word_maps_figure(RED, maps, layers_text="layers 2 at 16×16")
    assert len(figure.axes) == 4  # two images, two colour bars
    assert figure.get_supxlabel() == "layers 2 at 16×16"


def test_per_step_figures_mark_the_injected_steps(swap):
    injected = range(0, 2)
    figure = word_steps_figure(swap.history, [("red", "source"), ("blue", "target")],
                               steps=[0, 3], injected=injected)  # fmt: skip
    titles = [a.get_title() for a in figure.axes if a.get_title()]
    assert any("injected" in t for t in titles if t.startswith("step 1"))
    assert not any("injected" in t for t in titles if t.startswith("step 4"))
    assert layers_text(swap.history) in figure.get_supxlabel()
    lines = step_lines_figure({"x": [0.1, 0.2, 0.3, 0.4]}, injected=injected)
    assert INJECTED_NOTE in [t.get_text() for t in lines.axes[0].get_legend().get_texts()]


def test_layers_text_counts_the_layers_of_each_side(swap):
    history = swap.history
    side = max(layer.side for layer in history.layers)
    count = sum(layer.side == side for layer in history.layers)
    assert layers_text(history, side).startswith(f"layers {count} at {side}×{side}")


def test_timeline_opens_at_a_layer_group_and_says_when_a_step_is_injected(swap):
    options = AttentionTimeline(swap).layer_options
    timeline = AttentionTimeline(swap, step=0, layers=options[-1].label)
    assert timeline.layers.label == options[-1].label
    assert "injected" in timeline.step_label.value  # step 1 of 4, window 0.5: injected
    timeline.step_slider.value = 3
    assert "injected" not in timeline.step_label.value
    with pytest.raises(ValueError, match="layers="):
        AttentionTimeline(swap, layers="nowhere")
