"""Every lesson claim of notebooks 03–06, measured on the built-in model over several seeds.

The notebooks print these numbers beside their figures; here each claim's bound is checked
the same way (same prompts, seeds and steps), so a retrained model or a changed default that
breaks a lesson fails a test. The edits run once per module and are shared by the tests.
"""

from __future__ import annotations

import statistics

import numpy as np
import pytest

from p2p_teach.claims import (
    BY_KEY,
    CLAIMS,
    TWO_OBJECT_SIDES,
    blend_over_seeds,
    claims_of,
    colour_distance,
    edit_over_seeds,
    injected_map_gaps,
    latent_change_outside,
    null_window_comparison,
    object_area_ratio,
    read_results,
    swapped_word,
    sweep_over_seeds,
    sweep_scores,
    tally,
    word_shares_in_halves,
)
from p2p_teach.edits import LocalBlend, NoEdit, Refine, Replace, Reweight
from p2p_teach.lessons import SHAPES
from p2p_teach.shapes import data as shapes_data
from p2p_teach.shapes.evaluate import foreground, object_colour, swap_iou
from p2p_teach.shapes.readers import half_colour, read_shape
from p2p_teach.timeline import injected_steps

STEPS = 20  # as the notebooks run
STEPS_05 = 15  # notebook 05 runs 36 edits, at 15 steps on the built-in model
SEEDS = (1, 2, 3, 4)


@pytest.fixture(scope="module")
def shapes_pipe(one_thread):
    from p2p_teach.models import load_pipeline

    return load_pipeline("builtin", verbose=False)


def _check(key: str, value: float) -> None:
    claim = BY_KEY[key]
    assert claim.holds(value), claim.report(value)


def test_every_claim_belongs_to_an_edit_lesson_and_keys_are_unique():
    assert len(BY_KEY) == len(CLAIMS)
    assert {claim.notebook for claim in CLAIMS} == {"03", "04", "05", "06", "08"}
    assert all(claims_of(n) for n in ("03", "04", "05", "06", "08"))
    claim = BY_KEY["p2p_keeps_object"]
    assert claim.holds(0.8) and not claim.holds(0.79)
    assert "DOES NOT HOLD" in claim.report(0.1) and "holds" in claim.report(0.9)


def test_template_reader_names_drawn_shapes():
    rng = np.random.default_rng(5)
    right = 0
    total = 0
    for _ in range(60):
        obj = shapes_data.make_object(rng, str(rng.choice(list(shapes_data.POSITIONS))))
        sample = shapes_data.build_sample([obj], "white")
        right += read_shape(foreground(sample.image)) == obj.shape
        total += 1
    assert right / total >= 0.9
    assert read_shape(np.zeros((64, 64), bool)) is None


def test_03_edit_keeps_the_object_and_unequal_swaps_land(shapes_pipe):
    source, target = SHAPES.source, SHAPES.target(SHAPES.swap_words[0])
    p2p = tally(read_results(edit_over_seeds(shapes_pipe, source, target, SEEDS, steps=STEPS)),
                colour=SHAPES.swap_words[0])  # fmt: skip
    plain = tally(read_results(edit_over_seeds(shapes_pipe, source, target, SEEDS, steps=STEPS,
                                               edit=NoEdit())))  # fmt: skip
    _check("p2p_keeps_object", p2p.median_iou)
    _check("p2p_new_colour", p2p.success)
    _check("plain_moves_object", plain.median_iou)
    unequal = ("a big pink circle", "a big chartreuse circle")
    whole = edit_over_seeds(shapes_pipe, *unequal, SEEDS, steps=STEPS,
                            edit=Replace(unequal_share=None))  # fmt: skip
    default = edit_over_seeds(shapes_pipe, *unequal, SEEDS, steps=STEPS)
    _check("unequal_whole_window_misses", tally(read_results(whole), "chartreuse").success)
    _check("unequal_own_window_lands", tally(read_results(default), "chartreuse").success)


