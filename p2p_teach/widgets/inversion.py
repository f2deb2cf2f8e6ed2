"""The inversion widget: invert a real image step by step, then edit it with Prompt-to-Prompt.

A view over :func:`p2p_teach.inversion.invert` and :mod:`p2p_teach.figures.inversion`; it holds
no model logic. Pick a drawing (the built-in model never saw it) or upload an image (any size:
it is centre-cropped and resized to the model's), give its caption, press **Invert**. While it
runs, each step shows the DDIM-inversion latent (decoded), the predicted x̂_0 of plain DDIM
inversion and of null-text inversion at the chosen guidance, and (every few steps) the inner
losses and the distance of both to the trajectory. At the end: both reconstructions with their
PSNR. **Edit** then opens an :class:`~p2p_teach.widgets.EditRunner` on the inversion (source
prompt: the caption; steps and guidance: the inversion's).

Stable attributes (for tests and notebooks): controls ``image_source``, ``shape_dropdown``,
``colour_dropdown``, ``upload``, ``caption_text``, ``steps_slider``, ``inner_slider``,
``guidance_slider``, ``run_button``, ``progress``, ``status``, ``trajectory_image``,
``ddim_image``, ``null_text_image``, ``losses_image``, ``result_image``, ``target_text``,
``edit_button``; state ``inversion`` (the last :class:`~p2p_teach.inversion.Inversion`),
``steps_seen`` (``(phase, step)`` pairs), ``figure`` (the last step figure), ``result_figure``,
``edit_runner``, ``error``, ``refusals``.
"""

from __future__ import annotations

import io
from typing import Any

import ipywidgets as widgets
from matplotlib.figure import Figure
from PIL import Image

from ..defaults import model_defaults
from ..figures.images import figure_png, image_png
from ..figures.inversion import inversion_step_figure, reconstructions_figure
from ..guards import check_pipeline
from ..inversion import (
    DEFAULT_INNER_STEPS,
    Inversion,
    InversionStep,
    as_pil,
    drawing,
    invert,
    model_side,
)
from ..shapes import data as shapes_data
from .common import check_choice, check_range, png_image, set_png, steps_slider
from .edit_runner import EditRunner
from .run_guard import GuardedWidget, RunGuard

PREVIEW_MIN_SIZE = 128  # pixels: a 64×64 image is upscaled (nearest) to be visible
FIGURE_EVERY = 5  # the loss figure is redrawn every this many steps (and at each phase's end)
INNER_MAX = 30


def image_from_upload(value: Any) -> Image.Image | None:
    """The first image of a ``FileUpload`` value (ipywidgets 8: a tuple of dicts with
    ``content``; 7: a dict of name → dict), as RGB PIL; None when nothing is uploaded."""
    files = list(value.values()) if isinstance(value, dict) else list(value or ())
    if not files:
        return None
    content = bytes(files[0]["content"])
    try:
        with Image.open(io.BytesIO(content)) as image:
            return as_pil(image)
    except OSError as error:
        name = files[0].get("name", files[0].get("metadata", {}).get("name", "the file"))
        raise ValueError(f"{name} is not an image PIL can read ({error})") from error


