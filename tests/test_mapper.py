"""Word-swap mapper: the slides' examples under the real CLIP tokenizer, both rules, and
property tests over generated prompt pairs."""

from __future__ import annotations

from fractions import Fraction

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from p2p_teach.mapper import (
    WordCountMismatchError,
    WordSwapMapper,
    check_mapper,
    format_mapper,
    format_weight,
    swap_case,
    word_swap_mapper,
)
from p2p_teach.tokens import MAX_SLOTS, tokenize


def corner(text: str) -> torch.Tensor:
    """A hand-written top-left corner: rows of cells, '.' for zero, fractions like 1/3."""
    rows = [line.split() for line in text.strip().splitlines()]
    return torch.tensor([[float(Fraction(c)) if c != "." else 0.0 for c in r] for r in rows])


def assert_corner(mapper: WordSwapMapper, text: str) -> None:
    expected = corner(text)
    rows, columns = expected.shape
    torch.testing.assert_close(mapper.matrix[:rows, :columns], expected)


def shifted_identity(rows: range, shift: int) -> torch.Tensor:
    """Rows ``rows`` of a matrix mapping source slot i to target slot i + shift."""
    block = torch.zeros(len(rows), MAX_SLOTS)  # (len(rows), 77 target slots)
    for k, i in enumerate(rows):
        if 0 <= i + shift < MAX_SLOTS:
            block[k, i + shift] = 1.0
    return block


# --------------------------------------------------------------------------------------------
# The slides' examples, course rule
# --------------------------------------------------------------------------------------------


def test_lion_to_hippopotamus_is_1_to_3_with_thirds():
    # real splits: a | lion  →  a | hippo · potam · us
    mapper = word_swap_mapper("A lion eating", "A hippopotamus eating")
    assert mapper.matrix.shape == (77, 77) and mapper.matrix.dtype == torch.float32
    assert [(s.source_word.text, s.target_word.text, s.case) for s in mapper.swaps] == [
        ("lion", "hippopotamus", "1-to-N")
    ]
    #   target: BOS a hippo potam us eating EOS pad
    assert_corner(
        mapper,
        """
        1 . .   .   .   . . .
        . 1 .   .   .   . . .
        . . 1/3 1/3 1/3 . . .
        . . .   .   .   1 . .
        . . .   .   .   . 1 .
        . . .   .   .   . . 1
        . . .   .   .   . . .
        """,
    )
    # after the swap, source slot i feeds target slot i + 2; the last two pads drop out
    torch.testing.assert_close(mapper.matrix[3:], shifted_identity(range(3, 77), 2))
    assert mapper.matrix[75:].sum() == 0


def test_hippopotamus_to_lion_is_3_to_1_with_thirds():
    mapper = word_swap_mapper("A hippopotamus eating", "A lion eating")
    assert [s.case for s in mapper.swaps] == ["N-to-1"]
    #   target: BOS a lion eating EOS pad
    assert_corner(
        mapper,
        """
        1 . .   . . .
        . 1 .   . . .
        . . 1/3 . . .
        . . 1/3 . . .
        . . 1/3 . . .
        . . .   1 . .
        . . .   . 1 .
        . . .   . . 1
        """,
    )
    torch.testing.assert_close(mapper.matrix[5:], shifted_identity(range(5, 77), -2))
    assert mapper.matrix[:, 75:].sum() == 0  # the target's last two pads receive nothing


def test_unimaginably_to_inconceivably_is_3_to_4_with_quarters():
    # real splits: uni · magin · ably (3)  →  in · conce · iv · ably (4)
    mapper = word_swap_mapper("An unimaginably large house", "An inconceivably large house")
    assert [s.case for s in mapper.swaps] == ["N-to-M"]
    assert (mapper.swaps[0].n_source, mapper.swaps[0].n_target) == (3, 4)
    #   target: BOS an in conce iv ably large house EOS pad
    assert_corner(
        mapper,
        """
        1 . .   .   .   .   . . . .
        . 1 .   .   .   .   . . . .
        . . 1/4 1/4 1/4 1/4 . . . .
        . . 1/4 1/4 1/4 1/4 . . . .
        . . 1/4 1/4 1/4 1/4 . . . .
        . . .   .   .   .   1 . . .
        . . .   .   .   .   . 1 . .
        . . .   .   .   .   . . 1 .
        . . .   .   .   .   . . . 1
        """,
    )
    torch.testing.assert_close(mapper.matrix[5:], shifted_identity(range(5, 77), 1))