def test_04_word_maps_sit_on_their_objects_and_injected_maps_are_the_sources(shapes_pipe):
    source, target = SHAPES.two_objects
    results = edit_over_seeds(shapes_pipe, source, target, SEEDS, steps=STEPS, record="auto")
    shares = [word_shares_in_halves(r.history, TWO_OBJECT_SIDES) for r in results]
    _check("words_on_own_object", min(min(s.values()) for s in shares))
    injected = injected_steps(results[0].settings, "cross")
    inside, outside = injected_map_gaps(results[0].history, "red", "green", injected)
    _check("injected_maps_are_source", inside)
    _check("own_maps_after_injection", outside)


def test_05_injection_trades_the_new_outline_for_the_layout(shapes_pipe):
    source, target = SHAPES.new_outline
    sweep = sweep_over_seeds(shapes_pipe, source, target, SEEDS, vary="cross",
                             fractions=(0.0, 0.25, 1.0), steps=STEPS_05)  # fmt: skip
    tallies = {f: tally(read_results(r, ("heart", "star")), shape="star") for f, r in sweep.items()}
    _check("short_injection_new_shape", tallies[0.25].success)
    _check("long_injection_keeps_outline", tallies[1.0].success)
    _check("long_injection_keeps_layout", tallies[1.0].median_iou - tallies[0.0].median_iou)


def test_the_sweep_scores_read_iou_and_the_new_word_from_the_images(shapes_pipe):
    from p2p_teach.sweep import injection_sweep

    source, target = SHAPES.new_outline
    sweep = injection_sweep(shapes_pipe, source, target, fractions=(0.0, 1.0), seed=1, steps=4)
    scores = sweep_scores(shapes_pipe, sweep, source, target)
    new = swapped_word(source, target)[1]
    assert scores.bounded and set(scores.curves) == {"object IoU with the source",
                                                     f"{new} drawn (1 yes, 0 no)"}  # fmt: skip
    for fraction, result in sweep.cells.items():  # the same numbers, computed here directly
        source_mask = foreground(np.asarray(result.source_image))
        edited_mask = foreground(np.asarray(result.edited_image))
        iou = swap_iou(source_mask, edited_mask)
        assert scores.curves["object IoU with the source"][fraction] == pytest.approx(iou)
        drawn = read_shape(edited_mask, (swapped_word(source, target)[0], new)) == new
        assert scores.curves[f"{new} drawn (1 yes, 0 no)"][fraction] == float(drawn)
        assert scores.cells[fraction].startswith(f"object IoU with the source {iou:.2f}")
    colour_target = SHAPES.target(SHAPES.swap_words[0])
    colours = injection_sweep(shapes_pipe, SHAPES.source, colour_target, fractions=(1.0,),
                              seed=1, steps=4)  # fmt: skip
    colour_scores = sweep_scores(shapes_pipe, colours, SHAPES.source, colour_target)
    edited = np.asarray(colours.cells[1.0].edited_image)
    drawn = object_colour(edited, foreground(edited)) == SHAPES.swap_words[0]
    assert colour_scores.curves[f"{SHAPES.swap_words[0]} drawn (1 yes, 0 no)"][1.0] == drawn


@pytest.mark.parametrize(
    ("source", "target", "expected"),
    [("a red circle", "a blue circle", ("red", "blue")), ("a red circle", "a red circle", None),
     ("a red circle", "a big blue circle", None), ("a red circle", "a blue square", None)],
)
def test_swapped_word_finds_exactly_one_changed_word(source, target, expected):
    assert swapped_word(source, target) == expected


def test_05_colour_lands_and_self_attention_alone_keeps_the_layout(shapes_pipe):
    target = SHAPES.target(SHAPES.swap_words[0])
    full = edit_over_seeds(shapes_pipe, SHAPES.source, target, SEEDS, steps=STEPS_05,
                           cross_steps=1.0, self_steps=0.0)  # fmt: skip
    _check("colour_lands_full_injection", tally(read_results(full), SHAPES.swap_words[0]).success)
    ious = {}
    for fraction in (0.0, 0.6):
        results = edit_over_seeds(shapes_pipe, SHAPES.source, target, SEEDS, steps=STEPS_05,
                                  cross_steps=0.0, self_steps=fraction)  # fmt: skip
        ious[fraction] = tally(read_results(results)).median_iou
    _check("self_injection_keeps_layout", ious[0.6] - ious[0.0])


