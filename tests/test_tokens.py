"""The offline CLIP tokenizer equals CLIP's reference, and the token view is right."""

from __future__ import annotations

import html
import importlib.util
import json
import unicodedata

import ftfy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2p_teach import tokens
from p2p_teach.tokens import (
    BOS_ID,
    EOS_ID,
    MAX_SLOTS,
    PromptTooLongError,
    WordNotFoundError,
    load_clip_tokenizer,
    tokenize,
)

SENTENCES = [
    "a photo of a cat riding on a bicycle",
    "A Photo Of A Cat Riding On A Bicycle.",
    "photo of a cat riding on a motorcycle!!!",
    "A lion eating",
    "A hippopotamus eating",
    "An unimaginably large house",
    "An inconceivably large house",
    "A haunted house, unrealistically matchstick-thin",
    "Crème brûlée at the café in São Paulo",
    "naïve façade, jalapeño piñata",
    "🐱 riding a 🚲 under 🌈🌈",
    "emoji without spaces:🔥🔥and text",
    "I have 12,345 apples and 3.14159 pies in 2024",
    "0123456789",
    "don't stop, you're it; we'll see what they've done. I'm sure he'd go",
    "tabs\tand\nnewlines\r\nand    runs   of     spaces",
    "   leading and trailing spaces   ",
    "quotes \"double\" and 'single' and `back`",
    "punctuation: (brackets) [square] {curly} <angle> #hash @at $dollar %percent",
    "café written decomposed: cafe\u0301 and nai\u0308ve",
    "a cat riding on a bicycle, then a motorcycle, then a train",
    "日本語のテキストと中文",
    "Ελληνικά και русский текст",
    "hexagon, turquoise, crimson, lavender",
    "a_b-c/d\\e|f~g",
    "UPPER lower MiXeD case",
    "a" * 40,
    "",
]