class InversionWidget(GuardedWidget, widgets.VBox):
    """Image (drawing or upload) and caption, Invert with live steps, the result, and Edit."""

    def __init__(
        self,
        pipe: Any,
        *,
        shape: str = "circle",
        colour: str = "red",
        steps: int = 25,
        inner_steps: int = DEFAULT_INNER_STEPS,
        guidance: float | None = None,
        threaded: bool = True,
    ) -> None:
        check_pipeline(pipe, "InversionWidget")
        check_choice("shape", shape, shapes_data.SHAPES)
        check_choice("colour", colour, list(shapes_data.COLOURS))
        self.pipe = pipe
        self.threaded = threaded
        self.inversion: Inversion | None = None
        self.steps_seen: list[tuple[str, int]] = []
        self.figure: Figure | None = None
        self.result_figure: Figure | None = None
        self.edit_runner: Any = None
        self.error: str | None = None
        self._losses: list[list[float]] = []
        self._errors: tuple[list[float], list[float]] = ([], [])

        self.image_source = widgets.ToggleButtons(
            options=[("a drawing", "drawing"), ("my upload", "upload")], value="drawing"
        )
        self.shape_dropdown = widgets.Dropdown(
            options=shapes_data.SHAPES, value=shape, description="shape"
        )
        self.colour_dropdown = widgets.Dropdown(
            options=list(shapes_data.COLOURS), value=colour, description="colour"
        )
        self.upload = widgets.FileUpload(accept="image/*", multiple=False, description="Upload")
        self.caption_text = widgets.Text(
            value=drawing(shape, colour)[1], description="caption", layout={"width": "95%"}
        )
        self.steps_slider = steps_slider(steps)
        self.inner_slider = widgets.IntSlider(
            value=check_range("inner_steps", inner_steps, 0, INNER_MAX), min=0,
            max=INNER_MAX, description="inner steps",
        )  # fmt: skip
        self.guidance_slider = widgets.FloatSlider(
            value=model_defaults(pipe).guidance if guidance is None
            else check_range("guidance", guidance, 0.0, 15.0),
            min=0.0, max=15.0, step=0.5, description="guidance",
        )  # fmt: skip
        self.run_button = widgets.Button(description="Invert", button_style="primary")
        self.progress = widgets.IntProgress(value=0, min=0, max=2 * steps, description="step")
        self.status = widgets.Label(value="Ready: pick a drawing or upload an image, press Invert.")
        self.trajectory_image = png_image("p2p-inversion-trajectory")
        self.ddim_image = png_image("p2p-inversion-ddim")
        self.null_text_image = png_image("p2p-inversion-null-text")
        self.losses_image = png_image("p2p-inversion-losses")
        self.result_image = png_image("p2p-inversion-result")
        self.target_text = widgets.Text(description="target", layout={"width": "95%"})
        self.edit_button = widgets.Button(description="Edit", disabled=True)
        self.edit_box = widgets.VBox()

        for control in (self.shape_dropdown, self.colour_dropdown):
            control.observe(lambda _change: self._drawing_changed(), names="value")
        self.upload.observe(lambda _change: self._upload_changed(), names="value")
        self.run_button.on_click(lambda _button: self.request_run())
        self.edit_button.on_click(lambda _button: self.open_edit())
        super().__init__(self._layout())
        self.add_class("p2p-inversion")
        self.guard = RunGuard(self.status, self._busy_message, [self.run_button], owner=self)

    def _layout(self) -> list[widgets.Widget]:
        def captioned(text: str, image: widgets.Image) -> widgets.VBox:
            return widgets.VBox([widgets.HTML(f"<small>{text}</small>"), image])

        return [
            widgets.HBox([self.image_source, self.upload]),
            widgets.HBox([self.shape_dropdown, self.colour_dropdown]),
            self.caption_text,
            widgets.HBox([self.steps_slider, self.inner_slider, self.guidance_slider]),
            widgets.HBox([self.run_button, self.progress]),
            self.status,
            widgets.HBox(
                [
                    captioned("DDIM-inversion latent", self.trajectory_image),
                    captioned("plain DDIM inversion, x̂_0", self.ddim_image),
                    captioned("null-text inversion, x̂_0", self.null_text_image),
                ]
            ),  # fmt: skip
            self.losses_image,
            self.result_image,
            widgets.HBox([self.target_text, self.edit_button]),
            self.edit_box,
        ]

    # ------------------------------------------------------------------ the image

    def _drawing_changed(self) -> None:
        self.image_source.value = "drawing"
        self.caption_text.value = drawing(self.shape_dropdown.value, self.colour_dropdown.value)[1]

    def _upload_changed(self) -> None:
        if self.upload.value:
            self.image_source.value = "upload"
            self.status.value = "Uploaded: write its caption (what the image shows), then Invert."

    def chosen_image(self) -> Image.Image:
        """The image to invert: the drawing, or the upload (ValueError if none)."""
        if self.image_source.value == "upload":
            image = image_from_upload(self.upload.value)
            if image is None:
                raise ValueError("no image uploaded yet. Fix: press Upload, or pick 'a drawing'.")
            return image
        return drawing(self.shape_dropdown.value, self.colour_dropdown.value)[0]

    # ------------------------------------------------------------------ runs

    def request_run(self) -> bool:
        """What Invert does: start the inversion (in a thread if ``threaded``)."""
        return self._start(self._run_claimed, threaded=self.threaded)

    def run(self) -> Inversion | None:
        """Invert now, in this thread; None if refused or failed."""
        if not self._start(self._run_claimed, threaded=False):
            return None
        return self.inversion if self.error is None else None

    def _busy_message(self) -> str:
        return "An inversion is already running; this press was ignored. Wait for it to finish."

    def _run_claimed(self) -> None:
        steps = int(self.steps_slider.value)
        self.error, self.steps_seen, self._losses = None, [], []
        self._errors = ([], [])
        self.edit_button.disabled = True
        self.progress.max, self.progress.value, self.progress.bar_style = 2 * steps, 0, "info"
        try:
            image = self.chosen_image()
            side = model_side(self.pipe)
            resized = "" if image.size == (side, side) else (
                f" (the image, {image.width}×{image.height}, resized to {side}×{side})"
            )  # fmt: skip
            self.status.value = f"Inverting{resized}: DDIM inversion up to z_T…"
            inversion = invert(
                self.pipe, image, self.caption_text.value, steps=steps,
                inner_steps=int(self.inner_slider.value),
                guidance=float(self.guidance_slider.value), progress=False,
                callback=self._on_step, verbose=False,
            )  # fmt: skip
        except Exception as error:  # bad input shows in the widget, not as a traceback
            self._show_failure(error, "invert the image")
            return
        self.inversion = inversion
        self._show_result(inversion)
        self.progress.bar_style = "success"
        self.edit_button.disabled = False
        self.status.value = (
            f"Done{resized}. Null-text {inversion.psnr:.1f} dB against plain DDIM "
            f"{inversion.ddim_psnr:.1f} dB. Write a target prompt and press Edit."
        )

    # ------------------------------------------------------------------ per-step view

    def _on_step(self, info: InversionStep) -> None:
        self.steps_seen.append((info.phase, info.step))
        self.progress.value = len(self.steps_seen)
        self.progress.description = f"{info.phase} {info.step + 1}/{info.num_steps}"
        pictures: tuple[Any, Any, Any] = (info.trajectory_preview(), None, None)
        if info.phase == "null-text":
            self._losses.append(info.inner_losses)
            self._errors[0].append(info.errors[0])
            self._errors[1].append(info.errors[1])
            pictures = (pictures[0], *info.preview())
            self.status.value = f"Null-text inversion, step {info.step + 1}/{info.num_steps}…"
        for image_widget, picture in zip(
            (self.trajectory_image, self.ddim_image, self.null_text_image), pictures
        ):
            if picture is not None:
                set_png(image_widget, image_png(picture, min_size=PREVIEW_MIN_SIZE))
        last = info.step == info.num_steps - 1
        if info.phase == "null-text" and (last or info.step % FIGURE_EVERY == 0):
            self.figure = inversion_step_figure(
                *pictures, self._losses, *self._errors, phase=info.phase, step=info.step,
                num_steps=info.num_steps, guidance=float(self.guidance_slider.value),
            )  # fmt: skip
            set_png(self.losses_image, figure_png(self.figure, tight=False))

    def _show_result(self, inversion: Inversion) -> None:
        guidance = f"guidance {inversion.guidance:g}"
        labels = (f"plain DDIM, {guidance}", f"null-text, {guidance}")
        self.result_figure = reconstructions_figure(
            inversion.image,
            dict(zip(labels, (inversion.ddim_reconstruction, inversion.reconstruction))),
            dict(zip(labels, (inversion.ddim_psnr, inversion.psnr))),
            suptitle=f"{inversion.caption!r}: reconstructions (PSNR against the image)",
        )
        set_png(self.result_image, figure_png(self.result_figure, tight=False))
        if not self.target_text.value:
            self.target_text.value = inversion.caption

    # ------------------------------------------------------------------ hand-over

    def open_edit(self, target: str | None = None) -> InversionEditRunner | None:
        """An :class:`InversionEditRunner` on the inversion, shown below; None before one."""
        if self.inversion is None:
            self.status.value = "Nothing to edit yet: invert an image first."
            return None
        self.edit_runner = InversionEditRunner(
            self.pipe, self.inversion,
            target=target if target is not None else self.target_text.value,
            threaded=self.threaded,
        )  # fmt: skip
        self.edit_box.children = (self.edit_runner,)
        return self.edit_runner


class InversionEditRunner(EditRunner):
    """The edit runner on an inversion: the source prompt is its caption, and steps and
    guidance are its own (those controls are locked; the seed plays no part)."""

    def __init__(self, pipe: Any, inversion: Inversion, target: str, **kwargs: Any) -> None:
        self.inversion = inversion
        super().__init__(pipe, source=inversion.caption, target=target, steps=inversion.steps,
                         guidance=inversion.guidance, **kwargs)  # fmt: skip
        for control in (self.source_text, self.seed_input, self.steps_slider,
                        self.guidance_slider):  # fmt: skip
            control.disabled = True
        self.status.value = "Ready: the source is the inverted image. Press Run."

    def edit_arguments(self) -> dict[str, Any]:
        """The edit runner's arguments, started from the inversion (z_T, null embeddings); its
        steps and guidance are the inversion's (locked controls), the seed goes unused."""
        return {**super().edit_arguments(), "inversion": self.inversion}
