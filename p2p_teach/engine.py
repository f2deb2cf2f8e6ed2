"""The edit engine: Algorithm 1 of Prompt-to-Prompt, run on any ``StableDiffusionPipeline``.

    result = edit(pipe, "photo of a cat riding on a bicycle",
                  "photo of a cat riding on a motorcycle", edit=Replace(), seed=1)
    result.source_image, result.edited_image, result.history

:func:`edit` runs in two parts. :func:`plan_edit` checks every argument (one small check
each) and decides everything before the UNet runs: tokens, the edit's per-step coefficients,
the scheduler's calls, which layers record, blend or inject (an :class:`EditPlan`, which can
be inspected and tested alone). :func:`_denoise` then runs the plan, and reads like the
recitation's pseudo code (the numbers in its comments are the lines of Algorithm 1): one z_T
from the seed is shared by the source and the target; at every step one UNet batch runs both
prompts with classifier-free guidance; M̂_t ← Edit(M_t, M*_t, t) replaces the target's maps
(inside the attention processors, :mod:`p2p_teach.processors`), so the target runs with
{M ← M̂_t}; the scheduler steps both. The pipeline's scheduler is never used directly (the
loop steps a fresh copy), and its attention processors are put back afterwards, so a pipeline
is the same before and after an edit, whatever happens.

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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from numbers import Integral, Real
from pathlib import Path
from typing import Any, Literal

import torch

from . import __version__
from .defaults import model_defaults
from .edits import (
    BlendPlan,
    Edit,
    LocalBlend,
    StepCoefficients,
    apply_blend,
    as_edit,
    step_coefficients,
    with_conventions,
)
from .guards import check_finite, check_pipeline, tokenize_prompt
from .history import AttentionHistory
from .layers import KeepSetting, LayerInfo, blend_resolution, check_keep, kept_layers, plan_layers
from .processors import (
    EditRun,
    LayerRole,
    PromptToPromptProcessor,
    attention_processors,
    build_processors,
    layer_roles,
)
from .schedules import (
    CrossSteps,
    InjectionSchedule,
    SelfSteps,
    check_num_steps,
    check_scheduler_steps,
    resolve_original_schedule,
    resolve_schedule,
    self_injection_max_side,
    window_steps,
)
from .settings import Conventions, EditSettings, check_conventions
from .tokens import MAX_SLOTS, TokenView

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


DEFAULT_STEPS = 25


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
        settings: everything needed to reproduce the edit (:class:`EditSettings`).
        history: the per-step attention history, or None when nothing was recorded.
        latents: (2, C, h, w) final latents [source, target], float32 on the CPU.
    """

    source_image: Any
    edited_image: Any
    settings: EditSettings
    history: AttentionHistory | None = None
    latents: torch.Tensor | None = field(default=None, repr=False)

    @property
    def images(self) -> tuple:
        return (self.source_image, self.edited_image)

    def __repr__(self) -> str:
        settings = self.settings
        return (
            f"EditResult({settings.source_prompt!r} → {settings.target_prompt!r}, "
            f"edit={settings.kind}, seed={settings.seed}, "
            f"steps={settings.steps}, {settings.scheduler}; history: "
            f"{'none' if self.history is None else f'{self.history.memory_mb:.2f} MB'})"
        )

    def save(self, folder: str | Path, extra: Mapping[str, Callable[[Path], Any]] | None = None
             ) -> Path:  # fmt: skip
        """Write source.png, edited.png, settings.json, history.safetensors (if recorded),
        latents.safetensors (if kept), the ``extra`` files (name → function writing that path,
        e.g. a figure) and a manifest.json listing them all, written last.

        The folder appears complete or not at all: the files go to a hidden sibling that is
        renamed into place at the end, replacing an older result of the same name only then
        (:mod:`p2p_teach.atomic`). An interrupted or failed save leaves the old result or
        nothing. A folder holding other files is refused (FileExistsError), not replaced.
        """
        from safetensors.torch import save_file

        from .atomic import write_folder

        _check_save_arguments(folder, extra)
        writers: dict[str, Callable[[Path], Any]] = {
            "source.png": self.source_image.save,
            "edited.png": self.edited_image.save,
            "settings.json": lambda path: path.write_text(
                json.dumps(self.settings.to_json(), indent=2), "utf-8"
            ),
        }
        if self.history is not None:
            writers["history.safetensors"] = self.history.save
        if self.latents is not None:
            latents = {"latents": self.latents.contiguous()}
            writers["latents.safetensors"] = lambda path: save_file(latents, str(path))
        for name, writer in (extra or {}).items():
            if name in writers:
                raise ValueError(
                    f"extra file {name!r} would overwrite a result file. Fix: give it another "
                    "name, e.g. extra={'figure.png': fig.savefig}."
                )
            writers[name] = writer
        return write_folder(folder, writers, replaceable=set(RESULT_FILES))

    @classmethod
    def load(cls, folder: str | Path) -> EditResult:
        """Read a folder written by :meth:`save`, after checking it against its manifest.

        A folder saved before manifests existed (p2p_teach before they were written) is read
        with a warning if it holds settings.json, both PNGs and latents.safetensors (the last
        file the old save wrote) and its history matches its settings; save it again to add
        a manifest.

        Raises:
            FileNotFoundError: no such folder.
            p2p_teach.atomic.IncompleteResultError: missing, truncated or changed files,
                named in the message.
        """
        from .atomic import IncompleteResultError, read_manifest

        folder = Path(folder).expanduser()
        if not folder.is_dir():
            raise FileNotFoundError(
                f"{folder} is not a folder: EditResult.load reads a folder written by "
                "result.save(folder)."
            )
        if (folder / "inversion.json").is_file():
            raise IncompleteResultError(
                f"{folder} holds a saved inversion, not an edit's result. Fix: "
                "p2p_teach.inversion.Inversion.load(folder), then edit(..., inversion=it)."
            )
        files = read_manifest(folder)
        if files is None:
            _check_legacy_result(folder)
        try:
            return _read_result(cls, folder, files)
        except (OSError, ValueError, KeyError, TypeError, RuntimeError) as error:
            if isinstance(error, IncompleteResultError):
                raise
            raise IncompleteResultError(
                f"{folder}: a file cannot be read ({type(error).__name__}: {error}). Fix: "
                "save the result again, or rerun the edit."
            ) from error