def _reference_tokenizer():
    """openai-clip's SimpleTokenizer, loaded by file path (``import clip`` needs torchvision)."""
    package_dir = tokens.clip_bpe_path().parent
    spec = importlib.util.spec_from_file_location(
        "clip_simple_tokenizer", package_dir / "simple_tokenizer.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.SimpleTokenizer(str(tokens.clip_bpe_path()))


@pytest.fixture(scope="module")
def reference():
    return _reference_tokenizer()


@pytest.fixture(scope="module")
def hf_tokenizer():
    return load_clip_tokenizer()


def test_tokenizer_shape_and_specials(hf_tokenizer):
    assert len(hf_tokenizer) == 49408
    assert hf_tokenizer.model_max_length == MAX_SLOTS
    assert hf_tokenizer.bos_token_id == BOS_ID == 49406
    assert hf_tokenizer.eos_token_id == hf_tokenizer.pad_token_id == EOS_ID == 49407


def test_tokenizer_files_readable_by_plain_json(hf_tokenizer):
    folder = tokens.clip_tokenizer_dir()
    vocab = json.loads((folder / "vocab.json").read_text("utf-8"))
    merges = (folder / "merges.txt").read_text("utf-8").splitlines()
    assert len(vocab) == 49408 and vocab["<|startoftext|>"] == BOS_ID
    assert merges[0] == "#version: 0.2" and len(merges) == 1 + 48894


@pytest.mark.parametrize("sentence", SENTENCES)
def test_ids_equal_reference_simple_tokenizer(sentence, reference, hf_tokenizer):
    expected = [BOS_ID, *reference.encode(sentence), EOS_ID]
    assert hf_tokenizer(sentence).input_ids == expected
    view = tokenize(sentence, hf_tokenizer)
    assert view.ids[: view.n_used] == expected
    assert view.ids[view.n_used :] == [EOS_ID] * (MAX_SLOTS - view.n_used)


@pytest.mark.parametrize(
    "sentence",
    ["html entities: &amp; &lt;tag&gt;", "mojibake â€œfixed by ftfyâ€\x9d", "fullwidth ＡＢＣ ﬁne"],
)
def test_view_follows_the_pipeline_tokenizer_where_clip_reference_differs(
    sentence, reference, hf_tokenizer
):
    """SimpleTokenizer also runs ftfy and html.unescape; SD's CLIPTokenizer of transformers 5
    does not (version 4's runs ftfy, which also unescapes these entities)."""
    view = tokenize(sentence, hf_tokenizer)  # checks itself against the HF tokenizer
    assert view.ids[: view.n_used] == hf_tokenizer(sentence).input_ids
    assert tokenize(sentence).ids == view.ids  # the default follows the installed tokenizer
    if getattr(hf_tokenizer, "fix_text", None) is None:
        assert view.ids[: view.n_used] != [BOS_ID, *reference.encode(sentence), EOS_ID]
    else:
        assert view.ids[: view.n_used] == [BOS_ID, *reference.encode(sentence), EOS_ID]


def test_tokenizer_is_cached_once(tmp_path, monkeypatch):
    monkeypatch.setenv("P2P_TEACH_CACHE", str(tmp_path))
    first = tokens.clip_tokenizer_dir()
    stamp = (first / "vocab.json").stat().st_mtime_ns
    second = tokens.clip_tokenizer_dir()
    assert first == second == tmp_path / "clip-vit-l-14-tokenizer"
    assert (second / "vocab.json").stat().st_mtime_ns == stamp
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tokenizer-")]


@pytest.mark.parametrize(
    ("word", "pieces"),
    [
        ("hippopotamus", ["hippo", "potam", "us"]),
        ("unimaginably", ["uni", "magin", "ably"]),
        ("inconceivably", ["in", "conce", "iv", "ably"]),
        ("unrealistically", ["un", "reali", "stically"]),
        ("matchstick", ["match", "stick"]),
        ("hexagon", ["hex", "agon"]),
        *[(w, [w]) for w in ["haunted", "magical", "lion", "seal", "ball", "bicycle"]],
        *[(w, [w]) for w in ["motorcycle", "train", "turquoise", "crimson", "lavender"]],
    ],
)
def test_real_clip_splits(word, pieces):
    view = tokenize(f"a {word} here")
    span = view.find_word(word)
    assert [view.slots[i].text for i in span.slots] == pieces
    assert span.start == 2


def test_slot_kinds_and_word_spans():
    view = tokenize("An unimaginably large house")
    kinds = [slot.kind for slot in view.slots]
    assert kinds[:8] == ["bos", "word", "word", "word", "word", "word", "word", "eos"]
    assert set(kinds[8:]) == {"pad"} and len(kinds) == MAX_SLOTS
    assert [(w.text, w.start, w.stop) for w in view.words] == [
        ("an", 1, 2),
        ("unimaginably", 2, 5),
        ("large", 5, 6),
        ("house", 6, 7),
    ]
    assert view.word_spans["unimaginably"] == [range(2, 5)]
    assert all(view.slots[i].word_index == 1 for i in range(2, 5))
    assert view.eos_index == 7


def test_case_punctuation_and_spaces_come_from_the_whole_prompt():
    view = tokenize("A  HIPPOPOTAMUS,   eating!!")
    assert view.normalized == "a hippopotamus, eating!!"
    assert [w.text for w in view.words] == ["a", "hippopotamus,", "eating!!"]
    hippo = view.find_word("Hippopotamus")  # case and edge punctuation are ignored
    assert [view.slots[i].text for i in hippo.slots] == ["hippo", "potam", "us", ","]
    assert [view.slots[i].text for i in view.find_word("eating").slots] == ["eating", "!!"]


def test_repeated_word_gets_both_spans():
    view = tokenize("a cat and a cat")
    assert view.word_spans["cat"] == [range(2, 3), range(5, 6)]
    assert view.word_spans["a"] == [range(1, 2), range(4, 5)]


def test_word_spans_partition_the_pieces():
    view = tokenize("Crème brûlée 🍰 costs $12.50, ok?")
    covered = [i for word in view.words for i in word.slots]
    assert covered == list(range(1, view.eos_index))


def test_show_work_exposes_every_stage():
    view = tokenize("An unimaginably large house")
    assert view.pretokens == ("an", "unimaginably", "large", "house")
    trace = view.bpe[1]
    assert trace.steps[0] == tuple("unimaginabl") + ("y</w>",)
    assert trace.pieces == ("uni", "magin", "ably</w>")
    assert len(trace.merges) == len(trace.steps) - 1
    text = view.show_work()
    assert "normalised:  'an unimaginably large house'" in text
    assert "uni·magin·ably" in text


def test_table_summarises_padding():
    view = tokenize("A lion eating")
    lines = view.table().splitlines()
    assert lines[2].split() == ["1", "320", "a</w>", "a"]
    assert lines[-1].strip().startswith("… 72 padding slots (5–76)")
    assert len(view.table(show_padding=True).splitlines()) == 1 + MAX_SLOTS


def test_too_long_prompt_names_its_count():
    with pytest.raises(PromptTooLongError, match=r"needs 82 slots \(80 pieces"):
        tokenize("word " * 80)
    assert tokenize("word " * 75).n_used == MAX_SLOTS  # exactly full is fine


def test_unknown_word_lists_the_prompt_words():
    view = tokenize("a cat riding a bicycle")
    with pytest.raises(WordNotFoundError) as error:
        view.find_word("dog")
    assert "'dog' is not a word" in str(error.value)
    assert "['a', 'cat', 'riding', 'a', 'bicycle']" in str(error.value)


def test_rejects_non_strings():
    with pytest.raises(TypeError, match="must be a string"):
        tokenize(["a", "list"])  # type: ignore[arg-type]


def test_mismatched_tokenizer_is_reported():
    class OtherTokenizer:
        def __call__(self, text, **kwargs):
            class Encoding:
                input_ids = [1, 2, 3] + [0] * 74

            return Encoding()

    with pytest.raises(ValueError, match="does not follow CLIP"):
        tokenize("a cat", OtherTokenizer())


# Characters of real prompts. Unassigned code points are left out: Python's regex module and
# the Rust tokenizer may use different Unicode versions for them.
PROMPT_CHARACTERS = st.characters(
    codec="utf-8", categories=["L", "M", "N", "P", "S", "Zs", "Cc"], max_codepoint=0x2FFFF
)


@settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet=PROMPT_CHARACTERS, max_size=40))
def test_any_text_matches_reference(text, reference, hf_tokenizer):
    """Random unicode text: our BPE equals the HF tokenizer, and CLIP's reference where its
    extra ftfy/HTML clean-up leaves the text as it is."""
    expected = hf_tokenizer(text).input_ids
    if len(expected) > MAX_SLOTS:
        with pytest.raises(PromptTooLongError, match=f"needs {len(expected)} slots"):
            tokenize(text)
        return
    view = tokenize(text)
    assert view.ids[: view.n_used] == expected
    if html.unescape(html.unescape(ftfy.fix_text(text))) == unicodedata.normalize("NFC", text):
        assert [BOS_ID, *reference.encode(text), EOS_ID] == expected


