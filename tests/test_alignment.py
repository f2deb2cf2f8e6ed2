"""Refinement alignment: hand-worked examples, padding, and agreement with the original code's
aligner on generated prompt pairs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from p2p_teach.alignment import align_sequences, format_alignment, refinement_alignment
from p2p_teach.tokens import MAX_SLOTS, tokenize


def used_part(alignment) -> list[int]:
    return alignment.source_index[: alignment.target.n_used].tolist()


def test_a_cat_to_a_fluffy_cat():
    # source: BOS a cat EOS        target: BOS a fluffy cat EOS
    alignment = refinement_alignment("a cat", "a fluffy cat")
    assert alignment.source_index.shape == (77,) and alignment.source_index.dtype == torch.int64
    assert alignment.alphas.shape == (77,) and alignment.alphas.dtype == torch.float32
    assert used_part(alignment) == [0, 1, -1, 2, 3]
    assert alignment.alphas[:5].tolist() == [1, 1, 0, 1, 1]
    # padding follows EOS: target slot 4 + d continues source slot 3 + d
    assert alignment.source_index[5:].tolist() == list(range(4, 76))
    assert alignment.alphas[5:].sum() == 72
    assert alignment.new_target_slots == [2]
    assert alignment.removed_source_slots == []


def test_removing_a_word():
    # source: BOS a fluffy cat EOS   target: BOS a cat EOS
    alignment = refinement_alignment("a fluffy cat", "a cat")
    assert used_part(alignment) == [0, 1, 3, 4]
    assert alignment.removed_source_slots == [2]
    assert alignment.new_target_slots == []
    # target padding 4..75 continues source padding 5..76; target slot 76 has no source
    assert alignment.source_index[4:76].tolist() == list(range(5, 77))
    assert alignment.source_index[76] == -1 and alignment.alphas[76] == 0


def test_inserting_a_multi_piece_word():
    # hippopotamus is hippo · potam · us: three new slots
    alignment = refinement_alignment("a cat", "a hippopotamus cat")
    assert used_part(alignment) == [0, 1, -1, -1, -1, 2, 3]
    assert alignment.new_target_slots == [2, 3, 4]


def test_multi_piece_word_kept_piece_by_piece():
    alignment = refinement_alignment("a hippopotamus", "a cute hippopotamus")
    assert used_part(alignment) == [0, 1, -1, 2, 3, 4, 5]


def test_repeated_words_match_their_first_occurrence():
    # BOS a cat and a cat EOS: the appended "and a cat" is new
    alignment = refinement_alignment("a cat", "a cat and a cat")
    assert used_part(alignment) == [0, 1, 2, -1, -1, -1, 3]


def test_different_words_are_never_paired():
    # red ≠ blue: blue is new and red is removed (gaps are free, a mismatch costs 1)
    alignment = refinement_alignment("a red car", "a blue car")
    assert used_part(alignment) == [0, 1, -1, 3, 4]
    assert alignment.removed_source_slots == [2]


def test_identical_prompts_align_slot_for_slot():
    alignment = refinement_alignment("a photo of a cat", "a photo of a cat")
    assert alignment.source_index.tolist() == list(range(77))
    assert torch.equal(alignment.as_matrix(), torch.eye(77))


def test_as_matrix_is_one_hot_with_zero_columns_for_new_tokens():
    alignment = refinement_alignment("a cat", "a fluffy cat")
    matrix = alignment.as_matrix()
    assert matrix.shape == (77, 77)
    assert matrix[:, 2].sum() == 0  # 'fluffy' is new
    assert matrix[2, 3] == 1 and matrix[3, 4] == 1  # cat → cat, EOS → EOS
    column_sums = matrix.sum(dim=0)
    assert torch.equal(column_sums, alignment.alphas)


def test_padding_near_the_77_slot_limit():
    filler = " ".join(["a"] * 72)  # BOS + 72 + cat + EOS = 75 used slots
    alignment = refinement_alignment(f"{filler} cat", f"{filler} fluffy cat")
    assert alignment.target.n_used == 76
    assert alignment.source_index[73] == -1  # fluffy
    assert alignment.source_index[74:].tolist() == [73, 74, 75]  # cat, EOS, first pad
    assert alignment.alphas.sum() == 76


def test_accepts_token_views():
    source, target = tokenize("a cat"), tokenize("a fluffy cat")
    alignment = refinement_alignment(source, target)
    assert alignment.source is source and alignment.target is target


def test_align_sequences_on_plain_lists():
    assert align_sequences([1, 2, 3], [1, 9, 2, 3]) == [0, -1, 1, 2]
    assert align_sequences([1, 2, 3], [3]) == [2]
    assert align_sequences([], [5, 6]) == [-1, -1]


def test_format_alignment_text():
    text = format_alignment(refinement_alignment("a fluffy cat", "a cat"))
    lines = text.splitlines()
    assert lines[3].split() == ["0", "BOS", "1", "0", "BOS"]
    assert lines[5].split() == ["2", "cat", "1", "3", "cat"]
    assert "source slots no target slot continues: 2 fluffy" in text
    new_line = format_alignment(refinement_alignment("a cat", "a fluffy cat")).splitlines()[5]
    assert new_line.split()[:4] == ["2", "fluffy", "0", "-"]


# --------------------------------------------------------------------------------------------
# Agreement with the original code's aligner (seq_aligner.global_align, transcribed)
# --------------------------------------------------------------------------------------------


def _official_alignment(x: list[int], y: list[int]) -> list[int]:
    """``global_align`` + ``get_aligned_sequences`` of the original code (gap 0, ±1)."""
    gap, match, mismatch = 0, 1, -1
    matrix = np.zeros((len(x) + 1, len(y) + 1), dtype=np.int32)
    matrix[0, 1:] = (np.arange(len(y)) + 1) * gap
    matrix[1:, 0] = (np.arange(len(x)) + 1) * gap
    trace_back = np.zeros((len(x) + 1, len(y) + 1), dtype=np.int32)
    trace_back[0, 1:] = 1
    trace_back[1:, 0] = 2
    trace_back[0, 0] = 4
    for i in range(1, len(x) + 1):
        for j in range(1, len(y) + 1):
            left = matrix[i, j - 1] + gap
            up = matrix[i - 1, j] + gap
            diag = matrix[i - 1, j - 1] + (match if x[i - 1] == y[j - 1] else mismatch)
            matrix[i, j] = max(left, up, diag)
            if matrix[i, j] == left:
                trace_back[i, j] = 1
            elif matrix[i, j] == up:
                trace_back[i, j] = 2
            else:
                trace_back[i, j] = 3
    i, j = len(x), len(y)
    mapper_y_to_x = []
    while i > 0 or j > 0:
        if trace_back[i, j] == 3:
            i, j = i - 1, j - 1
            mapper_y_to_x.append((j, i))
        elif trace_back[i][j] == 1:
            j = j - 1
            mapper_y_to_x.append((j, -1))
        elif trace_back[i][j] == 2:
            i = i - 1
        elif trace_back[i][j] == 4:
            break
    mapper_y_to_x.reverse()
    return [source for _, source in mapper_y_to_x]


WORDS = ["a", "cat", "dog", "fluffy", "red", "hippopotamus", "and", "matchstick", "house"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.sampled_from(WORDS), min_size=1, max_size=7),
    st.lists(st.sampled_from(WORDS), min_size=1, max_size=7),
)
def test_property_used_slots_match_the_original_aligner(source_words, target_words):
    alignment = refinement_alignment(" ".join(source_words), " ".join(target_words))
    source, target = alignment.source, alignment.target
    expected = _official_alignment(source.ids[: source.n_used], target.ids[: target.n_used])
    assert used_part(alignment) == expected
    # aligned pairs hold the same token, in increasing order
    pairs = [(i, j) for j, i in enumerate(alignment.source_index.tolist()) if i >= 0]
    assert all(source.slots[i].id == target.slots[j].id for i, j in pairs)
    assert [i for i, _ in pairs] == sorted(i for i, _ in pairs)
    assert len({i for i, _ in pairs}) == len(pairs)
    assert torch.equal(alignment.alphas, (alignment.source_index >= 0).float())
    assert int(alignment.source_index.max()) < MAX_SLOTS


def test_original_padding_reads_the_same_source_slot():
    here = refinement_alignment("a big red circle", "a big red circle on the left")
    there = refinement_alignment("a big red circle", "a big red circle on the left", padding="slot")
    eos = here.target.eos_index
    assert torch.equal(here.source_index[: eos + 1], there.source_index[: eos + 1])  # BOS…EOS
    assert there.source_index[eos + 1 :].tolist() == list(range(eos + 1, 77))  # k → k
    assert here.source_index[eos + 1 : eos + 3].tolist() == [
        here.source.eos_index + 1,
        here.source.eos_index + 2,
    ]
    assert bool((there.alphas[eos + 1 :] == 1).all())
    with pytest.raises(ValueError, match="padding='end'"):
        refinement_alignment("a cat", "a fluffy cat", padding="end")
