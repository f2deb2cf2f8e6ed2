"""``p2p-teach edit`` and the per-step attention figure."""

from __future__ import annotations

import json

import pytest
import torch
from matplotlib.figure import Figure
from PIL import Image

from p2p_teach.cli import main
from p2p_teach.figures.attention import changed_word_rows, pick_steps, word_steps_figure
from p2p_teach.history import AttentionHistory, LayerInfo
from p2p_teach.tokens import tokenize

SOURCE = "photo of a cat riding on a bicycle"
TARGET = "photo of a cat riding on a motorcycle"


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_edit_command_writes_images_figure_and_settings(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["edit", SOURCE, TARGET, "--cross", "0.8", "--self", "0.4", "--steps", "3",
                 "--seed", "1", "--out", str(out), "--quiet"])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "built-in offline model 'shapes'" in printed  # says which model runs (the default)
    assert f"wrote {out / 'attention.png'}" in printed
    for name in ("source.png", "edited.png", "settings.json", "history.safetensors",
                 "latents.safetensors"):  # fmt: skip
        assert f"wrote {out / name}" in printed and (out / name).is_file()
    for name in ("source.png", "edited.png", "attention.png"):
        with Image.open(out / name) as image:
            assert image.size[0] > 0
    settings = json.loads((out / "settings.json").read_text())
    assert (settings["steps"], settings["seed"], settings["edit"]["kind"]) == (3, 1, "replace")
    assert settings["cross_steps"] == {"default": [0.0, 0.8]}
    assert settings["self_steps"] == [0.0, 0.4]


def test_edit_command_injects_self_attention_over_the_models_own_steps(tmp_path):
    from p2p_teach.shapes import SELF_STEPS

    out = tmp_path / "run"
    assert main(["edit", "a big red circle", "a big blue circle", "--steps", "2",
                 "--out", str(out), "--quiet"]) == 0  # fmt: skip
    settings = json.loads((out / "settings.json").read_text())
    assert settings["self_steps"] == [0.0, SELF_STEPS]  # the built-in model's, not SD's 0.4


@pytest.mark.parametrize("conventions", ["p2p_teach", "original"])
def test_edit_command_runs_under_either_conventions_as_the_api_plans_them(tmp_path, conventions):
    from p2p_teach.engine import plan_edit
    from p2p_teach.models import load_pipeline

    out = tmp_path / "run"
    assert main(["edit", "a big red circle", "a big cyan circle", "--steps", "4", "--quiet",
                 "--conventions", conventions, "--out", str(out)]) == 0  # fmt: skip
    settings = json.loads((out / "settings.json").read_text())
    planned = plan_edit(load_pipeline("builtin", verbose=False), "a big red circle",
                        "a big cyan circle", steps=4, conventions=conventions).settings.to_json()
    for field in ("conventions", "edit", "cross_step_ranges", "self_step_range"):
        assert settings[field] == planned[field]
    assert settings["edit"]["rule"] == ("original" if conventions == "original" else "course")


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["a cat", "a big cat"], "--edit refine"),
        ([SOURCE, TARGET, "--cross", "1.5"], "fractions must lie in [0, 1]"),
        ([SOURCE, TARGET, "--self", "0.6:0.2"], "comes after the end"),
        ([SOURCE, TARGET, "--blend", "dog"], "is in neither prompt"),
        ([SOURCE, TARGET, "--reweight", "dog=2"], "'motorcycle'"),
        (["a cat", "a fluffy cat", "--edit", "refine", "--blend", "fluffy"],
         "is only in the target prompt"),
        (["a cat", "a fluffy cat", "--edit", "refine", "--blend", "cat:dog"],
         "'dog' is not a word of the target prompt"),
        (["a cat", "a dog", "--edit", "none", "--reweight", "cat=2"], "the same prompt twice"),
    ],
)  # fmt: skip
def test_edit_command_refuses_bad_input_in_one_line_before_loading_a_model(
    arguments, message, tmp_path, capsys
):
    code = main(["edit", *arguments, "--steps", "2", "--out", str(tmp_path / "x")])
    captured = capsys.readouterr()
    assert code == 2
    assert message in captured.err and captured.err.count("\n") == 1
    assert "p2p_teach:" not in captured.out  # failed before any model was loaded
    assert not (tmp_path / "x").exists()