def test_haunted_to_magical_is_1_to_1_identity():
    # the slides split them haunt·ed / magic·al; the real tokenizer keeps each in one piece
    mapper = word_swap_mapper("A haunted house", "A magical house")
    assert [s.case for s in mapper.swaps] == ["1-to-1"]
    assert torch.equal(mapper.matrix, torch.eye(77))


def test_hexagon_to_matchstick_is_2_to_2_identity():
    # hex · agon  →  match · stick: piece k maps to piece k
    mapper = word_swap_mapper("A hexagon house", "A matchstick house")
    assert [s.case for s in mapper.swaps] == ["N-to-N"]
    assert (mapper.swaps[0].n_source, mapper.swaps[0].n_target) == (2, 2)
    assert mapper.matrix[2, 2] == 1 and mapper.matrix[3, 3] == 1
    assert mapper.matrix[2, 3] == 0 and mapper.matrix[3, 2] == 0
    assert torch.equal(mapper.matrix, torch.eye(77))


def test_several_swaps_in_one_pair_keep_later_tokens_aligned():
    mapper = word_swap_mapper(
        "An unimaginably large lion eating", "An inconceivably large hippopotamus eating"
    )
    assert [(s.source_word.text, s.case) for s in mapper.swaps] == [
        ("unimaginably", "N-to-M"),
        ("lion", "1-to-N"),
    ]
    # source: BOS an uni magin ably large lion eating EOS
    # target: BOS an in conce iv ably large hippo potam us eating EOS
    assert_corner(
        mapper,
        """
        1 . .   .   .   .   . .   .   .   . . .
        . 1 .   .   .   .   . .   .   .   . . .
        . . 1/4 1/4 1/4 1/4 . .   .   .   . . .
        . . 1/4 1/4 1/4 1/4 . .   .   .   . . .
        . . 1/4 1/4 1/4 1/4 . .   .   .   . . .
        . . .   .   .   .   1 .   .   .   . . .
        . . .   .   .   .   . 1/3 1/3 1/3 . . .
        . . .   .   .   .   . .   .   .   1 . .
        . . .   .   .   .   . .   .   .   . 1 .
        . . .   .   .   .   . .   .   .   . . 1
        """,
    )
    torch.testing.assert_close(mapper.matrix[7:], shifted_identity(range(7, 77), 3))


def test_identical_prompts_give_the_identity():
    mapper = word_swap_mapper("a photo of a cat", "a photo of a cat")
    assert mapper.swaps == ()
    assert torch.equal(mapper.matrix, torch.eye(77))


def test_accepts_token_views_and_keeps_them():
    source, target = tokenize("A lion eating"), tokenize("A hippopotamus eating")
    mapper = word_swap_mapper(source, target)
    assert mapper.source is source and mapper.target is target
    assert mapper == word_swap_mapper("A lion eating", "A hippopotamus eating")


def test_slots_pushed_past_77_drop_out():
    filler = " ".join(["a"] * 70)  # 70 one-piece words: BOS + 72 pieces + EOS = 74 used slots
    mapper = word_swap_mapper(f"{filler} lion eating", f"{filler} hippopotamus eating")
    assert mapper.source.n_used == 74 and mapper.target.n_used == 76
    assert mapper.matrix[71, 71:74].tolist() == pytest.approx([1 / 3] * 3)
    assert mapper.matrix[73, 75] == 1  # source EOS → target EOS
    assert mapper.matrix[74, 76] == 1  # first source pad → last target slot
    assert mapper.matrix[75:].sum() == 0  # two source pads have nowhere to go


def test_word_count_mismatch_lists_both_word_lists_and_points_to_refinement():
    with pytest.raises(WordCountMismatchError) as raised:
        word_swap_mapper("a cat", "a fluffy cat")
    message = str(raised.value)
    assert "['a', 'cat']" in message and "['a', 'fluffy', 'cat']" in message
    assert "refinement" in message
    assert isinstance(raised.value, ValueError)


