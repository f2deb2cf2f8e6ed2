"""The real CLIP tokenizer, offline, and a token view that shows its work.

Stable Diffusion v1 reads prompts through CLIP's byte-level BPE tokenizer: 49,408 entries and
77 slots (BOS, up to 75 pieces, EOS, then padding). The BPE merges ship inside the
``openai-clip`` package; :func:`load_clip_tokenizer` turns them into a Hugging Face
``CLIPTokenizer`` folder once, in a user cache folder, with no network.

:func:`tokenize` returns a :class:`TokenView`: every intermediate stage a learner wants to see
(normalised text, pre-tokens, BPE pieces with their merges) and the 77 slots, each with its id,
piece and the word it belongs to. Word spans come from tokenizing the whole prompt, never from
re-tokenizing a word on its own. The view follows the Hugging Face ``CLIPTokenizer`` that SD
pipelines use, and checks itself against it when given one.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import json
import os
import shutil
import tempfile
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from numbers import Integral
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import regex

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

MAX_SLOTS = 77
BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"
BOS_ID = 49406
EOS_ID = 49407
VOCAB_SIZE = 49408
_N_MERGES = 49152 - 256 - 2  # 48,894 merges: the CLIP vocab minus bytes and the two specials
_PRETOKEN_PATTERN = regex.compile(
    r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\p{White_Space}\p{L}\p{N}]+""",
    regex.IGNORECASE,
)
_TOKENIZER_FILES = ("vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json")

SlotKind = Literal["bos", "word", "eos", "pad"]


class PromptTooLongError(ValueError):
    """A prompt needs more than the 77 slots CLIP has."""


class WordNotFoundError(KeyError):
    """A word asked for is not in the prompt."""

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly
        return str(self.args[0])


# --------------------------------------------------------------------------------------------
# The BPE file and the Hugging Face tokenizer built from it
# --------------------------------------------------------------------------------------------


def clip_bpe_path() -> Path:
    """Path of ``bpe_simple_vocab_16e6.txt.gz`` inside the installed ``openai-clip`` package.

    The package is found without importing it: ``import clip`` needs torchvision.
    """
    spec = importlib.util.find_spec("clip")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "The CLIP BPE file comes from the 'openai-clip' package, which is not installed. "
            "Fix: pip install openai-clip==1.0.1"
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "bpe_simple_vocab_16e6.txt.gz"
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        "The 'clip' package found is not openai-clip (no bpe_simple_vocab_16e6.txt.gz in it). "
        "Fix: pip install openai-clip==1.0.1"
    )


@functools.cache
def bytes_to_unicode() -> dict[int, str]:
    """CLIP's (and GPT-2's) reversible map from the 256 byte values to printable characters."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    codepoints = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codepoints.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in codepoints)))


@functools.cache
def clip_merges() -> tuple[tuple[str, str], ...]:
    """The 48,894 BPE merges, in rank order (rank 0 is merged first)."""
    with gzip.open(clip_bpe_path()) as handle:
        lines = handle.read().decode("utf-8").split("\n")
    return tuple(tuple(line.split()) for line in lines[1 : _N_MERGES + 1])  # type: ignore[misc]


@functools.cache
def clip_vocab() -> dict[str, int]:
    """Piece → id: 256 bytes, the same with ``</w>``, the merges, then BOS and EOS."""
    byte_chars = list(bytes_to_unicode().values())
    pieces = byte_chars + [c + "</w>" for c in byte_chars]
    pieces += ["".join(merge) for merge in clip_merges()]
    pieces += [BOS_TOKEN, EOS_TOKEN]
    assert len(pieces) == VOCAB_SIZE
    return {piece: index for index, piece in enumerate(pieces)}


def cache_dir() -> Path:
    """The user cache folder: ``$P2P_TEACH_CACHE``, else ``$XDG_CACHE_HOME/p2p_teach``."""
    if os.environ.get("P2P_TEACH_CACHE"):
        return Path(os.environ["P2P_TEACH_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "p2p_teach"


def write_clip_tokenizer_files(folder: str | Path) -> Path:
    """Write a Hugging Face ``CLIPTokenizer`` folder (vocab.json, merges.txt, configs).

    vocab.json and merges.txt are written by hand, so that transformers 4 and 5 both read them.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(clip_vocab(), ensure_ascii=False), "utf-8")
    merges = "\n".join(" ".join(pair) for pair in clip_merges())
    (folder / "merges.txt").write_text("#version: 0.2\n" + merges + "\n", "utf-8")
    specials = {
        "bos_token": BOS_TOKEN,
        "eos_token": EOS_TOKEN,
        "unk_token": EOS_TOKEN,
        "pad_token": EOS_TOKEN,
    }
    (folder / "special_tokens_map.json").write_text(json.dumps(specials, indent=2), "utf-8")
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": MAX_SLOTS,
        "do_lower_case": True,
        "padding_side": "right",
        "truncation_side": "right",
        "clean_up_tokenization_spaces": True,
        **specials,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2), "utf-8")
    return folder


