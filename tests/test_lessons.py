"""Lesson prompts: the right set for each model, and every edit they name is well formed."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from p2p_teach import defaults, tokenize, word_swap_mapper
from p2p_teach.alignment import refinement_alignment
from p2p_teach.lessons import (
    SHAPES,
    SLIDE_SPLITS,
    SLIDES,
    LessonPrompts,
    lesson_prompts,
    slide_splits_table,
    word_pieces,
)
from p2p_teach.shapes import data as shapes_data
from p2p_teach.shapes.data import caption_words
from p2p_teach.tokens import WordNotFoundError


def test_builtin_shapes_model_gets_shape_prompts():
    marked = SimpleNamespace(unet=torch.nn.Linear(1, 1), name_or_path="my copy")
    defaults.mark(marked, defaults.SHAPES)  # what loading the shapes model does to its UNet
    assert lesson_prompts(marked) is SHAPES
    # the name alone decides nothing: an unmarked UNet named like the built-in model
    named = SimpleNamespace(unet=torch.nn.Linear(1, 1), name_or_path="p2p_teach/shapes")
    assert lesson_prompts(named) is SLIDES


def test_other_pipelines_get_the_slides_prompts(pipe):
    assert lesson_prompts(pipe) is SLIDES  # the tiny-random built-in model
    hub = SimpleNamespace(name_or_path="stable-diffusion-v1-5/stable-diffusion-v1-5")
    assert lesson_prompts(hub) is SLIDES
    assert SLIDES.source == "photo of a cat riding on a bicycle"  # the recitation's prompt


@pytest.mark.parametrize("prompts", [SLIDES, SHAPES], ids=["slides", "shapes"])
def test_swaps_are_word_swaps_with_one_replaced_word(prompts):
    source = tokenize(prompts.source)
    for word in prompts.swap_words:
        target = prompts.target(word)
        swaps = word_swap_mapper(prompts.source, target).swaps
        assert len(swaps) == 1
        assert (swaps[0].source_word.text, swaps[0].target_word.text) == (prompts.swapped, word)
        n_pieces = tokenize(word).words[0].n_slots
        assert swaps[0].n_target == n_pieces
        assert tokenize(target).n_used - source.n_used == n_pieces - swaps[0].n_source


def test_shape_swaps_include_a_one_to_many_case():
    pieces = {word: tokenize(word).words[0].n_slots for word in SHAPES.swap_words}
    assert sorted(pieces.values()) == [1, 2]  # blue: 1-to-1; cyan (cy·an): 1-to-N


@pytest.mark.parametrize("prompts", [SLIDES, SHAPES], ids=["slides", "shapes"])
def test_refined_prompt_keeps_every_source_word_in_order(prompts):
    alignment = refinement_alignment(prompts.source, prompts.refined)
    matrix = alignment.as_matrix()  # (source slots, target slots)
    n_source = tokenize(prompts.source).n_used
    assert matrix[:n_source].sum(-1).eq(1).all()  # every used source slot lands somewhere


def test_shape_prompts_speak_the_training_captions_language():
    # a training caption that leaves the position to the seed (--position-unnamed-share)
    objects = [shapes_data.ShapeObject("circle", "red", "big", "left", (17.0, 32.0), 13.0,
                                       position_in_caption=False)]  # fmt: skip
    words, _ = caption_words(objects, None)
    assert " ".join(words) == SHAPES.source
    words, _ = caption_words(objects, "black")
    assert " ".join(words) == SHAPES.refined
    vocabulary = set(shapes_data.COLOURS) | set(shapes_data.SHAPES)
    assert set(SHAPES.swap_words) <= vocabulary


@pytest.mark.parametrize("prompts", [SLIDES, SHAPES], ids=["slides", "shapes"])
def test_new_outline_is_a_word_swap_of_an_object_word(prompts):
    source, target = prompts.new_outline
    swaps = word_swap_mapper(source, target).swaps
    assert len(swaps) == 1
    old, new = swaps[0].source_word.text, swaps[0].target_word.text
    if prompts is SHAPES:  # a shape for another, in the captions' words
        assert {old, new} <= set(shapes_data.SHAPES) and old != new
        assert set(source.split()) <= set(SHAPES.source.split()) | set(shapes_data.SHAPES)
    else:  # the slides' bicycle → train, the source of every other swap
        assert (source, old, new) == (SLIDES.source, SLIDES.swapped, "train")
    assert f"new outline: {source!r} → {target!r}" in str(prompts)


def test_bad_lesson_prompts_are_refused_with_the_fix():
    with pytest.raises(ValueError, match="'dog' is not a word of the source prompt"):
        LessonPrompts("a cat", "dog", "cat", {}, "a cat", "cat", "test")
    with pytest.raises(ValueError, match="should be 'a dog'"):
        LessonPrompts("a cat", "cat", "cat", {"dog": "the dog"}, "a cat", "cat", "test")
    with pytest.raises(ValueError, match="new_outline .* should be a word swap"):
        LessonPrompts("a cat", "cat", "cat", {}, "a cat", "cat", "test",
                      new_outline=("a big cat", "a small black dog"))  # fmt: skip
    with pytest.raises(KeyError, match="the lessons swap to: motorcycle, train"):
        SLIDES.target("boat")


NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
LESSON_NOTEBOOKS = (
    "00_pipeline_tour",
    "03_prompt_to_prompt_edit",
    "04_attention_per_timestep",
    "05_injection_step",
    "06_beyond_replacement",
)
SLIDE_WORDS = re.compile(r"\b(cat|bicycle|motorcycle|train|fluffy)\b")


@pytest.mark.parametrize("name", LESSON_NOTEBOOKS)
def test_lesson_notebooks_take_every_prompt_from_lesson_prompts(name):
    cells = json.loads((NOTEBOOKS / f"{name}.ipynb").read_text(encoding="utf-8"))["cells"]
    code = ["".join(cell["source"]) for cell in cells if cell["cell_type"] == "code"]
    # the setup cell comes first and takes the prompts from the course (lesson_prompts(pipe));
    # the next cell shows them
    assert "pipe, PROMPTS, STEPS = COURSE.pipe, COURSE.prompts, COURSE.steps" in code[0]
    assert "print(PROMPTS)" in code[1]
    hard_coded = [
        (i, word) for i, source in enumerate(code) for word in SLIDE_WORDS.findall(source)
    ]
    assert hard_coded == [], "code cells should take their prompts from PROMPTS"


def test_word_pieces_are_the_slots_text_of_one_word():
    view = tokenize("A hippopotamus eating")
    assert word_pieces(view, "hippopotamus") == ("hippo", "potam", "us")
    assert word_pieces(view, 2) == ("eating",)
    assert word_pieces(tokenize("unimaginably")) == ("uni", "magin", "ably")  # word 0
    with pytest.raises(WordNotFoundError):
        word_pieces(view, "lion")


def test_slide_splits_table_sets_the_slides_beside_the_real_splits():
    lines = slide_splits_table().splitlines()
    assert len(lines) == len(SLIDE_SPLITS)
    assert lines[3] == "hippopotamus   slides: hippo·pot·amus    real CLIP: hippo·potam·us"
    for line, (word, pieces) in zip(lines, SLIDE_SPLITS.items()):
        assert line.startswith(word) and "·".join(pieces) in line
        assert line.endswith("real CLIP: " + "·".join(word_pieces(tokenize(word))))
    assert slide_splits_table({"lion": ("li", "on")}) == (
        "lion           slides: li·on             real CLIP: lion"
    )