def test_unknown_rule_is_rejected():
    with pytest.raises(ValueError, match="course"):
        word_swap_mapper("a cat", "a dog", rule="official")


@pytest.mark.parametrize(
    ("n", "m", "case"),
    [(1, 1, "1-to-1"), (2, 2, "N-to-N"), (1, 3, "1-to-N"), (3, 1, "N-to-1"), (3, 4, "N-to-M")],
)
def test_swap_case_names(n, m, case):
    assert swap_case(n, m) == case


# --------------------------------------------------------------------------------------------
# The original code's rule
# --------------------------------------------------------------------------------------------


def test_original_rule_1_to_3_misaligns_every_later_token():
    mapper = word_swap_mapper("A lion eating", "A hippopotamus eating", rule="original")
    assert mapper.rule == "original"
    #   target: BOS a hippo potam us eating EOS pad
    assert_corner(
        mapper,
        """
        1 . .   .   .   . . .
        . 1 .   .   .   . . .
        . . 1/3 1/3 1/3 . . .
        . . .   .   .   . . .
        . . .   .   .   . . .
        . . .   .   .   1 . .
        . . .   .   .   . 1 .
        . . .   .   .   . . 1
        """,
    )
    # target 'eating' (slot 5) takes the source's first padding slot, not source 'eating' (3)
    assert mapper.matrix[3].sum() == 0


def test_original_rule_3_to_1_fills_block_with_1_over_m():
    mapper = word_swap_mapper("A hippopotamus eating", "A lion eating", rule="original")
    #   target: BOS a lion eating EOS pad
    assert_corner(
        mapper,
        """
        1 . . . . .
        . 1 . . . .
        . . 1 . . .
        . . 1 1 . .
        . . 1 . 1 .
        . . . . . 1
        """,
    )


def test_rules_agree_when_no_swap_changes_the_length():
    for source, target in [("A haunted house", "A magical house"), ("a hexagon", "a matchstick")]:
        course = word_swap_mapper(source, target).matrix
        assert torch.equal(course, word_swap_mapper(source, target, rule="original").matrix)


def _official_get_word_inds(text: str, word_place: int, tokenizer) -> list[int]:
    """``seq_aligner.get_word_inds`` of the original code, transcribed (int word_place only)."""
    split_text = text.split(" ")
    out = []
    words_encode = [tokenizer.decode([item]).strip("#") for item in tokenizer.encode(text)][1:-1]
    cur_len, ptr = 0, 0
    for i in range(len(words_encode)):
        cur_len += len(words_encode[i])
        if ptr == word_place:
            out.append(i + 1)
        if cur_len >= len(split_text[ptr]):
            ptr += 1
            cur_len = 0
    return out


def _official_replacement_mapper(x: str, y: str, tokenizer, max_len: int = 77) -> torch.Tensor:
    """``seq_aligner.get_replacement_mapper_`` of the original code, transcribed."""
    words_x, words_y = x.split(" "), y.split(" ")
    inds_replace = [i for i in range(len(words_y)) if words_y[i] != words_x[i]]
    inds_source = [_official_get_word_inds(x, i, tokenizer) for i in inds_replace]
    inds_target = [_official_get_word_inds(y, i, tokenizer) for i in inds_replace]
    mapper = torch.zeros(max_len, max_len)
    i = j = 0
    cur_inds = 0
    while i < max_len and j < max_len:
        if cur_inds < len(inds_source) and inds_source[cur_inds][0] == i:
            inds_source_, inds_target_ = inds_source[cur_inds], inds_target[cur_inds]
            if len(inds_source_) == len(inds_target_):
                mapper[inds_source_, inds_target_] = 1
            else:
                ratio = 1 / len(inds_target_)
                for i_t in inds_target_:
                    mapper[inds_source_, i_t] = ratio
            cur_inds += 1
            i += len(inds_source_)
            j += len(inds_target_)
        elif cur_inds < len(inds_source):
            mapper[i, j] = 1
            i += 1
            j += 1
        else:
            mapper[j, j] = 1
            i += 1
            j += 1
    return mapper


# --------------------------------------------------------------------------------------------
# Property tests over generated prompt pairs
# --------------------------------------------------------------------------------------------