def _history(steps: int = 5) -> AttentionHistory:
    layers = [LayerInfo("down_blocks.0.attentions.0.transformer_blocks.0.attn2.processor",
                        "down", 4, 4)]  # fmt: skip
    history = AttentionHistory(layers, tokenize(SOURCE), tokenize(TARGET), range(steps, 0, -1))
    generator = torch.Generator().manual_seed(0)
    for step in range(steps):
        history.record(layers[0].name, step, torch.rand(2, 16, 77, generator=generator))
        history.end_step(step)
    return history


def test_attention_figure_has_a_row_per_swapped_word_and_a_column_per_step():
    history = _history()
    assert changed_word_rows(history) == [("bicycle", "source"), ("motorcycle", "target")]
    figure = word_steps_figure(history, max_columns=3)
    assert isinstance(figure, Figure)
    assert pick_steps(5, 3) == [0, 2, 4]
    panels = [axis for axis in figure.axes if axis.images]
    assert len(panels) == 2 * 3
    titles = [axis.get_title() for axis in panels[:3]]
    assert titles == ["step 1\nt=5", "step 3\nt=3", "step 5\nt=1"]  # counted from 1
    # the first panel shows the source word's map at the first step (index 0)
    shown = panels[0].images[0].get_array()
    expected = history.word_maps("bicycle", "source", steps=0)
    assert torch.allclose(torch.as_tensor(shown.data), expected, atol=1e-6)
    with pytest.raises(ValueError, match="no words"):
        word_steps_figure(history, rows=[])


def test_blend_word_in_one_prompt_needs_a_partner_and_says_how_to_name_one(tmp_path, capsys):
    code = main(["edit", "a cat", "a fluffy cat", "--edit", "refine", "--blend", "fluffy",
                 "--out", str(tmp_path / "x")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "--blend cat:fluffy" in err and "--blend cat" in err  # how to name words per prompt
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    ("arguments", "source_words", "target_words"),
    [
        # a word swap: the target-only word is paired with the word in its place
        ([SOURCE, TARGET, "--blend", "motorcycle"], ["bicycle"], ["motorcycle"]),
        ([SOURCE, TARGET, "--blend", "bicycle"], ["bicycle"], ["motorcycle"]),
        # words named per prompt, and a word both prompts have
        (["a cat", "a fluffy cat", "--edit", "refine", "--blend", "cat:fluffy"],
         ["cat"], ["fluffy"]),
        (["a cat", "a fluffy cat", "--edit", "refine", "--blend", "cat"], ["cat"], ["cat"]),
    ],
)  # fmt: skip
def test_blend_words_are_used_per_prompt(arguments, source_words, target_words, tmp_path):
    out = tmp_path / "run"
    assert main(["edit", *arguments, "--steps", "2", "--out", str(out), "--quiet"]) == 0
    blend = json.loads((out / "settings.json").read_text())["blend"]
    assert (blend["source_words"], blend["target_words"]) == (source_words, target_words)


def test_reweight_with_no_edit_runs_on_the_same_prompt_twice(tmp_path):
    out = tmp_path / "run"
    assert main(["edit", "a cat", "a cat", "--edit", "none", "--reweight", "cat=2",
                 "--steps", "2", "--out", str(out), "--quiet"]) == 0  # fmt: skip
    assert json.loads((out / "settings.json").read_text())["edit"]["kind"] == "reweight"


def test_output_path_that_is_a_file_is_refused_before_loading_a_model(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("keep me")
    for out in (afile, afile / "sub"):
        assert main(["edit", SOURCE, TARGET, "--steps", "2", "--out", str(out)]) == 2
        captured = capsys.readouterr()
        assert "a file is in the way" in captured.err
        assert ("which is a file" in captured.err) == (out != afile)  # names the parent
        assert captured.err.count("\n") == 1 and "p2p_teach:" not in captured.out
    assert afile.read_text() == "keep me"


def test_a_failed_run_removes_the_output_folder_it_made(tmp_path, capsys):
    out = tmp_path / "new" / "run"
    code = main(["edit", SOURCE, TARGET, "--steps", "2", "--out", str(out),
                 "--model", str(tmp_path / "no-such-model")])  # fmt: skip
    assert code == 2 and "is not a folder" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()
