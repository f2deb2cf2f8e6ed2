"""Train the shapes Stable Diffusion from scratch on CPU: ``python -m p2p_teach.shapes.train``.

Seven phases. Phases 1 to 6 are skipped when their output already exists in ``--out``, the
training phases among them (2, 4, 5 and 6) resume from their checkpoints, and the export is
written again on every call:

1. data: ``--n-images`` procedural samples (seeded), with token ids and per-token owners;
2. vae: ``AutoencoderKL`` for ``--vae-minutes`` (MSE + a small KL term, as SD);
3. latents: every image encoded once with the trained VAE (posterior mean); the VAE's PSNR
   is measured on 256 samples it never saw (indices ``--n-images`` on, same seed);
4. text: the ``CLIPTextModel`` is pre-trained for ``--text-minutes`` on captions alone, to read
   them: from every token slot, linear heads predict the attribute (colour, shape, size,
   position, background) that the slot's own word names (``--text-targets word``, the
   default), or every attribute named so far (``cumulative``). It is then frozen, as SD's
   text encoder is, and every caption's embedding is computed once;
5. unet: the UNet for ``--minutes`` of wall clock on the cached latents and caption embeddings:
   epsilon loss with min-SNR weighting and more weight on the objects' pixels, EMA, 10% empty
   captions (for classifier-free guidance), bf16 autocast, and a grounding loss on
   cross-attention: each colour, shape, size and position word's attention mass is pushed
   inside its object's mask (TokenCompose-style token loss);
6. decoder: for ``--decoder-minutes`` the VAE decoder is fine-tuned on the cached latents with
   the encoder frozen (as SD's ft-MSE VAE), which leaves the latent space the UNet learned
   unchanged;
7. export: the EMA weights (and the fine-tuned decoder) as a ``StableDiffusionPipeline``
   folder: ``--export DIR`` writes fp16 safetensors, ``--export-only`` does only that.

``--position-unnamed-share`` leaves the position out of that share of the one-object captions
(the seed then decides where the object goes). ``--init-from FOLDER`` fine-tunes an exported
pipeline instead of training from scratch: its VAE (decoder included) and text encoder are
kept, phases 2, 4 and 6 are skipped, and the UNet starts from its weights.

Checkpoints are written every ``--checkpoint-minutes``; ``--resume`` continues from them.
The learning rate follows the wall clock (warm-up, then cosine), so a resumed run follows
the same schedule. ``--resume`` with a larger ``--minutes`` than a finished run's trains its
UNet further (the cosine then restarts from where the new budget puts it) and re-exports.
The settings that define the cached data and components (:data:`FIXED_ON_RESUME`) must be
the run's own (its ``args.json``): ``--resume`` refuses others. A fine-tune resumes as one
without ``--init-from`` repeated (its ``init.pt`` marks it).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # spinning threads stall on a shared CPU

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from p2p_teach.shapes import data as shapes_data  # noqa: E402
from p2p_teach.shapes import model as shapes_model  # noqa: E402

if TYPE_CHECKING:
    from diffusers import AutoencoderKL
    from transformers import CLIPTextModel, CLIPTokenizer

EMPTY_CAPTION_SHARE = 0.1
MIN_SNR_GAMMA = 5.0
EMA_WARMUP = 10  # the EMA decay warms up as (1 + step) / (EMA_WARMUP + step)
HELD_OUT_IMAGES = 256  # samples past the training set on which the VAE's PSNR is measured
# Settings that define the run's cached data and components: a resumed run must keep them.
FIXED_ON_RESUME: tuple[str, ...] = (
    "seed", "n_images", "position_unnamed_share", "text_targets", "init_from",
)  # fmt: skip


def log(message: str) -> None:
    """Print a time-stamped line (the log goes to stdout)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def save_atomic(obj: object, path: Path) -> None:
    """``torch.save`` through a temporary file, so a killed run never leaves half a file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def save_phase(
    path: Path, key: str, model: torch.nn.Module, optimizer: torch.optim.Optimizer, step: int,
    elapsed: float, **extra: object,
) -> None:  # fmt: skip
    """Checkpoint a training phase: ``model`` under ``key``, optimizer, step, wall clock, RNG.

    The step and the clock also go to a small ``<path>.json`` beside it, which can be read
    without loading the checkpoint.
    """
    state = {key: model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
             "elapsed": elapsed, "rng": torch.get_rng_state(), **extra}  # fmt: skip
    save_atomic(state, path)
    clock = path.with_suffix(path.suffix + ".json")
    tmp = clock.with_suffix(clock.suffix + ".tmp")  # not the checkpoint's own temporary file
    tmp.write_text(json.dumps({"step": step, "elapsed": elapsed}))
    os.replace(tmp, clock)


def resume_phase(
    path: Path, key: str, model: torch.nn.Module, optimizer: torch.optim.Optimizer, phase: str
) -> tuple[int, float, dict]:
    """Load a :func:`save_phase` checkpoint if there is one: (step, elapsed seconds, state).

    A missing checkpoint gives ``(0, 0.0, {})``; the RNG is restored when it was saved.
    """
    if not path.exists():
        return 0, 0.0, {}
    state = torch.load(path, weights_only=False)
    model.load_state_dict(state[key])
    optimizer.load_state_dict(state["optimizer"])
    if "rng" in state:
        torch.set_rng_state(state["rng"])
    log(f"{phase}: resumed at step {state['step']}, {state['elapsed'] / 60:.1f} min")
    return state["step"], state["elapsed"], state


# --------------------------------------------------------------------------------------------
# Phase 1: data
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Phase 2 and 3: VAE and latents
# --------------------------------------------------------------------------------------------


def train_vae(
    dataset: dict[str, torch.Tensor], out: Path, minutes: float, seed: int, ckpt_minutes: float
) -> AutoencoderKL:
    """Train the VAE for ``minutes`` of wall clock (resuming ``vae_ckpt.pt``); returns it."""
    torch.manual_seed(seed)
    vae = shapes_model.build_vae()
    optimizer = torch.optim.AdamW(vae.parameters(), lr=1e-3, weight_decay=0.0)
    ckpt_path = out / "vae_ckpt.pt"
    step, elapsed, _ = resume_phase(ckpt_path, "vae", vae, optimizer, "vae")
    n_images = dataset["images"].shape[0]
    budget = minutes * 60.0
    start, last_ckpt = time.time() - elapsed, time.time()
    while time.time() - start < budget:
        frac = (time.time() - start) / budget
        for group in optimizer.param_groups:
            warm = min(1.0, (step + 1) / 100)
            group["lr"] = 1e-3 * warm * (0.55 + 0.45 * math.cos(math.pi * frac))
        index = torch.randint(0, n_images, (16,))
        pixels = images_to_tensor(dataset["images"][index])
        posterior = vae.encode(pixels).latent_dist
        recon = vae.decode(posterior.sample()).sample
        mse = F.mse_loss(recon, pixels)
        kl = posterior.kl().mean() / pixels[0].numel()
        loss = mse + 1e-4 * kl
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        optimizer.step()
        step += 1
        if step % 50 == 0:
            psnr = 10 * math.log10(4.0 / max(mse.item(), 1e-10))  # of this training batch
            log(f"vae step {step} mse {mse.item():.5f} batch psnr {psnr:.1f} dB "
                f"kl {kl.item():.3f}")  # fmt: skip
        if time.time() - last_ckpt > ckpt_minutes * 60:
            save_phase(ckpt_path, "vae", vae, optimizer, step, time.time() - start)
            last_ckpt = time.time()
            log(f"vae: checkpoint at step {step}")
    log(f"vae: done, {step} steps")
    return vae


@torch.no_grad()
def encode_latents(vae: AutoencoderKL, images: torch.Tensor, batch: int = 128) -> torch.Tensor:
    """Posterior means of all images, (n, 4, 16, 16), unscaled."""
    vae.eval()
    chunks = []
    for begin in range(0, images.shape[0], batch):
        pixels = images_to_tensor(images[begin : begin + batch])
        chunks.append(vae.encode(pixels).latent_dist.mean)
    return torch.cat(chunks)


def held_out_images(n_images: int, seed: int, count: int = HELD_OUT_IMAGES) -> torch.Tensor:
    """uint8 (count, 64, 64, 3): samples ``n_images`` .. ``n_images + count - 1`` of ``seed``.

    A run trains on samples 0 .. n_images - 1, so its VAE never sees these. The drawings do
    not depend on ``position_unnamed_share`` (only the captions do).
    """
    images = [shapes_data.sample(index, seed).image for index in range(n_images, n_images + count)]
    return torch.from_numpy(np.stack(images))  # (count, 64, 64, 3)


@torch.no_grad()
@torch.no_grad()  # called inside the decoder's training loop: build no graph
def vae_psnr(vae: AutoencoderKL, images: torch.Tensor, batch: int = 128) -> float:
    """Per-image mean PSNR of encode (posterior mean) → decode on uint8 ``images``, in dB.

    ``mean_i 10·log10(2² / MSE_i)``: pixels in [-1, 1] (a range of 2), the reconstruction
    clamped to it, ``MSE_i`` over image i's pixels and channels, then the mean over images.
    """
    psnrs = []
    for begin in range(0, images.shape[0], batch):
        pixels = images_to_tensor(images[begin : begin + batch])  # (batch, 3, 64, 64)
        recon = vae.decode(vae.encode(pixels).latent_dist.mean).sample.clamp(-1, 1)
        mse = ((recon - pixels) ** 2).mean(dim=(1, 2, 3))  # (batch,)
        psnrs.append(10 * torch.log10(4.0 / mse.clamp_min(1e-10)))
    return float(torch.cat(psnrs).mean())


def finetune_decoder(out: Path, minutes: float, seed: int, ckpt_minutes: float) -> dict:
    """Fine-tune the VAE decoder on the cached latents, encoder frozen (as SD's ft-MSE VAE).

    The latent space the UNet learns is unchanged: only the decoder (and ``post_quant_conv``)
    moves. Runs after the UNet phase; resumes ``vae_decoder_ckpt.pt``. Trains on every cached
    latent; the PSNR it logs (:func:`vae_psnr`) is on :func:`held_out_images`, samples past
    the training set. Returns the VAE state dict, also saved as ``vae_decoder_final.pt``.
    """
    torch.manual_seed(seed + 2)
    dataset = torch.load(out / "data.pt")
    latents = torch.load(out / "latents.pt")["latents"]  # (n, 4, 16, 16), unscaled means
    images = dataset["images"][: latents.shape[0]]
    vae = shapes_model.build_vae()
    vae.load_state_dict(torch.load(out / "vae_final.pt"))
    params = list(vae.decoder.parameters()) + list(vae.post_quant_conv.parameters())
    optimizer = torch.optim.AdamW(params, lr=5e-4, weight_decay=0.0)
    ckpt_path = out / "vae_decoder_ckpt.pt"
    step, elapsed, _ = resume_phase(ckpt_path, "vae", vae, optimizer, "decoder")
    budget = minutes * 60.0
    start, last_ckpt = time.time() - elapsed, time.time()
    held_out = held_out_images(latents.shape[0], seed)  # (256, 64, 64, 3), never trained on

    while time.time() - start < budget:
        frac = (time.time() - start) / budget
        for group in optimizer.param_groups:
            group["lr"] = (
                5e-4 * min(1.0, (step + 1) / 50) * (0.1 + 0.45 * (1 + math.cos(math.pi * frac)))
            )
        index = torch.randint(0, latents.shape[0], (16,))
        pixels = images_to_tensor(images[index])  # (16, 3, 64, 64)
        noisy_latents = latents[index] + 0.02 * torch.randn_like(latents[index])
        recon = vae.decode(noisy_latents).sample
        loss = F.mse_loss(recon, pixels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        step += 1
        if step % 100 == 0:
            psnr = vae_psnr(vae, held_out[:64])
            log(f"decoder step {step} loss {loss.item():.5f} PSNR on 64 unseen images "
                f"{psnr:.2f} dB")  # fmt: skip
        if time.time() - last_ckpt > ckpt_minutes * 60:
            save_phase(ckpt_path, "vae", vae, optimizer, step, time.time() - start)
            last_ckpt = time.time()
    save_phase(ckpt_path, "vae", vae, optimizer, step, time.time() - start)
    save_atomic(vae.state_dict(), out / "vae_decoder_final.pt")
    log(f"decoder: done, {step} steps; PSNR on {held_out.shape[0]} unseen images "
        f"{vae_psnr(vae, held_out):.2f} dB")  # fmt: skip
    return vae.state_dict()


# --------------------------------------------------------------------------------------------
# Phase 4: the text encoder, pre-trained to read captions, then frozen
# --------------------------------------------------------------------------------------------

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


TEXT_TARGETS = ("word", "cumulative")


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

    budget = minutes * 60.0
    start, last_ckpt = time.time() - elapsed, time.time()
    while time.time() - start < budget:
        frac = (time.time() - start) / budget
        for group in optimizer.param_groups:
            group["lr"] = lr_at(1e-3, step, frac, 50)
        index = torch.randint(0, ids.shape[0], (batch,))
        input_ids, wanted = ids[index].clone(), targets[index].clone()
        drop = torch.rand(batch) < EMPTY_CAPTION_SHARE
        input_ids[drop] = empty_ids
        wanted[drop] = 0
        loss, _ = head_loss(input_ids, wanted)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        step += 1
        if step % 100 == 0:
            log(f"text step {step} loss {loss.item():.4f}")
        if time.time() - last_ckpt > ckpt_minutes * 60:
            save_phase(ckpt_path, "text", modules, optimizer, step, time.time() - start)
            last_ckpt = time.time()
            log(f"text: checkpoint at step {step}")
    save_phase(ckpt_path, "text", modules, optimizer, step, time.time() - start)
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


# --------------------------------------------------------------------------------------------
# Phase 5: UNet
# --------------------------------------------------------------------------------------------


def grounding_loss(
    maps: list[tuple[str, torch.Tensor]], masks: torch.Tensor, owners: torch.Tensor
) -> torch.Tensor:
    """Mean over layers and grounded tokens of 1 − (attention mass inside the token's mask).

    ``maps``: (batch, pixels, tokens) per layer; ``masks``: (batch, objects, 64, 64) float;
    ``owners``: (batch, tokens) object index per token, -1 for tokens without an object.
    """
    valid = owners >= 0  # (batch, tokens)
    if not bool(valid.any()):
        return masks.new_zeros(())
    owner_index = owners.clamp_min(0).long()  # (batch, tokens)
    by_resolution: dict[int, torch.Tensor] = {}
    losses = []
    for _name, probs in maps:
        pixels = probs.shape[1]
        side = int(round(math.sqrt(pixels)))
        if side not in by_resolution:
            pooled = F.adaptive_avg_pool2d(masks, side)  # (batch, objects, side, side)
            flat = pooled.flatten(2)  # (batch, objects, pixels)
            gather_index = owner_index[:, :, None].expand(-1, -1, pixels)  # (batch, tokens, px)
            by_resolution[side] = torch.gather(flat, 1, gather_index)  # (batch, tokens, pixels)
        token_masks = by_resolution[side]
        token_maps = probs.transpose(1, 2)  # (batch, tokens, pixels)
        inside = (token_maps * token_masks).sum(-1) / token_maps.sum(-1).clamp_min(1e-8)
        losses.append(((1.0 - inside) * valid).sum() / valid.sum())
    return torch.stack(losses).mean()


def lr_at(base: float, step: int, frac: float, warmup: int) -> float:
    """Warm-up over ``warmup`` steps, then cosine from ``base`` to 10% by the time budget."""
    return base * min(1.0, (step + 1) / warmup) * (0.1 + 0.45 * (1 + math.cos(math.pi * frac)))


def object_weights(masks: torch.Tensor, weight: float, side: int = 16) -> torch.Tensor:
    """Per-latent-pixel loss weights (batch, 1, side, side): 1 + ``weight`` × object coverage.

    A flat background is easy to denoise; the objects' pixels carry shape and position. With
    the default ``weight`` of 3 a pixel the objects cover counts 4× a background pixel.
    The weights depend on the masks, which the noisy latent does not fully reveal, so they
    move the optimum as well as the gradient: at each pixel the best prediction becomes
    ``E[w·ε | x_t] / E[w | x_t]`` instead of ``E[ε | x_t]`` (``w``: the pixel's weight over
    its sample's mean weight, as the loss divides it), leaning towards the noise of the
    samples with an object there. The two agree where ``x_t`` tells the masks apart (low
    noise) and differ most at high noise.
    """
    coverage = F.adaptive_avg_pool2d(masks.float().amax(1, keepdim=True), side)
    return 1.0 + weight * coverage  # (batch, 1, side, side)


def ema_decay_at(step: int, max_decay: float) -> float:
    """The EMA decay after optimiser step ``step`` (0-based): a warm-up, then ``max_decay``.

    ``min(max_decay, (1 + step) / (EMA_WARMUP + step))``: early weights are forgotten fast.
    With ``max_decay`` 0.999 the warm-up reaches it at step 8,990.
    """
    return min(max_decay, (1 + step) / (EMA_WARMUP + step))


@torch.no_grad()
def update_ema(ema: list[torch.Tensor], params: list[torch.Tensor], decay: float) -> None:
    """In place: ``ema ← decay · ema + (1 − decay) · param`` for each pair."""
    torch._foreach_lerp_(ema, [p.detach() for p in params], 1.0 - decay)


def min_snr_weight(
    timesteps: torch.Tensor, alphas_cumprod: torch.Tensor, gamma: float = MIN_SNR_GAMMA
) -> torch.Tensor:
    """Min-SNR-γ loss weights for epsilon prediction, ``min(SNR, γ) / SNR`` per timestep.

    ``SNR(t) = ᾱ_t / (1 − ᾱ_t)``: 1 where the SNR is at most γ (the noisy steps), less where
    the image is nearly clean. Same shape as ``timesteps``.
    """
    snr = alphas_cumprod[timesteps] / (1 - alphas_cumprod[timesteps])
    return snr.clamp(max=gamma) / snr


def train_unet(
    dataset: dict, latents: torch.Tensor, text_hidden: torch.Tensor,
    empty_hidden: torch.Tensor, out: Path, args: argparse.Namespace,
    init_state: dict | None = None,
) -> dict:  # fmt: skip
    """Train the UNet for ``args.minutes`` on frozen caption embeddings; its EMA state dict.

    ``text_hidden``: (n, 77, hidden) fp16 embeddings of the dataset's captions;
    ``empty_hidden``: (77, hidden), the empty caption's; ``init_state``: weights to start
    from (a fine-tune) instead of a fresh initialisation, when there is no checkpoint yet.
    """
    torch.manual_seed(args.seed + 1)
    unet = shapes_model.build_unet()
    if init_state is not None:
        unet.load_state_dict(init_state)
    record = shapes_model.AttentionRecord()
    shapes_model.install_recording(unet, record)
    noise_scheduler = shapes_model.build_noise_scheduler()
    alphas_cumprod = noise_scheduler.alphas_cumprod.float()
    params = list(unet.parameters())
    optimizer = torch.optim.AdamW(params, lr=args.lr, betas=(0.9, 0.99), weight_decay=0.0)
    ema = [p.detach().clone() for p in params]
    ckpt_path = out / "unet_ckpt.pt"
    step, elapsed, state = resume_phase(ckpt_path, "unet", unet, optimizer, "unet")
    for target, saved in zip(ema, state.get("ema", ema), strict=True):
        target.copy_(saved)

    owners_all = dataset["owners"].long()
    if args.ground_positions:
        owners_all = position_owners(dataset["input_ids"], owners_all)
    n_images = latents.shape[0]
    budget = args.minutes * 60.0
    start, last_ckpt, last_log = time.time() - elapsed, time.time(), time.time()
    running: dict[str, float] = {"loss": 0.0, "ground": 0.0, "n": 0}

    def checkpoint() -> None:
        save_phase(ckpt_path, "unet", unet, optimizer, step, time.time() - start, ema=ema)
        log(f"unet: checkpoint at step {step} ({(time.time() - start) / 60:.1f} min)")

    while time.time() - start < budget:
        frac = (time.time() - start) / budget
        lr = lr_at(args.lr, step, frac, args.warmup)
        for group in optimizer.param_groups:
            group["lr"] = lr
        index = torch.randint(0, n_images, (args.batch,))
        clean = latents[index] * args.scaling_factor  # (batch, 4, 16, 16)
        hidden = text_hidden[index].float()  # (batch, 77, hidden)
        owners = owners_all[index]  # (batch, 77)
        drop = torch.rand(args.batch) < EMPTY_CAPTION_SHARE
        hidden[drop] = empty_hidden.float()
        owners[drop] = -1
        masks = dataset["masks"][index]  # (batch, 2, 64, 64) bool
        noise = torch.randn_like(clean)
        timesteps = torch.randint(0, 1000, (args.batch,))
        noisy = noise_scheduler.add_noise(clean, noise, timesteps)
        ground_now = args.ground_weight > 0 and step % args.ground_every == 0
        record.clear()
        record.active = ground_now
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            prediction = unet(noisy, timesteps, hidden).sample.float()
        weight = min_snr_weight(timesteps, alphas_cumprod)  # (batch,)
        pixel_weight = object_weights(masks, args.object_weight)  # (batch, 1, 16, 16)
        per_sample = (pixel_weight * (prediction - noise) ** 2).mean(dim=(1, 2, 3))
        per_sample = per_sample / pixel_weight.mean(dim=(1, 2, 3))
        loss = (weight * per_sample).mean()
        total = loss
        ground = torch.zeros(())
        if ground_now:
            maps = [(name, probs.float()) for name, probs in record.maps]
            ground = grounding_loss(maps, masks.float(), owners)
            total = loss + args.ground_weight * ground
        record.clear()
        record.active = False
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        update_ema(ema, params, ema_decay_at(step, args.ema_decay))
        step += 1
        running["loss"] += loss.item()
        running["ground"] += ground.item()
        running["n"] += 1
        if time.time() - last_log > 60 or step % 100 == 0:
            n = running["n"]
            rate = n / max(time.time() - last_log, 1e-6)
            log(
                f"unet step {step} loss {running['loss'] / n:.4f} ground "
                f"{running['ground'] / n:.4f} lr {lr:.2e} {rate:.2f} it/s "
                f"{(time.time() - start) / 60:.1f}/{args.minutes:.0f} min"
            )
            running = {"loss": 0.0, "ground": 0.0, "n": 0}
            last_log = time.time()
        if time.time() - last_ckpt > args.checkpoint_minutes * 60:
            checkpoint()
            last_ckpt = time.time()
    checkpoint()
    log(f"unet: done, {step} steps")
    return ema_state_dict(unet, ema)


def init_from_pipeline(folder: Path | None, out: Path) -> dict | None:
    """Start this run from an exported pipeline (a fine-tune): its VAE and text encoder become
    the run's ``vae_final.pt`` and ``text_final.pt``, so those phases are skipped; its UNet
    and scaling factor are kept in ``init.pt``, which is returned.

    A run whose ``init.pt`` exists is a fine-tune: that file is returned, with or without
    ``folder``. None (train from scratch) when there is neither.
    """
    init_path = out / "init.pt"
    if init_path.exists():
        return torch.load(init_path, weights_only=False)
    if folder is None:
        return None
    from p2p_teach.shapes import load_shapes_pipeline

    pipe = load_shapes_pipeline(folder, dtype=torch.float32)
    save_atomic(pipe.vae.state_dict(), out / "vae_final.pt")
    save_atomic(pipe.text_encoder.state_dict(), out / "text_final.pt")
    init = {"unet": pipe.unet.state_dict(), "scaling_factor": pipe.vae.config.scaling_factor}
    save_atomic(init, init_path)
    log(f"init: VAE, text encoder and UNet from {folder}")
    return init


def unet_minutes_trained(out: Path) -> float:
    """Minutes of UNet training in the run's checkpoint (0 without one).

    Read from the checkpoint's ``.json`` clock; a checkpoint written without one is loaded.
    """
    path = out / "unet_ckpt.pt"
    clock = path.with_suffix(path.suffix + ".json")
    if clock.exists() and path.exists():
        return json.loads(clock.read_text())["elapsed"] / 60
    return torch.load(path, weights_only=False)["elapsed"] / 60 if path.exists() else 0.0


def ema_state_dict(unet: torch.nn.Module, ema: list[torch.Tensor]) -> dict:
    """The UNet's state dict with the EMA weights in place of the live ones."""
    with torch.no_grad():
        for p, e in zip(unet.parameters(), ema, strict=True):
            p.copy_(e)
    return unet.state_dict()


# --------------------------------------------------------------------------------------------
# Phase 6 and 7: export
# --------------------------------------------------------------------------------------------


def check_export_folder(folder: Path) -> None:
    """Refuse an export folder whose contents an export would destroy: raises ``ValueError``.

    An export replaces its folder whole, so the folder must be new, empty, or an exported
    pipeline (it has a ``model_index.json``).
    """
    if not folder.exists():
        return
    if not folder.is_dir():
        raise ValueError(f"export folder {folder} is a file; pass a new or empty folder, or an "
                         "exported pipeline folder to replace")  # fmt: skip
    if any(folder.iterdir()) and not (folder / "model_index.json").exists():
        raise ValueError(f"export folder {folder} is not empty and holds no pipeline (no "
                         "model_index.json), and an export replaces the whole folder; pass a "
                         "new or empty folder, or an exported pipeline folder")  # fmt: skip


def export_pipeline(
    unet_state: dict,
    text_state: dict,
    vae_state: dict,
    scaling_factor: float,
    folder: str | Path,
    dtype: torch.dtype = torch.float32,
) -> Path:
    """Write a ``StableDiffusionPipeline`` folder (safetensors, real CLIP tokenizer files).

    The pipeline is written to a hidden sibling folder first and then renamed into place, so
    a failed export leaves ``folder`` as it was. ``folder`` must pass
    :func:`check_export_folder`: an existing pipeline there is replaced whole.
    """
    from diffusers import StableDiffusionPipeline

    from p2p_teach.tokens import load_clip_tokenizer, write_clip_tokenizer_files

    folder = Path(folder)
    check_export_folder(folder)
    unet = shapes_model.build_unet()
    unet.load_state_dict(unet_state)
    text_encoder = shapes_model.build_text_encoder()
    text_encoder.load_state_dict(text_state)
    vae = shapes_model.build_vae()
    vae.load_state_dict(vae_state)
    vae.register_to_config(scaling_factor=float(scaling_factor))
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=load_clip_tokenizer(),
        unet=unet,
        scheduler=shapes_model.build_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.to(dtype=dtype)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = folder.with_name(f".{folder.name}.export-new")
    previous = folder.with_name(f".{folder.name}.export-old")
    if previous.exists() and not folder.exists():  # an earlier swap stopped half-way
        os.replace(previous, folder)
    for leftover in (staging, previous):
        if leftover.exists():
            shutil.rmtree(leftover)
    pipe.save_pretrained(str(staging), safe_serialization=True)
    tokenizer_dir = staging / "tokenizer"
    if tokenizer_dir.exists():
        shutil.rmtree(tokenizer_dir)
    write_clip_tokenizer_files(tokenizer_dir)
    if folder.exists():
        os.replace(folder, previous)  # a rename: the old pipeline stays whole until the swap
    os.replace(staging, folder)
    if previous.exists():
        shutil.rmtree(previous)
    return folder


def export_from_run(out: Path, folder: Path, dtype: torch.dtype) -> Path:
    """Export the run in ``out`` to ``folder``: ``final.pt``, or the latest checkpoint."""
    if (out / "final.pt").exists():
        final = torch.load(out / "final.pt", weights_only=False)
    else:  # a run still training: the EMA weights of its latest checkpoint
        state = torch.load(out / "unet_ckpt.pt", weights_only=False)
        unet = shapes_model.build_unet()
        unet.load_state_dict(state["unet"])
        final = {
            "unet": ema_state_dict(unet, state["ema"]),
            "text_encoder": torch.load(out / "text_final.pt"),
            "vae": torch.load(out / "vae_final.pt"),
            "scaling_factor": torch.load(out / "latents.pt")["scaling_factor"],
        }
        log(f"export: checkpoint at step {state['step']}")
    vae_state = final["vae"]
    if (out / "vae_decoder_final.pt").exists():
        vae_state = torch.load(out / "vae_decoder_final.pt")
        log("export: with the fine-tuned decoder")
    return export_pipeline(
        final["unet"], final["text_encoder"], vae_state, final["scaling_factor"], folder, dtype
    )


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/shapes"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-images", type=int, default=30000)
    parser.add_argument("--vae-minutes", type=float, default=10.0)
    parser.add_argument("--text-minutes", type=float, default=4.0, help="text pre-training")
    parser.add_argument(
        "--text-targets", choices=TEXT_TARGETS, default="word",
        help="what each slot's embedding is trained to name: its own word, or all said so far",
    )  # fmt: skip
    parser.add_argument(
        "--position-unnamed-share", type=float, default=0.35,
        help="share of one-object captions that leave the position to the seed",
    )  # fmt: skip
    parser.add_argument(
        "--init-from", type=Path, default=None,
        help="fine-tune: start from this exported pipeline's weights (its VAE and text "
        "encoder are kept; the decoder is not fine-tuned again)",
    )  # fmt: skip
    parser.add_argument("--minutes", type=float, default=110.0, help="UNet training time")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=8e-4)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--ema-decay", type=float, default=0.999)
    parser.add_argument("--ground-weight", type=float, default=0.1)
    parser.add_argument("--ground-every", type=int, default=1, help="grounding loss every k steps")
    parser.add_argument(
        "--no-ground-positions", dest="ground_positions", action="store_false",
        help="ground only colour, shape and size words, not position words",
    )  # fmt: skip
    parser.add_argument(
        "--object-weight", type=float, default=3.0,
        help="extra loss weight on the objects' latent pixels (0: plain MSE)",
    )  # fmt: skip
    parser.add_argument(
        "--no-bf16", dest="bf16", action="store_false", help="UNet in fp32 (default bf16 autocast)"
    )
    parser.add_argument("--checkpoint-minutes", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--resume", action="store_true", help="continue from checkpoints")
    parser.add_argument("--export", type=Path, default=None, help="also export fp16 here")
    parser.add_argument("--export-only", action="store_true")
    parser.add_argument(
        "--decoder-minutes", type=float, default=8.0,
        help="VAE decoder fine-tune time, after the UNet phase",
    )  # fmt: skip
    args = parser.parse_args(argv)
    share = args.position_unnamed_share
    if not 0.0 <= share <= 1.0:
        parser.error(f"--position-unnamed-share must be in [0, 1], got {share}")
    if args.init_from is not None and not (args.init_from / "model_index.json").exists():
        parser.error(f"--init-from {args.init_from}: not an exported pipeline folder (no "
                     "model_index.json); pass one such as p2p_teach/shapes/weights")  # fmt: skip
    if args.export_only and args.export is None:
        parser.error("--export-only needs --export DIR, the folder to write the fp16 pipeline "
                     "to (e.g. --export-only --export p2p_teach/shapes/weights)")  # fmt: skip
    if args.export is not None:
        export, out = args.export.resolve(), args.out.resolve()
        if export == out or out in export.parents:
            parser.error(f"--export {args.export} is the run folder --out {args.out} or inside "
                         "it; export to a folder of its own, e.g. --export "
                         f"{args.out / '..' / 'export'}")  # fmt: skip
        try:
            check_export_folder(args.export)
        except ValueError as error:
            parser.error(f"--export: {error}")
    if args.export_only and not any(
        (args.out / name).exists() for name in ("final.pt", "unet_ckpt.pt")
    ):
        parser.error(f"--export-only: {args.out} holds no trained run (no final.pt or "
                     "unet_ckpt.pt); pass the --out of a run that trained its UNet")  # fmt: skip
    return args


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def check_resume(out: Path, args: argparse.Namespace) -> None:
    """Refuse to resume ``out`` with settings that disagree with its ``args.json``.

    The settings of :data:`FIXED_ON_RESUME` define what the run has cached (data, latents,
    text encoder, a fine-tune's start), so a resumed run must keep them: raises
    ``SystemExit`` naming the flag and the fix. A fine-tune resumed without ``--init-from``
    takes the run's own (``args.init_from`` is set from ``args.json``).
    """
    path = out / "args.json"
    if not path.exists():
        return
    saved = json.loads(path.read_text())
    for name in FIXED_ON_RESUME:
        if name not in saved:  # an older run's args.json, without this setting
            continue
        was, now = saved[name], getattr(args, name)
        if name == "init_from":
            if now is None:
                if was is not None:
                    args.init_from = Path(was)
                    log(f"resume: a fine-tune of {was}")
                continue
            if was is None:
                raise SystemExit(f"--resume: {out} trains from scratch, so --init-from {now} "
                                 "cannot resume it; drop --init-from, or use another --out "
                                 "for a fine-tune")  # fmt: skip
            same = Path(was).resolve() == Path(now).resolve()
        else:
            same = was == now  # numbers compare by value (3 == 3.0)
        if not same:
            raise SystemExit(f"--resume: {out} was made with {_flag(name)} {was}, not {now}; "
                             f"repeat {_flag(name)} {was} to resume it (its cached data and "
                             f"components depend on it), or use another --out")  # fmt: skip


def check_cached_lengths(n_images: int, **cached: torch.Tensor) -> None:
    """Refuse cached tensors (name: tensor) whose first dimension is not ``n_images``."""
    for name, tensor in cached.items():
        if tensor.shape[0] != n_images:
            raise SystemExit(f"{name} holds {tensor.shape[0]} samples but the run has "
                             f"--n-images {n_images}; resume with the --n-images it was made "
                             "with, or use another --out")  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    """Run all phases (see the module docstring)."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    out: Path = args.out
    if args.export_only:  # parse_args checked that out holds a trained run
        export_from_run(out, args.export, torch.float16)
        log(f"exported to {args.export}")
        return
    out.mkdir(parents=True, exist_ok=True)
    if args.resume:
        check_resume(out, args)
    else:
        names = ("data.pt", "vae_ckpt.pt", "vae_final.pt", "latents.pt", "text_ckpt.pt",
                 "text_final.pt", "init.pt", "unet_ckpt.pt", "final.pt",
                 "vae_decoder_ckpt.pt", "vae_decoder_final.pt")  # fmt: skip
        for name in names:
            if (out / name).exists():
                raise SystemExit(f"{out / name} exists: pass --resume or use another --out")
    (out / "args.json").write_text(json.dumps(vars(args), default=str, indent=1))
    log(f"args: {vars(args)}")
    init = init_from_pipeline(args.init_from, out)  # None: from scratch

    data_path = out / "data.pt"
    if data_path.exists():
        dataset = torch.load(data_path)
        check_cached_lengths(args.n_images, **{f"data.pt's {key}": value
                                               for key, value in dataset.items()})  # fmt: skip
    else:
        t0 = time.time()
        dataset = build_dataset(args.n_images, args.seed, args.position_unnamed_share)
        save_atomic(dataset, data_path)
        log(f"data: {args.n_images} samples in {time.time() - t0:.0f} s")

    vae_path = out / "vae_final.pt"
    if vae_path.exists():
        vae_state = torch.load(vae_path)
    else:
        vae = train_vae(dataset, out, args.vae_minutes, args.seed, args.checkpoint_minutes)
        vae_state = vae.state_dict()
        save_atomic(vae_state, vae_path)
    vae = shapes_model.build_vae()
    vae.load_state_dict(vae_state)
    vae.eval()

    latents_path = out / "latents.pt"
    if latents_path.exists():
        saved = torch.load(latents_path)
        latents, scaling_factor = saved["latents"], saved["scaling_factor"]
        check_cached_lengths(args.n_images, **{"latents.pt": latents})
    else:
        t0 = time.time()
        latents = encode_latents(vae, dataset["images"])
        # a fine-tune keeps the scale its UNet was trained at
        scaling_factor = float(1.0 / latents.std()) if init is None else init["scaling_factor"]
        save_atomic({"latents": latents, "scaling_factor": scaling_factor}, latents_path)
        log(f"latents: {tuple(latents.shape)} in {time.time() - t0:.0f} s, scaling factor "
            f"{scaling_factor:.4f}")  # fmt: skip
        held_out = held_out_images(args.n_images, args.seed)
        log(f"vae: PSNR {vae_psnr(vae, held_out):.2f} dB (per-image mean) on "
            f"{held_out.shape[0]} unseen samples, {args.n_images} on")  # fmt: skip
    args.scaling_factor = scaling_factor

    text_path = out / "text_final.pt"
    if text_path.exists():
        text_state = torch.load(text_path)
    else:
        text_state = train_text_encoder(
            out, args.text_minutes, args.seed, kind=args.text_targets,
            ckpt_minutes=args.checkpoint_minutes,
        )  # fmt: skip
        save_atomic(text_state, text_path)
    text_encoder = shapes_model.build_text_encoder()
    text_encoder.load_state_dict(text_state)
    t0 = time.time()
    text_hidden = encode_captions(text_encoder, dataset["input_ids"])  # (n, 77, hidden)
    empty_ids, _ = CaptionIds().encode([], [])
    empty_hidden = encode_captions(text_encoder, torch.tensor([empty_ids]))[0]  # (77, hidden)
    log(f"text: {text_hidden.shape[0]} caption embeddings in {time.time() - t0:.0f} s")

    trained = unet_minutes_trained(out)
    if (out / "final.pt").exists() and trained >= args.minutes:
        final = torch.load(out / "final.pt", weights_only=False)
    else:  # a new UNet phase, a resumed one, or a finished one given a larger --minutes
        if (out / "final.pt").exists():
            log(f"unet: extending the finished run from {trained:.1f} to {args.minutes:g} min")
        unet_state = train_unet(dataset, latents, text_hidden, empty_hidden, out, args,
                                init_state=None if init is None else init["unet"])  # fmt: skip
        final = {"unet": unet_state, "text_encoder": text_state, "vae": vae_state,
                 "scaling_factor": scaling_factor}  # fmt: skip
        save_atomic(final, out / "final.pt")
    if init is not None:
        log("decoder: kept from the pipeline the run started from")
    elif args.decoder_minutes > 0 and not (out / "vae_decoder_final.pt").exists():
        finetune_decoder(out, args.decoder_minutes, args.seed, args.checkpoint_minutes)
    export_from_run(out, out / "pipeline", torch.float32)
    log(f"exported fp32 pipeline to {out / 'pipeline'}")
    if args.export is not None:
        export_from_run(out, args.export, torch.float16)
        log(f"exported fp16 pipeline to {args.export}")


if __name__ == "__main__":
    main()