# Lower-case words with known real splits: one to four pieces.
VOCABULARY = [
    "a", "cat", "dog", "lion", "house", "large", "eating", "haunted", "magical", "ball",
    "hippopotamus", "unimaginably", "inconceivably", "unrealistically", "matchstick",
    "hexagon", "turquoise", "crimson", "bicycle", "motorcycle",
]  # fmt: skip


@st.composite
def prompt_pairs(draw) -> tuple[str, str]:
    source_words = draw(st.lists(st.sampled_from(VOCABULARY), min_size=1, max_size=8))
    target_words = [
        draw(st.sampled_from(VOCABULARY)) if draw(st.booleans()) else word
        for word in source_words
    ]
    return " ".join(source_words), " ".join(target_words)


PROPERTY_SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@PROPERTY_SETTINGS
@given(prompt_pairs())
def test_property_shape_and_nonnegative(pair):
    mapper = word_swap_mapper(*pair)
    assert mapper.matrix.shape == (77, 77) and mapper.matrix.dtype == torch.float32
    assert (mapper.matrix >= 0).all()


@PROPERTY_SETTINGS
@given(prompt_pairs())
def test_property_unswapped_slots_map_one_to_one_in_order_to_the_same_token(pair):
    mapper = word_swap_mapper(*pair)
    source, target, matrix = mapper.source, mapper.target, mapper.matrix
    swapped_rows = {i for swap in mapper.swaps for i in swap.source_word.slots}
    shift = target.n_used - source.n_used  # how far the trailing slots move
    previous_column = -1
    for i in range(MAX_SLOTS):
        if i in swapped_rows:
            continue
        row = matrix[i]
        if i + shift >= MAX_SLOTS:  # pushed past 77: only padding may drop out
            assert source.slots[i].kind == "pad" and row.sum() == 0
            continue
        (columns,) = row.nonzero(as_tuple=True)
        assert len(columns) == 1 and row[columns[0]] == 1
        j = int(columns[0])
        assert j > previous_column
        previous_column = j
        assert target.slots[j].id == source.slots[i].id  # the same token on both sides
        assert (target.slots[j].kind == "pad") == (source.slots[i].kind == "pad")


@PROPERTY_SETTINGS
@given(prompt_pairs())
def test_property_swap_blocks(pair):
    mapper = word_swap_mapper(*pair)
    for swap in mapper.swaps:
        rows, columns = swap.source_word.slots, swap.target_word.slots
        block = mapper.matrix[rows.start : rows.stop, columns.start : columns.stop]  # (n, m)
        n, m = block.shape
        assert (n, m) == (swap.n_source, swap.n_target)
        if n == m:
            assert torch.equal(block, torch.eye(n))
        else:
            assert block.sum().item() == pytest.approx(min(n, m))
            assert torch.allclose(block, torch.full((n, m), 1 / max(n, m)))
        # nothing else in these rows or columns
        assert mapper.matrix[rows.start : rows.stop].sum() == pytest.approx(block.sum().item())
        assert mapper.matrix[:, columns.start : columns.stop].sum() == pytest.approx(
            block.sum().item()
        )


@PROPERTY_SETTINGS
@given(prompt_pairs())
def test_property_original_rule_matches_the_original_code(pair):
    from p2p_teach.tokens import load_clip_tokenizer

    mapper = word_swap_mapper(*pair, rule="original")
    expected = _official_replacement_mapper(*pair, load_clip_tokenizer())
    assert torch.equal(mapper.matrix, expected)


@PROPERTY_SETTINGS
@given(prompt_pairs())
def test_property_library_answer_passes_its_own_check(pair):
    mapper = word_swap_mapper(*pair)
    assert check_mapper(mapper.matrix, *pair).ok


# --------------------------------------------------------------------------------------------
# Text rendering and the learner's checker
# --------------------------------------------------------------------------------------------


def test_format_weight():
    assert [format_weight(v) for v in (0.0, 1.0, 1 / 3, 0.25, 0.5)] == [".", "1", "1/3", "1/4",
                                                                        "1/2"]


