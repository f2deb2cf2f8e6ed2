"""The edit runner: set up a Prompt-to-Prompt edit, run it, and watch every step as it happens.

A view over :func:`p2p_teach.engine.edit` and the figure functions; it holds no model logic.
While the edit runs, the engine's per-step callback updates the progress bar, the x0 previews
of source and target (what each would look like if denoising stopped now) and the current
step's cross-attention maps of the changed words. At the end the two images are shown side by
side and **Save** writes the result (images, settings, attention history) to a folder.

Pressing **Run** starts the edit in a background thread, so the notebook stays responsive and
the view updates live; a second press while an edit runs is refused politely (the status says
so and nothing else happens). :meth:`EditRunner.run` runs synchronously (for notebook cells
and tests) and refuses the same way.

Stable attributes (for tests and notebooks): controls ``source_text``, ``target_text``,
``edit_dropdown``, ``seed_input``, ``steps_slider``, ``guidance_slider``, ``cross_slider``,
``self_slider``; ``run_button``, ``progress``, ``status``, ``source_image``, ``target_image``,
``maps_image``, ``result_image``, ``save_folder``, ``save_button``; state ``running``,
``result`` (the last :class:`~p2p_teach.engine.EditResult`), ``steps_seen`` (step indices the
callback saw, in order), ``last_step`` (the last :class:`~p2p_teach.engine.StepInfo`),
``maps_picture`` (this step's maps, PIL), ``result_figure``, ``error``, ``refusals`` (how
many runs were refused).

CSS classes (for browser tests): ``p2p-edit-runner`` (the whole widget), ``p2p-source-prompt``,
``p2p-target-prompt``, ``p2p-run-button``, ``p2p-progress``, ``p2p-status``,
``p2p-source-image``, ``p2p-target-image``, ``p2p-maps-image``, ``p2p-result-image``,
``p2p-save-button``, ``p2p-save-folder``. While an edit runs the widget also has the class
``p2p-running``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ipywidgets as widgets
from matplotlib.figure import Figure
from PIL import Image

from ..defaults import model_defaults
from ..engine import EditResult, StepInfo, edit
from ..figures.images import figure_png, image_png, result_figure
from ..figures.timeline import maps_mosaic
from ..guards import check_pipeline
from ..timeline import layer_choices, step_word_maps
from .common import (
    check_choice,
    check_range,
    check_text,
    png_image,
    seed_box,
    set_png,
    steps_slider,
)
from .run_guard import GuardedEditWidget, RunGuard

PREVIEW_MIN_SIZE = 192  # pixels: small model images are upscaled (nearest) to be visible
EDIT_KINDS = (
    ("replace (word swap)", "replace"),
    ("refine (added words)", "refine"),
    ("none (same noise, no injection)", "none"),
)


def _styled(widget: widgets.Widget, css_class: str) -> widgets.Widget:
    widget.add_class(css_class)
    return widget


LIVE_CAPTIONS = (  # the image captions while a run shows its x0 previews
    "<b>source</b><br><small>x0 preview, live</small>",
    "<b>target</b><br><small>x0 preview, live</small>",
)

class EditRunner(GuardedEditWidget, widgets.VBox):
    """Controls, Run with a progress bar, live x0 previews and maps, the result, and Save."""

    def __init__(
        self,
        pipe: Any,
        source: str = "photo of a cat riding on a bicycle",
        target: str = "photo of a cat riding on a motorcycle",
        *,
        seed: int = 1,
        steps: int = 10,
        guidance: float | None = None,
        cross: float = 0.8,
        self_steps: float | None = None,
        edit_kind: str = "replace",
        save_folder: str = "p2p_edit_result",
        live_maps: bool = True,
        threaded: bool = True,
    ) -> None:
        check_pipeline(pipe, f"{type(self).__name__} (p2p_teach.edit_view)")
        check_text("source", source)
        check_text("target", target)
        check_text("save_folder", save_folder)
        check_choice("edit_kind", edit_kind, [kind for _label, kind in EDIT_KINDS])
        self.pipe = pipe
        self.live_maps = live_maps
        self.threaded = threaded
        self.result: EditResult | None = None
        self.steps_seen: list[int] = []
        self.last_step: StepInfo | None = None
        self.maps_picture: Image.Image | None = None
        self.result_figure: Figure | None = None
        self.error: str | None = None
        self._make_controls(source, target, seed, steps, guidance, cross, self_steps, edit_kind)
        self._make_outputs(save_folder)
        self.run_button.on_click(lambda _button: self.request_run())
        self.save_button.on_click(lambda _button: self.save())
        super().__init__(self._layout())
        self.add_class("p2p-edit-runner")
        self.guard = RunGuard(
            self.status, self._busy_message, disable=[self.run_button], owner=self
        )

    def _make_controls(
        self,
        source: str,
        target: str,
        seed: int,
        steps: int,
        guidance: float | None,
        cross: float,
        self_steps: float | None,
        edit_kind: str,
    ) -> None:
        """The prompts, the settings' controls, Run, the progress bar and the status line."""
        pipe = self.pipe
        wide = widgets.Layout(width="95%")
        self.source_text = _styled(
            widgets.Text(value=source, description="source", layout=wide), "p2p-source-prompt"
        )
        self.target_text = _styled(
            widgets.Text(value=target, description="target", layout=wide), "p2p-target-prompt"
        )
        self.edit_dropdown = widgets.Dropdown(
            options=EDIT_KINDS, value=edit_kind, description="edit"
        )
        self.seed_input = seed_box(seed)
        self.steps_slider = steps_slider(steps)
        self.guidance_slider = widgets.FloatSlider(
            value=model_defaults(pipe).guidance if guidance is None
            else check_range("guidance", guidance, 0.0, 15.0),
            min=0.0, max=15.0, step=0.5, description="guidance",
        )
        self.cross_slider = widgets.FloatSlider(
            value=check_range("cross", cross, 0.0, 1.0), min=0.0, max=1.0, step=0.05,
            description="cross inj.",
        )
        self.self_slider = widgets.FloatSlider(
            value=model_defaults(pipe).self_steps if self_steps is None
            else check_range("self_steps", self_steps, 0.0, 1.0),
            min=0.0, max=1.0, step=0.05, description="self inj.",
        )
        self.run_button = _styled(
            widgets.Button(description="Run", button_style="primary", icon="play"),
            "p2p-run-button",
        )
        self.progress = _styled(
            widgets.IntProgress(value=0, min=0, max=steps, description="step 0/" + str(steps)),
            "p2p-progress",
        )
        self.status = _styled(widgets.Label(value="Ready: press Run."), "p2p-status")

    def _make_outputs(self, save_folder: str) -> None:
        """The live images and maps, the result, and Save."""
        self.source_image = png_image("p2p-source-image")
        self.target_image = png_image("p2p-target-image")
        self.source_caption = widgets.HTML(LIVE_CAPTIONS[0])
        self.target_caption = widgets.HTML(LIVE_CAPTIONS[1])
        self.maps_image = png_image("p2p-maps-image")
        self.result_image = png_image("p2p-result-image")
        self.save_folder = _styled(
            widgets.Text(value=save_folder, description="folder"), "p2p-save-folder"
        )
        self.save_button = _styled(
            widgets.Button(description="Save", icon="save", disabled=True), "p2p-save-button"
        )

    def _layout(self) -> list[widgets.Widget]:
        controls = widgets.VBox(
            [
                self.source_text,
                self.target_text,
                widgets.HBox([self.edit_dropdown, self.seed_input]),
                widgets.HBox([self.steps_slider, self.guidance_slider]),
                widgets.HBox([self.cross_slider, self.self_slider]),
                widgets.HBox([self.run_button, self.progress]),
                self.status,
            ]
        )
        live = widgets.HBox(
            [
                widgets.VBox([self.source_caption, self.source_image]),
                widgets.VBox([self.target_caption, self.target_image]),
                widgets.VBox(
                    [widgets.HTML("<b>cross-attention</b><br><small>this step</small>"),
                     self.maps_image]
                ),  # fmt: skip
            ]
        )
        return [
            controls,
            live,
            self.result_image,
            widgets.HBox([self.save_folder, self.save_button]),
        ]

    # ------------------------------------------------------------------ settings and runs

    def edit_arguments(self) -> dict[str, Any]:
        """The keyword arguments of :func:`~p2p_teach.engine.edit` the controls describe."""
        return {
            "source_prompt": self.source_text.value,
            "target_prompt": self.target_text.value,
            "edit": self.edit_dropdown.value,
            "seed": int(self.seed_input.value),
            "steps": int(self.steps_slider.value),
            "guidance": float(self.guidance_slider.value),
            "cross_steps": round(float(self.cross_slider.value), 4),
            "self_steps": round(float(self.self_slider.value), 4),
        }

    def _busy_message(self) -> str:
        return (
            f"An edit is already running (step {self.progress.value} of {self.progress.max}); "
            "this press was ignored. Wait for it to finish, then press Run again."
        )

    def _run_claimed(self) -> None:
        """The run itself (the guard holds the claim): settings → edit → views."""
        kwargs = self.edit_arguments()
        self.error = None
        self.steps_seen = []
        self.last_step = None
        self.save_button.disabled = True
        self.progress.max = kwargs["steps"]
        self.progress.value = 0
        self.progress.bar_style = "info"
        self.progress.description = f"step 0/{kwargs['steps']}"
        self.source_caption.value, self.target_caption.value = LIVE_CAPTIONS  # a new run
        self.status.value = (
            f"Running {kwargs['edit']}: {kwargs['source_prompt']!r} → "
            f"{kwargs['target_prompt']!r}, {kwargs['steps']} steps, seed {kwargs['seed']}…"
        )
        try:
            result = edit(self.pipe, **kwargs, callback=self._on_step, progress=False)
        except Exception as error:  # show bad input in the widget, not as a traceback
            self._show_failure(error, "run the edit")
            self.save_button.disabled = self.result is None
            return
        self.result = result
        self._show_result(result)
        self.progress.bar_style = "success"
        self.save_button.disabled = False
        self.status.value = (
            f"Done: {len(self.steps_seen)} steps. Source and edited image side by side "
            "below; Save writes them with the settings and the attention history."
        )

    # ------------------------------------------------------------------ per-step view

    def _on_step(self, info: StepInfo) -> None:
        """The engine's per-step callback: progress, x0 previews, this step's maps."""
        self.steps_seen.append(info.step)
        preview = info.preview()
        if preview is not None:
            set_png(self.source_image, image_png(preview[0], min_size=PREVIEW_MIN_SIZE))
            set_png(self.target_image, image_png(preview[1], min_size=PREVIEW_MIN_SIZE))
        if self.live_maps and info.history is not None:
            layers = layer_choices(info.history)[0]  # the finest kept resolution
            self.maps_picture = maps_mosaic(
                step_word_maps(info.history, info.step, layers=layers),
                title=f"step {info.step + 1}/{info.num_steps}, t = {info.timestep:g}, "
                f"{layers.label}",
            )
            set_png(self.maps_image, image_png(self.maps_picture))
        # the bar moves last, so that it never shows a step whose pictures are not up yet
        self._show_step(info)

    def _show_result(self, result: EditResult) -> None:
        set_png(self.source_image, image_png(result.source_image, min_size=PREVIEW_MIN_SIZE))
        set_png(self.target_image, image_png(result.edited_image, min_size=PREVIEW_MIN_SIZE))
        self.source_caption.value = "<b>source</b><br><small>final</small>"
        self.target_caption.value = "<b>target</b><br><small>edited, final</small>"
        self.result_figure = result_figure(result)
        set_png(self.result_image, figure_png(self.result_figure, tight=False))

    # ------------------------------------------------------------------ saving

    def save(self, folder: str | Path | None = None) -> Path | None:
        """Write the last result to ``folder`` (default: the folder box); None if not saved."""
        if self.result is None:
            self.status.value = "Nothing to save yet: run an edit first."
            return None
        if self.running:
            self.status.value = "An edit is running; save when it has finished."
            return None
        target = Path(folder if folder is not None else self.save_folder.value).expanduser()
        try:
            written = self.result.save(target)
        except OSError as error:
            self.status.value = f"Could not save to {str(target)!r}: {error}"
            return None
        files = ", ".join(sorted(path.name for path in written.iterdir()))
        self.status.value = f"Saved to {written}: {files}"
        return written