def _check_save_arguments(folder: object, extra: object) -> None:
    """:meth:`EditResult.save`'s ``folder`` (a str or path) and ``extra`` (plain file name →
    callable writing that path), or an error naming the fix, before anything is written."""
    import os

    from .atomic import MANIFEST

    if not isinstance(folder, (str, os.PathLike)):
        raise TypeError(
            f"save() needs a folder as a str or path, not {type(folder).__name__} "
            f"{folder!r:.40}. Fix: e.g. result.save('out/my_edit')."
        )
    if extra is None:
        return
    if not isinstance(extra, Mapping):
        raise TypeError(
            f"extra must be a dict of file name → function writing that file, not "
            f"{type(extra).__name__} {extra!r:.40}. Fix: e.g. extra={{'figure.png': fig.savefig}}."
        )
    for name, writer in extra.items():
        if not isinstance(name, str) or not name or Path(name).name != name or name == MANIFEST:
            raise ValueError(
                f"extra file name {name!r} is not a plain file name (no folder, not "
                f"{MANIFEST!r}). Fix: e.g. extra={{'figure.png': fig.savefig}}."
            )
        if not callable(writer):
            raise TypeError(
                f"extra[{name!r}] must be a function that writes the file at the path it is "
                f"given, not {type(writer).__name__} {writer!r:.40}. Fix: e.g. "
                f"extra={{{name!r}: fig.savefig}} or extra={{{name!r}: lambda path: "
                "path.write_text('notes')}."
            )


RESULT_FILES = (
    "source.png",
    "edited.png",
    "settings.json",
    "history.safetensors",
    "latents.safetensors",
    "attention.png",  # the command line's figure
)


def _check_legacy_result(folder: Path) -> None:
    """Refuse a folder without a manifest unless it is a complete result of the old format."""
    import warnings

    from .atomic import IncompleteResultError

    needed = ("settings.json", "source.png", "edited.png", "latents.safetensors")
    missing = [name for name in needed if not (folder / name).is_file()]
    if missing:
        what = "not a saved edit" if len(missing) == len(needed) else "an incomplete result"
        raise IncompleteResultError(
            f"{folder} has no manifest.json and is {what} (missing: {', '.join(missing)}); "
            "a save that was interrupted leaves such a folder. Fix: rerun the edit and save it."
        )
    warnings.warn(
        f"{folder} was saved before p2p_teach wrote manifests, so only its files' presence is "
        "checked. Fix: save it again (EditResult.load(folder).save(folder)) to add one.",
        UserWarning,
        stacklevel=3,
    )


def _read_result(cls: type[EditResult], folder: Path, files: dict | None) -> EditResult:
    """The result in a checked folder; its history must belong to its settings."""
    from PIL import Image
    from safetensors.torch import load_file

    from .atomic import IncompleteResultError

    listed = set(files) if files is not None else {p.name for p in folder.iterdir()}
    images = []
    for name in ("source.png", "edited.png"):
        if name not in listed:
            raise IncompleteResultError(f"{folder}: {name} is missing. Fix: save it again.")
        with Image.open(folder / name) as image:
            image.load()  # reads every byte: a truncated PNG fails here
            images.append(image.copy())
    settings = json.loads((folder / "settings.json").read_text("utf-8"))
    history = None
    if "history.safetensors" in listed:
        history = AttentionHistory.load(folder / "history.safetensors")
        stale = settings.get("record") == "none" or (
            history.source.prompt, history.target.prompt, history.num_steps
        ) != (settings.get("source_prompt"), settings.get("target_prompt"), settings.get("steps"))
        if stale:
            raise IncompleteResultError(
                f"{folder}: history.safetensors belongs to another edit than settings.json "
                f"({history.source.prompt!r} → {history.target.prompt!r}, {history.num_steps} "
                "steps). Fix: rerun the edit and save it to a new folder."
            )
    latents = None
    if "latents.safetensors" in listed:
        latents = load_file(str(folder / "latents.safetensors"))["latents"]
    return cls(images[0], images[1], EditSettings.from_json(settings), history, latents)


