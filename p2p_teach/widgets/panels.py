"""Beyond word swaps: small panels for reweighting, refinement and local blending.

Each panel is a view over :func:`p2p_teach.engine.edit` with one of the other edits of
Prompt-to-Prompt; none holds model logic.

* :class:`ReweightPanel` — one prompt, one word, one scale: the word's attention is multiplied
  during the injection steps (``Reweight``). Shows the plain image beside the reweighted one
  and the word's map in each (averaged over the steps, one colour scale).
* :class:`RefinePanel` — a target that adds or removes words ("a cat" → "a fluffy cat"): aligned
  tokens keep the source's attention, new tokens attend freely (``Refine``). Shows both images
  and the token alignment.
* :class:`LocalBlendPanel` — a word swap that may change only where the chosen words are: after
  each step the target's latents outside a mask built from the words' attention are replaced by
  the source's (``LocalBlend``). Shows both images and the final mask.

Every panel has ``run_button``, ``progress``, ``status``, ``result_image``, ``seed_input``,
``steps_slider``, state ``result``, ``result_figure``, ``error``, ``running``, ``refusals``,
:meth:`run` (synchronous) and :meth:`request_run` (what the button does; a background thread
when ``threaded``). A press while a run is going is refused politely.

CSS classes (for browser tests): ``p2p-panel`` on every panel, plus ``p2p-reweight-panel``,
``p2p-refine-panel`` or ``p2p-blend-panel``; ``p2p-panel-run``, ``p2p-panel-progress``,
``p2p-status``, ``p2p-panel-result``; ``p2p-reweight-word``, ``p2p-reweight-weight``,
``p2p-reweight-maps``, ``p2p-refine-alignment``, ``p2p-blend-threshold``.
"""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as widgets
import numpy as np
import torch
from matplotlib.figure import Figure

from ..alignment import format_alignment, refinement_alignment
from ..edits import LocalBlend, Reweight
from ..engine import EditResult, StepInfo, edit
from ..figures.images import figure_png, side_by_side
from ..figures.timeline import step_maps_figure
from ..guards import check_pipeline
from ..timeline import mean_word_map
from ..tokens import tokenize
from .common import check_range, check_text, png_image, seed_box, set_png, steps_slider
from .run_guard import GuardedEditWidget, RunGuard


class _EditPanel(GuardedEditWidget, widgets.VBox):
    """Shared parts: seed, steps, Run + progress + status, result picture, one run at a time."""

    css_class = "p2p-panel"

    def __init__(
        self,
        pipe: Any,
        controls: list[widgets.Widget],
        *,
        seed: int,
        steps: int,
        guidance: float | None,
        title: str,
        threaded: bool,
    ) -> None:
        self.pipe = pipe
        self.guidance = guidance
        self.threaded = threaded
        self.result: EditResult | None = None
        self.result_figure: Figure | None = None
        self.error: str | None = None
        self.last_step: StepInfo | None = None

        self.seed_input = seed_box(seed)
        self.steps_slider = steps_slider(steps)
        self.run_button = widgets.Button(description="Run", button_style="primary", icon="play")
        self.run_button.add_class("p2p-panel-run")
        self.progress = widgets.IntProgress(value=0, min=0, max=steps, description="step 0")
        self.progress.add_class("p2p-panel-progress")
        self.status = widgets.Label(value="Ready: press Run.")
        self.status.add_class("p2p-status")
        self.result_image = png_image("p2p-panel-result")
        self.run_button.on_click(lambda _button: self.request_run())

        super().__init__(
            [
                widgets.HTML(f"<h4 style='margin:2px 0'>{html.escape(title)}</h4>"),
                *controls,
                widgets.HBox([self.seed_input, self.steps_slider]),
                widgets.HBox([self.run_button, self.progress]),
                self.status,
                *self.views(),
            ]
        )
        self.add_class("p2p-panel")
        self.add_class(self.css_class)
        self.guard = RunGuard(
            self.status,
            lambda: "An edit is already running; this press was ignored. Wait for it to finish.",
            disable=[self.run_button],
            owner=self,
        )

    # subclasses: what to run and what else to show
    def views(self) -> list[widgets.Widget]:
        return [self.result_image]

    def edit_arguments(self) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def show(self, result: EditResult) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _on_step(self, info: StepInfo) -> None:
        self._show_step(info)

    def _run_claimed(self) -> None:
        self.error = None
        steps = int(self.steps_slider.value)
        self.progress.max, self.progress.value, self.progress.bar_style = steps, 0, "info"
        self.status.value = "Running…"
        try:
            arguments = self.edit_arguments()
            result = edit(
                self.pipe, **arguments, seed=int(self.seed_input.value), steps=steps,
                guidance=self.guidance, callback=self._on_step, progress=False,
            )  # fmt: skip
        except Exception as error:  # bad words or prompts: say so in the panel
            self._show_failure(error, "run the edit")
            return
        self.result = result
        self.show(result)
        set_png(self.result_image, figure_png(self.result_figure, tight=False))
        self.progress.bar_style = "success"
        if not self.status.value.startswith("Done"):
            self.status.value = "Done."


