"""Tokenization and mapper explorers, driven without a browser: set ``.value``, check state."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import torch  # noqa: E402

from p2p_teach.mapper import EXAMPLES, format_mapper, word_swap_mapper  # noqa: E402
from p2p_teach.widgets import MapperExplorer, TokenExplorer  # noqa: E402
from p2p_teach.widgets.mapper import CUSTOM  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------------------------
# Tokenization explorer
# --------------------------------------------------------------------------------------------


def test_token_explorer_starts_with_both_prompts_drawn():
    explorer = TokenExplorer("A lion eating", "A hippopotamus eating")
    assert [view.normalized for view in explorer.views] == [
        "a lion eating",
        "a hippopotamus eating",
    ]
    assert explorer.figure is not None and len(explorer.figure.axes) == 2
    assert explorer.figure_image.value[:8] == PNG_MAGIC
    assert "<b>potam</b>" in explorer.table_view.value
    assert "hippo·potam·us" in explorer.work_view.value
    assert "7 of 77 slots used" in explorer.status.value
    assert explorer.error is None


def test_token_explorer_follows_typed_prompts():
    explorer = TokenExplorer("A lion eating", "")
    assert len(explorer.views) == 1 and len(explorer.figure.axes) == 1
    first_figure, first_png = explorer.figure, explorer.figure_image.value

    explorer.source_text.value = "An unimaginably large house"
    assert explorer.views[0].normalized == "an unimaginably large house"
    assert [explorer.views[0].slots[k].text for k in (2, 3, 4)] == ["uni", "magin", "ably"]
    assert explorer.figure is not first_figure
    assert explorer.figure_image.value != first_png
    assert "<b>magin</b>" in explorer.table_view.value
    assert "<b>lion</b>" not in explorer.table_view.value

    explorer.target_text.value = "An inconceivably large house"
    assert len(explorer.views) == 2 and len(explorer.figure.axes) == 2
    assert 'class="p2p-changed"' in explorer.table_view.value


def test_token_explorer_padding_slider():
    explorer = TokenExplorer("a cat", "", padding_shown=0)
    assert "… 73 pad" in explorer.table_view.value
    explorer.padding_slider.value = 3
    assert "… 70 pad" in explorer.table_view.value
    assert explorer.table_view.value.count('data-kind="pad"') == 4 * 3 + 4  # 3 pads + summary


def test_token_explorer_reports_a_prompt_too_long_and_recovers():
    explorer = TokenExplorer("a cat", "")
    explorer.source_text.value = "a " * 80
    assert explorer.error is not None and "77" in explorer.error
    assert "could not tokenize" in explorer.status.value
    assert explorer.views[0].normalized == "a cat"  # the last good state stays on screen
    explorer.source_text.value = "a dog"
    assert explorer.error is None and explorer.views[0].normalized == "a dog"


# --------------------------------------------------------------------------------------------
# Mapper explorer
# --------------------------------------------------------------------------------------------

LION = "1-to-N: lion → hippopotamus (hippo·potam·us)"


def test_mapper_explorer_preset_sets_prompts_and_mapper():
    explorer = MapperExplorer()
    assert explorer.mapper.swaps[0].case == "1-to-1"
    explorer.preset_dropdown.value = LION
    assert (explorer.source_text.value, explorer.target_text.value) == EXAMPLES[LION]
    assert [swap.case for swap in explorer.mapper.swaps] == ["1-to-N"]
    assert torch.equal(
        explorer.mapper.matrix, word_swap_mapper(*EXAMPLES[LION]).matrix
    )
    assert explorer.text_view.value == (
        "<pre>" + format_mapper(explorer.mapper).replace("'", "&#x27;") + "</pre>"
    )
    assert "1/3" in explorer.text_view.value
    assert "1-to-N" in explorer.status.value


def test_mapper_explorer_rule_toggle_changes_matrix_and_figure():
    explorer = MapperExplorer(preset=LION)
    course_matrix, course_figure = explorer.mapper.matrix, explorer.figure
    explorer.rule_buttons.value = "original"
    assert explorer.mapper.rule == "original"
    assert not torch.equal(explorer.mapper.matrix, course_matrix)
    assert explorer.mapper.matrix[5, 5] == 1 and explorer.mapper.matrix[3].sum() == 0
    assert explorer.figure is not course_figure
    assert "original Prompt-to-Prompt code" in explorer.figure.get_suptitle()


def test_mapper_explorer_view_toggle():
    explorer = MapperExplorer(preset=LION)
    assert len(explorer.figure.axes) == 1  # zoom
    explorer.view_buttons.value = "zoom + full 77×77"
    assert len(explorer.figure.axes) == 2
    explorer.view_buttons.value = "full 77×77"
    (axis,) = explorer.figure.axes
    assert axis.collections[0].get_array().size == 77 * 77


def test_mapper_explorer_typing_switches_to_custom_and_back():
    explorer = MapperExplorer(preset=LION)
    explorer.target_text.value = "A crimson eating"
    assert explorer.preset_dropdown.value == CUSTOM
    assert explorer.mapper.target.normalized == "a crimson eating"
    explorer.target_text.value = EXAMPLES[LION][1]
    assert explorer.preset_dropdown.value == LION


def test_mapper_explorer_different_word_counts_show_the_alignment():
    explorer = MapperExplorer(preset=LION)
    explorer.target_text.value = "A fluffy lion eating"
    assert explorer.mapper is None
    assert explorer.alignment is not None
    assert explorer.alignment.source_index[:6].tolist() == [0, 1, -1, 2, 3, 4]
    assert "refinement" in explorer.error
    assert "new: own attention" in explorer.text_view.value
    assert len(explorer.figure.axes) == 1
    explorer.target_text.value = "A crimson eating"  # back to a word swap
    assert explorer.mapper is not None and explorer.alignment is None and explorer.error is None