# --------------------------------------------------------------------------------------------
# The plan: everything decided before the pipeline is touched
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SchedulerPlan:
    """A fresh scheduler with its timesteps, and the denoising step of every UNet call.

    ``first_calls[k]`` is the index of step k's first UNet call (the one whose maps step k
    records); ``step_timesteps[k]`` its timestep.
    """

    scheduler: Any
    timesteps: torch.Tensor  # one entry per UNet call
    call_steps: tuple[int, ...]  # call index → step index (non-decreasing)
    first_calls: tuple[int, ...] = ()  # step index → its first call's index

    def __post_init__(self) -> None:
        if not self.first_calls:
            firsts = [call for call, step in enumerate(self.call_steps)
                      if call == 0 or self.call_steps[call - 1] != step]  # fmt: skip
            object.__setattr__(self, "first_calls", tuple(firsts))

    @property
    def step_timesteps(self) -> tuple[float, ...]:
        """The timestep of every step (its first UNet call's)."""
        return tuple(float(self.timesteps[call]) for call in self.first_calls)

    def is_first_call(self, call: int) -> bool:
        return call == 0 or self.call_steps[call - 1] != self.call_steps[call]

    def is_last_call(self, call: int) -> bool:
        steps = self.call_steps
        return call == len(steps) - 1 or steps[call + 1] != steps[call]


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


@dataclass(frozen=True, eq=False)
class EditPlan:
    """An edit, planned: what :func:`_denoise` runs, decided before the UNet runs.

    Attributes:
        settings: what the edit runs with (seed, steps, guidance, windows…), as it is saved.
        source, target: the two prompts' token views.
        coefficients: the per-step mixers of Algorithm 1's ``Edit(M_t, M*_t, t)``.
        calls: the scheduler (a fresh copy) and the step of every UNet call.
        layers: every attention layer of the UNet; ``roles``: what the edit does in the ones
            it touches (record, LocalBlend, self-injection; :func:`~p2p_teach.processors.
            layer_roles`); ``recorded``: the layers the history keeps.
        blend: the LocalBlend plan, or None.
        latent_shape: (1, C, h, w) of z_T; ``latents``: a given z_T of that shape, or None
            (drawn from the seed).
        do_guidance: classifier-free guidance runs (the batch of four).
        null_embeddings: (steps, 77, d) unconditional embeddings, one per step, used instead of
            the empty prompt's in the unconditional half (null-text inversion): in the source's
            row at every step, in the target's for the steps before ``target_null_stop``
            (``settings.target_null_steps``); None: the empty prompt's, as Stable Diffusion
            does.
        processor_class, preview, progress: how the edit runs (see :func:`edit`).
    """

    settings: EditSettings
    source: TokenView
    target: TokenView
    coefficients: StepCoefficients
    calls: SchedulerPlan
    layers: tuple[LayerInfo, ...]
    roles: Mapping[str, LayerRole]
    recorded: tuple[LayerInfo, ...]
    blend: BlendPlan | None
    latent_shape: tuple[int, int, int, int]
    latents: torch.Tensor | None
    do_guidance: bool
    null_embeddings: torch.Tensor | None = None
    processor_class: type[PromptToPromptProcessor] = PromptToPromptProcessor
    preview: PreviewMode = "auto"
    progress: bool = True

    @property
    def target_null_stop(self) -> int:
        """The target takes the null embeddings in the steps before this one (the window
        ``(0, target_null_steps)``, counted as :mod:`p2p_teach.schedules` counts)."""
        share = self.settings.target_null_steps
        return 0 if share is None else window_steps((0.0, share), self.num_steps).stop

    @property
    def num_steps(self) -> int:
        return self.settings.steps

    @property
    def conventions(self) -> str:
        """Whose step-window counting the edit uses: ``"p2p_teach"`` or ``"original"``."""
        return self.settings.conventions

    @property
    def cond_rows(self) -> tuple[int, int]:
        """Batch rows of the conditional source and target: the UNet batch is [uncond source,
        uncond target, cond source, cond target] with guidance, [source, target] without."""
        return (2, 3) if self.do_guidance else (0, 1)


# --------------------------------------------------------------------------------------------
# Input checks (each raises with the fix)
# --------------------------------------------------------------------------------------------


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


