"""A small Stable Diffusion trained on procedural shapes, shipped with the package.

``WEIGHTS_DIR`` is a ``StableDiffusionPipeline`` folder (fp16 safetensors, the real CLIP
tokenizer files, SD v1's PNDM scheduler): load it offline with
``StableDiffusionPipeline.from_pretrained(WEIGHTS_DIR, torch_dtype=torch.float32)``.
The modules: :mod:`~p2p_teach.shapes.data` (the data generator), :mod:`~p2p_teach.shapes.model`
(the components), :mod:`~p2p_teach.shapes.train` and :mod:`~p2p_teach.shapes.evaluate`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..defaults import SHAPES

if TYPE_CHECKING:
    import torch
    from diffusers import StableDiffusionPipeline

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
# What the shipped weights run at (the reasons: p2p_teach.defaults.SHAPES and MODEL_CARD.md).
GUIDANCE = SHAPES.guidance
SELF_MAX_RATIO = SHAPES.self_max_ratio
SELF_STEPS = SHAPES.self_steps


def load_shapes_pipeline(
    folder: str | Path | None = None, dtype: torch.dtype | None = None
) -> StableDiffusionPipeline:
    """The shapes model as a ``StableDiffusionPipeline``, offline (the shipped weights by default).

    The weights are stored in fp16 and loaded in ``dtype`` (float32 unless told otherwise, as
    the CPU wants). The progress bars are off. The shipped weights are named
    ``p2p_teach/shapes``, the built-in model, and marked with its defaults
    (:data:`p2p_teach.defaults.SHAPES`: guidance 2); other folders (a training run's) keep
    their path as name and SD v1's defaults.
    """
    import torch
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    from ..compat import dtype_kwarg
    from ..defaults import BUILTIN_PREFIX, mark

    # Loading bars would only clutter a notebook: a 28 MB model loads in well under a second.
    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    try:
        pipe = StableDiffusionPipeline.from_pretrained(
            str(folder or WEIGHTS_DIR), **dtype_kwarg(dtype or torch.float32),
            local_files_only=True,
        )  # fmt: skip
    finally:
        diffusers_logging.enable_progress_bar()
        transformers_logging.enable_progress_bar()
    if folder is None:
        pipe.register_to_config(_name_or_path=f"{BUILTIN_PREFIX}shapes")
        mark(pipe, SHAPES)
    pipe.set_progress_bar_config(disable=True)
    return pipe