def test_format_mapper_shows_labels_and_fractions():
    text = format_mapper(word_swap_mapper("A lion eating", "A hippopotamus eating"))
    lines = text.splitlines()
    assert "'lion' (slots 2) → 'hippopotamus' (slots 2–4): 1-to-N" in text
    header = lines[lines.index(next(line for line in lines if "hippo" in line and "BOS" in line))]
    assert header.split() == ["BOS", "a", "hippo", "potam", "us", "eating", "EOS", "pad"]
    lion_row = next(line for line in lines if line.split()[:2] == ["2", "lion"])
    assert lion_row.split()[2:] == [".", ".", "1/3", "1/3", "1/3", ".", ".", "."]
    eating_row = next(line for line in lines if line.split()[:2] == ["3", "eating"])
    assert eating_row.split()[2:] == [".", ".", ".", ".", ".", "1", ".", "."]


def test_check_mapper_accepts_a_correct_corner():
    answer = corner(
        """
        1 . .   .   .   .
        . 1 .   .   .   .
        . . 1/3 1/3 1/3 .
        . . .   .   .   1
        """
    )
    report = check_mapper(answer, "A lion eating", "A hippopotamus eating")
    assert report.ok and bool(report)
    assert report.checked_shape == (4, 6)
    assert "Correct" in str(report)
    third = Fraction(1, 3)
    as_fractions = [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, third, third], [0, 0, 0, 0]]
    assert check_mapper(as_fractions, "A lion eating", "A hippopotamus eating").ok


def test_check_mapper_reports_each_differing_cell():
    answer = [  # the learner forgot the 1/3s and mapped 'eating' on the diagonal
        [1, 0, 0, 0, 0, 0],
        [0, 1, 0, 0, 0, 0],
        [0, 0, 1, 0, 0, 0],
        [0, 0, 0, 1, 0, 0],
    ]
    report = check_mapper(answer, "A lion eating", "A hippopotamus eating")
    assert not report.ok
    cells = {(d.row, d.column): (d.expected, d.got) for d in report.differences}
    assert cells == {
        (2, 2): (pytest.approx(1 / 3), 1.0),
        (2, 3): (pytest.approx(1 / 3), 0.0),
        (2, 4): (pytest.approx(1 / 3), 0.0),
        (3, 3): (0.0, 1.0),
        (3, 5): (1.0, 0.0),
    }
    text = str(report)
    assert "5 cell(s)" in text
    # first what: the regions and the learner's own values, never the expected ones
    block = "the block of the swap 'lion' (source slots 2) → 'hippopotamus' (target slots 2–4)"
    assert block in text
    assert "M[3, 5] (source 'eating' → target 'eating'): yours 0" in text
    assert "expected 1" not in text and "1/3" not in text and "why:" not in text
    # then why: a hint per region, still without the values
    hinted = str(check_mapper(answer, "A lion eating", "A hippopotamus eating", hint=True))
    assert "why: n = 1 ≠ m = 3" in hinted and "1/3" not in hinted
    # the expected values only on request
    revealed = str(check_mapper(answer, "A lion eating", "A hippopotamus eating", reveal=True))
    assert "M[3, 5] (source 'eating' → target 'eating'): expected 1, got 0" in revealed
    assert "M[2, 2] (source 'lion' → target 'hippo'): expected 1/3, got 1" in revealed


def test_check_mapper_gives_the_hint_when_the_same_answer_is_checked_again():
    answer = [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]
    first = str(check_mapper(answer, "A lion, eating", "A hippopotamus, eating"))
    again = str(check_mapper(answer, "A lion, eating", "A hippopotamus, eating"))
    assert "why:" not in first and "why:" in again
    assert "expected" not in again.replace("reveal=True shows the expected values", "")
    changed = [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0.5, 0.5], [0, 0, 0, 0]]
    assert "why:" not in str(check_mapper(changed, "A lion, eating", "A hippopotamus, eating"))


def test_check_mapper_against_the_original_rule():
    mapper = word_swap_mapper("A lion eating", "A hippopotamus eating")
    report = check_mapper(mapper.matrix, "A lion eating", "A hippopotamus eating", "original")
    # the two rules differ exactly where the original code misaligns later tokens
    assert not report.ok
    assert {(d.row, d.column) for d in report.differences[:4]} == {(3, 5), (4, 6), (5, 5), (5, 7)}
    # course: source i → target i + 2 for i = 3…74; original: j → j for j = 5…76
    assert len(report.differences) == 72 + 72
    text = str(report)
    assert "144 cell(s)" in text and "… and 124 more" in text
    assert "the slots after the swap 'lion' → 'hippopotamus': 144 cell(s)" in text
    assert len(text.splitlines()) == 1 + 1 + 20 + 1 + 1  # title, region, 20 cells, more, help