def _check_run_options(
    preview: object,
    record_slots: object,
    callback: object,
    record: object = "auto",
    conventions: object = "p2p_teach",
    processor_class: object = PromptToPromptProcessor,
) -> None:
    """How the edit records and reports, and its processor class: checked, or an error naming
    the fix."""
    check_keep(record)
    check_conventions(conventions)
    _check_preview(preview)
    if record_slots not in ("used", "all"):
        raise ValueError(f"record_slots={record_slots!r}: use 'used' or 'all'")
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable, not {type(callback).__name__}")
    if not (isinstance(processor_class, type)
            and issubclass(processor_class, PromptToPromptProcessor)):  # fmt: skip
        raise TypeError(
            f"processor_class must be a subclass of PromptToPromptProcessor, not "
            f"{processor_class!r:.60}. Fix: leave it out (the default, PromptToPromptProcessor), "
            "or pass a class that subclasses it: class Mine(PromptToPromptProcessor): ..."
        )


def _check_preview(preview: object) -> None:
    if preview not in ("auto", "vae", "linear"):
        raise ValueError(f"preview={preview!r}: use 'auto', 'vae' or 'linear'")


def _check_blend(blend: object) -> LocalBlend | None:
    if blend is not None and not isinstance(blend, LocalBlend):
        raise TypeError(
            f"blend must be a LocalBlend or None, not {type(blend).__name__} {blend!r:.40}. "
            "Fix: blend=LocalBlend('bicycle') (or LocalBlend('bicycle', 'motorcycle'))."
        )
    return blend