class _PromptPairPanel(_EditPanel):
    """Shared parts of the panels that edit a source prompt into a target: the two prompt
    boxes and the cross- and self-attention injection windows."""

    def __init__(
        self,
        pipe: Any,
        source: str,
        target: str,
        controls: list[widgets.Widget],
        *,
        cross: float,
        self_steps: float | None,
        seed: int,
        steps: int,
        guidance: float | None,
        title: str,
        threaded: bool,
    ) -> None:
        check_pipeline(pipe, type(self).__name__)
        check_text("source", source)
        check_text("target", target)
        self.cross, self.self_steps = cross, self_steps
        wide = widgets.Layout(width="90%")
        self.source_text = widgets.Text(value=source, description="source", layout=wide)
        self.target_text = widgets.Text(value=target, description="target", layout=wide)
        super().__init__(
            pipe, [self.source_text, self.target_text, *controls],
            seed=seed, steps=steps, guidance=guidance, title=title, threaded=threaded,
        )  # fmt: skip

    def prompt_arguments(self, kind: str, **more: Any) -> dict[str, Any]:
        """The edit's arguments: the prompt boxes, the edit ``kind``, the injection windows and
        ``more``."""
        return {
            "source_prompt": self.source_text.value,
            "target_prompt": self.target_text.value,
            "edit": kind,
            **more,
            "cross_steps": self.cross,
            "self_steps": self.self_steps,
        }


def _word_options(prompt: str) -> list[str]:
    try:
        return [word.text for word in tokenize(prompt).words]
    except ValueError:
        return []


class ReweightPanel(_EditPanel):
    """Scale one word's attention in a prompt and compare with the plain image."""

    css_class = "p2p-reweight-panel"

    def __init__(
        self,
        pipe: Any,
        prompt: str = "photo of a cat riding on a bicycle",
        word: str = "bicycle",
        weight: float = 3.0,
        *,
        cross: float = 0.8,
        seed: int = 1,
        steps: int = 10,
        guidance: float | None = None,
        threaded: bool = True,
    ) -> None:
        check_pipeline(pipe, "ReweightPanel")
        check_text("prompt", prompt)
        check_text("word", word)
        self.cross = cross
        self.maps_figure: Figure | None = None
        self.prompt_text = widgets.Text(
            value=prompt, description="prompt", continuous_update=False,
            layout=widgets.Layout(width="90%"),
        )  # fmt: skip
        options = _word_options(prompt)
        self.word_dropdown = widgets.Dropdown(
            options=options, value=word if word in options else (options or [None])[0],
            description="word",
        )  # fmt: skip
        self.word_dropdown.add_class("p2p-reweight-word")
        self.weight_slider = widgets.FloatSlider(
            value=check_range("weight", weight, -2.0, 6.0), min=-2.0, max=6.0, step=0.25,
            description="weight",
        )
        self.weight_slider.add_class("p2p-reweight-weight")
        self.maps_image = png_image("p2p-reweight-maps")
        self.prompt_text.observe(lambda _change: self._prompt_changed(), names="value")
        super().__init__(
            pipe,
            [self.prompt_text, widgets.HBox([self.word_dropdown, self.weight_slider])],
            seed=seed, steps=steps, guidance=guidance, threaded=threaded,
            title="Reweight: turn one word's attention up or down",
        )  # fmt: skip

    def views(self) -> list[widgets.Widget]:
        return [widgets.HBox([self.result_image, self.maps_image])]

    def _prompt_changed(self) -> None:
        options = _word_options(self.prompt_text.value)
        current = self.word_dropdown.value
        self.word_dropdown.options = options
        self.word_dropdown.value = current if current in options else (options or [None])[0]

    def edit_arguments(self) -> dict[str, Any]:
        prompt, word = self.prompt_text.value, self.word_dropdown.value
        if word is None:
            raise ValueError("the prompt has no words to reweight")
        return {
            "source_prompt": prompt,
            "target_prompt": prompt,
            "edit": Reweight({word: float(self.weight_slider.value)}),
            "cross_steps": self.cross,
            "self_steps": 0.0,
        }

    def show(self, result: EditResult) -> None:
        # the word and weight the run used (the controls may have moved since it started)
        ((word, weight),) = result.settings.edit["weights"].items()
        self.result_figure = side_by_side(
            [result.source_image, result.edited_image],
            ["plain (weight 1)", f"{word!r} × {weight:g}"],
            size=2.8,
        )
        if result.history is not None:
            label = f"{word} (mean over steps)"
            pair = (
                mean_word_map(result.history, word, "source"),
                mean_word_map(result.history, word, "target"),
            )
            self.maps_figure = step_maps_figure({label: pair}, title="the word's attention")
            set_png(self.maps_image, figure_png(self.maps_figure, tight=False))
        self.status.value = (
            f"Done: {word!r} reweighted by {weight:g} during the first {self.cross:g} of the "
            "steps; its map on the right (one colour scale)."
        )


