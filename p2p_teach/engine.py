"""The edit engine: Algorithm 1 of Prompt-to-Prompt, run on any ``StableDiffusionPipeline``.

    result = edit(pipe, "photo of a cat riding on a bicycle",
                  "photo of a cat riding on a motorcycle", edit=Replace(), seed=1)
    result.source_image, result.edited_image, result.history

:func:`edit` reads like the recitation's pseudo code (the numbers in its comments are the lines
of Algorithm 1): one z_T from the seed is shared by the source and the target; at every step
one UNet batch runs both prompts with classifier-free guidance; the source's attention edits
the target's (inside the attention processors, :mod:`p2p_teach.processors`); the scheduler
steps both. Everything is validated before the pipeline is touched, the pipeline's scheduler
is never used directly (the loop steps a fresh copy), and its attention processors are put
back afterwards, so a pipeline is the same before and after an edit, whatever happens.

Steps are counted by the loop, not by UNet calls: PNDM (SD's default) evaluates the UNet twice
in its first step (N + 1 calls for N steps); both calls belong to step 0, whose maps are those
of the first call (the one at z_T). Schedulers that evaluate once per step (DDIM, Euler,
Euler ancestral, DPM-Solver++, UniPC, LMS, DDPM) and PNDM with ``skip_prk_steps`` are
supported; multi-evaluation schedulers (Heun, KDPM2, PNDM's Runge–Kutta warm-up) raise
:class:`UnsupportedSchedulerError`. Stochastic schedulers (Euler ancestral, DDPM) draw
independent noise for the source and the target, unlike the deterministic ones that
Prompt-to-Prompt assumes.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from numbers import Integral, Real
from pathlib import Path
from typing import Any, Literal

import torch

from . import __version__
from .edits import (
    BlendPlan,
    Edit,
    LocalBlend,
    apply_blend,
    as_edit,
    blend_mask,
    step_coefficients,
)
from .history import AttentionHistory, KeepSetting, LayerInfo, check_keep, keep_layer
from .models import default_guidance, default_self_max_ratio, default_self_steps
from .processors import EditRun, PromptToPromptProcessor, attention_processors, plan_layers
from .schedules import (
    CrossSteps,
    SelfSteps,
    check_num_steps,
    resolve_schedule,
    self_injection_max_side,
)
from .tokens import tokenize

PreviewMode = Literal["auto", "vae", "linear"]
SMALL_VAE_PARAMETERS = 5_000_000  # below this, previews decode with the VAE itself

# An approximate linear map from SD v1 latents to RGB in [-1, 1] (rows: the 4 latent channels),
# the fit that latent previewers commonly use; a preview, not a decode.
SD_LATENT_RGB = (
    (0.298, 0.207, 0.208),
    (0.187, 0.286, 0.173),
    (-0.158, 0.189, 0.264),
    (-0.184, -0.271, -0.473),
)


class UnsupportedSchedulerError(ValueError):
    """The pipeline's scheduler evaluates the UNet more than once per step."""


# --------------------------------------------------------------------------------------------
# What the per-step callback receives, and what an edit returns
# --------------------------------------------------------------------------------------------


@dataclass
class StepInfo:
    """One finished denoising step, as the per-step callback sees it.

    Attributes:
        step: the step index, 0 … num_steps − 1.
        num_steps: the number of denoising steps.
        timestep: the scheduler's timestep of this step (its first UNet call).
        latents: (2, C, h, w) [source, target] latents after this step (and the local blend).
        maps: this step's recorded maps: layer name → (2, H, W, columns) float16 on the CPU
            [source, edited target] (views into :attr:`history`; empty if nothing is recorded).
        history: the whole history so far (``history.steps_recorded == step + 1``).
        blend_mask: (1, 1, h, w) local-blend mask applied at this step, or None.
        predicted_latents: (2, C, h, w) the current prediction of the clean latents x0, or None
            when the scheduler gives no way to compute it.

    :meth:`preview` decodes ``predicted_latents`` cheaply into two small PIL images, only when
    called.
    """

    step: int
    num_steps: int
    timestep: float
    latents: torch.Tensor
    maps: dict[str, torch.Tensor]
    history: AttentionHistory | None
    blend_mask: torch.Tensor | None
    predicted_latents: torch.Tensor | None
    _decode: Callable[[torch.Tensor], list] | None = field(default=None, repr=False)
    _preview: tuple | None = field(default=None, repr=False)

    def preview(self) -> tuple | None:
        """(source, target) PIL images of the predicted x0 (cached), or None."""
        if self._preview is None and self.predicted_latents is not None and self._decode:
            self._preview = tuple(self._decode(self.predicted_latents))
        return self._preview


