"""Edit a real image: DDIM inversion, then null-text inversion (Mokady et al., 2023).

Prompt-to-Prompt edits images the model generated, from their z_T. A real image (a photo, a
drawing the model never made) has no z_T, so :func:`invert` finds one in two phases:

1. **DDIM inversion** runs the deterministic DDIM sampler backwards under the image's caption,
   without guidance (scale 1): from z_0 (the VAE's encoding of the image) each step predicts
   the noise ε(z_t, t, caption) and moves *up* one noise level,

       z_{t+1} = √ᾱ_{t+1} · x̂_0 + √(1 − ᾱ_{t+1}) · ε,   x̂_0 = (z_t − √(1 − ᾱ_t) · ε) / √ᾱ_t

   which gives the trajectory z_0 … z_T. Sampling back down *without guidance* retraces it
   closely, but editing needs classifier-free guidance, ε = ε_∅ + w · (ε_caption − ε_∅), and
   with w > 1 every step drifts off the trajectory: the errors add up and the image is lost.
2. **Null-text inversion** keeps the caption and the model, and optimises only the
   unconditional ("null", the empty prompt's) embedding ∅_t, one per step: at step t, from the
   current latent z̄_t, Adam minimises ‖DDIM-step(z̄_t, ε_{∅_t} + w · (ε_caption − ε_{∅_t})) −
   z_{t−1}‖² over ∅_t, stopping early once the loss is below ``early_stop``. Guided sampling
   with ∅_t at step t then retraces the trajectory, and Prompt-to-Prompt edits from there:
   ``edit(pipe, caption, target, inversion=inv)``.

The pipeline is left as it was: the loop runs its own :class:`~diffusers.DDIMScheduler` built
from the pipeline's scheduler config, the UNet is put in eval mode only while the inversion
runs, and gradients flow only into the null embedding (``torch.autograd.grad`` with respect to
it alone: no UNet parameter gets a gradient).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from numbers import Integral, Real
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from . import __version__
from .defaults import model_defaults
from .guards import check_pipeline
from .measures import as_rgb
from .schedules import check_num_steps
from .tokens import tokenize

DEFAULT_STEPS = 25
DEFAULT_INNER_STEPS = 5
# Mokady et al. use 1e-2 on SD; 1e-1 reaches the trajectory in fewer steps on the built-in
# model (benchmarks/inversion.py), and on SD the early stop ends the steps it no longer needs
DEFAULT_LEARNING_RATE = 1e-1
# the inner optimisation stops once the latent MSE is below this (Mokady et al.: 1e-5)
DEFAULT_EARLY_STOP = 1e-5
FP16_LOSS_SCALE = 2.0**12
TENSORS_FILE = "inversion.safetensors"
SETTINGS_FILE = "inversion.json"
IMAGE_FILES = ("image.png", "reconstruction.png", "ddim_reconstruction.png")


# --------------------------------------------------------------------------------------------
# What the callback receives, and what an inversion returns
# --------------------------------------------------------------------------------------------


@dataclass
class InversionStep:
    """One finished step of :func:`invert`, as the callback sees it.

    Attributes:
        phase: ``"ddim"`` (the trajectory going up, z_0 → z_T) or ``"null-text"`` (guided
            sampling coming down, z_T → z_0, with the null embedding optimised).
        step: 0 … num_steps − 1 within the phase.
        num_steps: steps per phase.
        timestep: the scheduler timestep of this step.
        trajectory_latent: (1, C, h, w) the DDIM-inversion latent this step reached (``"ddim"``)
            or aimed at (``"null-text"``).
        latents: (2, C, h, w) [plain DDIM inversion, null-text] latents after this guided step
            (``"null-text"`` only; None in ``"ddim"``).
        predicted: (2, C, h, w) their predicted clean latents x̂_0 (``"null-text"`` only).
        inner_losses: the inner optimisation's losses at this step (``"null-text"`` only).
        errors: (plain DDIM, null-text) latent MSE to the trajectory after this step.
    """

    phase: str
    step: int
    num_steps: int
    timestep: int
    trajectory_latent: torch.Tensor
    latents: torch.Tensor | None = None
    predicted: torch.Tensor | None = None
    inner_losses: list[float] = field(default_factory=list)
    errors: tuple[float, float] | None = None
    _decode: Callable[[torch.Tensor], list] | None = field(default=None, repr=False)

    def preview(self) -> tuple | None:
        """(plain DDIM, null-text) PIL images of the predicted x̂_0, or None in ``"ddim"``."""
        if self.predicted is None or self._decode is None:
            return None
        return tuple(self._decode(self.predicted))

    def trajectory_preview(self) -> Any:
        """The trajectory latent decoded by the VAE (noisier at every step up), a PIL image."""
        if self._decode is None:
            return None
        return self._decode(self.trajectory_latent)[0]


InversionCallback = Callable[[InversionStep], Any]


@dataclass
class Inversion:
    """The outcome of :func:`invert`: what ``edit(..., inversion=...)`` starts from.

    Attributes:
        caption: the caption the image was inverted under.
        image: the input image at the model's size (PIL).
        z_T: (1, C, h, w) float32, the last latent of the DDIM-inversion trajectory.
        null_embeddings: (steps, 77, d) float32, the optimised null embedding of every
            denoising step (step k is the k-th step down from z_T).
        trajectory: (steps + 1, C, h, w) float32, z_0 (the image's latent) … z_T.
        timesteps: the scheduler's timesteps of the denoising steps (descending).
        inner_losses: per denoising step, the losses of its inner optimisation.
        null_text_errors, ddim_errors: per denoising step, the latent MSE to the trajectory of
            guided sampling with the optimised null embeddings, and with the empty prompt's
            (plain DDIM inversion).
        reconstruction, ddim_reconstruction: the images the two end at (PIL).
        settings: steps, guidance, inner_steps, the scheduler's config, the model, … (JSON).
    """

    caption: str
    image: Any
    z_T: torch.Tensor
    null_embeddings: torch.Tensor
    trajectory: torch.Tensor
    timesteps: list[int]
    inner_losses: list[list[float]]
    null_text_errors: list[float]
    ddim_errors: list[float]
    reconstruction: Any
    ddim_reconstruction: Any
    settings: dict

    @property
    def steps(self) -> int:
        return int(self.settings["steps"])

    @property
    def guidance(self) -> float:
        return float(self.settings["guidance"])

    @property
    def psnr(self) -> float:
        """Reconstruction PSNR of null-text inversion against the input image, in dB."""
        return psnr(self.image, self.reconstruction)

    @property
    def ddim_psnr(self) -> float:
        """Reconstruction PSNR of plain DDIM inversion at the same guidance, in dB."""
        return psnr(self.image, self.ddim_reconstruction)

    def edit_arguments(
        self,
        pipe: Any,
        steps: int | None = None,
        guidance: float | None = None,
        latents: torch.Tensor | None = None,
        null_embeddings: torch.Tensor | None = None,
        source_prompt: str | None = None,
    ) -> dict:
        """What ``edit(pipe, ..., inversion=self)`` runs with: z_T as ``latents``, the
        per-step ``null_embeddings``, the inversion's ``steps``, ``guidance`` and DDIM
        ``scheduler`` (rebuilt from its saved config; the pipeline's own is not used).

        Raises:
            ValueError: ``steps`` or ``guidance`` differ from the inversion's, ``latents`` or
                ``null_embeddings`` are given too, ``source_prompt`` is not the caption, or the
                inversion is another model's.
        """
        check_inversion(pipe, self, steps, guidance)
        if source_prompt is not None and source_prompt != self.caption:
            raise ValueError(
                f"source prompt {source_prompt!r}, but the image was inverted under the caption "
                f"{self.caption!r}: the null embeddings reconstruct it under that caption only. "
                f"Fix: edit(pipe, {self.caption!r}, target, inversion=...)."
            )
        for name, value in (("latents", latents), ("null_embeddings", null_embeddings)):
            if value is not None:
                raise ValueError(
                    f"{name}= and inversion= both set where an edit starts: the inversion "
                    f"gives z_T and the null embeddings. Fix: drop {name}=."
                )
        return {
            "steps": self.steps,
            "guidance": self.guidance,
            "latents": self.z_T,
            # without guidance the edit runs no unconditional half for them to replace
            "null_embeddings": self.null_embeddings if self.settings["guided"] else None,
            "scheduler": inversion_scheduler(self),
        }

    def __repr__(self) -> str:
        return (
            f"Inversion({self.caption!r}, steps={self.steps}, guidance={self.guidance:g}, "
            f"inner_steps={self.settings['inner_steps']}; PSNR null-text "
            f"{self.psnr:.1f} dB, plain DDIM {self.ddim_psnr:.1f} dB)"
        )

    def save(self, folder: str | Path) -> Path:
        """Write inversion.safetensors, inversion.json, three PNGs and a manifest into ``folder``.

        Atomic, as an edit's result (:func:`p2p_teach.atomic.write_folder`): the files go to a
        hidden sibling renamed into place at the end, so ``folder`` holds either the old
        inversion or the whole new one. A folder holding other files is refused.
        """
        from safetensors.torch import save_file

        from .atomic import write_folder

        tensors = {
            name: tensor.detach().float().cpu().clone()
            for name, tensor in (
                ("z_T", self.z_T),
                ("null_embeddings", self.null_embeddings),
                ("trajectory", self.trajectory),
            )
        }
        record = {
            "caption": self.caption,
            "timesteps": self.timesteps,
            "inner_losses": self.inner_losses,
            "null_text_errors": self.null_text_errors,
            "ddim_errors": self.ddim_errors,
            "settings": self.settings,
        }
        writers = {
            TENSORS_FILE: lambda path: save_file(tensors, str(path)),
            SETTINGS_FILE: lambda path: path.write_text(json.dumps(record, indent=2), "utf-8"),
        }
        images = (self.image, self.reconstruction, self.ddim_reconstruction)
        for name, image in zip(IMAGE_FILES, images):
            writers[name] = image.save
        return write_folder(folder, writers, replaceable=set(writers))

    @classmethod
    def load(cls, folder: str | Path) -> Inversion:
        """Read a folder written by :meth:`save`."""
        from safetensors.torch import load_file

        from .atomic import read_manifest

        folder = Path(folder)
        if not (folder / SETTINGS_FILE).is_file() or not (folder / TENSORS_FILE).is_file():
            raise FileNotFoundError(
                f"{folder} holds no {SETTINGS_FILE} and {TENSORS_FILE}: not a saved inversion. "
                "Fix: pass the folder given to Inversion.save."
            )
        read_manifest(folder)  # every file whole (IncompleteResultError names the others)
        record = json.loads((folder / SETTINGS_FILE).read_text("utf-8"))
        tensors = load_file(str(folder / TENSORS_FILE))
        images = []
        for name in IMAGE_FILES:
            with Image.open(folder / name) as image:
                images.append(image.copy())
        return cls(
            caption=record["caption"],
            image=images[0],
            z_T=tensors["z_T"],
            null_embeddings=tensors["null_embeddings"],
            trajectory=tensors["trajectory"],
            timesteps=[int(t) for t in record["timesteps"]],
            inner_losses=record["inner_losses"],
            null_text_errors=record["null_text_errors"],
            ddim_errors=record["ddim_errors"],
            reconstruction=images[1],
            ddim_reconstruction=images[2],
            settings=record["settings"],
        )


# --------------------------------------------------------------------------------------------
# Images in and out
# --------------------------------------------------------------------------------------------


def model_side(pipe: Any) -> int:
    """The side in pixels of the images the pipeline's UNet was built for (512 SD, 64 built in)."""
    return int(pipe.unet.config.sample_size * pipe.vae_scale_factor)


def as_pil(image: Any) -> Image.Image:
    """An RGB PIL image from a PIL image, an (H, W[, 3|4]) uint8 or float array, or a
    (3, H, W) tensor (float 0–1, or 0–255 when any value is above 1, as
    :mod:`p2p_teach.measures` reads images; an alpha channel is dropped)."""
    if isinstance(image, (str, Path)):
        raise TypeError(
            f"image={str(image)!r:.60} is a path. Fix: invert(pipe, PIL.Image.open(path), ...)."
        )
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    if not isinstance(image, (np.ndarray, torch.Tensor)):
        raise TypeError(
            "image must be a PIL image, a numpy array or a torch tensor, not "
            f"{type(image).__name__}"
        )
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu()
        if image.ndim == 3 and image.shape[0] == 4 and image.shape[-1] != 4:
            image = image[:3]  # (4, H, W) -> (3, H, W): drop alpha
    elif image.ndim == 3 and image.shape[-1] == 4:
        image = image[..., :3]  # (H, W, 4) -> (H, W, 3): drop alpha
    rgb = as_rgb(image)  # (H, W, C) float64 in [0, 1]
    if not np.isfinite(rgb).all():
        raise ValueError("the image holds NaN or infinite values")
    rgb = np.repeat(rgb, 3, axis=-1) if rgb.shape[-1] == 1 else rgb  # (H, W, 3)
    return Image.fromarray((rgb.clip(0, 1) * 255).round().astype(np.uint8))


def fit_to_side(image: Image.Image, side: int, verbose: bool = True) -> Image.Image:
    """``image`` at ``side``×``side``: a non-square one is centre-cropped to a square first,
    and any other size resized, both said in one printed line (``verbose``)."""
    width, height = image.size
    if (width, height) == (side, side):
        return image
    square = min(width, height)
    left, top = (width - square) // 2, (height - square) // 2
    cropped = image.crop((left, top, left + square, top + square))
    resized = cropped.resize((side, side), Image.Resampling.LANCZOS)
    if verbose:
        crop = f", centre-cropped to {square}×{square}" if width != height else ""
        print(f"p2p_teach: the image is {width}×{height}{crop}, resized to {side}×{side} "
              "(the model's size)")  # fmt: skip
    return resized


def image_tensor(image: Image.Image) -> torch.Tensor:
    """(1, 3, H, W) float32 in [−1, 1] from an RGB PIL image."""
    array = np.asarray(image.convert("RGB"), dtype=np.float32) / 127.5 - 1.0  # (H, W, 3)
    return torch.from_numpy(array).permute(2, 0, 1)[None]  # (1, 3, H, W)


def psnr(reference: Any, image: Any) -> float:
    """PSNR in dB of ``image`` against ``reference`` with pixels in [−1, 1]: 10·log10(2² / MSE),
    as the built-in model's card measures its VAE (``p2p_teach.shapes.train.vae_psnr``)."""
    a, b = as_rgb(reference) * 2 - 1, as_rgb(image) * 2 - 1  # (H, W, C) each
    if a.shape != b.shape:
        raise ValueError(f"images of shapes {a.shape} and {b.shape} cannot be compared")
    mse = float(((a - b) ** 2).mean())
    return 10 * math.log10(4.0 / max(mse, 1e-10))


# --------------------------------------------------------------------------------------------
# The scheduler and one DDIM move
# --------------------------------------------------------------------------------------------


def ddim_scheduler(pipe: Any, steps: int) -> Any:
    """A fresh :class:`~diffusers.DDIMScheduler` from the pipeline's scheduler config, with
    ``clip_sample`` off (clamping x̂_0 to [−1, 1] is meant for pixels, not latents), set to
    ``steps`` steps. The pipeline's own scheduler is not touched."""
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler.from_config(pipe.scheduler.config, clip_sample=False)
    scheduler.set_timesteps(steps)
    return scheduler


def _alpha(scheduler: Any, timestep: int) -> torch.Tensor:
    """ᾱ at ``timestep``; below 0 (the step past the last), the scheduler's final ᾱ."""
    if timestep < 0:
        return scheduler.final_alpha_cumprod
    return scheduler.alphas_cumprod[timestep]


def ddim_move(
    latent: torch.Tensor, noise: torch.Tensor, alpha_from: torch.Tensor, alpha_to: torch.Tensor
) -> torch.Tensor:
    """Deterministic DDIM (η = 0) from noise level ᾱ_from to ᾱ_to: down when ᾱ_to > ᾱ_from
    (sampling), up when ᾱ_to < ᾱ_from (inversion), with the same predicted noise ``noise``."""
    clean = (latent - (1 - alpha_from).sqrt() * noise) / alpha_from.sqrt()  # x̂_0
    return alpha_to.sqrt() * clean + (1 - alpha_to).sqrt() * noise


def previous_timestep(scheduler: Any, timestep: int) -> int:
    """The timestep one DDIM step below ``timestep`` (negative past the last step)."""
    return timestep - scheduler.config.num_train_timesteps // scheduler.num_inference_steps


# --------------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------------


def _check_inputs(
    pipe: Any, caption: object, inner_steps: object, learning_rate: object, early_stop: object
) -> None:
    check_pipeline(pipe, "invert()")
    if not isinstance(caption, str) or not caption.strip():
        raise ValueError(
            f"caption={caption!r}: the text that describes the image, as a prompt would "
            "(e.g. 'a big red circle'); Prompt-to-Prompt's source prompt is this caption."
        )
    tokenize(caption, pipe.tokenizer)  # PromptTooLongError over 77 slots
    if isinstance(inner_steps, bool) or not isinstance(inner_steps, Integral) or inner_steps < 0:
        raise ValueError(
            f"inner_steps={inner_steps!r}: the Adam steps per denoising step, a whole number "
            "≥ 0 (0: plain DDIM inversion). Fix: e.g. inner_steps=10."
        )
    for name, value in (("learning_rate", learning_rate), ("early_stop", early_stop)):
        bad = isinstance(value, bool) or not isinstance(value, Real)
        if bad or not math.isfinite(value) or value < 0 or (name == "learning_rate" and not value):
            raise ValueError(f"{name}={value!r}: a finite number > 0 (≥ 0 for early_stop)")


def _check_guidance(pipe: Any, guidance: object) -> float:
    guidance = model_defaults(pipe).guidance if guidance is None else guidance
    if (
        isinstance(guidance, bool)
        or not isinstance(guidance, Real)
        or not (math.isfinite(guidance) and guidance >= 0)
    ):
        raise ValueError(
            f"guidance={guidance!r}: the classifier-free guidance scale the edit will run at, "
            "a finite number ≥ 0. Fix: leave it out for the model's own, or e.g. guidance=7.5."
        )
    return float(guidance)


# --------------------------------------------------------------------------------------------
# The two phases
# --------------------------------------------------------------------------------------------


@dataclass
class _Run:
    """What both phases share."""

    unet: Any
    scheduler: Any
    caption_embedding: torch.Tensor  # (1, 77, d)
    empty_embedding: torch.Tensor  # (1, 77, d)
    guidance: float
    guided: bool
    inner_steps: int
    learning_rate: float
    early_stop: float
    callback: InversionCallback | None
    decode: Callable[[torch.Tensor], list] | None
    bar: Any

    def noise(self, latents: torch.Tensor, timestep: int, embeddings: torch.Tensor) -> torch.Tensor:
        """ε(latents, t, embeddings) in float32; (B, C, h, w) latents, (B, 77, d) embeddings."""
        unet = self.unet
        embeddings = embeddings.to(unet.dtype)
        prediction = unet(latents.to(unet.dtype), timestep, embeddings, return_dict=False)[0]
        return prediction.float()

    def guide(self, uncond: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return uncond + self.guidance * (cond - uncond) if self.guided else cond


def ddim_inversion(run: _Run, clean: torch.Tensor) -> torch.Tensor:
    """(steps + 1, C, h, w): z_0 = ``clean`` … z_T, DDIM run upwards under the caption (no
    guidance). Each step predicts ε at the lower level with the upper timestep, as the paper."""
    scheduler = run.scheduler
    latent = clean  # (1, C, h, w)
    trajectory = [latent]
    timesteps = [int(t) for t in scheduler.timesteps]
    with torch.no_grad():
        for step, timestep in enumerate(reversed(timesteps)):
            noise = run.noise(latent, timestep, run.caption_embedding)
            lower = _alpha(scheduler, previous_timestep(scheduler, timestep))
            latent = ddim_move(latent, noise, lower, _alpha(scheduler, timestep))
            trajectory.append(latent)
            if run.callback is not None:
                run.callback(InversionStep("ddim", step, len(timesteps), timestep, latent,
                                           _decode=run.decode))  # fmt: skip
            run.bar.update()
    return torch.cat(trajectory)  # (steps + 1, C, h, w)


def optimise_null(
    run: _Run,
    latent: torch.Tensor,
    timestep: int,
    cond_noise: torch.Tensor,
    target: torch.Tensor,
    null: torch.Tensor,
    learning_rate: float,
    early_stop: float,
) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
    """Adam on the null embedding ``null`` (1, 77, d) so that the guided DDIM step from
    ``latent`` lands on ``target``; returns the embedding, its ε_∅ and the losses.

    Stops before an Adam step once the loss is below ``early_stop``; gradients go to the
    embedding only (``torch.autograd.grad`` with respect to it).
    """
    null = null.detach().clone().requires_grad_(True)
    optimizer = torch.optim.Adam([null], lr=learning_rate)
    losses: list[float] = []
    with torch.enable_grad():
        for _ in range(run.inner_steps):
            uncond_noise = run.noise(latent, timestep, null)
            guided = run.guide(uncond_noise, cond_noise)
            reached = run.scheduler.step(guided, timestep, latent).prev_sample
            loss = torch.nn.functional.mse_loss(reached, target)
            losses.append(float(loss.detach()))
            if losses[-1] < early_stop:
                return null.detach(), uncond_noise.detach(), losses
            # in fp16 the gradients of a loss near 1e-5 underflow in the UNet's backward:
            # scale the loss up and the gradient back down, as mixed-precision training does
            scale = FP16_LOSS_SCALE if run.unet.dtype == torch.float16 else 1.0
            (gradient,) = torch.autograd.grad(loss * scale, [null])
            null.grad = gradient / scale
            optimizer.step()
    with torch.no_grad():
        return null.detach(), run.noise(latent, timestep, null), losses


@dataclass
class _Descent:
    """What the null-text phase returns."""

    null_embeddings: torch.Tensor  # (steps, 77, d)
    latents: torch.Tensor  # (2, C, h, w): [plain DDIM, null-text] at the end
    inner_losses: list[list[float]]
    ddim_errors: list[float]
    null_text_errors: list[float]


def null_text_inversion(run: _Run, trajectory: torch.Tensor) -> _Descent:
    """Guided DDIM down from z_T twice: with the empty prompt's embedding (plain DDIM
    inversion) and with a null embedding optimised at each step (:func:`optimise_null`) to
    land on the trajectory's next latent. The step-k embedding starts from step k − 1's."""
    scheduler = run.scheduler
    num_steps = trajectory.shape[0] - 1
    latents = trajectory[-1:].expand(2, *trajectory.shape[1:]).clone()  # (2, C, h, w)
    null = run.empty_embedding.float()
    nulls, all_losses, ddim_errors, null_errors = [], [], [], []
    for step, timestep in enumerate(int(t) for t in scheduler.timesteps):
        target = trajectory[num_steps - 1 - step][None]  # (1, C, h, w): z_{t−1}
        with torch.no_grad():  # one batch: [plain ∅, plain caption, null-text caption]
            batch = torch.cat([latents[:1], latents[:1], latents[1:]])  # (3, C, h, w)
            embeddings = torch.cat([run.empty_embedding, run.caption_embedding.expand(2, -1, -1)])
            noise = run.noise(batch, timestep, embeddings)  # (3, C, h, w)
        plain_noise = run.guide(noise[:1], noise[1:2])
        losses: list[float] = []
        if run.guided and run.inner_steps:
            # as Mokady et al.: the rate falls by half over the steps, and the stop
            # threshold rises 100-fold, as later steps matter less to the final image
            rate = run.learning_rate * (1 - step / (2 * num_steps))
            stop = run.early_stop * (1 + 100 * step / num_steps)
            null, uncond_noise, losses = optimise_null(
                run, latents[1:], timestep, noise[2:], target, null, rate, stop
            )
        else:
            with torch.no_grad():
                uncond_noise = run.noise(latents[1:], timestep, null)
        with torch.no_grad():
            guided = torch.cat([plain_noise, run.guide(uncond_noise, noise[2:])])  # (2, C, h, w)
            output = scheduler.step(guided, timestep, latents)
        latents = output.prev_sample  # (2, C, h, w)
        errors = ((latents - target) ** 2).mean(dim=(1, 2, 3)).tolist()  # [plain, null-text]
        nulls.append(null[0])
        all_losses.append(losses)
        ddim_errors.append(errors[0])
        null_errors.append(errors[1])
        if run.callback is not None:
            run.callback(InversionStep(
                "null-text", step, num_steps, timestep, target, latents,
                output.pred_original_sample, losses, (errors[0], errors[1]), run.decode,
            ))  # fmt: skip
        run.bar.update()
    return _Descent(torch.stack(nulls), latents, all_losses, ddim_errors, null_errors)


# --------------------------------------------------------------------------------------------
# invert()
# --------------------------------------------------------------------------------------------


def invert(
    pipe: Any,
    image: Any,
    caption: str,
    *,
    steps: int = DEFAULT_STEPS,
    inner_steps: int = DEFAULT_INNER_STEPS,
    guidance: float | None = None,
    learning_rate: float = DEFAULT_LEARNING_RATE,
    early_stop: float = DEFAULT_EARLY_STOP,
    progress: bool = True,
    callback: InversionCallback | None = None,
    verbose: bool = True,
) -> Inversion:
    """Invert a real image: DDIM inversion under ``caption``, then null-text inversion.

    Args:
        pipe: a diffusers ``StableDiffusionPipeline`` (SD v1.x), e.g. ``load_pipeline()``.
        image: a PIL image, an (H, W, 3) uint8 or float array, or a (3, H, W) tensor; resized
            (a non-square one centre-cropped first) to the model's size, with a printed line.
        caption: the text that describes the image; it is the edit's source prompt.
        steps: DDIM steps; the edit must run the same number.
        inner_steps: Adam steps per denoising step at most (0: plain DDIM inversion).
        guidance: the classifier-free guidance scale the edit will run at (it must match);
            None: the model's own (:func:`~p2p_teach.defaults.model_defaults`). At 1 or less
            the null embedding plays no part, and nothing is optimised.
        learning_rate, early_stop: Adam's rate at the first step (halved by the last), and the
            latent MSE under which a step's optimisation stops (rising 100-fold by the last).
        progress: show a tqdm progress bar.
        callback: called after every step of both phases with an :class:`InversionStep`.
        verbose: print a line when the image is resized.

    Returns:
        An :class:`Inversion`; ``edit(pipe, caption, target, inversion=inv)`` edits it.

    Raises:
        ValueError (``ScheduleError``, ``PromptTooLongError``), TypeError: bad input, with
        the fix, before the pipeline is touched.
    """
    from tqdm.auto import tqdm

    from .engine import make_preview_decoder

    _check_inputs(pipe, caption, inner_steps, learning_rate, early_stop)
    steps = check_num_steps(steps)
    guidance = _check_guidance(pipe, guidance)
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable, not {type(callback).__name__}")
    original = as_pil(image)
    picture = fit_to_side(original, model_side(pipe), verbose)
    scheduler = ddim_scheduler(pipe, steps)
    guided = guidance > 1.0 and pipe.unet.config.time_cond_proj_dim is None
    device = pipe._execution_device
    bar = tqdm(total=2 * steps, desc="inversion", disable=not progress, leave=False)
    with bar, _eval_mode(pipe):
        with torch.no_grad():
            cond, empty = pipe.encode_prompt(caption, device, 1, True, "")  # (1, 77, d) each
            clean = encode_image(pipe, picture)  # (1, C, h, w)
        decode = make_preview_decoder(pipe, "auto") if callback is not None else None
        run = _Run(pipe.unet, scheduler, cond.float(), empty.float(), guidance, guided,
                   int(inner_steps), float(learning_rate), float(early_stop), callback,
                   decode, bar)  # fmt: skip
        trajectory = ddim_inversion(run, clean)  # (steps + 1, C, h, w)
        descent = null_text_inversion(run, trajectory)
        with torch.no_grad():
            ddim_image, null_image = decode_latents(pipe, descent.latents)
    settings = {
        "caption": caption,
        "steps": steps,
        "guidance": guidance,
        "guided": guided,
        "inner_steps": int(inner_steps),
        "learning_rate": float(learning_rate),
        "early_stop": float(early_stop),
        "height": picture.size[1],
        "width": picture.size[0],
        "original_size": list(original.size),
        **_run_settings(pipe, scheduler),
    }
    return Inversion(
        caption=caption,
        image=picture,
        z_T=trajectory[-1:].cpu().clone(),
        null_embeddings=descent.null_embeddings.cpu(),
        trajectory=trajectory.cpu(),
        timesteps=[int(t) for t in scheduler.timesteps],
        inner_losses=descent.inner_losses,
        null_text_errors=descent.null_text_errors,
        ddim_errors=descent.ddim_errors,
        reconstruction=null_image,
        ddim_reconstruction=ddim_image,
        settings=settings,
    )


def _run_settings(pipe: Any, scheduler: Any) -> dict:
    """The scheduler, model, device and dtype of a run, JSON-ready."""
    return {
        "scheduler": type(scheduler).__name__,
        "scheduler_config": json.loads(json.dumps(dict(scheduler.config), default=str)),
        "model": str(getattr(pipe, "name_or_path", "") or "a pipeline built in memory"),
        "device": str(pipe._execution_device),
        "dtype": str(pipe.unet.dtype).removeprefix("torch."),
        "p2p_teach_version": __version__,
    }


@contextmanager
def _eval_mode(pipe: Any) -> Iterator[None]:
    """The UNet, VAE and text encoder in eval mode inside the block, as they were after it;
    models under CPU offload go back to the CPU, as after ``pipe(...)``."""
    modules = [pipe.unet, pipe.vae, pipe.text_encoder]
    training = [module.training for module in modules]
    try:
        for module in modules:
            module.eval()
        yield
    finally:
        for module, was_training in zip(modules, training):
            module.train(was_training)
        free_hooks = getattr(pipe, "maybe_free_model_hooks", None)
        if free_hooks is not None:
            free_hooks()


@torch.no_grad()
def encode_image(pipe: Any, image: Image.Image) -> torch.Tensor:
    """(1, C, h, w) float32: the VAE's posterior mean of ``image``, scaled as the UNet's
    latents are (× ``vae.config.scaling_factor``)."""
    vae = pipe.vae
    pixels = image_tensor(image).to(device=pipe._execution_device, dtype=vae.dtype)
    return vae.encode(pixels).latent_dist.mean.float() * vae.config.scaling_factor


@torch.no_grad()
def decode_latents(pipe: Any, latents: torch.Tensor) -> list:
    """PIL images of (B, C, h, w) scaled latents, decoded by the VAE."""
    vae = pipe.vae
    scaled = latents.to(device=pipe._execution_device, dtype=vae.dtype)
    pixels = vae.decode(scaled / vae.config.scaling_factor, return_dict=False)[0]
    return pipe.image_processor.postprocess(pixels, output_type="pil")


# --------------------------------------------------------------------------------------------
# Using an inversion
# --------------------------------------------------------------------------------------------


def check_inversion(
    pipe: Any, inversion: Any, steps: int | None = None, guidance: float | None = None
) -> None:
    """Raise a ValueError naming the fix when ``inversion`` cannot run on ``pipe`` with
    ``steps`` and ``guidance`` (None: not given, the inversion's own are used)."""
    if not isinstance(inversion, Inversion):
        raise TypeError(
            f"inversion must be an Inversion (from p2p_teach.invert or Inversion.load), not "
            f"{type(inversion).__name__}"
        )
    latent_shape = (
        1,
        pipe.unet.config.in_channels,
        *(model_side(pipe) // pipe.vae_scale_factor,) * 2,
    )
    embedding_size = pipe.text_encoder.config.hidden_size
    if tuple(inversion.z_T.shape) != latent_shape or (
        inversion.null_embeddings.shape[-1] != embedding_size
    ):
        raise ValueError(
            f"this inversion was made with another model ({inversion.settings.get('model')}: "
            f"z_T {tuple(inversion.z_T.shape)}, embeddings of size "
            f"{inversion.null_embeddings.shape[-1]}); this pipeline needs z_T {latent_shape} "
            f"and size {embedding_size}. Fix: invert the image with this pipeline."
        )
    if steps is not None and steps != inversion.steps:
        raise ValueError(
            f"steps={steps}, but the inversion has {inversion.steps} null embeddings, one per "
            f"step. Fix: steps={inversion.steps} (or leave steps out), or invert again with "
            f"steps={steps}."
        )
    if guidance is not None and not math.isclose(guidance, inversion.guidance):
        raise ValueError(
            f"guidance={guidance:g}, but the null embeddings were optimised for guidance "
            f"{inversion.guidance:g}: at another scale sampling leaves the trajectory. Fix: "
            f"guidance={inversion.guidance:g} (or leave it out), or invert again with "
            f"guidance={guidance:g}."
        )


def inversion_scheduler(inversion: Inversion) -> Any:
    """The DDIM scheduler the inversion ran, rebuilt from its saved config and step count."""
    from diffusers import DDIMScheduler

    config = {k: v for k, v in inversion.settings["scheduler_config"].items()
              if not k.startswith("_")}  # fmt: skip
    scheduler = DDIMScheduler.from_config(config)
    scheduler.set_timesteps(inversion.steps)
    return scheduler


def reconstruct(
    pipe: Any, inversion: Inversion, *, guidance: float | None = None, null_text: bool = True
) -> Image.Image:
    """The image guided DDIM sampling reaches from the inversion's z_T under its caption.

    ``null_text=True``: with the optimised null embeddings, at the inversion's guidance (the
    reconstruction an edit starts from). ``null_text=False``: with the empty prompt's
    embedding, plain DDIM inversion, at any ``guidance`` (1 retraces the trajectory closest).
    """
    guidance = inversion.guidance if guidance is None else _check_guidance(pipe, guidance)
    check_inversion(pipe, inversion, guidance=guidance if null_text else None)
    scheduler = inversion_scheduler(inversion)
    device = pipe._execution_device
    guided = guidance > 1.0 and pipe.unet.config.time_cond_proj_dim is None
    with torch.no_grad():
        cond, empty = pipe.encode_prompt(inversion.caption, device, 1, True, "")  # (1, 77, d)
        latent = inversion.z_T.to(device)  # (1, C, h, w)
        for step, timestep in enumerate(scheduler.timesteps):
            null = inversion.null_embeddings[step][None].to(device) if null_text else empty
            embeddings = torch.cat([null.to(cond.dtype), cond])  # (2, 77, d)
            batch = torch.cat([latent] * 2).to(pipe.unet.dtype)  # (2, C, h, w)
            noise = pipe.unet(batch, timestep, embeddings, return_dict=False)[0].float()
            uncond, text = noise.chunk(2)  # (1, C, h, w) each
            noise = uncond + guidance * (text - uncond) if guided else text
            latent = scheduler.step(noise, timestep, latent).prev_sample
        return decode_latents(pipe, latent)[0]


# --------------------------------------------------------------------------------------------
# Real images for the built-in model: drawings it never saw
# --------------------------------------------------------------------------------------------

HELD_OUT_SEED = 0
HELD_OUT_START = 50_000  # the shapes model trained on indices 0–29,999 of seed 0


def drawing(
    shape: str = "circle",
    colour: str = "red",
    *,
    size: str = "big",
    position: str = "center",
    background: str = "white",
    name_position: bool = False,
    seed: int = 0,
) -> tuple[Image.Image, str]:
    """(image, caption): a procedural drawing of one shape, made for the occasion (the
    built-in model never generated it), and its caption, e.g. ``'a big red circle'``.
    ``seed`` jitters the radius and the position a little."""
    from .shapes import data as shapes_data

    choices = {
        "shape": (shape, shapes_data.SHAPES),
        "colour": (colour, tuple(shapes_data.COLOURS)),
        "size": (size, tuple(shapes_data.SIZES)),
        "position": (position, tuple(shapes_data.POSITIONS)),
        "background": (background, tuple(shapes_data.BACKGROUNDS)),
    }
    for name, (value, known) in choices.items():
        if value not in known:
            raise ValueError(f"{name}={value!r}: the drawings know {', '.join(known)}")
    rng = np.random.default_rng([HELD_OUT_SEED, HELD_OUT_START, seed])
    made = shapes_data.make_object(rng, position, shape=shape, colour=colour, size=size)
    made = replace(made, size_in_caption=True, position_in_caption=name_position)
    item = shapes_data.build_sample([made], background)
    return Image.fromarray(item.image), item.caption


def held_out_drawing(index: int = 0) -> tuple[Image.Image, str]:
    """(image, caption) of the shapes data's sample ``50,000 + index`` of seed 0: past the
    built-in model's training samples (0–29,999), with one or two objects."""
    from .shapes import data as shapes_data

    item = shapes_data.sample(HELD_OUT_START + index, HELD_OUT_SEED)
    return Image.fromarray(item.image), item.caption
