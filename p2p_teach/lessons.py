"""The prompts the lessons use, chosen for what the loaded model can draw.

The recitation's prompts (a cat riding a bicycle) mean something to Stable Diffusion v1.x; the
built-in ``shapes`` model only knows coloured shapes, so its lessons swap shapes and colours
instead. Notebooks call :func:`lesson_prompts` once and never hard-code a prompt, so the same
notebook teaches the same steps on either model.

:data:`SLIDE_SPLITS` holds the word splits the recitation's slides drew by hand;
:func:`slide_splits_table` sets them beside the real CLIP splits (:func:`word_pieces`).
"""

from __future__ import annotations

from dataclasses import dataclass

from .defaults import model_defaults
from .tokens import TokenView, tokenize

PIECE_SEPARATOR = "·"


@dataclass(frozen=True)
class LessonPrompts:
    """A source prompt and the edits the lessons make of it.

    ``swaps`` maps each replacement word to its target prompt: the source with ``swapped``
    replaced by that word (a word swap, so the mapper is exact). ``refined`` adds words to the
    source (a refinement). ``kept`` is a word that every edit keeps, ``reweighted`` the word the
    re-weighting lesson scales. ``new_outline`` is a word swap, ``(source, target)``, whose new
    word needs an outline of its own (the slides' bicycle → train): what long injection holds
    back. ``two_objects`` is a word swap of a prompt naming two objects (each word's map on
    its own object), ``refinement`` a ``(source, target)`` pair whose target adds words the
    model draws visibly (the built-in model ignores background words: it takes the background
    from the noise). ``unequal_swap`` is a word swap whose words differ in CLIP piece count
    (1-to-N), whose edit the default's own window for the swapped word makes land.
    """

    source: str
    kept: str
    swapped: str
    swaps: dict[str, str]
    refined: str
    reweighted: str
    model: str
    new_outline: tuple[str, str] | None = None
    two_objects: tuple[str, str] | None = None
    refinement: tuple[str, str] | None = None
    unequal_swap: tuple[str, str] | None = None

    def __post_init__(self) -> None:
        source_words = self.source.split()
        for word in (self.kept, self.swapped, self.reweighted):
            if word not in source_words:
                raise ValueError(f"{word!r} is not a word of the source prompt {self.source!r}")
        for word, target in self.swaps.items():
            expected = " ".join(word if w == self.swapped else w for w in source_words)
            if target != expected:
                raise ValueError(
                    f"swap to {word!r} should be {expected!r} (the source with "
                    f"{self.swapped!r} replaced), got {target!r}"
                )
        for name in ("new_outline", "two_objects", "unequal_swap"):
            pair = getattr(self, name)
            if pair is None:
                continue
            source, target = (prompt.split() for prompt in pair)
            changed = [(a, b) for a, b in zip(source, target) if a != b]
            if len(source) != len(target) or len(changed) != 1:
                raise ValueError(
                    f"{name} {pair!r} should be a word swap: the same words but one, e.g. "
                    "('a big red heart', 'a big red star')"
                )

    @property
    def swap_words(self) -> tuple[str, ...]:
        """The replacement words, in the order the lessons show them."""
        return tuple(self.swaps)

    def target(self, word: str) -> str:
        """The target prompt that swaps in ``word``."""
        if word not in self.swaps:
            raise KeyError(f"no swap to {word!r}; the lessons swap to: {', '.join(self.swaps)}")
        return self.swaps[word]

    def __str__(self) -> str:
        lines = [f"prompts for {self.model}:", f"  source:  {self.source!r}"]
        lines += [f"  → {word}: {target!r}" for word, target in self.swaps.items()]
        lines.append(f"  refined: {self.refined!r}")
        if self.new_outline is not None:
            source, target = self.new_outline
            lines.append(f"  new outline: {source!r} → {target!r}")
        return "\n".join(lines)


def _swaps(source: str, swapped: str, words: tuple[str, ...]) -> dict[str, str]:
    """Target prompts that replace the word ``swapped`` of ``source`` by each of ``words``."""
    return {
        word: " ".join(word if w == swapped else w for w in source.split()) for word in words
    }


