"""The three variants of one source/target pair, and timing them (with the machine's load)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from benchmarks.cases import (
    CROSS_STEPS,
    GUIDANCE,
    SEED,
    SELF_STEPS,
    SOURCE_PROMPT,
    TARGET_PROMPT,
    Case,
)
from benchmarks.explicit import explicit_edit

if TYPE_CHECKING:
    from diffusers import StableDiffusionPipeline


def build_pipeline(model: str) -> StableDiffusionPipeline:
    """The pipeline of a case: the built-in small model or SD v1.5's architecture (random)."""
    if model == "sd15":
        from benchmarks.sd15 import build_sd15_random_pipeline

        return build_sd15_random_pipeline()
    from p2p_teach.models import load_pipeline

    return load_pipeline("builtin", verbose=False)


def initial_noise(pipe: StableDiffusionPipeline, height: int, width: int) -> torch.Tensor:
    """z_T of shape (1, C, h, w), the same for every variant (CPU generator, ``SEED``)."""
    factor = pipe.vae_scale_factor
    shape = (1, pipe.unet.config.in_channels, height // factor, width // factor)
    return torch.randn(shape, generator=torch.Generator().manual_seed(SEED))


@dataclass
class Outcome:
    """What one run of a variant returns (images, final latents, history)."""

    images: list
    latents: torch.Tensor | None = None
    history: Any = None


def run_variant(
    variant: str,
    pipe: StableDiffusionPipeline,
    case: Case,
    noise: torch.Tensor,
    *,
    steps: int | None = None,
    record: Any = None,
    on_step: Callable[[], None] | None = None,
) -> Outcome:
    """Generate the source/target pair once with ``variant``; returns images and history.

    ``on_step`` (memory subprocesses only) is called at the end of every denoising step,
    through the pipeline's ``callback_on_step_end`` or the engine's ``callback``.
    """
    steps = case.steps if steps is None else steps
    record = case.record if record is None else record
    if variant == "stock":
        output = pipe(
            prompt=[SOURCE_PROMPT, TARGET_PROMPT],
            height=case.height,
            width=case.width,
            num_inference_steps=steps,
            guidance_scale=GUIDANCE,
            latents=noise.expand(2, *noise.shape[1:]),  # (2, C, h, w): one z_T for both
            output_type="pil",
            callback_on_step_end=None if on_step is None else _stock_callback(on_step),
        )
        return Outcome(list(output.images))
    from p2p_teach.edits import Replace
    from p2p_teach.engine import edit

    run = {"edit": edit, "explicit": explicit_edit}[variant]
    result = run(
        pipe,
        SOURCE_PROMPT,
        TARGET_PROMPT,
        edit=Replace(),
        seed=SEED,
        steps=steps,
        guidance=GUIDANCE,
        cross_steps=CROSS_STEPS,
        self_steps=SELF_STEPS,
        height=case.height,
        width=case.width,
        latents=noise,
        record=record,
        progress=False,
        callback=None if on_step is None else (lambda info: on_step()),
    )
    return Outcome(list(result.images), result.latents, result.history)


def _stock_callback(on_step: Callable[[], None]) -> Callable:
    """A ``callback_on_step_end`` for the pipeline that calls ``on_step`` and changes nothing."""

    def callback(pipe, step: int, timestep, callback_kwargs: dict) -> dict:
        on_step()
        return {}

    return callback


def timed(function: Callable[[], Outcome]) -> tuple[float, Outcome]:
    """Wall time of ``function`` and what it returned."""
    start = time.perf_counter()
    outcome = function()
    return time.perf_counter() - start, outcome


def _busy_cpu_seconds() -> float | None:
    """CPU seconds all processes of the machine have used since boot (``/proc/stat``)."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def timed_with_load(function: Callable[[], Outcome]) -> tuple[float, float | None, Outcome]:
    """Wall time of ``function`` and the share of the machine's cores that *other* processes
    kept busy meanwhile (0: the benchmark had the machine to itself; None: unknown)."""
    busy_before, own_before = _busy_cpu_seconds(), time.process_time()
    seconds, outcome = timed(function)
    busy_after, own_after = _busy_cpu_seconds(), time.process_time()
    if busy_before is None or busy_after is None:
        return seconds, None, outcome
    others = (busy_after - busy_before) - (own_after - own_before)
    return seconds, max(0.0, others) / (seconds * (os.cpu_count() or 1)), outcome
