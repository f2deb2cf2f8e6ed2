"""Token-table, mapper and alignment figures: what is drawn, read back from the artists."""

from __future__ import annotations

from html.parser import HTMLParser

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
from matplotlib.colors import to_hex  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from p2p_teach.alignment import refinement_alignment  # noqa: E402
from p2p_teach.figures import (  # noqa: E402
    alignment_figure,
    changed_words,
    mapper_comparison_figure,
    mapper_figure,
    token_table_figure,
    token_table_html,
)
from p2p_teach.figures.mapper import NEW_TOKEN_COLOR, REMOVED_TOKEN_COLOR  # noqa: E402
from p2p_teach.figures.tokens import HIGHLIGHT_COLOR  # noqa: E402
from p2p_teach.mapper import word_swap_mapper  # noqa: E402
from p2p_teach.tokens import tokenize  # noqa: E402


def texts(axis) -> list[str]:
    return [text.get_text() for text in axis.texts]


def patches_by_gid(axis, prefix: str) -> dict[str, object]:
    return {p.get_gid(): p for p in axis.patches if (p.get_gid() or "").startswith(prefix)}


# --------------------------------------------------------------------------------------------
# Token table
# --------------------------------------------------------------------------------------------


def test_token_table_one_prompt_shows_slots_ids_words_and_padding():
    view = tokenize("A hippopotamus eating")
    figure = token_table_figure(view)
    assert isinstance(figure, Figure) and len(figure.axes) == 1
    drawn = texts(figure.axes[0])
    for slot in view.slots[:7]:  # BOS a hippo potam us eating EOS
        assert slot.label in drawn and str(slot.id) in drawn
    assert [t for t in drawn if t in ("hippo", "potam", "us")] == ["hippo", "potam", "us"]
    assert "hippopotamus" in drawn  # the word's bracket label
    assert "… 68 pad" in drawn  # 7 used + 2 padding shown, 68 summarised
    assert "9–76" in drawn
    assert not [p for p in figure.axes[0].patches if to_hex(p.get_facecolor()) == HIGHLIGHT_COLOR]


def test_token_table_two_prompts_highlights_the_swapped_word():
    figure = token_table_figure("A lion eating", "A hippopotamus eating")
    source_axis, target_axis = figure.axes
    highlighted = {
        gid
        for gid, patch in patches_by_gid(target_axis, "slot-").items()
        if to_hex(patch.get_facecolor()) == HIGHLIGHT_COLOR
    }
    assert highlighted == {"slot-2", "slot-3", "slot-4"}
    source_highlighted = {
        gid
        for gid, patch in patches_by_gid(source_axis, "slot-").items()
        if to_hex(patch.get_facecolor()) == HIGHLIGHT_COLOR
    }
    assert source_highlighted == {"slot-2"}
    assert source_axis.get_title(loc="left").startswith("source: 'a lion eating'")


def test_token_table_padding_shown_controls_the_summary():
    figure = token_table_figure("a cat", padding_shown=0)
    drawn = texts(figure.axes[0])
    assert "pad" not in drawn and "… 73 pad" in drawn


def test_changed_words_swap_and_insertion():
    lion, hippo = tokenize("A lion eating"), tokenize("A hippopotamus eating")
    assert changed_words(lion, hippo) == ({1}, {1})
    cat, fluffy = tokenize("a cat"), tokenize("a fluffy cat")
    assert changed_words(cat, fluffy) == (set(), {1})
    assert changed_words(fluffy, cat) == ({1}, set())