SLIDES = LessonPrompts(
    source="photo of a cat riding on a bicycle",
    kept="cat",
    swapped="bicycle",
    swaps=_swaps("photo of a cat riding on a bicycle", "bicycle", ("motorcycle", "train")),
    refined="photo of a fluffy cat riding on a red bicycle",
    reweighted="bicycle",
    model="Stable Diffusion (the recitation's prompts)",
    new_outline=("photo of a cat riding on a bicycle", "photo of a cat riding on a train"),
    two_objects=("photo of a cat riding on a bicycle", "photo of a cat riding on a motorcycle"),
    refinement=(
        "photo of a cat riding on a bicycle", "photo of a fluffy cat riding on a red bicycle"
    ),
)

# no position word: as with most of Stable Diffusion's prompts, the seed decides the layout,
# which is what the attention injection has to keep
SHAPES = LessonPrompts(
    source="a big red circle",
    kept="circle",
    swapped="red",
    swaps=_swaps("a big red circle", "red", ("blue", "cyan")),
    refined="a big red circle on a black background",
    reweighted="red",
    model="the built-in shapes model (it knows only coloured shapes)",
    # a new colour takes even under full injection (it reaches the image through the target's
    # values); a new shape needs steps of its own attention, as the slides' train does. From a
    # heart: swaps away from a heart, triangle or hexagon keep the old outline most often
    # (MODEL_CARD.md: the shape swaps)
    new_outline=("a big red heart", "a big red star"),
    # two objects, each colour and shape word on its own (the model draws both: MODEL_CARD.md)
    two_objects=(
        "a red circle on the left and a blue square on the right",
        "a green circle on the left and a blue square on the right",
    ),
    # a size word changes the drawing visibly; "on a black background" does not (the model
    # takes the background from the noise), so the refinement lesson adds a size
    refinement=("a red circle", "a big red circle"),
    # pink → char·tre·use, 1-to-3: at the paper's injection it misses the new colour
    unequal_swap=("a big pink circle", "a big chartreuse circle"),
)

BY_BUILTIN: dict[str, LessonPrompts] = {"shapes": SHAPES}


def lesson_prompts(pipe) -> LessonPrompts:
    """The lesson prompts for ``pipe``: shapes for the built-in shapes model, else the slides'."""
    return BY_BUILTIN.get(model_defaults(pipe).builtin or "", SLIDES)


# word -> the split the recitation's slides drew (illustrations; the real CLIP splits differ)
SLIDE_SPLITS: dict[str, tuple[str, ...]] = {
    "haunted": ("haunt", "ed"),
    "magical": ("magic", "al"),
    "lion": ("lion",),
    "hippopotamus": ("hippo", "pot", "amus"),
    "unimaginably": ("un", "imagin", "ably"),
    "inconceivably": ("in", "con", "ceiv", "ably"),
}


def word_pieces(view: TokenView, word: int | str = 0) -> tuple[str, ...]:
    """The CLIP pieces of one word of a prompt, as readable text (``"hippo", "potam", "us"``).

    Args:
        view: the prompt's :func:`~p2p_teach.tokens.tokenize` view.
        word: the word's index (default the first) or its text.

    Raises:
        p2p_teach.tokens.WordNotFoundError: the prompt has no such word (the message lists its
            words).
    """
    found = view.find_word(word)
    return tuple(view.slots[index].text for index in found.slots)


def slide_splits_table(splits: dict[str, tuple[str, ...]] | None = None) -> str:
    """Each word's split on the slides beside its real CLIP split, one line per word.

    ``splits`` defaults to :data:`SLIDE_SPLITS`; each word is tokenized on its own.
    """
    splits = SLIDE_SPLITS if splits is None else splits
    lines = []
    for word, slide_pieces in splits.items():
        slide = PIECE_SEPARATOR.join(slide_pieces)
        real = PIECE_SEPARATOR.join(word_pieces(tokenize(word)))
        lines.append(f"{word:<14} slides: {slide:<17} real CLIP: {real}")
    return "\n".join(lines)