class RefinePanel(_PromptPairPanel):
    """Add or remove words: aligned tokens keep the source's attention, new ones attend freely."""

    css_class = "p2p-refine-panel"

    def __init__(
        self,
        pipe: Any,
        source: str = "photo of a cat riding on a bicycle",
        target: str = "photo of a fluffy cat riding on a red bicycle",
        *,
        cross: float = 0.8,
        self_steps: float | None = None,
        seed: int = 1,
        steps: int = 10,
        guidance: float | None = None,
        threaded: bool = True,
    ) -> None:
        self.alignment_view = widgets.HTML()
        self.alignment_view.add_class("p2p-refine-alignment")
        super().__init__(
            pipe, source, target, [],
            cross=cross, self_steps=self_steps, seed=seed, steps=steps, guidance=guidance,
            threaded=threaded, title="Refine: add words, keep the layout",
        )  # fmt: skip

    def views(self) -> list[widgets.Widget]:
        return [widgets.HBox([self.result_image, self.alignment_view])]

    def edit_arguments(self) -> dict[str, Any]:
        return self.prompt_arguments("refine")

    def show(self, result: EditResult) -> None:
        source, target = result.settings.source_prompt, result.settings.target_prompt
        self.result_figure = side_by_side(
            [result.source_image, result.edited_image], [source, target], size=2.8
        )
        alignment = refinement_alignment(tokenize(source), tokenize(target))
        self.alignment_view.value = f"<pre>{html.escape(format_alignment(alignment))}</pre>"
        new = len(alignment.new_target_slots)
        self.status.value = (
            f"Done: {new} new token(s) attend freely; every aligned token keeps the source's "
            "attention map (alignment on the right)."
        )


class LocalBlendPanel(_PromptPairPanel):
    """A word swap that changes only where the chosen words attend (LocalBlend)."""

    css_class = "p2p-blend-panel"

    def __init__(
        self,
        pipe: Any,
        source: str = "photo of a cat riding on a bicycle",
        target: str = "photo of a cat riding on a motorcycle",
        source_word: str = "bicycle",
        target_word: str = "motorcycle",
        *,
        threshold: float = 0.3,
        cross: float = 0.8,
        self_steps: float | None = None,
        seed: int = 1,
        steps: int = 10,
        guidance: float | None = None,
        threaded: bool = True,
    ) -> None:
        check_text("source_word", source_word)
        check_text("target_word", target_word)
        self.mask: torch.Tensor | None = None  # (h, w) the last step's mask, 1 = may change
        self.source_word_text = widgets.Text(value=source_word, description="source word")
        self.target_word_text = widgets.Text(value=target_word, description="target word")
        self.threshold_slider = widgets.FloatSlider(
            value=check_range("threshold", threshold, 0.0, 1.0), min=0.0, max=1.0, step=0.05,
            description="threshold",
        )
        self.threshold_slider.add_class("p2p-blend-threshold")
        super().__init__(
            pipe, source, target,
            [widgets.HBox([self.source_word_text, self.target_word_text]), self.threshold_slider],
            cross=cross, self_steps=self_steps, seed=seed, steps=steps, guidance=guidance,
            threaded=threaded, title="Local blend: change only where the words are",
        )  # fmt: skip

    def edit_arguments(self) -> dict[str, Any]:
        self.mask = None
        blend = LocalBlend(
            self.source_word_text.value.split(),
            self.target_word_text.value.split(),
            threshold=float(self.threshold_slider.value),
        )
        return self.prompt_arguments("replace", blend=blend)

    def _on_step(self, info: StepInfo) -> None:
        super()._on_step(info)
        if info.blend_mask is not None:
            self.mask = info.blend_mask[0, 0].float().cpu()  # (1, 1, h, w) -> (h, w)

    def show(self, result: EditResult) -> None:
        images = [result.source_image, result.edited_image]
        titles = ["source", "edited (blended)"]
        if self.mask is not None:
            mask = self.mask.numpy()
            images.append(np.stack([mask] * 3, axis=-1))  # (h, w) -> (h, w, 3) grey
            titles.append(f"mask: white may change ({mask.mean():.0%})")
        self.result_figure = side_by_side(images, titles, size=2.6)
        share = "no mask yet" if self.mask is None else f"{float(self.mask.mean()):.0%}"
        self.status.value = (
            f"Done: outside the mask the target keeps the source's latents (mask: {share} of "
            "the latent may change)."
        )
