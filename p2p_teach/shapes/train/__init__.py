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

The modules, in the order of the phases: :mod:`.checkpoints` (the run folder's files),
:mod:`.schedule` (wall-clock budget, learning rate, EMA), :mod:`.dataset` (phase 1),
:mod:`.vae` (phases 2, 3 and 6), :mod:`.text` (phase 4), :mod:`.losses` and :mod:`.unet`
(phase 5), :mod:`.export` (phase 7 and ``--init-from``), :mod:`.config` (the run's settings,
:class:`TrainConfig`), :mod:`.phases` (the run) and :mod:`.cli` (the flags). Their public
names are importable from this package too.
"""

from __future__ import annotations

from p2p_teach.shapes._lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    **dict.fromkeys(("log", "save_atomic", "save_phase", "resume_phase", "unet_minutes_trained"),
                    "checkpoints"),
    **dict.fromkeys(("PhaseClock", "lr_at", "set_lr", "optimiser_step", "ema_decay_at",
                     "update_ema", "ema_state_dict"), "schedule"),
    **dict.fromkeys(("CaptionIds", "build_dataset", "images_to_tensor", "held_out_images",
                     "position_owners", "EMPTY_CAPTION_SHARE", "HELD_OUT_IMAGES"), "dataset"),
    **dict.fromkeys(("train_vae", "encode_latents", "vae_psnr", "finetune_decoder"), "vae"),
    **dict.fromkeys(("ATTRIBUTE_VALUES", "HEADS", "HEAD_CLASSES", "caption_targets",
                     "caption_corpus", "train_text_encoder", "encode_captions"), "text"),
    **dict.fromkeys(("grounding_loss", "object_weights", "min_snr_weight", "denoising_loss",
                     "MIN_SNR_GAMMA"), "losses"),
    **dict.fromkeys(("UnetData", "train_unet"), "unet"),
    **dict.fromkeys(("check_export_folder", "export_pipeline", "export_from_run",
                     "init_from_pipeline"), "export"),
    **dict.fromkeys(("TrainConfig", "FIXED_ON_RESUME", "TEXT_TARGETS", "check_resume",
                     "check_cached_lengths"), "config"),
    **dict.fromkeys(("run_phases",), "phases"),
    **dict.fromkeys(("main", "parse_args"), "cli"),
}  # fmt: skip
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
