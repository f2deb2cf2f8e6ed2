"""Measure the shapes model: ``python -m p2p_teach.shapes.evaluate [--quick] [--weights DIR]``.

Every measure reads generated images against what the prompt asked for, using the data
generator's own definitions (palette, anchor positions, shapes):

- **colour**: the median colour of the object's pixels (pixels far from the background, which
  is read off the image border) is nearest, in the palette, to the colour named;
- **shape**: a small CNN, trained here in seconds on silhouettes of generated ground-truth
  images, recognises the shape named (its accuracy on held-out ground truth is reported too);
- **position**: the object's centroid is nearest to the anchor of the position named (5-way);
- **two objects**: each half of the image (left/right or top/bottom) holds an object of the
  colour named for it;
- **attention**: share of the colour and shape words' cross-attention mass inside the object's
  mask, divided by the mask's share of the image, averaged over steps and layers (1.0 means
  no better than chance);
- **Prompt-to-Prompt colour swap** (through :func:`p2p_teach.engine.edit`): median IoU of the
  object masks of source and edit (0 where either holds no object: a failed swap), with
  cross-attention injection over 0.8 of the steps and without any injection (same seed),
  the share of edits whose object takes the new colour,
  and the time of a 2-prompt edit at 25 steps; also with self-attention injected only in
  Stable Diffusion's layers or over its 0.4 of the steps, with the size left to the seed, and
  with the position left to the seed (``a big red circle``: where the object goes is the
  seed's, and injection should keep it there); and on other prompts and seeds, to check
  that the edit settings chosen on these swaps hold beyond them;
- **shape swap** (``a big red circle`` → ``a big red square``): the new shape should be drawn
  in the source's colour and place; injection held too long keeps the old one, so these also
  run with both injections over fewer steps;
- **side-word swap** (``on the left`` → ``on the right``): with injection the object should
  stay where the source put it, without it the object should move;
- **guidance**: colour, shape and position accuracy at several classifier-free guidance scales
  (other prompts and seeds), which is how the model's scale (``p2p_teach.shapes.GUIDANCE``)
  was chosen; every other measure runs at that scale.

``--quick`` runs a handful of samples (a CI test, under a minute on two CPU cores).

The modules: :mod:`.readers` (masks, colour, position read off an image), :mod:`.classifier`
(the shape classifier), :mod:`.specs` (the prompts and word swaps), :mod:`.settings` (how
much to evaluate), :mod:`.generation` (images and attention maps), :mod:`.swaps` and
:mod:`.swap_results` (the Prompt-to-Prompt measures), :mod:`.measures` (:func:`evaluate`),
:mod:`.report` (the table against the targets) and :mod:`.cli` (the flags). Their public
names are importable from this package too.
"""

from __future__ import annotations

from p2p_teach.shapes._lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    **dict.fromkeys(("BACKGROUND_DISTANCE", "MIN_OBJECT_PIXELS", "CROP_SIDE", "background_colour",
                     "background_name", "foreground", "object_colour", "object_position",
                     "mask_iou", "swap_iou", "silhouette_crop"), "readers"),
    **dict.fromkeys(("build_classifier", "train_shape_classifier", "classify_shape"),
                    "classifier"),
    **dict.fromkeys(("ObjectSpec", "PromptSwap", "single_object_specs", "two_object_specs",
                     "swap_specs", "half_masks", "colour_swaps", "position_swaps",
                     "shape_swaps"), "specs"),
    **dict.fromkeys(("EvalSettings",), "settings"),
    **dict.fromkeys(("generate", "token_slots", "attention_ratio"), "generation"),
    **dict.fromkeys(("CROSS_STEPS", "SHORTER_CROSS", "SHAPE_SWAP_STEPS", "run_swaps",
                     "run_injected", "summarise_colour_swaps", "position_shares",
                     "matching_share", "kept_position_share"), "swaps"),
    **dict.fromkeys(("SwapRunner", "colour_swap_results", "shape_swap_results"),
                    "swap_results"),
    **dict.fromkeys(("read_single", "single_object_results", "two_object_results",
                     "guidance_sweep", "evaluate"), "measures"),
    **dict.fromkeys(("TARGETS", "result_at", "summary"), "report"),
    **dict.fromkeys(("main",), "cli"),
}  # fmt: skip
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
