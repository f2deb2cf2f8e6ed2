"""Token tables: a prompt's 77 slots as a picture and as an HTML table.

Each slot is a box with its index, its BPE piece and its id; the boxes of one word share a
bracket with the word's text under them; BOS, EOS and padding have their own colours, and
padding is summarised after the first few slots. Given two prompts, the words that differ
(swapped, inserted or removed) are highlighted. Pure functions: data in, Figure or HTML out.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch

from ..alignment import refinement_alignment
from ..tokens import MAX_SLOTS, TokenView, tokenize

KIND_COLORS: dict[str, str] = {
    "bos": "#c6dbef",
    "eos": "#fdd0a2",
    "pad": "#eeeeee",
}
WORD_COLORS: tuple[str, str] = ("#e5f5e0", "#d9f0d3")  # alternate, so neighbouring words differ
HIGHLIGHT_COLOR = "#fc9272"  # words that differ between the two prompts
HIGHLIGHT_EDGE = "#cb181d"


@dataclass(frozen=True)
class _Box:
    """One box of a token strip: a slot, or the summary of the remaining padding."""

    column: int
    title: str  # slot index (or a range)
    piece: str
    id_text: str
    color: str
    highlighted: bool


def _as_view(prompt: str | TokenView) -> TokenView:
    return prompt if isinstance(prompt, TokenView) else tokenize(prompt)


def changed_words(source: TokenView, target: TokenView) -> tuple[set[int], set[int]]:
    """Indices of the source words and target words that differ between the prompts.

    Same number of words: the words that differ position by position (a word swap).
    Otherwise: words with a slot that the refinement alignment inserts or removes.
    """
    if len(source.words) == len(target.words):
        differing = {
            k for k, (a, b) in enumerate(zip(source.words, target.words)) if a.text != b.text
        }
        return differing, set(differing)
    alignment = refinement_alignment(source, target)
    removed = set(alignment.removed_source_slots)
    new = set(alignment.new_target_slots)
    source_words = {w.index for w in source.words if any(i in removed for i in w.slots)}
    target_words = {w.index for w in target.words if any(j in new for j in w.slots)}
    return source_words, target_words


def _boxes(view: TokenView, highlighted_words: set[int], padding_shown: int) -> list[_Box]:
    boxes = []
    shown = min(MAX_SLOTS, view.n_used + padding_shown)
    for slot in view.slots[:shown]:
        if slot.kind == "word":
            color = WORD_COLORS[slot.word_index % 2]  # type: ignore[operator]
            highlighted = slot.word_index in highlighted_words
            if highlighted:
                color = HIGHLIGHT_COLOR
        else:
            color, highlighted = KIND_COLORS[slot.kind], False
        boxes.append(
            _Box(len(boxes), str(slot.index), slot.label, str(slot.id), color, highlighted)
        )
    if shown < MAX_SLOTS:
        n_rest = MAX_SLOTS - shown
        boxes.append(
            _Box(len(boxes), f"{shown}–{MAX_SLOTS - 1}", f"… {n_rest} pad", str(view.slots[-1].id),
                 KIND_COLORS["pad"], False)
        )
    return boxes


def _draw_strip(axis, view: TokenView, boxes: list[_Box], title: str) -> None:
    width, height = 0.92, 0.9
    for box in boxes:
        axis.add_patch(
            FancyBboxPatch(
                (box.column - width / 2, -height / 2), width, height,
                boxstyle="round,pad=0.02,rounding_size=0.08",
                facecolor=box.color,
                edgecolor=HIGHLIGHT_EDGE if box.highlighted else "#636363",
                linewidth=2.0 if box.highlighted else 0.8,
                gid=f"slot-{box.title}",
            )
        )
        axis.text(box.column, 0.62, box.title, ha="center", va="bottom", fontsize=7,
                  color="#636363")
        axis.text(box.column, 0.08, box.piece, ha="center", va="center", fontsize=9,
                  fontweight="bold" if box.highlighted else "normal")
        axis.text(box.column, -0.28, box.id_text, ha="center", va="center", fontsize=6.5,
                  color="#404040")
    # words grouped: a bracket under each word's slots, with the word's text
    for word in view.words:
        if word.n_slots == 0 or word.start >= len(boxes):
            continue
        left, right = word.start - 0.45, min(word.stop, len(boxes)) - 1 + 0.45
        axis.plot([left, left, right, right], [-0.55, -0.65, -0.65, -0.55], color="#636363",
                  linewidth=0.9)
        axis.text((left + right) / 2, -0.75, word.text, ha="center", va="top", fontsize=8.5,
                  style="italic")
    axis.set_xlim(-0.6, len(boxes) - 0.4)
    axis.set_ylim(-1.15, 0.95)
    axis.axis("off")
    axis.set_title(title, loc="left", fontsize=10)


def token_table_figure(
    source: str | TokenView,
    target: str | TokenView | None = None,
    padding_shown: int = 2,
    highlight: bool = True,
) -> Figure:
    """The slots of one prompt (or two, one above the other) as boxes.

    Each box shows the slot index, the piece and its id; brackets group the pieces of each
    word; BOS, EOS and padding are coloured; after ``padding_shown`` padding slots the rest are
    summarised in one box. With two prompts and ``highlight``, the words that differ are red.
    """
    views = [_as_view(source)] + ([_as_view(target)] if target is not None else [])
    highlights: list[set[int]] = [set() for _ in views]
    if len(views) == 2 and highlight:
        highlights = list(changed_words(views[0], views[1]))
    strips = [_boxes(view, words, padding_shown) for view, words in zip(views, highlights)]
    n_columns = max(len(boxes) for boxes in strips)
    figure = Figure(figsize=(min(40.0, 1.0 + 0.78 * n_columns), 1.9 * len(views)),
                    layout="constrained")
    axes = figure.subplots(len(views), 1, squeeze=False)[:, 0]
    names = ["source", "target"] if len(views) == 2 else ["prompt"]
    for axis, view, boxes, name in zip(axes, views, strips, names):
        title = f"{name}: {view.normalized!r} — {view.n_used} of {MAX_SLOTS} slots used"
        _draw_strip(axis, view, boxes, title)
        axis.set_xlim(-0.6, n_columns - 0.4)
    if len(views) == 2 and highlight:
        figure.suptitle("red: the words that differ (swapped, inserted or removed)",
                        fontsize=8, x=0.99, ha="right")
    return figure


def token_table_html(
    source: str | TokenView,
    target: str | TokenView | None = None,
    padding_shown: int = 2,
    highlight: bool = True,
) -> str:
    """The same table as HTML (rows: slot, piece, id, word), one table per prompt.

    Cells carry ``data-slot`` and ``data-kind`` attributes, and differing words the class
    ``p2p-changed``, so that a browser test can find them.
    """
    views = [_as_view(source)] + ([_as_view(target)] if target is not None else [])
    highlights: list[set[int]] = [set() for _ in views]
    if len(views) == 2 and highlight:
        highlights = list(changed_words(views[0], views[1]))
    names = ["source", "target"] if len(views) == 2 else ["prompt"]
    parts = []
    for view, words, name in zip(views, highlights, names):
        parts.append(_html_table(view, words, name, padding_shown))
    return "\n".join(parts)


def _html_table(view: TokenView, highlighted_words: set[int], name: str, padding_shown: int) -> str:
    shown = min(MAX_SLOTS, view.n_used + padding_shown)
    cells: dict[str, list[str]] = {"slot": [], "piece": [], "id": [], "word": []}
    for slot in view.slots[:shown]:
        changed = slot.kind == "word" and slot.word_index in highlighted_words
        style = f"background:{HIGHLIGHT_COLOR if changed else _cell_color(slot)}"
        attributes = (
            f' data-slot="{slot.index}" data-kind="{slot.kind}" style="{style}"'
            + (' class="p2p-changed"' if changed else "")
        )
        word = view.words[slot.word_index].text if slot.kind == "word" else slot.label
        cells["slot"].append(f"<td{attributes}>{slot.index}</td>")
        cells["piece"].append(f"<td{attributes}><b>{html.escape(slot.label)}</b></td>")
        cells["id"].append(f"<td{attributes}>{slot.id}</td>")
        cells["word"].append(f"<td{attributes}>{html.escape(word)}</td>")
    if shown < MAX_SLOTS:
        rest = f"{shown}–{MAX_SLOTS - 1}"
        summary = f'<td data-slot="{rest}" data-kind="pad" style="background:#eeeeee">'
        cells["slot"].append(f"{summary}{rest}</td>")
        cells["piece"].append(f"{summary}… {MAX_SLOTS - shown} pad</td>")
        cells["id"].append(f"{summary}{view.slots[-1].id}</td>")
        cells["word"].append(f"{summary}padding</td>")
    caption = (
        f"{name}: {html.escape(repr(view.normalized))} — {view.n_used} of {MAX_SLOTS} slots used"
    )
    rows = "".join(
        f"<tr><th>{label}</th>{''.join(row)}</tr>" for label, row in cells.items()
    )
    return (
        f'<table class="p2p-token-table" data-prompt="{html.escape(view.normalized)}" '
        'style="border-collapse:collapse;font-family:monospace;font-size:12px">'
        f"<caption style=\"text-align:left\">{caption}</caption>{rows}</table>"
    )


def _cell_color(slot) -> str:
    if slot.kind == "word":
        return WORD_COLORS[slot.word_index % 2]
    return KIND_COLORS[slot.kind]
