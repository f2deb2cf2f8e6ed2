"""On a CUDA GPU: fp16 edits, model CPU offload, the history's pinned copies, inversion in fp16.

Marked ``cuda``: skipped without a GPU; ``benchmarks/gpu_check.sh`` runs them on one.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from p2p_teach.engine import edit
from p2p_teach.inversion import drawing, invert, reconstruct
from p2p_teach.models import load_pipeline

pytestmark = pytest.mark.cuda


@pytest.fixture(scope="module")
def gpu_pipe():
    return load_pipeline("builtin", device="cuda", verbose=False)  # fp16 on CUDA


def test_builtin_model_runs_in_fp16_on_the_gpu(gpu_pipe):
    assert gpu_pipe.unet.dtype == torch.float16 and gpu_pipe.unet.device.type == "cuda"
    result = edit(gpu_pipe, "a big red circle", "a big blue circle", seed=1, steps=10,
                  progress=False)  # fmt: skip
    assert torch.isfinite(result.latents).all()
    for image in result.images:  # fp16 gave black images for some (prompt-to-prompt#30)
        assert np.asarray(image).std() > 5


def test_fp16_edit_matches_fp32_on_the_cpu(gpu_pipe):
    cpu_pipe = load_pipeline("builtin", device="cpu", verbose=False)
    kwargs = {"seed": 1, "steps": 10, "progress": False, "record": "none"}
    on_gpu = edit(gpu_pipe, "a big red circle", "a big blue circle", **kwargs)
    on_cpu = edit(cpu_pipe, "a big red circle", "a big blue circle", **kwargs)
    for gpu_image, cpu_image in zip(on_gpu.images, on_cpu.images):
        difference = np.abs(np.asarray(gpu_image, int) - np.asarray(cpu_image, int))
        assert np.median(difference) <= 3


def test_the_history_is_copied_to_pinned_cpu_memory(gpu_pipe):
    result = edit(gpu_pipe, "a big red circle", "a big blue circle", seed=1, steps=4,
                  progress=False)  # fmt: skip
    maps = result.history._maps
    assert maps and all(m.device.type == "cpu" and m.is_pinned() for m in maps.values())
    assert all(bool(m[-1].abs().sum() > 0) for m in maps.values())  # the last step arrived


def test_model_cpu_offload_edits_and_hands_the_models_back():
    pipe = load_pipeline("builtin", dtype=torch.float16, device="cpu", verbose=False)
    pipe.enable_model_cpu_offload()
    result = edit(pipe, "a big red circle", "a big blue circle", seed=1, steps=4,
                  progress=False)  # fmt: skip
    assert torch.isfinite(result.latents).all()
    assert pipe.unet.device.type == "cpu" and pipe.vae.device.type == "cpu"


def test_inversion_in_fp16_reconstructs_and_edits(gpu_pipe):
    image, caption = drawing("circle", "red")
    inversion = invert(gpu_pipe, image, caption, progress=False)
    assert inversion.null_embeddings.dtype == torch.float32
    assert torch.isfinite(inversion.trajectory).all()
    assert inversion.psnr > 28 and inversion.psnr > inversion.ddim_psnr
    assert np.asarray(reconstruct(gpu_pipe, inversion)).std() > 5