def test_find_words_returns_every_copy_and_find_word_the_first():
    view = tokenize("a cat and a cat.")
    copies = view.find_words("Cat")  # case and edge punctuation ignored: "cat" and "cat."
    assert [word.index for word in copies] == [1, 4]
    assert view.find_word("cat") == copies[0]
    assert [word.index for word in view.find_words("cat.")] == [4]  # punctuation named: only it
    assert view.find_words(-1) == (view.words[-1],)


def test_find_words_takes_numpy_indices_and_refuses_other_types():
    numpy = pytest.importorskip("numpy")
    view = tokenize("a red circle")
    assert view.find_words(numpy.int64(2)) == (view.words[2],)
    with pytest.raises(TypeError, match="its text or its index"):
        view.find_words(True)
    with pytest.raises(TypeError, match="its text or its index"):
        view.find_words(1.0)


def test_word_core_leaves_out_edge_punctuation():
    view = tokenize("A (hippopotamus), eating!! it's")
    hippo, eating, its = view.find_word("hippopotamus"), view.find_word(2), view.find_word(3)
    assert [view.slots[i].text for i in hippo.slots] == ["(", "hippo", "potam", "us", "),"]
    assert [view.slots[i].text for i in hippo.core] == ["hippo", "potam", "us"]
    assert hippo.edges == ("(", "),") and hippo.core_text == "hippopotamus"
    assert [view.slots[i].text for i in eating.core] == ["eating"]
    assert its.core == its.slots  # a contraction is part of the word proper
    only_punctuation = tokenize("a & b").words[1]
    assert only_punctuation.core == only_punctuation.slots and only_punctuation.edges == ("", "")


@pytest.mark.parametrize("marker", ["<|endoftext|>", "<|startoftext|>", "<|EndOfText|>"])
def test_special_token_text_in_a_prompt_is_refused(marker):
    with pytest.raises(ValueError, match="special tokens.*Fix: remove it"):
        tokenize(f"a cat {marker} dog")


@pytest.mark.parametrize(
    "sentence", ["mojibake â€œfixed by ftfyâ€\x9d", "fullwidth ＡＢＣ ﬁne", "a “cat” riding"]
)
def test_view_follows_a_tokenizer_that_runs_ftfy(sentence, reference, hf_tokenizer):
    """transformers 4's slow CLIPTokenizer runs ``fix_text`` (ftfy) first; the view follows the
    tokenizer it is given. openai-clip's SimpleTokenizer, which also runs ftfy, is the
    reference for these sentences (they hold no HTML entities)."""

    class FtfyTokenizer:  # the behaviour of transformers 4's CLIPTokenizer with ftfy installed
        fix_text = staticmethod(ftfy.fix_text)

        def __call__(self, text, **kwargs):
            class Encoding:
                ids = [BOS_ID, *reference.encode(text), EOS_ID]
                input_ids = ids + [EOS_ID] * (MAX_SLOTS - len(ids))

            return Encoding()

    view = tokenize(sentence, FtfyTokenizer())  # checks itself against that tokenizer
    assert view.ids[: view.n_used] == [BOS_ID, *reference.encode(sentence), EOS_ID]
    if getattr(hf_tokenizer, "fix_text", None) is None:  # transformers 5: no ftfy
        assert view.ids != tokenize(sentence, hf_tokenizer).ids
    else:  # transformers 4 with ftfy: the installed tokenizer is this one
        assert view.ids == tokenize(sentence, hf_tokenizer).ids
