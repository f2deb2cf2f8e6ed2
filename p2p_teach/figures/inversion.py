"""Figures of an inversion: the trajectory, both reconstructions, the inner losses, the errors.

Pure functions: data (PIL images, lists of numbers) in, a matplotlib Figure out.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from .images import to_pil


def _show(axis, image: Image.Image | None, title: str) -> None:
    axis.set_xticks([])
    axis.set_yticks([])
    axis.set_title(title, fontsize=9)
    if image is None:
        axis.text(0.5, 0.5, "next phase", ha="center", va="center", color="0.5",
                  transform=axis.transAxes)  # fmt: skip
        return
    axis.imshow(to_pil(image), interpolation="nearest")


def losses_axis(axis, inner_losses: Sequence[Sequence[float]]) -> None:
    """Every step's inner losses one after another on a log scale, one colour band per step."""
    position = 0
    for step, losses in enumerate(inner_losses):
        if losses:
            xs = np.arange(position, position + len(losses))
            axis.plot(xs, losses, ".-", color="C0" if step % 2 == 0 else "C1", lw=1, ms=3)
        position += max(len(losses), 1)
    axis.set_yscale("log")
    axis.set_ylabel("squared latent distance", fontsize=8)
    axis.set_xlabel("Adam steps (colours alternate per denoising step)", fontsize=8)
    axis.set_title("inner loss ‖z̄_{t−1} − z_{t−1}‖²", fontsize=9)
    axis.tick_params(labelsize=7)


def errors_axis(
    axis, ddim_errors: Sequence[float], null_text_errors: Sequence[float], num_steps: int
) -> None:
    """Latent MSE to the trajectory after each denoising step: plain DDIM against null-text."""
    steps = np.arange(1, len(ddim_errors) + 1)
    axis.plot(steps, ddim_errors, "o-", color="C3", ms=3, lw=1, label="plain DDIM inversion")
    axis.plot(steps, null_text_errors, "o-", color="C2", ms=3, lw=1, label="null-text")
    axis.set_yscale("log")
    axis.set_xlim(0.5, num_steps + 0.5)
    axis.set_ylabel("latent MSE", fontsize=8)
    axis.set_xlabel("denoising step", fontsize=8)
    axis.set_title("distance to the trajectory", fontsize=9)
    axis.legend(fontsize=7, loc="upper left")
    axis.tick_params(labelsize=7)


def inversion_step_figure(
    trajectory_image: Image.Image | None,
    ddim_image: Image.Image | None,
    null_text_image: Image.Image | None,
    inner_losses: Sequence[Sequence[float]],
    ddim_errors: Sequence[float],
    null_text_errors: Sequence[float],
    *,
    phase: str,
    step: int,
    num_steps: int,
    guidance: float,
) -> Figure:
    """One step of an inversion: the DDIM-inversion latent (decoded), the predicted x̂_0 of
    plain DDIM inversion and of null-text inversion, the inner losses and the errors so far.

    During the ``"ddim"`` phase only the trajectory exists; the other panels wait.
    """
    figure = Figure(figsize=(13.0, 2.9), layout="constrained")
    grid = figure.add_gridspec(1, 5, width_ratios=[1, 1, 1, 1.6, 1.6])
    where = "z_T" if phase == "null-text" else "z_t"
    titles = (
        f"DDIM inversion: {where}" if phase == "ddim" else "aim: the trajectory's z_{t−1}",
        f"plain DDIM, guidance {guidance:g}: x̂_0",
        f"null-text, guidance {guidance:g}: x̂_0",
    )
    for column, (image, title) in enumerate(
        zip((trajectory_image, ddim_image, null_text_image), titles)
    ):
        _show(figure.add_subplot(grid[0, column]), image, title)
    losses_axis(figure.add_subplot(grid[0, 3]), inner_losses)
    errors_axis(figure.add_subplot(grid[0, 4]), ddim_errors, null_text_errors, num_steps)
    label = "DDIM inversion (up, guidance 1)" if phase == "ddim" else "null-text inversion (down)"
    figure.suptitle(f"{label}: step {step + 1}/{num_steps}", fontsize=11)
    return figure


def reconstructions_figure(
    image: Image.Image,
    reconstructions: dict[str, Image.Image],
    psnrs: dict[str, float],
    suptitle: str | None = None,
) -> Figure:
    """The input image beside each reconstruction, titled with its PSNR (dB)."""
    count = 1 + len(reconstructions)
    figure = Figure(figsize=(2.4 * count, 2.9), layout="constrained")
    axes = figure.subplots(1, count, squeeze=False)[0]
    _show(axes[0], image, "the image")
    for axis, (label, picture) in zip(axes[1:], reconstructions.items()):
        _show(axis, picture, f"{label}\n{psnrs[label]:.1f} dB")
    if suptitle:
        figure.suptitle(suptitle, fontsize=11)
    return figure


def trajectory_figure(images: Sequence[Image.Image], timesteps: Sequence[int]) -> Figure:
    """Decoded latents of the DDIM-inversion trajectory, z_0 … z_T, left to right."""
    figure = Figure(figsize=(1.6 * len(images), 2.0), layout="constrained")
    axes = figure.subplots(1, len(images), squeeze=False)[0]
    for axis, image, timestep in zip(axes, images, timesteps):
        _show(axis, image, f"t = {timestep}")
    figure.suptitle("DDIM inversion: the image's trajectory up to z_T (decoded)", fontsize=10)
    return figure
