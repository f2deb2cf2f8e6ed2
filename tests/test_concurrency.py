"""One edit at a time per pipeline, and widgets that report every failure and label what ran."""

from __future__ import annotations

import threading

import pytest

from p2p_teach import edit
from p2p_teach.processors import PipelineBusyError, attention_processors
from p2p_teach.widgets.edit_runner import EditRunner
from p2p_teach.widgets.panels import ReweightPanel
from p2p_teach.widgets.timeline import AttentionTimeline


def _processor_types(pipe) -> dict[str, str]:
    return {name: type(p).__name__ for name, p in pipe.unet.attn_processors.items()}


def test_a_second_thread_cannot_edit_a_pipeline_that_is_running_an_edit(pipe):
    entered, leave = threading.Event(), threading.Event()

    def hold() -> None:
        with attention_processors(pipe, {}):
            entered.set()
            leave.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    assert entered.wait(10)
    try:
        before = _processor_types(pipe)
        with pytest.raises(PipelineBusyError, match="another thread.*Fix: wait"):
            edit(pipe, "a red circle", "a blue circle", steps=1, progress=False)
        assert _processor_types(pipe) == before  # nothing swapped, nothing lost
    finally:
        leave.set()
        holder.join(10)
    with attention_processors(pipe, {}), attention_processors(pipe, {}):
        pass  # free again, and the same thread may nest blocks


def test_a_failure_while_showing_the_result_is_shown_in_the_widget(pipe, monkeypatch):
    panel = ReweightPanel(pipe, prompt="a red circle", word="red", steps=2, threaded=True)

    def broken_show(result) -> None:
        raise KeyError("house")

    monkeypatch.setattr(panel, "show", broken_show)
    assert panel.request_run()
    panel.wait(60)
    assert not panel.running
    assert panel.error is not None and "house" in panel.error
    assert panel.status.value.startswith("Could not show the result")
    assert panel.progress.bar_style == "danger"


def test_reweight_panel_labels_the_run_with_its_own_word_and_weight(pipe):
    panel = ReweightPanel(pipe, prompt="a red circle", word="red", weight=3.0, steps=2,
                          threaded=False)  # fmt: skip
    result = panel.run()
    assert result is not None
    panel.weight_slider.value = 5.0  # the controls move after the run started
    panel.prompt_text.value = "a big blue square"
    panel.show(result)
    assert "'red' reweighted by 3" in panel.status.value


def test_timeline_pictures_of_words_with_the_same_label_are_not_mixed_up(pipe):
    result = edit(pipe, "a cat and a cat", "a dog and a cat", steps=2, progress=False)
    timeline = AttentionTimeline(result)
    labels = [choice.label for choice in timeline.choices]
    first, second = [i for i, label in enumerate(labels) if label == "a"][:2]
    timeline.slot_dropdown.value = first
    picture = timeline.draw()
    renders = timeline.renders
    timeline.slot_dropdown.value = second
    assert timeline.renders == renders + 1  # drawn anew, not the first "a"'s picture
    assert timeline.draw() != picture


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda pipe: EditRunner(pipe, steps=150), "steps=150: .* runs from 1 to 100"),
        (lambda pipe: EditRunner(pipe, guidance=20.0), "guidance=20.0"),
        (lambda pipe: ReweightPanel(pipe, weight=10.0), "weight=10.0"),
        (lambda pipe: ReweightPanel(pipe, seed=2**40), "seed="),
    ],
)
def test_widget_values_out_of_their_controls_range_are_refused_not_clamped(pipe, make, message):
    with pytest.raises(ValueError, match=message):
        make(pipe)