class _TableReader(HTMLParser):
    """Collect each table's rows as lists of cell texts, and the classes of cells."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self.changed_cells = 0
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []
            if ("class", "p2p-changed") in attrs:
                self.changed_cells += 1

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def test_token_table_html_has_the_pieces_as_text():
    reader = _TableReader()
    reader.feed(token_table_html("A lion eating", "A hippopotamus eating"))
    source_rows, target_rows = reader.tables
    assert target_rows[1] == [
        "piece", "BOS", "a", "hippo", "potam", "us", "eating", "EOS", "pad", "pad", "… 68 pad"
    ]  # fmt: skip
    assert target_rows[0][:4] == ["slot", "0", "1", "2"]
    assert target_rows[2][3:6] == [str(tokenize("hippopotamus").slots[k].id) for k in (1, 2, 3)]
    assert target_rows[3][3:6] == ["hippopotamus"] * 3
    assert source_rows[1][:5] == ["piece", "BOS", "a", "lion", "eating"]
    # lion: 1 slot × 4 rows; hippopotamus: 3 slots × 4 rows
    assert reader.changed_cells == 4 + 12


def test_token_table_html_escapes_text():
    html_text = token_table_html("a <b> & c")
    assert "<b>&lt;</b>" in html_text and "&amp;" in html_text


# --------------------------------------------------------------------------------------------
# Mapper heatmaps
# --------------------------------------------------------------------------------------------

TWO_SWAPS = ("An unimaginably large lion eating", "An inconceivably large hippopotamus eating")


def test_mapper_figure_zoom_has_labels_fractions_and_cases():
    mapper = word_swap_mapper(*TWO_SWAPS)
    figure = mapper_figure(mapper, view="both")
    full_axis, zoom_axis = figure.axes
    size = mapper.active_size  # BOS … EOS of the target (12 slots) + one pad
    assert size == 13
    x_labels = [label.get_text() for label in zoom_axis.get_xticklabels()]
    y_labels = [label.get_text() for label in zoom_axis.get_yticklabels()]
    assert x_labels[:6] == ["0 BOS", "1 an", "2 in", "3 conce", "4 iv", "5 ably"]
    assert y_labels[2:5] == ["2 uni", "3 magin", "4 ably"]
    assert len(x_labels) == len(y_labels) == size
    drawn = texts(zoom_axis)
    assert drawn.count("1/4") == 12  # the 3×4 block
    assert drawn.count("1/3") == 3  # the 1×3 block
    # BOS, an, large, eating, EOS, first pad; later source pads map past the zoom (shift 3)
    assert drawn.count("1") == 6
    assert "N-to-M (3→4)" in drawn and "1-to-N (1→3)" in drawn
    blocks = [p for p in zoom_axis.patches if p.get_gid() == "swap-block"]
    assert sorted((p.get_x(), p.get_y(), p.get_width(), p.get_height()) for p in blocks) == [
        (2, 2, 4, 3),
        (7, 6, 3, 1),
    ]
    # the full view draws all 77×77 cells and marks the zoom region
    (mesh,) = full_axis.collections
    assert mesh.get_array().size == 77 * 77
    (region,) = [p for p in full_axis.patches if p.get_gid() == "zoom-region"]
    assert region.get_width() == size


@pytest.mark.parametrize(("view", "n_axes"), [("zoom", 1), ("full", 1), ("both", 2)])
def test_mapper_figure_views(view, n_axes):
    figure = mapper_figure(word_swap_mapper("A lion eating", "A hippopotamus eating"), view)
    assert len(figure.axes) == n_axes


def test_mapper_figure_rejects_unknown_view():
    with pytest.raises(ValueError, match="zoom"):
        mapper_figure(word_swap_mapper("a cat", "a dog"), view="tiny")  # type: ignore[arg-type]


def test_mapper_figure_title_names_the_rule():
    figure = mapper_figure(word_swap_mapper("a cat", "a dog", rule="original"), view="zoom")
    assert "original Prompt-to-Prompt code" in figure.get_suptitle()


def test_mapper_comparison_outlines_the_differing_cells():
    source, target = "A lion eating", "A hippopotamus eating"
    course = word_swap_mapper(source, target)
    original = word_swap_mapper(source, target, rule="original")
    figure = mapper_comparison_figure(course, original)
    # course: eating 3→5, EOS 4→6, pad 5→7; original: 5→5, 6→6, 7→7 (8×8 zoom)
    expected = {(5, 3), (6, 4), (7, 5), (5, 5), (6, 6), (7, 7)}  # (column, row)
    for axis in figure.axes:
        outlined = {
            (round(p.get_x()), round(p.get_y()))
            for p in axis.patches
            if p.get_gid() == "difference"
        }
        assert outlined == expected
    assert "6 cell(s) differ" in figure.get_suptitle()
    assert [axis.get_title(loc="left") for axis in figure.axes] == [
        "rule: course",
        "rule: original",
    ]


# --------------------------------------------------------------------------------------------
# Alignment picture
# --------------------------------------------------------------------------------------------


def test_alignment_figure_draws_lines_and_colours_new_and_removed_tokens():
    alignment = refinement_alignment("a red fluffy cat", "a cat sitting")
    # source: BOS a red fluffy cat EOS    target: BOS a cat sitting EOS
    figure = alignment_figure(alignment, padding_shown=1)
    (axis,) = figure.axes
    lines = [line for line in axis.lines if line.get_gid() == "alignment-line"]
    # BOS, a, cat, EOS and the first pad are aligned; 'sitting' is new
    assert sorted((line.get_xdata()[0], line.get_xdata()[1]) for line in lines) == [
        (0, 0), (1, 1), (4, 2), (5, 4), (6, 5)
    ]  # fmt: skip
    boxes = patches_by_gid(axis, "")
    assert to_hex(boxes["target-3"].get_facecolor()) == NEW_TOKEN_COLOR
    assert to_hex(boxes["source-2"].get_facecolor()) == REMOVED_TOKEN_COLOR
    assert to_hex(boxes["source-3"].get_facecolor()) == REMOVED_TOKEN_COLOR
    assert to_hex(boxes["source-4"].get_facecolor()) != REMOVED_TOKEN_COLOR
    assert texts(axis).count("α=0") == 1


def test_figures_render_to_png():
    figure = mapper_figure(word_swap_mapper("A lion eating", "A hippopotamus eating"))
    from io import BytesIO

    buffer = BytesIO()
    figure.savefig(buffer, format="png", dpi=40)
    assert buffer.getvalue()[:8] == b"\x89PNG\r\n\x1a\n"