StepCallback = Callable[[StepInfo], Any]


@dataclass
class EditResult:
    """The outcome of :func:`edit`.

    Attributes:
        source_image, edited_image: PIL images.
        settings: everything needed to reproduce the edit (JSON-ready).
        history: the per-step attention history, or None when nothing was recorded.
        latents: (2, C, h, w) final latents [source, target], float32 on the CPU.
    """

    source_image: Any
    edited_image: Any
    settings: dict
    history: AttentionHistory | None = None
    latents: torch.Tensor | None = field(default=None, repr=False)

    @property
    def images(self) -> tuple:
        return (self.source_image, self.edited_image)

    def __repr__(self) -> str:
        settings = self.settings
        return (
            f"EditResult({settings.get('source_prompt')!r} → {settings.get('target_prompt')!r}, "
            f"edit={settings.get('edit', {}).get('kind')}, seed={settings.get('seed')}, "
            f"steps={settings.get('steps')}, {settings.get('scheduler')}; history: "
            f"{'none' if self.history is None else f'{self.history.memory_mb:.2f} MB'})"
        )

    def save(self, folder: str | Path) -> Path:
        """Write source.png, edited.png, settings.json, history.safetensors, latents.safetensors."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.source_image.save(folder / "source.png")
        self.edited_image.save(folder / "edited.png")
        (folder / "settings.json").write_text(json.dumps(self.settings, indent=2), "utf-8")
        if self.history is not None:
            self.history.save(folder / "history.safetensors")
        if self.latents is not None:
            save_file({"latents": self.latents.contiguous()}, str(folder / "latents.safetensors"))
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> EditResult:
        """Read a folder written by :meth:`save`."""
        from PIL import Image
        from safetensors.torch import load_file

        folder = Path(folder)
        if not (folder / "settings.json").is_file():
            raise FileNotFoundError(f"{folder} holds no settings.json: not a saved edit")
        images = []
        for name in ("source.png", "edited.png"):
            with Image.open(folder / name) as image:
                images.append(image.copy())
        history_file = folder / "history.safetensors"
        latents_file = folder / "latents.safetensors"
        return cls(
            source_image=images[0],
            edited_image=images[1],
            settings=json.loads((folder / "settings.json").read_text("utf-8")),
            history=AttentionHistory.load(history_file) if history_file.is_file() else None,
            latents=load_file(str(latents_file))["latents"] if latents_file.is_file() else None,
        )


# --------------------------------------------------------------------------------------------
# Checks and plans, done before the pipeline is touched
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SchedulerPlan:
    """A fresh scheduler with its timesteps, and the denoising step of every UNet call."""

    scheduler: Any
    timesteps: torch.Tensor  # one entry per UNet call
    call_steps: tuple[int, ...]  # call index → step index


def plan_scheduler(pipe_scheduler: Any, num_steps: int, device: torch.device) -> SchedulerPlan:
    """Copy the pipeline's scheduler and map its UNet calls to denoising steps.

    Raises:
        UnsupportedSchedulerError: the scheduler evaluates the UNet more than once per step.
    """
    name = type(pipe_scheduler).__name__
    fix = (
        "Fix: pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config) (or "
        "PNDMScheduler, EulerDiscreteScheduler), from diffusers."
    )
    if not hasattr(pipe_scheduler, "set_timesteps") or not hasattr(pipe_scheduler, "step"):
        raise UnsupportedSchedulerError(f"{name} is not a diffusers scheduler. {fix}")
    # A deep copy, not from_config: from_config resets settings a pipeline adjusted after
    # construction (StableDiffusionPipeline turns DDIM's clip_sample off) to their defaults.
    # set_timesteps then resets the copy's per-run state, as the pipeline's own call does.
    scheduler = copy.deepcopy(pipe_scheduler)
    is_pndm = name == "PNDMScheduler"
    if is_pndm and not scheduler.config.get("skip_prk_steps", False):
        raise UnsupportedSchedulerError(
            "PNDMScheduler with skip_prk_steps=False runs Runge–Kutta warm-up steps (4 UNet "
            "calls each). Fix: pipe.scheduler = PNDMScheduler.from_config("
            "pipe.scheduler.config, skip_prk_steps=True), as Stable Diffusion ships it."
        )
    scheduler.set_timesteps(num_steps, device=device)
    timesteps = scheduler.timesteps
    calls = len(timesteps)
    if calls == num_steps and (getattr(scheduler, "order", 1) == 1 or is_pndm):
        call_steps = tuple(range(num_steps))
    elif is_pndm and calls == num_steps + 1:  # PLMS's first step: two calls, one step
        call_steps = (0, *range(num_steps))
    else:
        raise UnsupportedSchedulerError(
            f"{name} evaluates the UNet {calls} times for {num_steps} steps (order "
            f"{getattr(scheduler, 'order', '?')}); Prompt-to-Prompt's step-indexed injection "
            f"supports schedulers with one evaluation per step. {fix}"
        )
    return SchedulerPlan(scheduler, timesteps, call_steps)


def _check_guidance(guidance: object) -> float:
    if isinstance(guidance, bool) or not isinstance(guidance, Real):
        raise ValueError(f"guidance={guidance!r}: a number ≥ 0. Fix: e.g. guidance=7.5.")
    if not math.isfinite(guidance) or guidance < 0:
        raise ValueError(
            f"guidance={guidance!r}: the classifier-free guidance scale must be a finite "
            "number ≥ 0 (1 or less turns guidance off). Fix: e.g. guidance=7.5, SD's default."
        )
    return float(guidance)


def _check_seed(seed: object) -> int:
    """``seed`` as an int in [0, 2**64) (what ``torch.Generator.manual_seed`` takes)."""
    if isinstance(seed, bool) or not isinstance(seed, Integral) or not 0 <= seed < 2**64:
        raise ValueError(
            f"seed={seed!r}: a whole number from 0 to 2**64 - 1 (a generator's seed). "
            "Fix: e.g. seed=0."
        )
    return int(seed)


def _check_size(value: int | None, default: int, name: str, factor: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < factor:
        raise ValueError(f"{name}={value!r}: a whole number of pixels ≥ {factor}")
    if value % factor:
        lower, upper = value - value % factor, value - value % factor + factor
        raise ValueError(
            f"{name}={value}: image sides must be multiples of {factor} (the VAE's "
            f"downsampling). Fix: {name}={lower or upper} or {name}={upper}."
        )
    return value


def _check_pipeline(pipe: Any) -> None:
    missing = [
        name
        for name in ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
        if getattr(pipe, name, None) is None
    ]
    if missing or not hasattr(pipe, "encode_prompt"):
        raise TypeError(
            "edit() needs a diffusers StableDiffusionPipeline (SD v1.x); this object lacks "
            f"{missing or ['encode_prompt']}. Fix: pipe = p2p_teach.load_pipeline()."
        )


def blend_resolution(layers: Iterable[LayerInfo], latent_side: int, wanted: int | None) -> int:
    """The cross-attention side LocalBlend reads (see :class:`p2p_teach.edits.LocalBlend`)."""
    sides = sorted({layer.side for layer in layers if layer.cross and layer.place != "mid"})
    if not sides:
        raise ValueError("this UNet has no down/up cross-attention layers for LocalBlend")
    if wanted is not None:
        if wanted not in sides:
            raise ValueError(
                f"LocalBlend resolution={wanted}: this model's down/up cross-attention sides "
                f"are {sides}. Fix: pick one of them, or resolution=None."
            )
        return wanted
    small = [side for side in sides if side <= latent_side // 4]
    return max(small) if small else min(sides)


# --------------------------------------------------------------------------------------------
# Previews
# --------------------------------------------------------------------------------------------


def predicted_clean_latents(
    scheduler: Any, output: Any, sample: torch.Tensor, model_output: torch.Tensor, timestep
) -> torch.Tensor | None:
    """The current x0 prediction: the scheduler's ``pred_original_sample`` if it gives one,
    else computed from ``alphas_cumprod`` for variance-preserving schedulers (PNDM, DPM…)."""
    predicted = getattr(output, "pred_original_sample", None)
    if predicted is not None:
        return predicted
    alphas_cumprod = getattr(scheduler, "alphas_cumprod", None)
    if alphas_cumprod is None or float(scheduler.init_noise_sigma) != 1.0:
        return None
    alpha = alphas_cumprod[int(timestep)].to(device=sample.device, dtype=torch.float32)
    sample, model_output = sample.float(), model_output.float()
    prediction = scheduler.config.get("prediction_type", "epsilon")
    if prediction == "epsilon":
        return (sample - (1 - alpha).sqrt() * model_output) / alpha.sqrt()
    if prediction == "v_prediction":
        return alpha.sqrt() * sample - (1 - alpha).sqrt() * model_output
    if prediction == "sample":
        return model_output
    return None


def make_preview_decoder(pipe: Any, mode: PreviewMode) -> Callable[[torch.Tensor], list]:
    """A function (2, C, h, w) latents → two PIL images.

    ``"vae"`` decodes with the pipeline's VAE (exact, as slow as the final decode); ``"linear"``
    maps SD v1's 4 latent channels to RGB with a fixed 4×3 matrix (instant, at latent size);
    ``"auto"`` uses the VAE for small VAEs (the built-in models) and the linear map otherwise.
    """
    from PIL import Image

    if mode not in ("auto", "vae", "linear"):
        raise ValueError(f"preview={mode!r}: use 'auto', 'vae' or 'linear'")
    if mode == "auto":
        small = sum(p.numel() for p in pipe.vae.parameters()) < SMALL_VAE_PARAMETERS
        mode = "vae" if small else "linear"
    if mode == "vae":

        def decode(latents: torch.Tensor) -> list:
            scaled = latents.to(pipe.vae.dtype) / pipe.vae.config.scaling_factor
            with torch.no_grad():
                images = pipe.vae.decode(scaled, return_dict=False)[0]  # (2, 3, H, W), [-1, 1]
            return pipe.image_processor.postprocess(images, output_type="pil")

        return decode

    def decode_linear(latents: torch.Tensor) -> list:
        if latents.shape[1] != len(SD_LATENT_RGB):
            raise ValueError("the linear preview needs 4 latent channels; use preview='vae'")
        factors = torch.tensor(SD_LATENT_RGB, device=latents.device)  # (4 channels, 3 RGB)
        rgb = torch.einsum("bchw,cr->bhwr", latents.detach().float(), factors)  # (2, h, w, 3)
        pixels = ((rgb + 1) / 2).clamp(0, 1).mul(255).round().to(torch.uint8).cpu().numpy()
        return [Image.fromarray(image) for image in pixels]

    return decode_linear


# --------------------------------------------------------------------------------------------
# The edit
# --------------------------------------------------------------------------------------------


def edit(
    pipe: Any,
    source_prompt: str,
    target_prompt: str,
    *,
    edit: Edit | str | None = "replace",
    blend: LocalBlend | None = None,
    seed: int = 0,
    steps: int = 25,
    guidance: float | None = None,
    cross_steps: CrossSteps = 0.8,
    self_steps: SelfSteps | None = None,
    self_max_ratio: float | None = None,
    height: int | None = None,
    width: int | None = None,
    latents: torch.Tensor | None = None,
    record: KeepSetting = "auto",
    record_slots: Literal["used", "all"] = "used",
    callback: StepCallback | None = None,
    preview: PreviewMode = "auto",
    progress: bool = True,
    processor_class: type[PromptToPromptProcessor] = PromptToPromptProcessor,
) -> EditResult:
    """Edit the source prompt's image into the target prompt's with Prompt-to-Prompt.

    Args:
        pipe: a diffusers ``StableDiffusionPipeline`` (SD v1.x), e.g. ``load_pipeline()``.
        source_prompt, target_prompt: the two prompts.
        edit: :class:`~p2p_teach.edits.Replace` (word swap, the default ``"replace"``),
            :class:`~p2p_teach.edits.Refine` (words added/removed, ``"refine"``),
            :class:`~p2p_teach.edits.Reweight` (word scales, optionally over a base edit), or
            ``None`` / ``"none"``: the empty edit, both prompts generated plainly.
        blend: an optional :class:`~p2p_teach.edits.LocalBlend` (change only near some words).
        seed: seeds z_T (shared by source and target) on a CPU generator, so a seed gives the
            same noise on any device; the source is ``pipe(source_prompt,
            generator=torch.Generator().manual_seed(seed))`` (equal in fp32; in fp16 on a GPU
            the batch of four instead of two may change low bits).
        steps: denoising steps (≥ 1).
        guidance: classifier-free guidance scale (≥ 0; ≤ 1 turns guidance off); None: the
            model's own (:func:`~p2p_teach.models.default_guidance`: 7.5 for SD v1.x, less
            for the built-in shapes model).
        cross_steps: cross-attention injection: a fraction, a ``(start, end)`` pair, or a
            per-word dict with a ``"default"`` (:mod:`p2p_teach.schedules`).
        self_steps: self-attention injection: a fraction or a ``(start, end)`` pair; None:
            the model's own (:func:`~p2p_teach.models.default_self_steps`: 0.4 for SD v1.x,
            the original's; 0.6 for the built-in shapes model).
        self_max_ratio: self-attention is injected in layers whose side is at most this share
            of the latent's side; None: the model's own
            (:func:`~p2p_teach.models.default_self_max_ratio`: 0.25 for SD v1.x, the
            original's 16×16 of a 64×64 latent; every layer for the built-in shapes model).
        height, width: image size; defaults to the model's (512 for SD v1, 64 built in).
        latents: an optional z_T of shape (1, C, h, w) instead of the seed's (unscaled, as
            ``pipe(latents=...)`` takes it).
        record: which cross-attention layers the history keeps: ``"auto"`` (side ≤ a quarter of
            the latent's side, and any side ≤ 16), ``"all"``, ``"none"``, a largest side, or a
            set of sides (:mod:`p2p_teach.history`).
        record_slots: ``"used"`` (BOS … EOS plus one summed padding column) or ``"all"`` (77).
        callback: called after every step with a :class:`StepInfo` (step, timestep, latents,
            a lazily decoded x0 preview, that step's maps). Raise in it to stop the edit; the
            pipeline is restored either way.
        preview: how :meth:`StepInfo.preview` decodes: ``"auto"``, ``"vae"`` or ``"linear"``.
        progress: show a tqdm progress bar.
        processor_class: the attention strategy of the layers the edit touches: the fused
            default, or a subclass with the same constructor (``benchmarks/explicit.py``
            materialises the probabilities, as the original implementations do).

    Returns:
        An :class:`EditResult` with both images, the settings and the history.

    Raises:
        ValueError (and subclasses: ``ScheduleError``, ``WordCountMismatchError``,
        ``PromptTooLongError``, ``UnsupportedSchedulerError``), ``WordNotFoundError``,
        TypeError: bad input, detected before the pipeline is touched; each message names
        the fix.
        PipelineBusyError: another thread is running an edit on this pipeline (raised before
            its processors are touched).
    """
    # ---- 0. Check everything, and plan, before touching the pipeline ----------------------
    _check_pipeline(pipe)
    num_steps = check_num_steps(steps)
    guidance = _check_guidance(default_guidance(pipe) if guidance is None else guidance)
    if self_max_ratio is None:
        self_max_ratio = default_self_max_ratio(pipe)
    if self_steps is None:
        self_steps = default_self_steps(pipe)
    seed = _check_seed(seed)
    if preview not in ("auto", "vae", "linear"):
        raise ValueError(f"preview={preview!r}: use 'auto', 'vae' or 'linear'")
    check_keep(record)
    if record_slots not in ("used", "all"):
        raise ValueError(f"record_slots={record_slots!r}: use 'used' or 'all'")
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable, not {type(callback).__name__}")
    source_view = tokenize(source_prompt, pipe.tokenizer)  # PromptTooLongError over 77 slots
    target_view = tokenize(target_prompt, pipe.tokenizer)
    chosen_edit = as_edit(edit)
    token_edit = chosen_edit.resolve(source_view, target_view)  # mapper/alignment/weights
    # a word swap of unequal piece counts gives the swapped word a shorter window of its own
    cross_windows = chosen_edit.cross_windows(cross_steps, source_view, target_view)
    schedule = resolve_schedule(cross_windows, self_steps, num_steps, target_view)
    if blend is not None and not isinstance(blend, LocalBlend):
        raise TypeError(
            f"blend must be a LocalBlend or None, not {type(blend).__name__} {blend!r:.40}. "
            "Fix: blend=LocalBlend('bicycle') (or LocalBlend('bicycle', 'motorcycle'))."
        )
    blend_plan: BlendPlan | None = (
        blend.resolve(source_view, target_view, num_steps) if blend is not None else None
    )

    unet = pipe.unet
    device = pipe._execution_device
    dtype = unet.dtype
    factor = pipe.vae_scale_factor
    default_side = unet.config.sample_size * factor
    height = _check_size(height, default_side, "height", factor)
    width = _check_size(width, default_side, "width", factor)
    latent_height, latent_width = height // factor, width // factor
    latent_shape = (1, unet.config.in_channels, latent_height, latent_width)
    if latents is not None:
        if not isinstance(latents, torch.Tensor):
            raise TypeError(f"latents must be a torch.Tensor, not {type(latents).__name__}")
        latents = latents[None] if latents.ndim == 3 else latents
        if tuple(latents.shape) != latent_shape:
            raise ValueError(
                f"latents of shape {tuple(latents.shape)} do not fit: this model at "
                f"{height}×{width} needs {latent_shape}. Fix: drop latents= to use the seed."
            )
    scheduler_plan = plan_scheduler(pipe.scheduler, num_steps, device)
    scheduler = scheduler_plan.scheduler

    latent_side = max(latent_height, latent_width)
    layers = plan_layers(unet, latent_height, latent_width)
    self_max_side = self_injection_max_side(latent_side, self_max_ratio)
    kept = [layer for layer in layers if keep_layer(layer, record, latent_side)]
    blend_side = (
        blend_resolution(layers, latent_side, blend_plan.resolution) if blend_plan else None
    )
    history = None
    if kept:
        history = AttentionHistory(
            kept,
            source_view,
            target_view,
            [float(scheduler_plan.timesteps[scheduler_plan.call_steps.index(k)])
             for k in range(num_steps)],
            slots=record_slots,
            pin_memory=device.type == "cuda",
        )
    coefficients = step_coefficients(token_edit, schedule, device=device, dtype=dtype)
    do_guidance = guidance > 1.0 and unet.config.time_cond_proj_dim is None
    # UNet batch: [uncond source, uncond target, cond source, cond target] with guidance.
    cond_source, cond_target = (2, 3) if do_guidance else (0, 1)
    run = EditRun(coefficients, cond_source, cond_target, history)
    if blend_plan is not None:
        run.blend_source_slots = torch.tensor(blend_plan.source_slots, device=device)
        run.blend_target_slots = torch.tensor(blend_plan.target_slots, device=device)

    kept_names = {layer.name for layer in kept}
    processors = {}
    for layer in layers:
        record_here = layer.name in kept_names
        blend_here = blend_side is not None and layer.cross and layer.place != "mid" and (
            layer.side == blend_side
        )
        inject_self = (
            not layer.cross
            and token_edit.injects
            and layer.side <= self_max_side
            and any(coefficients.self_inject)
        )
        if (layer.cross and (token_edit.injects or record_here or blend_here)) or inject_self:
            processors[layer.name] = processor_class(
                layer, run, record=record_here, blend=blend_here, inject_self=inject_self
            )

    settings = {
        "source_prompt": source_prompt,
        "target_prompt": target_prompt,
        "edit": chosen_edit.describe(),
        "blend": blend.describe() if blend is not None else None,
        "seed": seed,
        "latents_given": latents is not None,
        "steps": num_steps,
        "guidance": guidance,
        "height": height,
        "width": width,
        **schedule.to_json(),
        "self_max_ratio": float(self_max_ratio),
        "self_max_side": self_max_side,
        "blend_resolution": blend_side,
        "record": record if isinstance(record, (str, int)) else sorted(record),
        "record_slots": record_slots,
        "scheduler": type(scheduler).__name__,
        "scheduler_config": json.loads(json.dumps(dict(scheduler.config), default=str)),
        "model": str(getattr(pipe, "name_or_path", "") or "a pipeline built in memory"),
        "device": str(device),
        "dtype": str(dtype).removeprefix("torch."),
        "p2p_teach_version": __version__,
    }
    decode_preview = make_preview_decoder(pipe, preview) if callback is not None else None
    try:
        source_image, edited_image, final_latents = _denoise(
            pipe, source_prompt, target_prompt, processors, run, scheduler_plan, blend_plan,
            latent_shape, latents, seed, guidance, do_guidance, callback, decode_preview,
            progress,
        )  # fmt: skip
    finally:
        # Models under enable_model_cpu_offload() go back to the CPU, as after pipe(...).
        free_hooks = getattr(pipe, "maybe_free_model_hooks", None)
        if free_hooks is not None:
            free_hooks()
    return EditResult(source_image, edited_image, settings, history, final_latents)


def _denoise(
    pipe: Any,
    source_prompt: str,
    target_prompt: str,
    processors: dict,
    run: EditRun,
    plan: SchedulerPlan,
    blend_plan: BlendPlan | None,
    latent_shape: tuple[int, ...],
    given_latents: torch.Tensor | None,
    seed: int,
    guidance: float,
    do_guidance: bool,
    callback: StepCallback | None,
    decode_preview: Callable | None,
    progress: bool,
) -> tuple[Any, Any, torch.Tensor]:
    """The denoising loop of Algorithm 1 (its line numbers in the comments)."""
    from diffusers.utils.torch_utils import randn_tensor
    from tqdm.auto import tqdm

    unet, scheduler = pipe.unet, plan.scheduler
    device = pipe._execution_device
    num_steps = run.coefficients.target_keep.shape[0]
    generator = torch.Generator("cpu").manual_seed(seed)
    bar = tqdm(total=num_steps, desc="Prompt-to-Prompt", disable=not progress, leave=False)
    with bar, torch.no_grad(), attention_processors(unet, processors):
        # (1–2) Input: the source prompt P and the target prompt P*, encoded by CLIP.
        # Batch [uncond source, uncond target, cond source, cond target] (each (77, d)).
        cond, uncond = pipe.encode_prompt(
            [source_prompt, target_prompt], device, 1, do_guidance, None
        )
        embeddings = torch.cat([uncond, cond]) if do_guidance else cond  # (4 or 2, 77, d)

        # (3) z_T ~ N(0, I) from the seed s, scaled for the scheduler.
        if given_latents is None:
            noise = randn_tensor(latent_shape, generator=generator, device=device,
                                 dtype=embeddings.dtype)  # fmt: skip
        else:
            noise = given_latents.to(device=device, dtype=embeddings.dtype)
        z_T = noise * scheduler.init_noise_sigma  # (1, C, h, w)
        # (4) z*_T ← z_T: the target starts from the very same noise.
        latents = z_T.expand(2, *z_T.shape[1:]).clone()  # (2, C, h, w): [source, target]
        step_kwargs = pipe.prepare_extra_step_kwargs(generator, 0.0)

        calls = len(plan.timesteps)
        # (5) for t = T, T − 1, …, 1 (one entry per UNet call; PNDM's first step has two).
        for call, t in enumerate(plan.timesteps):
            step = plan.call_steps[call]
            last_call_of_step = call == calls - 1 or plan.call_steps[call + 1] != step
            run.step = step
            run.record_call = call == 0 or plan.call_steps[call - 1] != step

            # (6–7) z_{t−1}, M_t ← DM(z_t, P, t, s) and M*_t ← DM(z*_t, P*, t, s), in one
            # UNet batch; classifier-free guidance doubles it.
            model_input = torch.cat([latents] * 2) if do_guidance else latents  # (4|2, C, h, w)
            model_input = scheduler.scale_model_input(model_input, t)
            # (8) M̂_t ← Edit(M_t, M*_t, t): inside the UNet, the attention processors build the
            # edited maps from the source's (and record them; the recitation writes M_t ← …).
            noise_pred = unet(model_input, t, encoder_hidden_states=embeddings,
                              return_dict=False)[0]  # fmt: skip
            if do_guidance:
                uncond_pred, text_pred = noise_pred.chunk(2)  # (2, C, h, w) each
                noise_pred = uncond_pred + guidance * (text_pred - uncond_pred)

            # (9) z*_{t−1} ← DM(z*_t, P*, t, s){M ← M̂_t}: the scheduler steps both.
            sample = latents
            output = scheduler.step(noise_pred, t, latents, **step_kwargs, return_dict=True)
            latents = output.prev_sample  # (2, C, h, w)
            if not last_call_of_step:
                continue

            mask = None
            if blend_plan is not None and step >= blend_plan.start_step and run.blend_count:
                word_maps = run.blend_sum / run.blend_count  # (2, H, W)
                mask = blend_mask(word_maps, tuple(latents.shape[2:]), blend_plan.threshold)
                latents = apply_blend(latents, mask)
            if run.history is not None:
                run.history.end_step(step)
            if callback is not None:
                callback(StepInfo(
                    step=step,
                    num_steps=num_steps,
                    timestep=float(plan.timesteps[plan.call_steps.index(step)]),
                    latents=latents,
                    maps=run.history.at_step(step) if run.history is not None else {},
                    history=run.history,
                    blend_mask=mask,
                    predicted_latents=predicted_clean_latents(
                        scheduler, output, sample, noise_pred, t
                    ),
                    _decode=decode_preview,
                ))  # fmt: skip
            bar.update()

        # (11) Return (z_0, z*_0), decoded by the VAE.
        scaled = latents.to(pipe.vae.dtype) / pipe.vae.config.scaling_factor
        images = pipe.vae.decode(scaled, return_dict=False)[0]  # (2, 3, H, W) in [-1, 1]
        images, flagged = pipe.run_safety_checker(images, device, embeddings.dtype)
        denormalize = [True] * 2 if flagged is None else [not flag for flag in flagged]
        pil_images = pipe.image_processor.postprocess(
            images, output_type="pil", do_denormalize=denormalize
        )
    if run.history is not None:
        run.history.wait_for_copies()
    return pil_images[0], pil_images[1], latents.float().cpu()