def test_06_refine_reweight_and_blend_show_their_change(shapes_pipe):
    refined = edit_over_seeds(shapes_pipe, *SHAPES.refinement, SEEDS, steps=STEPS,
                              edit=Refine())  # fmt: skip
    _check("refine_adds_size", statistics.median(object_area_ratio(r) for r in refined))
    reweighted = read_results(edit_over_seeds(
        shapes_pipe, SHAPES.source, SHAPES.source, SEEDS, steps=STEPS,
        edit=Reweight({SHAPES.reweighted: -1.0}), cross_steps=1.0))  # fmt: skip
    gone = np.mean([r.colour != SHAPES.reweighted for r in reweighted])
    _check("reweight_removes_colour", gone)
    source, target = SHAPES.two_objects
    blended = blend_over_seeds(shapes_pipe, source, target, SEEDS, steps=STEPS,
                               blend=LocalBlend("red", "green"))  # fmt: skip
    kept = [half_colour(r.edited_image, "left") == "green"
            and half_colour(r.edited_image, "right") == "blue" for r, _ in blended]  # fmt: skip
    _check("blend_keeps_other_object", float(np.mean(kept)))
    _check("blend_latents_outside_equal", max(latent_change_outside(r, m) for r, m in blended))


def test_08_the_targets_null_window_frees_the_new_colour(shapes_pipe):
    from p2p_teach.inversion import drawing, invert

    image, caption = drawing("circle", "red")
    inversion = invert(shapes_pipe, image, caption, steps=STEPS, progress=False)
    compared = null_window_comparison(shapes_pipe, inversion, ("blue", "cyan", "pink", "green"))
    _check("null_window_frees_new_colour", compared.mean(1.0) - compared.mean(0.2))
    for share, by_colour in compared.results.items():  # the distances are the images'
        assert all(result.settings.target_null_steps == share for result in by_colour.values())
        assert compared.distances[share] == {
            colour: colour_distance(result.edited_image, colour)
            for colour, result in by_colour.items()}  # fmt: skip


def test_colour_distance_is_the_distance_of_the_objects_median_to_the_palette():
    from p2p_teach.shapes.data import COLOURS

    image = np.full((64, 64, 3), 245, dtype=np.uint8)  # white
    image[20:40, 20:40] = (200, 40, 40)  # a reddish square
    expected = float(np.linalg.norm(np.subtract((200, 40, 40), COLOURS["red"])))
    assert colour_distance(image, "red") == pytest.approx(expected)
    assert colour_distance(np.full((64, 64, 3), 245, dtype=np.uint8), "red") == float("inf")
    with pytest.raises(ValueError, match="colour='mauve': the palette has red"):
        colour_distance(image, "mauve")


NOTEBOOKS = {
    "03": "03_prompt_to_prompt_edit",
    "04": "04_attention_per_timestep",
    "05": "05_injection_step",
    "06": "06_beyond_replacement",
    "08": "08_real_images",
}


@pytest.mark.parametrize("number", sorted(NOTEBOOKS))
def test_each_notebook_reports_its_claims_asks_first_and_answers_its_questions(number):
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "notebooks" / f"{NOTEBOOKS[number]}.ipynb"
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    reported = [c for c in cells if c["cell_type"] == "code" and "BY_KEY[" in "".join(c["source"])]
    for claim in claims_of(number):
        assert f'BY_KEY["{claim.key}"]' in code, f"{NOTEBOOKS[number]} does not report {claim.key}"
    assert all("nbval-check-output" in c["metadata"].get("tags", []) for c in reported)
    assert "PredictQuestion(" in code
    markdown = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    asked = markdown.split("## Questions", 1)[1]
    numbered = [line for line in asked.splitlines() if line[:2] in {f"{k}." for k in range(1, 10)}]
    assert numbered and asked.count("<details>") == len(numbered)
