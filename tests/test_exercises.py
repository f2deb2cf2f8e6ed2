"""Notebook 07's exercises: every checker passes the reference solution and names the problem
of wrong ones without printing the expected value; the learner's edit equals the toolkit's."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from p2p_teach import exercises as ex
from p2p_teach.exercises import solutions
from p2p_teach.exercises.feedback import forget_attempts

SOLUTIONS = {
    "build_mapper": (ex.check_build_mapper, solutions.build_mapper),
    "replace_attention": (ex.check_replace_attention, solutions.replace_attention),
    "injection_table": (ex.check_injection_table, solutions.injection_table),
    "refine_attention": (ex.check_refine_attention, solutions.refine_attention),
    "local_blend_mask": (ex.check_local_blend_mask, solutions.local_blend_mask),
}


@pytest.fixture(autouse=True)
def fresh_attempts():
    forget_attempts()  # each test starts at level 0
    yield
    forget_attempts()


def assert_hides_the_expected_value(check, wrong) -> str:
    """The report names the problem; the expected value shows only with reveal=True."""
    report = check(wrong)
    text, hinted = str(report), str(check(wrong, hint=True))
    assert report.status in ("wrong", "error") and not report.ok
    assert "what:" in text and "why:" not in text and "expected:" not in text
    assert "why:" in hinted and "expected:" not in hinted
    expected_lines = [line.strip() for line in report.finding.expected.splitlines()]
    distinctive = [line for line in expected_lines if len(line) > 12]
    assert distinctive, "the finding should carry an expected value to reveal"
    for line in distinctive:
        assert line not in text and line not in hinted
    revealed = str(check(wrong, reveal=True))
    assert all(line in revealed for line in distinctive)
    return text


# -------------------------------------------------------------------------------- all pass


@pytest.mark.parametrize("name", SOLUTIONS)
def test_the_reference_solution_passes_its_checker(name):
    check, solution = SOLUTIONS[name]
    report = check(solution)
    assert report.ok and bool(report), str(report)
    assert str(report) == f"{name}: correct on all {report.cases} cases."
    assert report.cases >= 5


@pytest.mark.parametrize("name", SOLUTIONS)
def test_a_blank_is_not_written_yet_with_its_hint(name):
    check, _ = SOLUTIONS[name]

    def blank(*args):
        raise NotImplementedError("start from the notebook's formula")

    report = check(blank)
    assert report.status == "not written yet" and not report.ok
    assert str(report) == f"{name}: not written yet (start from the notebook's formula)."


def test_the_hint_comes_on_the_second_check_of_the_same_mistake():
    wrong = lambda swaps: torch.eye(77)  # noqa: E731
    first, second = str(ex.check_build_mapper(wrong)), str(ex.check_build_mapper(wrong))
    assert "why:" not in first and "why:" in second and "expected:" not in second
    fixed = str(ex.check_build_mapper(solutions.build_mapper))
    assert "correct" in fixed
    assert "why:" not in str(ex.check_build_mapper(wrong))  # a new attempt starts over


def test_a_function_that_raises_is_reported_not_raised():
    report = ex.check_replace_attention(lambda maps, mapper: maps @ mapper[:5])
    assert report.status == "error"
    assert "replace_attention raised RuntimeError" in str(report)


def test_checking_the_result_instead_of_the_function_is_refused():
    with pytest.raises(TypeError, match=r"check_build_mapper\(build_mapper\)"):
        ex.check_build_mapper(torch.eye(77))


# -------------------------------------------------------------------------------- (a) mapper


def _walk(swaps, weight, after="i->j"):
    """A mapper with another block weight or alignment after the swaps (a learner's mistake)."""
    matrix = torch.zeros(77, 77)
    starts = {swap.source_slots.start: swap for swap in swaps}
    end = swaps[-1].source_slots.stop if swaps else 0
    i = j = 0
    while i < 77 and j < 77:
        swap = starts.get(i)
        if swap is None:
            matrix[(j if after == "j->j" and i >= end else i), j] = 1.0
            i, j = i + 1, j + 1
            continue
        n, m = len(swap.source_slots), len(swap.target_slots)
        matrix[i : i + n, j : j + m] = torch.eye(n) if n == m else weight(n, m)
        i, j = i + n, j + m
    return matrix


def test_mapper_with_the_original_block_weight_is_named():
    text = assert_hides_the_expected_value(
        ex.check_build_mapper, lambda swaps: _walk(swaps, lambda n, m: 1 / m)
    )
    assert "N-to-1: hippopotamus → lion" in text  # 1/m = 1/max(n, m) in the 1-to-N case
    assert "the block of the swap 'hippopotamus' (source slots 2–4) → 'lion'" in text
    assert "1/3" not in text
    hinted = str(ex.check_build_mapper(lambda swaps: _walk(swaps, lambda n, m: 1 / m), hint=True))
    assert "1/m (the original code's weight)" in hinted


def test_mapper_misaligned_after_the_swap_is_named():
    text = assert_hides_the_expected_value(
        ex.check_build_mapper, lambda swaps: _walk(swaps, lambda n, m: 1 / max(n, m), "j->j")
    )
    assert "the slots after the swap 'lion' → 'hippopotamus' is wrong" in text
    assert "first M[3, 5] (source 'eating' → target 'eating'; yours: 0)" in text


def test_mapper_of_the_wrong_shape_is_named():
    text = str(ex.check_build_mapper(lambda swaps: torch.eye(9)))
    assert "build_mapper returned shape (9, 9); the shape must be (77, 77)" in text
    text = str(ex.check_build_mapper(lambda swaps: None))
    assert "returned None: did you forget `return`?" in text


def test_mapper_that_runs_off_the_end_reports_the_error_and_the_case():
    def no_bounds(swaps):
        matrix = torch.zeros(77, 77)
        shift = sum(len(s.target_slots) - len(s.source_slots) for s in swaps)
        for i in range(77):
            matrix[i, i + shift] = 1.0  # IndexError once i + shift reaches 77
        return matrix

    report = ex.check_build_mapper(no_bounds)
    assert report.status == "error" and "IndexError" in str(report)
    assert "past 76" in str(ex.check_build_mapper(no_bounds, hint=True))


# -------------------------------------------------------------------------------- (b) replace


def test_replacement_with_the_mapper_transposed_is_named():
    wrong = lambda maps, mapper: torch.einsum("hpw,nw->hpn", maps, mapper)  # noqa: E731
    text = assert_hides_the_expected_value(ex.check_replace_attention, wrong)
    assert "target slot(s) 2–76 ('hippo', 'potam', 'us'" in text
    assert "M transposed" in str(ex.check_replace_attention(wrong, hint=True))


def test_replacement_that_keeps_the_source_maps_is_named():
    text = str(ex.check_replace_attention(lambda maps, mapper: maps.clone(), hint=True))
    assert "target slot(s) 2–76" in text and "the source's maps unchanged" in text


def test_replacement_with_the_axes_swapped_is_a_shape_problem():
    report = ex.check_replace_attention(lambda maps, mapper: (maps @ mapper).transpose(1, 2))
    assert "returned shape (2, 77, 6); the shape must be (2, 6, 77)" in str(report)


def test_replacement_in_place_is_named():
    def in_place(source_maps, mapper):
        source_maps.copy_(source_maps @ mapper)
        return source_maps

    assert "changed its argument 'source_maps' in place" in str(
        ex.check_replace_attention(in_place)
    )


# -------------------------------------------------------------------------------- (c) schedule


def _table(num_steps, default, word_windows, end_included=False, union=False):
    table = torch.zeros(num_steps, 77)

    def covered(window):
        end = math.floor(window[1] * num_steps + 1e-9) + int(end_included)
        return range(math.floor(window[0] * num_steps + 1e-9), min(end, num_steps))

    table[list(covered(default))] = 1.0
    for slots, window in word_windows.items():
        if not union:
            table[:, slots.start : slots.stop] = 0.0
        table[list(covered(window)), slots.start : slots.stop] = 1.0
    return table


def test_schedule_that_includes_the_end_step_is_named():
    wrong = lambda t, d, w: _table(t, d, w, end_included=True)  # noqa: E731
    text = assert_hides_the_expected_value(ex.check_injection_table, wrong)
    assert "'0.8 of 25 steps'" in text
    assert "step 20 (steps run 0–24) is wrong in target slot(s) 0–76" in text
    assert "end excluded" in str(ex.check_injection_table(wrong, hint=True))


def test_schedule_whose_word_windows_add_to_the_default_is_named():
    wrong = lambda t, d, w: _table(t, d, w, union=True)  # noqa: E731
    text = assert_hides_the_expected_value(ex.check_injection_table, wrong)
    assert "'a word's own window'" in text and "target slot(s) 7 ('motorcycle')" in text
    assert "replaces the default" in str(ex.check_injection_table(wrong, hint=True))


def test_schedule_with_steps_and_slots_swapped_is_a_shape_problem():
    text = str(ex.check_injection_table(lambda t, d, w: _table(t, d, w).T))
    assert "returned shape (77, 25); the shape must be (25, 77)" in text


def test_schedule_wrong_only_at_the_last_step_says_so():
    def last_step_dropped(num_steps, default, word_windows):
        table = solutions.injection_table(num_steps, default, word_windows)
        if num_steps > 1:
            table[-1] = 0.0
        return table

    text = str(ex.check_injection_table(last_step_dropped))
    assert "'a word in three pieces, to the last step'" in text
    assert "the last step (steps run 0–9) is wrong in target slot(s) 2–4" in text


# -------------------------------------------------------------------------------- (d) refine


def test_refinement_by_the_same_slot_number_is_named():
    wrong = lambda s, t, index, alphas: alphas * s + (1 - alphas) * t  # noqa: E731
    text = assert_hides_the_expected_value(ex.check_refine_attention, wrong)
    assert "'words added at the end'" in text
    assert "target slot(s) 9–76 ('EOS', 'pad'" in text and "padding slots" in text
    assert "source_index[j]" in str(ex.check_refine_attention(wrong, hint=True))


def test_refinement_that_zeroes_new_tokens_is_named():
    wrong = lambda s, t, index, alphas: alphas * s[..., index.clamp(min=0)]  # noqa: E731
    text = assert_hides_the_expected_value(ex.check_refine_attention, wrong)
    assert "target slot(s) 5–8 ('on', 'a', 'black', 'background') differ: new tokens" in text
    assert "keep the target's own map" in str(ex.check_refine_attention(wrong, hint=True))


def test_refinement_that_ignores_the_alphas_is_named():
    text = str(ex.check_refine_attention(lambda s, t, index, alphas: s[..., index] * 1.0))
    assert "new tokens (alpha 0)" in text


# -------------------------------------------------------------------------------- (e) blend


def _mask(word_maps, latent_size, threshold, pool=True, unite=True):
    maps = word_maps[:, None]
    if pool:
        maps = F.max_pool2d(maps, 3, stride=1, padding=1)
    maps = F.interpolate(maps, size=latent_size)
    mask = (maps / maps.amax(dim=(2, 3), keepdim=True)) > threshold
    return ((mask[:1] | mask[1:]) if unite else (mask[:1] & mask[1:])).float()


def test_blend_without_the_max_pool_is_named():
    wrong = lambda m, size, t: _mask(m, size, t, pool=False)  # noqa: E731
    text = assert_hides_the_expected_value(ex.check_local_blend_mask, wrong)
    assert "'4×4 maps, 8×8 latent'" in text and "latent pixels differ" in text
    assert "max-pool" in str(ex.check_local_blend_mask(wrong, hint=True))


def test_blend_with_the_intersection_is_named():
    wrong = lambda m, size, t: _mask(m, size, t, unite=False)  # noqa: E731
    assert_hides_the_expected_value(ex.check_local_blend_mask, wrong)
    assert "intersection" in str(ex.check_local_blend_mask(wrong, hint=True))


def test_blend_that_returns_shares_instead_of_a_mask_is_named():
    text = str(ex.check_local_blend_mask(lambda m, size, t: 0.5 * _mask(m, size, t)))
    assert "the mask holds values other than 0 and 1" in text


# -------------------------------------------------------------------------------- the whole edit

MINE = {
    name: getattr(solutions, name)
    for name in ("build_mapper", "replace_attention", "injection_table", "refine_attention")
}


def test_the_solutions_make_the_toolkits_word_swap(pipe):
    check = ex.check_edit(
        pipe, "a cat riding a bicycle", "a cat riding a motorcycle", MINE, steps=6, seed=3,
        cross_steps={"default": 0.8, "motorcycle": (0.0, 0.5)},
    )  # fmt: skip
    assert check.ok, str(check)
    assert check.max_difference <= 1
    assert f"largest pixel difference, edited image: {check.max_difference}/255" in str(check)
    assert check.learner.settings["cross_step_ranges"]["motorcycle"] == [0, 3]  # its window


def test_the_solutions_make_the_toolkits_refinement(pipe):
    check = ex.check_edit(
        pipe, "a cat", "a fluffy cat on a mat", MINE, edit="refine", steps=6, seed=3
    )
    assert check.ok and check.max_difference <= 1, str(check)


def test_a_wrong_function_in_the_edit_is_found_by_step_and_layer(pipe):
    wrong = {**MINE, "replace_attention": lambda maps, mapper: maps.clone()}
    check = ex.check_edit(
        pipe, "a cat riding a bicycle", "a cat riding a hippopotamus", wrong, steps=4, seed=3
    )
    text = str(check)
    assert check.status == "wrong" and check.max_difference > 1
    assert "the edited target's maps first differ at step 0, layer" in text
    assert "why: check_replace_attention(replace_attention) is not correct yet" in text


def test_a_blank_in_the_edit_lists_every_blank(pipe):
    def blank(*args):
        raise NotImplementedError("hint")

    blanks = {**MINE, "build_mapper": blank, "replace_attention": blank}
    check = ex.check_edit(pipe, "a cat", "a dog", blanks, steps=2)
    assert check.status == "not written yet" and check.toolkit is None
    assert "still blank: build_mapper (hint); replace_attention (hint)" in str(check)


def test_a_function_failing_inside_the_edit_says_where(pipe):
    def fails_later(maps, mapper):
        if maps.shape[1] > 2:  # passes the dry run, fails on a real layer
            raise ValueError("boom")
        return maps @ mapper

    check = ex.check_edit(pipe, "a cat", "a dog", {**MINE, "replace_attention": fails_later},
                          steps=2)  # fmt: skip
    assert check.status == "error"
    assert "your replace_attention raised ValueError in layer" in str(check)
    assert "at step 0: boom" in str(check)


def test_the_solutions_make_the_toolkits_local_blend(pipe):
    from p2p_teach import LocalBlend

    functions = {**MINE, "local_blend_mask": solutions.local_blend_mask}
    blend = LocalBlend("bicycle", "motorcycle", start=0.0)
    check = ex.check_edit(
        pipe, "a cat riding a bicycle", "a cat riding a motorcycle", functions, steps=4, seed=3,
        blend=blend,
    )  # fmt: skip
    assert check.ok, str(check)
    assert check.learner.settings.blend["mask_function"] == "local_blend_mask"
    nowhere = lambda maps, size, threshold: torch.zeros(1, 1, *size)  # noqa: E731
    wrong = {**functions, "local_blend_mask": nowhere}
    check = ex.check_edit(
        pipe, "a cat riding a bicycle", "a cat riding a motorcycle", wrong, steps=4, seed=3,
        blend=blend,
    )  # fmt: skip
    assert check.status == "wrong"
    assert "why: check_local_blend_mask(local_blend_mask) is not correct yet" in str(check)


def test_the_learner_edit_builds_this_toolkits_conventions_only(pipe):
    with pytest.raises(ValueError, match="conventions='original'"):
        ex.learner_edit(pipe, "a cat", "a dog", MINE, steps=2, conventions="original")


def test_the_edit_checkers_name_wrong_arguments(pipe):
    from p2p_teach.edits import Refine, Replace
    from p2p_teach.exercises.learner import _check_arguments

    assert _check_arguments({}, Replace()) == "replace"
    assert _check_arguments({}, Refine()) == "refine"
    assert _check_arguments({}, "refine") == "refine"
    with pytest.raises(TypeError, match="functions must be your functions by name"):
        ex.check_edit(pipe, "a red circle", "a blue circle", None, steps=2)
    with pytest.raises(ValueError, match="edit='swap'.*Fix: edit='replace'"):
        ex.check_edit(pipe, "a red circle", "a blue circle", {}, edit="swap", steps=2)
    with pytest.raises(ValueError, match="plain word swap"):
        ex.learner_edit(pipe, "a red circle", "a blue circle", {}, edit=Replace(rule="original"))