def test_check_mapper_rejects_a_wrong_shape():
    with pytest.raises(ValueError, match="2-D"):
        check_mapper([1, 0, 0], "a cat", "a dog")
    with pytest.raises(ValueError, match=r"different lengths \[2, 3\] \(row 1 has 2\)"):
        check_mapper([[1, 0, 0], [0, 1]], "a cat", "a dog")
    with pytest.raises(ValueError, match="must be a number"):
        check_mapper([[1, 0], [0, "one"]], "a cat", "a dog")


def test_check_mapper_takes_a_numpy_array_of_fractions():
    numpy = pytest.importorskip("numpy")
    third = Fraction(1, 3)
    answer = numpy.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, third, third]], dtype=object)
    assert check_mapper(answer, "A lion eating", "A hippopotamus eating").ok
    answer[2, 3] = Fraction(1, 2)
    (difference,) = check_mapper(answer, "A lion eating", "A hippopotamus eating").differences
    assert (difference.row, difference.column) == (2, 3)


def test_examples_have_the_case_their_name_says():
    from p2p_teach.mapper import EXAMPLES

    for name, (source, target) in EXAMPLES.items():
        cases = [swap.case for swap in word_swap_mapper(source, target).swaps]
        if name.startswith("two swaps"):
            assert cases == ["N-to-M", "1-to-N"]
        else:
            assert cases == [name.split(":")[0]]


def test_shared_punctuation_stays_out_of_the_swap():
    """"lion," → "hippopotamus," is a 1-to-N swap with the comma mapped one to one: the same
    matrix as when the comma is a word of its own."""
    mapper = word_swap_mapper("A lion, eating", "A hippopotamus, eating")
    (swap,) = mapper.swaps
    assert swap.case == "1-to-N" and (swap.source_slots, swap.target_slots) == (
        range(2, 3),
        range(2, 5),
    )
    assert str(swap) == "'lion' (slots 2) → 'hippopotamus' (slots 2–4): 1-to-N"
    spaced = word_swap_mapper("A lion , eating", "A hippopotamus , eating")
    assert spaced.source.ids == mapper.source.ids and spaced.target.ids == mapper.target.ids
    assert torch.equal(mapper.matrix, spaced.matrix)
    assert mapper.matrix[3, 5] == 1.0  # source ',' → target ','


def test_differing_punctuation_swaps_the_whole_words_and_original_rule_always_does():
    (swap,) = word_swap_mapper("A lion, eating", "A hippopotamus! eating").swaps
    assert swap.case == "N-to-M" and swap.source_slots == range(2, 4)
    (original,) = word_swap_mapper("A lion, eating", "A hippopotamus, eating", "original").swaps
    assert original.case == "N-to-M" and original.target_slots == range(2, 6)


def test_a_quoted_word_with_a_contraction_piece_swaps_whole_and_keeps_the_walk_aligned():
    """In "'sunny'" CLIP's pre-token "'s" belongs to the word proper, so its edges ("", "'")
    differ from "'cloudy'"'s ("'", "'"): the whole words swap, and every later token stays
    aligned (each unchanged slot maps to the slot of the same text)."""
    source, target = "a sign saying 'sunny' here", "a sign saying 'cloudy' here"
    assert tokenize(source).words[3].edges == ("", "'")
    assert tokenize(target).words[3].edges == ("'", "'")
    mapper = word_swap_mapper(source, target)
    (swap,) = mapper.swaps
    assert swap.source_slots == mapper.source.words[3].slots
    assert swap.target_slots == mapper.target.words[3].slots
    for word_index in (4,):  # "here", after the swap
        i = mapper.source.words[word_index].start
        j = mapper.target.words[word_index].start
        assert mapper.matrix[i, j] == 1.0
    assert mapper.matrix[mapper.source.eos_index, mapper.target.eos_index] == 1.0
