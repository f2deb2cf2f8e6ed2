"""Phase 4: the text encoder, pre-trained to read captions, then frozen.

Linear heads read, from every token slot's embedding, which attribute (colour, shape, size,
position, background) the caption names there; the heads are thrown away after this phase.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from p2p_teach.shapes import data as shapes_data
from p2p_teach.shapes import model as shapes_model

from .checkpoints import log, resume_phase, save_phase
from .config import TEXT_TARGETS
from .dataset import EMPTY_CAPTION_SHARE, CaptionIds
from .schedule import PhaseClock, lr_at, optimiser_step, set_lr

if TYPE_CHECKING:
    from transformers import CLIPTextModel

# The attributes a caption can name: one head per (object, attribute), plus the background.
# Class 0 of every head means "not named (yet)".
ATTRIBUTE_VALUES: dict[str, tuple[str, ...]] = {
    "colour": tuple(shapes_data.COLOURS),
    "shape": shapes_data.SHAPES,
    "size": tuple(shapes_data.SIZES),
    "position": tuple(shapes_data.POSITIONS),
}
HEADS: tuple[tuple[str, int | None], ...] = tuple(
    (attribute, k) for k in (0, 1) for attribute in ATTRIBUTE_VALUES
) + (("background", None),)
HEAD_CLASSES: tuple[int, ...] = tuple(
    1 + len(shapes_data.BACKGROUNDS if name == "background" else ATTRIBUTE_VALUES[name])
    for name, _ in HEADS
)
_WORD_ATTRIBUTE = {
    value: (attribute, index + 1)
    for attribute, values in ATTRIBUTE_VALUES.items()
    for index, value in enumerate(values)
}
_BACKGROUND_CLASS = {name: index + 1 for index, name in enumerate(shapes_data.BACKGROUNDS)}


def caption_targets(
    encoder: CaptionIds, words: list[str], kind: str = "word"
) -> tuple[list[int], np.ndarray]:
    """77 token ids and, per slot, the attributes its embedding should make readable.

    Targets are (77, len(HEADS)) class indices, 0 for "not named". With ``kind="word"`` a slot
    names only its own word's attribute, for the object the word belongs to (objects are
    counted by the word ``and``), and every other slot (BOS, "a", "on", EOS padding) names
    nothing: each attribute then reaches the UNet through its own word's token, so where the
    UNet attends decides where the attribute goes, which is what Prompt-to-Prompt edits. With
    ``kind="cumulative"`` a slot names everything said up to it (the causal encoder allows
    no more) and the EOS padding the whole caption. Background names are disjoint from colours.
    """
    if kind not in TEXT_TARGETS:
        raise ValueError(f"kind={kind!r}: use one of {', '.join(TEXT_TARGETS)}")
    state = np.zeros(len(HEADS), np.int64)
    ids = [shapes_model.TEXT_CONFIG["bos_token_id"]]
    targets = [state.copy()]
    head_of = {head: index for index, head in enumerate(HEADS)}
    current = 0
    for word in words:
        if kind == "word":
            state = np.zeros(len(HEADS), np.int64)
        if word == "and":
            current += 1
        elif word in _BACKGROUND_CLASS:
            state[head_of[("background", None)]] = _BACKGROUND_CLASS[word]
        elif word in _WORD_ATTRIBUTE:
            attribute, value = _WORD_ATTRIBUTE[word]
            state[head_of[(attribute, current)]] = value
        pieces = encoder.word_ids(word)
        ids += pieces
        targets += [state.copy()] * len(pieces)
    pad = shapes_model.MAX_TOKENS - len(ids)
    if pad <= 0:
        raise ValueError(f"caption too long: {' '.join(words)}")
    ids += [shapes_model.TEXT_CONFIG["eos_token_id"]] * pad
    padding_state = state if kind == "cumulative" else np.zeros(len(HEADS), np.int64)
    targets += [padding_state.copy()] * pad
    return ids, np.stack(targets)


def caption_corpus(n: int, seed: int, kind: str = "word") -> tuple[torch.Tensor, torch.Tensor]:
    """Ids (n, 77) and targets (n, 77, heads) of ``n`` dataset captions (no images drawn).

    Every caption names its objects' positions (``position_unnamed_share`` 0), whatever the
    run's ``--position-unnamed-share``, which changes only the UNet's captions. The shipped
    text encoder was pre-trained so; passing the share here would change that phase.
    """
    encoder = CaptionIds()
    ids, targets = [], []
    for index in range(n):
        objects, _background, named = shapes_data.sample_layout(index, seed)
        words, _owners = shapes_data.caption_words(objects, named)
        one_ids, one_targets = caption_targets(encoder, words, kind)
        ids.append(one_ids)
        targets.append(one_targets)
    return torch.tensor(ids), torch.from_numpy(np.stack(targets))


def train_text_encoder(
    out: Path, minutes: float, seed: int, batch: int = 128, kind: str = "word",
    ckpt_minutes: float = 5.0,
) -> dict:  # fmt: skip
    """Pre-train the text encoder to read captions (:func:`caption_targets` of ``kind``).

    Captions come from a different seed than the image data (``seed + 1000``), 10% of them
    empty. Checkpoints (encoder and heads) go to ``text_ckpt.pt`` every ``ckpt_minutes`` and
    at the end, and a new call resumes from there. Returns the text encoder's state dict;
    the heads are thrown away.
    """
    torch.manual_seed(seed + 3)
    text_encoder = shapes_model.build_text_encoder()
    heads = torch.nn.Linear(shapes_model.TEXT_HIDDEN, sum(HEAD_CLASSES))
    modules = torch.nn.ModuleDict({"text_encoder": text_encoder, "heads": heads})
    params = list(text_encoder.parameters()) + list(heads.parameters())
    optimizer = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.0)
    ckpt_path = out / "text_ckpt.pt"
    step, elapsed, _ = resume_phase(ckpt_path, "text", modules, optimizer, "text")
    ids, targets = caption_corpus(20000, seed + 1000, kind)
    held_ids, held_targets = ids[-1000:], targets[-1000:]
    ids, targets = ids[:-1000], targets[:-1000]
    empty_ids, _ = CaptionIds().encode([], [])
    empty_ids = torch.tensor(empty_ids)

    def head_loss(
        input_ids: torch.Tensor, wanted: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed cross-entropy over heads, and the predicted classes (batch, 77, heads)."""
        hidden = text_encoder(input_ids).last_hidden_state  # (batch, 77, hidden)
        logits = heads(hidden).split(HEAD_CLASSES, dim=-1)  # per head (batch, 77, classes)
        losses = [
            F.cross_entropy(
                head_logits.flatten(0, 1),  # (batch·77, classes)
                wanted[..., head].flatten(),  # (batch·77,)
            )
            for head, head_logits in enumerate(logits)
        ]
        predicted = torch.stack([head_logits.argmax(-1) for head_logits in logits], -1)
        return torch.stack(losses).sum(), predicted

    clock = PhaseClock(minutes, elapsed, ckpt_minutes)
    while clock.running():
        set_lr(optimizer, lr_at(1e-3, step, clock.fraction(), 50))
        index = torch.randint(0, ids.shape[0], (batch,))
        input_ids, wanted = ids[index].clone(), targets[index].clone()
        drop = torch.rand(batch) < EMPTY_CAPTION_SHARE
        input_ids[drop] = empty_ids
        wanted[drop] = 0
        loss, _ = head_loss(input_ids, wanted)
        optimiser_step(optimizer, loss, params)
        step += 1
        if step % 100 == 0:
            log(f"text step {step} loss {loss.item():.4f}")
        if clock.checkpoint_due():
            save_phase(ckpt_path, "text", modules, optimizer, step, clock.elapsed)
            log(f"text: checkpoint at step {step}")
    save_phase(ckpt_path, "text", modules, optimizer, step, clock.elapsed)
    with torch.no_grad():
        loss, predicted = head_loss(held_ids, held_targets)
    named = held_targets > 0  # (captions, 77, heads): attributes a slot should name
    right = predicted == held_targets
    log(f"text: done, {step} steps; held-out loss {loss.item():.4f}; named attributes read "
        f"right: {right[named].float().mean():.4f}; unnamed ones read as unnamed: "
        f"{right[~named].float().mean():.4f}")  # fmt: skip
    return text_encoder.state_dict()


@torch.no_grad()
def encode_captions(
    text_encoder: CLIPTextModel, input_ids: torch.Tensor, batch: int = 512
) -> torch.Tensor:
    """Frozen caption embeddings (n, 77, hidden) in fp16, computed once."""
    text_encoder.eval()
    chunks = []
    for begin in range(0, input_ids.shape[0], batch):
        hidden = text_encoder(input_ids[begin : begin + batch].long()).last_hidden_state
        chunks.append(hidden.half())  # (batch, 77, hidden)
    return torch.cat(chunks)
