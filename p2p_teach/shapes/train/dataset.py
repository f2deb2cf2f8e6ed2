"""Phase 1, the data: drawn samples with their captions' token ids and per-token owners."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from p2p_teach.shapes import data as shapes_data
from p2p_teach.shapes import model as shapes_model

if TYPE_CHECKING:
    from transformers import CLIPTokenizer

EMPTY_CAPTION_SHARE = 0.1  # captions replaced by the empty one (for classifier-free guidance)
HELD_OUT_IMAGES = 256  # samples past the training set on which the VAE's PSNR is measured


class CaptionIds:
    """Token ids of captions built word by word, with the word each token belongs to.

    CLIP's BPE works on each pre-token separately, so for captions of plain lowercase words
    the ids of the whole caption are the ids of its words in order (a test checks this
    against the tokenizer on whole captions).
    """

    def __init__(self, tokenizer: CLIPTokenizer | None = None) -> None:
        from p2p_teach.tokens import load_clip_tokenizer

        self.tokenizer = tokenizer or load_clip_tokenizer()
        self._cache: dict[str, list[int]] = {}

    def word_ids(self, word: str) -> list[int]:
        """The BPE ids of one word."""
        if word not in self._cache:
            self._cache[word] = self.tokenizer(word, add_special_tokens=False)["input_ids"]
        return self._cache[word]

    def encode(self, words: list[str], owners: list[int]) -> tuple[list[int], list[int]]:
        """77 ids (BOS, pieces, EOS, EOS padding) and, per slot, its word's owner (-1: none)."""
        ids = [shapes_model.TEXT_CONFIG["bos_token_id"]]
        slot_owners = [-1]
        for word, owner in zip(words, owners, strict=True):
            pieces = self.word_ids(word)
            ids += pieces
            slot_owners += [owner] * len(pieces)
        eos = shapes_model.TEXT_CONFIG["eos_token_id"]
        if len(ids) >= shapes_model.MAX_TOKENS:
            raise ValueError(f"caption too long: {' '.join(words)}")
        pad = shapes_model.MAX_TOKENS - len(ids)
        return ids + [eos] * pad, slot_owners + [-1] * pad


def build_dataset(
    n_images: int, seed: int, position_unnamed_share: float = 0.0
) -> dict[str, torch.Tensor]:
    """Images, masks, token ids and token owners of samples 0..n_images-1 of ``seed``."""
    encoder = CaptionIds()
    images = np.empty((n_images, 64, 64, 3), np.uint8)
    masks = np.zeros((n_images, 2, 64, 64), bool)
    ids = np.empty((n_images, shapes_model.MAX_TOKENS), np.int32)
    owners = np.empty((n_images, shapes_model.MAX_TOKENS), np.int8)
    for index in range(n_images):
        item = shapes_data.sample(index, seed, position_unnamed_share)
        images[index] = item.image
        masks[index, : len(item.objects)] = item.masks
        ids[index], owners[index] = encoder.encode(item.words, item.word_objects)
    return {
        "images": torch.from_numpy(images),
        "masks": torch.from_numpy(masks),
        "input_ids": torch.from_numpy(ids),
        "owners": torch.from_numpy(owners),
    }


def images_to_tensor(images: torch.Tensor) -> torch.Tensor:
    """uint8 (batch, 64, 64, 3) → float (batch, 3, 64, 64) in [-1, 1]."""
    return images.permute(0, 3, 1, 2).float() / 127.5 - 1.0  # (batch, 3, 64, 64)


def held_out_images(n_images: int, seed: int, count: int = HELD_OUT_IMAGES) -> torch.Tensor:
    """uint8 (count, 64, 64, 3): samples ``n_images`` .. ``n_images + count - 1`` of ``seed``.

    A run trains on samples 0 .. n_images - 1, so its VAE never sees these. The drawings do
    not depend on ``position_unnamed_share`` (only the captions do).
    """
    images = [shapes_data.sample(index, seed).image for index in range(n_images, n_images + count)]
    return torch.from_numpy(np.stack(images))  # (count, 64, 64, 3)


def position_owners(input_ids: torch.Tensor, owners: torch.Tensor) -> torch.Tensor:
    """``owners`` with each position word (left, right, top, bottom, center) given the object
    it places: the owner of the nearest grounded token before it."""
    encoder = CaptionIds()
    position_ids = {encoder.word_ids(word)[0] for word in shapes_data.POSITIONS}
    result = owners.clone()
    for row in range(input_ids.shape[0]):
        last = -1
        for slot in range(input_ids.shape[1]):
            if owners[row, slot] >= 0:
                last = int(owners[row, slot])
            elif int(input_ids[row, slot]) in position_ids and last >= 0:
                result[row, slot] = last
    return result