def _image_size(
    pipe: Any, height: int | None, width: int | None
) -> tuple[int, int, tuple[int, int, int, int]]:
    """(height, width, z_T's (1, C, h, w) shape), sides checked; the model's size by default."""
    unet, factor = pipe.unet, pipe.vae_scale_factor
    height = _check_size(height, unet.config.sample_size * factor, "height", factor)
    width = _check_size(width, unet.config.sample_size * factor, "width", factor)
    return height, width, (1, unet.config.in_channels, height // factor, width // factor)


def _check_latents(latents: object, latent_shape: tuple[int, ...], size: str) -> Any:
    """A given z_T as (1, C, h, w) (a (C, h, w) one gains the batch axis), or None."""
    if latents is None:
        return None
    if not isinstance(latents, torch.Tensor):
        raise TypeError(f"latents must be a torch.Tensor, not {type(latents).__name__}")
    latents = latents[None] if latents.ndim == 3 else latents  # (C, h, w) → (1, C, h, w)
    if tuple(latents.shape) != latent_shape:
        raise ValueError(
            f"latents of shape {tuple(latents.shape)} do not fit: this model at {size} needs "
            f"{latent_shape}. Fix: drop latents= to use the seed."
        )
    check_finite(latents, "latents=")  # NaN z_T would give a NaN result
    return latents


def _check_target_null_steps(value: object, null_embeddings: object) -> float | None:
    """The target's share of the null embeddings' steps, in [0, 1]; None without them."""
    if isinstance(value, bool) or not isinstance(value, Real) or not 0.0 <= value <= 1.0:
        raise ValueError(
            f"target_null_steps={value!r}: the share of the steps (from the first) in which "
            "the target takes the inversion's null embeddings, in [0, 1]. Fix: e.g. 0.2, or "
            "1.0 for every step (the null-text inversion paper's editing)."
        )
    return None if null_embeddings is None else float(value)


def _check_null_embeddings(
    null_embeddings: object, num_steps: int, pipe: Any, do_guidance: bool
) -> torch.Tensor | None:
    """Per-step unconditional embeddings of shape (steps, 77, d) (d: the UNet's text width),
    or None."""
    if null_embeddings is None:
        return None
    width = pipe.unet.config.cross_attention_dim
    if not isinstance(null_embeddings, torch.Tensor):
        raise TypeError(
            f"null_embeddings must be a torch.Tensor, not {type(null_embeddings).__name__}"
        )
    wanted = (num_steps, MAX_SLOTS, width)
    if tuple(null_embeddings.shape) != wanted:
        raise ValueError(
            f"null_embeddings of shape {tuple(null_embeddings.shape)} do not fit: {num_steps} "
            f"steps need one (77, {width}) unconditional embedding each, {wanted}. Fix: pass "
            "the null-text inversion's embeddings for these steps."
        )
    if not do_guidance:
        raise ValueError(
            "null_embeddings replace the unconditional half of the batch, which runs only "
            "with classifier-free guidance. Fix: guidance > 1 (e.g. 7.5)."
        )
    return null_embeddings


# --------------------------------------------------------------------------------------------
# Planning
# --------------------------------------------------------------------------------------------


def plan_edit(
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
    null_embeddings: torch.Tensor | None = None,
    target_null_steps: float | None = None,
    scheduler: Any = None,
    record: KeepSetting = "auto",
    record_slots: Literal["used", "all"] = "used",
    conventions: Conventions = "p2p_teach",
    preview: PreviewMode = "auto",
    progress: bool = True,
    processor_class: type[PromptToPromptProcessor] = PromptToPromptProcessor,
) -> EditPlan:
    """Check an edit's arguments and plan it, without running the UNet (arguments: :func:`edit`,
    plus ``null_embeddings``, see :class:`EditPlan`, ``conventions``, and ``scheduler``: one to
    copy instead of the pipeline's). Raises as
    :func:`edit` does, before anything of the pipeline is changed."""
    # ---- 1. Check the inputs ----------------------------------------------------------------
    check_pipeline(pipe, "edit()")
    num_steps = check_scheduler_steps(pipe.scheduler, check_num_steps(steps))  # no hang
    defaults = model_defaults(pipe)
    guidance = _check_guidance(defaults.guidance if guidance is None else guidance)
    self_steps = defaults.self_steps if self_steps is None else self_steps
    self_max_ratio = defaults.self_max_ratio if self_max_ratio is None else self_max_ratio
    seed = _check_seed(seed)
    _check_run_options(preview, record_slots, None, record, conventions, processor_class)
    blend = _check_blend(blend)
    height, width, latent_shape = _image_size(pipe, height, width)
    latents = _check_latents(latents, latent_shape, f"{height}×{width}")
    do_guidance = guidance > 1.0 and pipe.unet.config.time_cond_proj_dim is None
    null_embeddings = _check_null_embeddings(null_embeddings, num_steps, pipe, do_guidance)
    target_null_steps = _check_target_null_steps(
        defaults.target_null_steps if target_null_steps is None else target_null_steps,
        null_embeddings,
    )

    # ---- 2. Tokens, the edit's M, a and w, and its windows (P, P* → Edit) --------------------
    source_view = tokenize_prompt(source_prompt, "source", pipe.tokenizer)  # words, ≤ 77 slots
    target_view = tokenize_prompt(target_prompt, "target", pipe.tokenizer)
    chosen_edit = with_conventions(as_edit(edit), conventions)  # the original's mapper/padding
    token_edit = chosen_edit.resolve(source_view, target_view)  # mapper/alignment/weights
    device, dtype = pipe._execution_device, pipe.unet.dtype
    calls = plan_scheduler(pipe.scheduler if scheduler is None else scheduler, num_steps, device)
    schedule = _schedule(chosen_edit, conventions, cross_steps, self_steps, num_steps, calls,
                         source_view, target_view)  # fmt: skip
    blend_plan = blend.resolve(source_view, target_view, num_steps) if blend else None
    coefficients = step_coefficients(token_edit, schedule, device=device, dtype=dtype)

    # ---- 3. Layers: which the history keeps, where LocalBlend reads, where self injects ------
    layers, recorded, roles, self_max_side, blend_side = _plan_layer_roles(
        pipe, latent_shape, record, self_max_ratio, blend_plan, token_edit.injects, coefficients
    )
    settings = EditSettings(
        source_prompt=source_prompt, target_prompt=target_prompt,
        edit=chosen_edit.describe(), blend=blend.describe() if blend is not None else None,
        seed=seed, latents_given=latents is not None, steps=num_steps, guidance=guidance,
        height=height, width=width, **schedule.to_json(),
        self_max_ratio=float(self_max_ratio), self_max_side=self_max_side,
        blend_resolution=blend_side, record=record, record_slots=record_slots,
        **_run_description(pipe, calls.scheduler, device, dtype),
        conventions=conventions, null_embeddings_given=null_embeddings is not None,
        target_null_steps=target_null_steps,
    )  # fmt: skip
    return EditPlan(
        settings, source_view, target_view, coefficients, calls, tuple(layers), roles,
        tuple(recorded), blend_plan, latent_shape, latents, do_guidance, null_embeddings,
        processor_class, preview, progress,
    )  # fmt: skip


def _plan_layer_roles(
    pipe: Any,
    latent_shape: tuple[int, int, int, int],
    record: KeepSetting,
    self_max_ratio: float,
    blend_plan: BlendPlan | None,
    injects: bool,
    coefficients: StepCoefficients,
) -> tuple[list[LayerInfo], list[LayerInfo], dict[str, LayerRole], int, int | None]:
    """(every attention layer, the recorded ones, the roles of the touched ones, the largest
    side self-attention is injected at, the side LocalBlend reads or None)."""
    latent_side = max(latent_shape[2:])
    layers = plan_layers(pipe.unet, *latent_shape[2:])
    recorded = kept_layers(layers, record, latent_side)
    self_max_side = self_injection_max_side(latent_side, self_max_ratio)
    blend_side = (
        blend_resolution(layers, latent_side, blend_plan.resolution) if blend_plan else None
    )
    roles = layer_roles(
        layers, recorded={layer.name for layer in recorded}, blend_side=blend_side,
        self_max_side=self_max_side, injects=injects, injects_self=any(coefficients.self_inject),
    )  # fmt: skip
    return layers, recorded, roles, self_max_side, blend_side


def _schedule(
    edit: Edit,
    conventions: str,
    cross_steps: CrossSteps,
    self_steps: SelfSteps,
    num_steps: int,
    calls: SchedulerPlan,
    source: TokenView,
    target: TokenView,
) -> InjectionSchedule:
    """The injection tables: one row per step, or per UNet call as the original counts. The
    edit may add windows of its own (a word swap of unequal piece counts gives the swapped word
    a shorter one; the original's conventions never do)."""
    cross_windows = edit.cross_windows(cross_steps, source, target)
    if conventions == "original":
        return resolve_original_schedule(
            cross_windows, self_steps, num_steps, len(calls.call_steps), target
        )
    return resolve_schedule(cross_windows, self_steps, num_steps, target)


def _run_description(pipe: Any, scheduler: Any, device: torch.device, dtype: Any) -> dict:
    """The settings that say where and with what the edit ran."""
    return {
        "scheduler": type(scheduler).__name__,
        "scheduler_config": json.loads(json.dumps(dict(scheduler.config), default=str)),
        "model": str(getattr(pipe, "name_or_path", "") or "a pipeline built in memory"),
        "device": str(device),
        "dtype": str(dtype).removeprefix("torch."),
        "p2p_teach_version": __version__,
    }


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

    _check_preview(mode)
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
    steps: int | None = None,
    guidance: float | None = None,
    cross_steps: CrossSteps = 0.8,
    self_steps: SelfSteps | None = None,
    self_max_ratio: float | None = None,
    height: int | None = None,
    width: int | None = None,
    latents: torch.Tensor | None = None,
    null_embeddings: torch.Tensor | None = None,
    inversion: Any = None,
    target_null_steps: float | None = None,
    record: KeepSetting = "auto",
    record_slots: Literal["used", "all"] = "used",
    callback: StepCallback | None = None,
    conventions: Conventions = "p2p_teach",
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
        steps: denoising steps (≥ 1); None: 25, or the inversion's.
        guidance: classifier-free guidance scale (≥ 0; ≤ 1 turns guidance off); None: the
            model's own (:mod:`p2p_teach.defaults`: 7.5 for SD v1.x, 2
            for the built-in shapes model).
        cross_steps: cross-attention injection: a fraction, a ``(start, end)`` pair, or a
            per-word dict with a ``"default"`` (:mod:`p2p_teach.schedules`).
        self_steps: self-attention injection: a fraction or a ``(start, end)`` pair; None:
            the model's own (:mod:`p2p_teach.defaults`: 0.4 for SD v1.x,
            the original's; 0.6 for the built-in shapes model).
        self_max_ratio: self-attention is injected in layers whose side is at most this share
            of the latent's side; None: the model's own
            (:mod:`p2p_teach.defaults`: 0.25 for SD v1.x, the
            original's 16×16 of a 64×64 latent; every layer for the built-in shapes model).
        height, width: image size; defaults to the model's (512 for SD v1, 64 built in).
        latents: an optional z_T of shape (1, C, h, w) instead of the seed's (unscaled, as
            ``pipe(latents=...)`` takes it).
        null_embeddings: optional (steps, 77, d) unconditional embeddings, one per step,
            instead of the empty prompt's (null-text inversion; needs guidance > 1).
        inversion: a real image's :class:`~p2p_teach.inversion.Inversion` (from
            :func:`~p2p_teach.inversion.invert`) to edit instead of a seed's image: its z_T,
            its null embeddings, its steps, guidance and DDIM scheduler (the pipeline's
            scheduler is not used); ``source_prompt`` is its caption. Other ``steps`` or
            ``guidance`` than the inversion's, or ``latents``/``null_embeddings`` as well,
            raise a ValueError.
        target_null_steps: with null embeddings (an inversion), the share of the steps, from
            the first, in which the target takes them too; after it, the empty prompt's. The
            source takes them at every step, so it rebuilds the image. None: the model's own
            (:mod:`p2p_teach.defaults`: 1.0 for SD v1.x, the null-text inversion paper's
            editing; 0.2 for the built-in shapes model, whose null embeddings carry the
            source's colours into the target).
        record: which cross-attention layers the history keeps: ``"auto"`` (side ≤ a quarter of
            the latent's side, and any side ≤ 16), ``"all"``, ``"none"``, a largest side, or a
            set of sides (:mod:`p2p_teach.history`).
        record_slots: ``"used"`` (BOS … EOS plus one summed padding column) or ``"all"`` (77).
        callback: called after every step with a :class:`StepInfo` (step, timestep, latents,
            a lazily decoded x0 preview, that step's maps). Raise in it to stop the edit; the
            pipeline is restored either way.
        conventions: ``"p2p_teach"`` (this toolkit's) or ``"original"``: reproduce
            google/prompt-to-prompt's numbers. Its windows count UNet calls (PNDM's first step
            makes two, so ``0.8`` of 25 steps injects 19 steps there, 20 here; its cross table
            has T + 1 rows), its refinement maps target padding slot k to source slot k
            (``Refine(padding="slot")``), and its word-swap mapper is
            ``Replace(rule="original")`` (:mod:`p2p_teach.schedules`). LocalBlend keeps this
            toolkit's step count.
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
    _check_run_options(preview, record_slots, callback, record, processor_class=processor_class)
    scheduler = None
    if inversion is not None:  # a real image: its z_T, null embeddings, steps, guidance, DDIM
        if not hasattr(inversion, "edit_arguments"):
            raise TypeError(
                f"inversion must be an Inversion (from p2p_teach.invert or Inversion.load), "
                f"not {type(inversion).__name__}"
            )
        given = inversion.edit_arguments(
            pipe, steps, guidance, latents, null_embeddings, source_prompt=source_prompt
        )
        steps, guidance, latents, null_embeddings, scheduler = (
            given[key] for key in ("steps", "guidance", "latents", "null_embeddings", "scheduler")
        )
    plan = plan_edit(
        pipe, source_prompt, target_prompt, edit=edit, blend=blend, seed=seed,
        steps=DEFAULT_STEPS if steps is None else steps,
        guidance=guidance, cross_steps=cross_steps, self_steps=self_steps,
        self_max_ratio=self_max_ratio, height=height, width=width, latents=latents,
        null_embeddings=null_embeddings, target_null_steps=target_null_steps, record=record,
        record_slots=record_slots, conventions=conventions, preview=preview, progress=progress,
        processor_class=processor_class, scheduler=scheduler,
    )  # fmt: skip
    try:
        return _denoise(pipe, plan, callback)
    finally:
        # Models under enable_model_cpu_offload() go back to the CPU, as after pipe(...).
        free_hooks = getattr(pipe, "maybe_free_model_hooks", None)
        if free_hooks is not None:
            free_hooks()


def _denoise(pipe: Any, plan: EditPlan, callback: StepCallback | None = None) -> EditResult:
    """Run a plan: the denoising loop of Algorithm 1 (its line numbers in the comments)."""
    from tqdm.auto import tqdm

    unet, calls, device = pipe.unet, plan.calls, pipe._execution_device
    scheduler = copy.deepcopy(calls.scheduler)  # the plan's stays fresh: a plan runs again
    history = _new_history(plan, device)
    run = _new_run(plan, history, device)
    processors = build_processors(plan.layers, plan.roles, run, plan.processor_class)
    decode_preview = make_preview_decoder(pipe, plan.preview) if callback is not None else None
    generator = torch.Generator("cpu").manual_seed(plan.settings.seed)
    step_timesteps = calls.step_timesteps
    bar = tqdm(total=plan.num_steps, desc="Prompt-to-Prompt", disable=not plan.progress,
               leave=False)  # fmt: skip
    with bar, torch.no_grad(), attention_processors(unet, processors):
        # (1–2) Input: the source prompt P and the target prompt P*, encoded by CLIP.
        text = _encode_prompts(pipe, plan, device)
        # (3) z_T ~ N(0, I) from the seed s, scaled for the scheduler.
        z_T = _initial_noise(plan, generator, device, text.dtype) * scheduler.init_noise_sigma
        # (4) z*_T ← z_T: the target starts from the very same noise.
        latents = z_T.expand(2, *z_T.shape[1:]).clone()  # (2, C, h, w): [source, target]
        step_kwargs = pipe.prepare_extra_step_kwargs(generator, 0.0)

        # (5) for t = T, T − 1, …, 1 (one entry per UNet call; PNDM's first step has two).
        for call, t in enumerate(calls.timesteps):
            step = calls.call_steps[call]
            run.step, run.record_call = step, calls.is_first_call(call)
            run.row = call if plan.conventions == "original" else step  # coefficients' row

            # (6) z_{t−1}, M_t ← DM(z_t, P, t, s)   (7) M*_t ← DM(z*_t, P*, t, s)
            # (8) M̂_t ← Edit(M_t, M*_t, t)        (9) z*_{t−1} ← DM(z*_t, P*, t, s){M ← M̂_t}
            # One UNet batch runs all four lines (classifier-free guidance doubles it): inside
            # it the attention processors compute M̂_t from the source's maps, the target runs
            # with {M ← M̂_t}, and the maps are recorded.
            model_input = torch.cat([latents] * 2) if plan.do_guidance else latents  # (4|2,C,h,w)
            model_input = scheduler.scale_model_input(model_input, t)
            noise_pred = unet(model_input, t, encoder_hidden_states=text.at_step(step),
                              return_dict=False)[0]  # fmt: skip
            if plan.do_guidance:
                uncond_pred, text_pred = noise_pred.chunk(2)  # (2, C, h, w) each
                noise_pred = uncond_pred + plan.settings.guidance * (text_pred - uncond_pred)
            check_finite(noise_pred, "noise prediction", step)  # NaN weights, fp16 overflow

            # The scheduler steps both: z_{t−1} (line 6) and z*_{t−1} (line 9).
            sample = latents
            output = scheduler.step(noise_pred, t, latents, **step_kwargs, return_dict=True)
            latents = output.prev_sample  # (2, C, h, w)
            if not calls.is_last_call(call):
                continue

            mask, latents = _local_blend(plan, run, step, latents)
            check_finite(latents, "latents", step)
            if history is not None:
                history.end_step(step)
            if callback is not None:
                callback(StepInfo(
                    step=step, num_steps=plan.num_steps, timestep=step_timesteps[step],
                    latents=latents, maps=history.at_step(step) if history is not None else {},
                    history=history, blend_mask=mask,
                    predicted_latents=predicted_clean_latents(
                        scheduler, output, sample, noise_pred, t
                    ),
                    _decode=decode_preview,
                ))  # fmt: skip
            bar.update()

        # (11) Return (z_0, z*_0), decoded by the VAE.
        source_image, edited_image = _decode_images(pipe, latents, device, text.dtype)
    if history is not None:
        history.wait_for_copies()
    return EditResult(source_image, edited_image, plan.settings, history, latents.float().cpu())


# --------------------------------------------------------------------------------------------
# The loop's parts
# --------------------------------------------------------------------------------------------


def _new_history(plan: EditPlan, device: torch.device) -> AttentionHistory | None:
    """An empty history of the recorded layers, or None when no layer is recorded."""
    if not plan.recorded:
        return None
    return AttentionHistory(
        list(plan.recorded),
        plan.source,
        plan.target,
        list(plan.calls.step_timesteps),
        slots=plan.settings.record_slots,
        pin_memory=device.type == "cuda",
    )


def _new_run(plan: EditPlan, history: AttentionHistory | None, device: torch.device) -> EditRun:
    """The state the processors share, with LocalBlend's word slots on the device."""
    run = EditRun(plan.coefficients, *plan.cond_rows, history)
    if plan.blend is not None:
        run.blend_source_slots = torch.tensor(plan.blend.source_slots, device=device)
        run.blend_target_slots = torch.tensor(plan.blend.target_slots, device=device)
    return run


@dataclass(frozen=True)
class _TextEmbeddings:
    """The UNet's text input at each step: (4, 77, d) [uncond source, uncond target, cond
    source, cond target] with guidance, (2, 77, d) [source, target] without."""

    fixed: torch.Tensor  # the batch when the unconditional rows are the empty prompt's
    cond: torch.Tensor  # (2, 77, d)
    null: torch.Tensor | None  # (steps, 77, d) per-step unconditional embeddings, or None
    target_null_stop: int = 0  # the target's row takes ``null`` in the steps before this

    @property
    def dtype(self) -> torch.dtype:
        return self.fixed.dtype

    def at_step(self, step: int) -> torch.Tensor:
        if self.null is None:
            return self.fixed
        # the target's unconditional row: the null embedding while step < target_null_stop,
        # then the empty prompt's (the source keeps the null embeddings to rebuild its image)
        target = self.null[step] if step < self.target_null_stop else self.fixed[1]  # (77, d)
        uncond = torch.stack([self.null[step], target])  # (2, 77, d)
        return torch.cat([uncond, self.cond])  # (4, 77, d)


def _encode_prompts(pipe: Any, plan: EditPlan, device: torch.device) -> _TextEmbeddings:
    settings = plan.settings
    cond, uncond = pipe.encode_prompt(
        [settings.source_prompt, settings.target_prompt], device, 1, plan.do_guidance, None
    )  # (2, 77, d) each; uncond is None without guidance
    fixed = torch.cat([uncond, cond]) if plan.do_guidance else cond  # (4 or 2, 77, d)
    null = plan.null_embeddings
    if null is not None:
        null = null.to(device=device, dtype=cond.dtype)
    return _TextEmbeddings(fixed, cond, null, plan.target_null_stop)


def _initial_noise(
    plan: EditPlan, generator: torch.Generator, device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    """(1, C, h, w) z_T before the scheduler's scaling: the given latents, or the seed's."""
    from diffusers.utils.torch_utils import randn_tensor

    if plan.latents is not None:
        return plan.latents.to(device=device, dtype=dtype)
    return randn_tensor(plan.latent_shape, generator=generator, device=device, dtype=dtype)


def _local_blend(
    plan: EditPlan, run: EditRun, step: int, latents: torch.Tensor
) -> tuple[torch.Tensor | None, torch.Tensor]:
    """LocalBlend after a step: (the (1, 1, h, w) mask or None, the blended latents)."""
    blend = plan.blend
    if blend is None or step < blend.start_step or not run.blend_count:
        return None, latents
    word_maps = run.blend_sum / run.blend_count  # (2, H, W)
    mask = blend.mask(word_maps, tuple(latents.shape[2:]))
    return mask, apply_blend(latents, mask)


def _decode_images(
    pipe: Any, latents: torch.Tensor, device: torch.device, dtype: torch.dtype
) -> list:
    """The two PIL images of the (2, C, h, w) final latents (safety checker as pipe(...))."""
    scaled = latents.to(pipe.vae.dtype) / pipe.vae.config.scaling_factor
    images = pipe.vae.decode(scaled, return_dict=False)[0]  # (2, 3, H, W) in [-1, 1]
    check_finite(images, "decoded images")
    images, flagged = pipe.run_safety_checker(images, device, dtype)
    denormalize = [True] * 2 if flagged is None else [not flag for flag in flagged]
    return pipe.image_processor.postprocess(images, output_type="pil", do_denormalize=denormalize)