def clip_tokenizer_dir() -> Path:
    """The cached tokenizer folder, built on first use (atomically, so races are harmless)."""
    folder = cache_dir() / "clip-vit-l-14-tokenizer"
    if all((folder / name).is_file() for name in _TOKENIZER_FILES):
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".tokenizer-", dir=folder.parent))
    try:
        write_clip_tokenizer_files(staging)
        try:
            staging.rename(folder)
        except OSError:  # another process won the race, or a partial folder is in the way
            if not all((folder / name).is_file() for name in _TOKENIZER_FILES):
                shutil.rmtree(folder, ignore_errors=True)
                staging.rename(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


@functools.cache
def load_clip_tokenizer() -> PreTrainedTokenizerBase:  # transformers is imported lazily: slow
    """The Stable Diffusion v1 tokenizer (CLIP ViT-L/14): 49,408 entries, 77 slots, offline."""
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(str(clip_tokenizer_dir()))


# --------------------------------------------------------------------------------------------
# BPE, with its work shown
# --------------------------------------------------------------------------------------------


@functools.cache
def _merge_ranks() -> dict[tuple[str, str], int]:
    return {pair: rank for rank, pair in enumerate(clip_merges())}


@dataclass(frozen=True)
class BPETrace:
    """How one pre-token became BPE pieces: the symbols before and after every merge."""

    pretoken: str
    steps: tuple[tuple[str, ...], ...]  # steps[0]: single characters; steps[-1]: final pieces
    merges: tuple[tuple[str, str], ...]  # the pair merged to go from steps[k] to steps[k + 1]

    @property
    def pieces(self) -> tuple[str, ...]:
        return self.steps[-1]


@functools.lru_cache(maxsize=65536)
def bpe_with_trace(pretoken: str) -> BPETrace:
    """Apply CLIP's BPE merges to one pre-token, lowest rank first, and record every merge."""
    encoded = "".join(bytes_to_unicode()[b] for b in pretoken.encode("utf-8"))
    symbols = tuple(encoded[:-1]) + (encoded[-1] + "</w>",)
    ranks = _merge_ranks()
    steps = [symbols]
    merges: list[tuple[str, str]] = []
    while len(symbols) > 1:
        pairs = set(zip(symbols, symbols[1:]))
        best = min(pairs, key=lambda pair: ranks.get(pair, float("inf")))
        if best not in ranks:
            break
        merged: list[str] = []
        i = 0
        while i < len(symbols):
            if i < len(symbols) - 1 and (symbols[i], symbols[i + 1]) == best:
                merged.append(symbols[i] + symbols[i + 1])
                i += 2
            else:
                merged.append(symbols[i])
                i += 1
        symbols = tuple(merged)
        steps.append(symbols)
        merges.append(best)
    return BPETrace(pretoken, tuple(steps), tuple(merges))


@functools.cache
def default_fix_text() -> Callable[[str], str] | None:
    """The clean-up :func:`load_clip_tokenizer`'s tokenizer runs before BPE, without loading
    it: transformers 4's slow ``CLIPTokenizer`` runs ftfy's ``fix_text`` (when ftfy is
    installed), version 5's runs none."""
    from importlib.metadata import version

    if int(version("transformers").split(".")[0]) >= 5:
        return None
    try:
        import ftfy
    except ImportError:
        return None
    return ftfy.fix_text


def normalize(text: str, fix_text: Callable[[str], str] | None = None) -> str:
    """The normalisation Stable Diffusion's tokenizer applies: NFC, collapse spaces, lower case.

    CLIP's original ``SimpleTokenizer`` also runs ftfy and unescapes HTML entities; the
    Hugging Face ``CLIPTokenizer`` of transformers 5 does not, and the view follows what the
    model is really fed (so ``&amp;`` stays four pieces). transformers 4's slow
    ``CLIPTokenizer`` does run ftfy when it is installed; pass its ``fix_text`` to follow it
    (:func:`tokenize` does so for the tokenizer it is given).
    """
    if fix_text is not None:
        text = fix_text(text)
    text = unicodedata.normalize("NFC", text)
    # Unicode White_Space, as the Rust tokenizer means it (Python's \s also takes \x1c-\x1f)
    return regex.sub(r"\p{White_Space}+", " ", text).strip(" ").lower()


def piece_text(piece: str) -> str:
    """A BPE piece as readable text: bytes decoded, ``</w>`` (end of word) dropped."""
    if piece in (BOS_TOKEN, EOS_TOKEN):
        return piece
    byte_decoder = {char: byte for byte, char in bytes_to_unicode().items()}
    raw = piece.removesuffix("</w>")
    return bytes(byte_decoder[c] for c in raw).decode("utf-8", errors="replace")


# --------------------------------------------------------------------------------------------
# The token view
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Slot:
    """One of the 77 slots of the text encoder's input."""

    index: int
    id: int
    piece: str  # the vocabulary entry, e.g. "hippo", "us</w>"
    text: str  # the piece as readable text, e.g. "hippo", "us"
    kind: SlotKind
    word_index: int | None  # which word it belongs to; None for BOS, EOS and padding

    @property
    def label(self) -> str:
        """Short label for plots: the piece text, or BOS / EOS / pad."""
        return {"bos": "BOS", "eos": "EOS", "pad": "pad"}.get(self.kind, self.text)


@dataclass(frozen=True)
class Word:
    """A whitespace-separated word of the normalised prompt and the slots it occupies."""

    index: int
    text: str
    start: int  # first slot
    stop: int  # one past the last slot
    core_start: int  # first slot of the word proper: edge punctuation left out ("lion," → lion)
    core_stop: int  # one past its last slot (the whole word if it is only punctuation)
    lead: str = ""  # the punctuation pre-tokens before the word proper ("(" of "(lion),")
    trail: str = ""  # and after it ("),")

    @property
    def slots(self) -> range:
        return range(self.start, self.stop)

    @property
    def n_slots(self) -> int:
        return self.stop - self.start

    @property
    def core(self) -> range:
        """The slots of the word proper, without edge punctuation: what an edit acts on."""
        return range(self.core_start, self.core_stop)

    @property
    def core_text(self) -> str:
        """The text of the word proper (``"lion,"`` → ``"lion"``)."""
        return self.text[len(self.lead) : len(self.text) - len(self.trail)]

    @property
    def edges(self) -> tuple[str, str]:
        """The edge punctuation before and after the word proper (``"lion,"`` → ``("", ",")``),
        as CLIP's pre-tokens split it (``"'sunny'"`` → ``("", "'")``: ``'s`` is a pre-token of
        the word proper)."""
        return self.lead, self.trail


@dataclass(frozen=True)
class TokenView:
    """A prompt seen by CLIP, stage by stage (in the spirit of minGPT's encode_and_show_work)."""

    prompt: str
    normalized: str
    pretokens: tuple[str, ...]  # the regex split of the normalised text
    bpe: tuple[BPETrace, ...]  # one trace per pre-token
    slots: tuple[Slot, ...]  # always 77
    words: tuple[Word, ...]
    pretoken_words: tuple[int, ...] = field(repr=False)  # word index of each pre-token

    @property
    def ids(self) -> list[int]:
        return [slot.id for slot in self.slots]

    @property
    def n_used(self) -> int:
        """Slots holding BOS, the pieces and EOS (the rest is padding)."""
        return sum(slot.kind != "pad" for slot in self.slots)

    @property
    def eos_index(self) -> int:
        return self.n_used - 1

    @property
    def word_spans(self) -> dict[str, list[range]]:
        """Word text → the slot ranges it occupies (a list: a word may occur twice)."""
        spans: dict[str, list[range]] = {}
        for word in self.words:
            spans.setdefault(word.text, []).append(word.slots)
        return spans

    def find_word(self, query: str | int) -> Word:
        """The first word matching ``query``: an index, or text (case and edge punctuation
        ignored). Edits that act on a word use :meth:`find_words`, which finds every copy."""
        return self.find_words(query)[0]

    def find_words(self, query: str | int) -> tuple[Word, ...]:
        """Every word matching ``query``, in prompt order: the word at an index, or each copy
        of a text, with case and edge punctuation ignored ("cat" finds "cat" and "cat,";
        "cat," finds only "cat," where the prompt has it).

        Raises:
            WordNotFoundError: no word matches; the message lists the prompt's words.
        """
        if isinstance(query, bool) or not isinstance(query, (str, Integral)):
            raise TypeError(
                f"a word is its text or its index in the prompt, not {type(query).__name__} "
                f"{query!r}"
            )
        if isinstance(query, Integral):
            if not -len(self.words) <= query < len(self.words):
                raise WordNotFoundError(
                    f"word index {query} is out of range: the prompt has {len(self.words)} "
                    f"words {[w.text for w in self.words]}"
                )
            return (self.words[int(query)],)
        wanted = normalize(query)
        bare = _strip_punctuation(wanted)
        exact = tuple(word for word in self.words if word.text == wanted)
        if exact and wanted != bare:
            return exact  # the query names its punctuation ("cat,"): only those copies
        loose = tuple(w for w in self.words if bare and _strip_punctuation(w.text) == bare)
        if loose:
            return loose
        raise WordNotFoundError(
            f"{query!r} is not a word of the prompt {self.prompt!r}; its words are "
            f"{[w.text for w in self.words]}. Fix: use one of those words (or its index)."
        )

    def table(self, show_padding: bool = False) -> str:
        """The slots as a text table; padding is summarised unless ``show_padding``."""
        lines = [f"{'slot':>4}  {'id':>5}  {'piece':<16} word"]
        for slot in self.slots:
            if slot.kind == "pad" and not show_padding:
                continue
            owner = {"bos": "BOS", "eos": "EOS", "pad": "padding"}.get(slot.kind)
            if owner is None:
                owner = self.words[slot.word_index].text  # type: ignore[index]
            lines.append(f"{slot.index:>4}  {slot.id:>5}  {slot.piece:<16} {owner}")
        n_pad = MAX_SLOTS - self.n_used
        if n_pad and not show_padding:
            lines.append(f"  … {n_pad} padding slots ({self.n_used}–{MAX_SLOTS - 1}), id {EOS_ID}")
        return "\n".join(lines)

    def show_work(self) -> str:
        """Every stage as text: normalisation, pre-tokens, BPE merges, pieces per word."""
        lines = [f"prompt:      {self.prompt!r}", f"normalised:  {self.normalized!r}"]
        lines.append(f"pre-tokens:  {list(self.pretokens)}")
        for trace in self.bpe:
            merged = " → ".join("·".join(piece_text(p) for p in step) for step in trace.steps)
            lines.append(f"  BPE {trace.pretoken!r}: {merged}")
        lines.append("words → slots:")
        for word in self.words:
            pieces = "·".join(self.slots[i].text for i in word.slots)
            lines.append(f"  {word.text!r}: slots {word.start}–{word.stop - 1} ({pieces})")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def _strip_punctuation(text: str) -> str:
    return regex.sub(r"^[^\p{L}\p{N}\p{M}]+|[^\p{L}\p{N}\p{M}]+$", "", text)


def tokenize(prompt: str, tokenizer: PreTrainedTokenizerBase | None = None) -> TokenView:
    """Turn a prompt into its 77 slots, showing every intermediate stage.

    Args:
        prompt: the text.
        tokenizer: optional Hugging Face tokenizer (e.g. ``pipe.tokenizer``). The view is built
            by CLIP's own rules; when a tokenizer is given, its ids are checked against them.

    Raises:
        PromptTooLongError: the prompt needs more than 77 slots.
        TypeError: the prompt is not a string.
        ValueError: the prompt holds a special token's text (``<|endoftext|>``), or the
            tokenizer given does not split as CLIP does.
    """
    if not isinstance(prompt, str):
        raise TypeError(f"a prompt must be a string, not {type(prompt).__name__}")
    # transformers 4's slow CLIPTokenizer runs ftfy first (its ``fix_text``); version 5's doesn't
    fix_text = default_fix_text() if tokenizer is None else getattr(tokenizer, "fix_text", None)
    normalized = normalize(prompt, fix_text)
    marker = regex.search(r"<\|(startoftext|endoftext)\|>", normalized)
    if marker:
        raise ValueError(
            f"the prompt {prompt!r} contains {marker.group()!r}, the text of one of CLIP's "
            "special tokens; a tokenizer reads it as the special token itself (BOS or EOS), "
            "not as words. Fix: remove it from the prompt."
        )
    vocab = clip_vocab()

    # Words are the space-separated parts of the normalised text; every pre-token lies inside
    # exactly one of them (the pre-token pattern never crosses whitespace).
    word_texts = normalized.split(" ") if normalized else []
    word_starts, position = [], 0
    for text in word_texts:
        word_starts.append(position)
        position += len(text) + 1

    pretokens, pretoken_words, traces = [], [], []
    for match in _PRETOKEN_PATTERN.finditer(normalized):
        word_index = sum(1 for start in word_starts if start <= match.start()) - 1
        pretokens.append(match.group())
        pretoken_words.append(word_index)
        traces.append(bpe_with_trace(match.group()))

    n_pieces = sum(len(trace.pieces) for trace in traces)
    if n_pieces + 2 > MAX_SLOTS:
        raise PromptTooLongError(
            f"the prompt needs {n_pieces + 2} slots ({n_pieces} pieces + BOS + EOS) but CLIP "
            f"has {MAX_SLOTS}. Fix: shorten it by at least {n_pieces + 2 - MAX_SLOTS} pieces."
        )

    # Each word's pre-tokens with the slots of their pieces, and whether they hold a letter,
    # digit or mark: the word proper runs from the first such pre-token to the last, and the
    # punctuation pre-tokens outside it ("lion," → "lion" + ",") are its edges.
    slots = [Slot(0, BOS_ID, BOS_TOKEN, BOS_TOKEN, "bos", None)]
    parts: dict[int, list[tuple[str, range, bool]]] = {i: [] for i in range(len(word_texts))}
    for trace, word_index in zip(traces, pretoken_words):
        pieces = range(len(slots), len(slots) + len(trace.pieces))
        for index, piece in zip(pieces, trace.pieces):
            slots.append(Slot(index, vocab[piece], piece, piece_text(piece), "word", word_index))
        proper = bool(regex.search(r"[\p{L}\p{N}\p{M}]", trace.pretoken))
        parts[word_index].append((trace.pretoken, pieces, proper))
    slots.append(Slot(len(slots), EOS_ID, EOS_TOKEN, EOS_TOKEN, "eos", None))
    while len(slots) < MAX_SLOTS:
        slots.append(Slot(len(slots), EOS_ID, EOS_TOKEN, EOS_TOKEN, "pad", None))

    words = []
    for index, text in enumerate(word_texts):
        word_parts = parts[index]
        # A word made only of characters CLIP drops (none here, but keep it honest): empty span.
        start = word_parts[0][1].start if word_parts else (words[-1].stop if words else 1)
        stop = word_parts[-1][1].stop if word_parts else start
        proper = [i for i, (_, _, is_proper) in enumerate(word_parts) if is_proper]
        if proper:
            lead = "".join(pretoken for pretoken, _, _ in word_parts[: proper[0]])
            trail = "".join(pretoken for pretoken, _, _ in word_parts[proper[-1] + 1 :])
            core_start, core_stop = word_parts[proper[0]][1].start, word_parts[proper[-1]][1].stop
        else:  # only punctuation: the whole word is its own core
            lead = trail = ""
            core_start, core_stop = start, stop
        words.append(Word(index, text, start, stop, core_start, core_stop, lead, trail))

    view = TokenView(
        prompt=prompt,
        normalized=normalized,
        pretokens=tuple(pretokens),
        bpe=tuple(traces),
        slots=tuple(slots),
        words=tuple(words),
        pretoken_words=tuple(pretoken_words),
    )
    if tokenizer is not None:
        _check_against(view, tokenizer)
    return view


def _check_against(view: TokenView, tokenizer: PreTrainedTokenizerBase) -> None:
    reference = tokenizer(
        view.prompt, padding="max_length", max_length=MAX_SLOTS, truncation=True
    ).input_ids
    if list(reference) != view.ids:
        raise ValueError(
            "this tokenizer does not follow CLIP ViT-L/14's BPE (as Stable Diffusion v1 does): "
            f"it gives {list(reference)[: view.n_used]} where CLIP gives "
            f"{view.ids[: view.n_used]}. p2p_teach supports SD v1.x pipelines."
        )
