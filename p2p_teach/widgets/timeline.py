"""The attention timeline: step through an edit's cross-attention maps, source beside target.

A view over an :class:`~p2p_teach.engine.EditResult`'s attention history (data from
:mod:`p2p_teach.timeline`, pictures from :func:`p2p_teach.figures.timeline.timeline_figure`);
it holds no model logic and never reruns the edit.

* a step slider, with a Play control linked to it that animates through the steps;
* a word/slot selector: word pairs (``bicycle → motorcycle``), BOS, EOS and padding;
* a resolution/place selector (``16×16 (down + up)``, ``8×8 up``, …, or all kept layers);
* source and target maps side by side, drawn over the final images, with ONE colour scale for
  both prompts and all steps of the current selection, so steps compare honestly.

Rendered pictures are cached by (selection, step): playing the animation a second time draws
nothing new.

Stable attributes (for tests and notebooks): ``step_slider``, ``play``, ``slot_dropdown``,
``layer_dropdown``, ``timeline_image``, ``step_label``, ``status``; state ``result``,
``history``, ``choices`` (the :class:`~p2p_teach.timeline.SlotChoice` list), ``layer_options``,
``figure`` (the last Figure drawn), ``vmax`` (the current shared colour-scale top),
``current_maps`` (source and target (steps, H, W) maps of the selection), ``renders`` (how
many pictures were drawn).

CSS classes (for browser tests): ``p2p-timeline`` (the whole widget), ``p2p-timeline-slider``,
``p2p-timeline-play``, ``p2p-timeline-slot``, ``p2p-timeline-layers``, ``p2p-timeline-image``,
``p2p-timeline-step``, ``p2p-status``.
"""

from __future__ import annotations

import ipywidgets as widgets
import torch
from matplotlib.figure import Figure

from ..engine import EditResult
from ..figures.images import figure_png
from ..figures.timeline import shared_vmax, timeline_figure
from ..timeline import LayerChoice, SlotChoice, choice_maps, layer_choices, slot_choices
from .common import check_range, png_image, set_png


def _check_result(result: object) -> None:
    """An edit's result with a recorded history, or an error saying what to pass."""
    if not isinstance(result, EditResult):
        raise TypeError(
            f"AttentionTimeline needs an EditResult (what edit() returns), not "
            f"{type(result).__name__}. Fix: result = edit(pipe, source, target); "
            "AttentionTimeline(result)."
        )
    if result.history is None or result.history.steps_recorded == 0:
        raise ValueError(
            "this result has no attention history. Fix: run the edit with record='auto' "
            "(the default) or record='all'."
        )


class AttentionTimeline(widgets.VBox):
    """Step slider + Play, word/slot and resolution selectors, source and target maps."""

    def __init__(
        self,
        result: EditResult,
        *,
        step: int = 0,
        slot: str | None = None,
        layers: str | None = None,
        play_interval_ms: int = 700,
        show_maps_alone: bool = True,
    ) -> None:
        _check_result(result)
        self.result = result
        self.history = result.history
        self.show_maps_alone = show_maps_alone
        self.choices: list[SlotChoice] = slot_choices(self.history.source, self.history.target)
        self.layer_options: list[LayerChoice] = layer_choices(self.history)
        self.figure: Figure | None = None
        self.vmax = 1.0
        self.current_maps: tuple[torch.Tensor | None, torch.Tensor | None] = (None, None)
        self.renders = 0
        self._png_cache: dict[tuple[str, str, int], bytes] = {}

        n_steps = self.history.steps_recorded
        self.step_slider = widgets.IntSlider(
            value=check_range("step", step, 0, n_steps - 1),
            min=0,
            max=n_steps - 1,
            description="step",
            continuous_update=True,
        )
        self.step_slider.add_class("p2p-timeline-slider")
        self.play = widgets.Play(
            value=self.step_slider.value,
            min=0,
            max=n_steps - 1,
            interval=play_interval_ms,
            description="play",
        )
        self.play.add_class("p2p-timeline-play")
        # linked in the kernel (not only in the browser), so tests and notebooks see it too
        self._play_link = widgets.link((self.play, "value"), (self.step_slider, "value"))

        default = self._default_choice(slot)
        self.slot_dropdown = widgets.Dropdown(
            options=[(choice.label, index) for index, choice in enumerate(self.choices)],
            value=default,
            description="word/slot",
        )
        self.slot_dropdown.add_class("p2p-timeline-slot")
        self.layer_dropdown = self._layer_dropdown(layers)
        self.layer_dropdown.add_class("p2p-timeline-layers")
        self.step_label = widgets.HTML()
        self.step_label.add_class("p2p-timeline-step")
        self.timeline_image = png_image("p2p-timeline-image")
        self.status = widgets.Label()
        self.status.add_class("p2p-status")

        self.step_slider.observe(lambda _change: self.draw(), names="value")
        self.slot_dropdown.observe(lambda _change: self._selection_changed(), names="value")
        self.layer_dropdown.observe(lambda _change: self._selection_changed(), names="value")

        super().__init__(
            [
                widgets.HBox([self.play, self.step_slider, self.step_label]),
                widgets.HBox([self.slot_dropdown, self.layer_dropdown]),
                self.timeline_image,
                self.status,
            ]
        )
        self.add_class("p2p-timeline")
        self._selection_changed()

    def _layer_dropdown(self, layers: str | None) -> widgets.Dropdown:
        """The resolution/place selector, on ``layers`` (a label) or the first (the finest)."""
        layer_labels = [option.label for option in self.layer_options]
        if layers is not None and layers not in layer_labels:
            raise ValueError(f"layers={layers!r} is not one of the selector's {layer_labels}")
        return widgets.Dropdown(
            options=[(label, index) for index, label in enumerate(layer_labels)],
            value=0 if layers is None else layer_labels.index(layers),
            description="layers",
        )

    def _default_choice(self, slot: str | None) -> int:
        """The entry named ``slot``, else the first changed word, else the first entry."""
        for index, choice in enumerate(self.choices):
            if slot is not None and choice.label == slot:
                return index
        if slot is not None:
            labels = [choice.label for choice in self.choices]
            raise ValueError(f"slot={slot!r} is not one of the selector's entries {labels}")
        for index, choice in enumerate(self.choices):
            if choice.changed:
                return index
        return 0

    @property
    def choice(self) -> SlotChoice:
        return self.choices[self.slot_dropdown.value]

    @property
    def layers(self) -> LayerChoice:
        return self.layer_options[self.layer_dropdown.value]

    def _selection_changed(self) -> None:
        """New word/slot or layers: fetch their maps over all steps and the shared scale."""
        self.current_maps = choice_maps(self.history, self.choice, self.layers)
        present = [maps for maps in self.current_maps if maps is not None]
        self.vmax = shared_vmax(*present)
        self.draw()

    def _injected_steps(self) -> range:
        """The steps whose target maps of the selected word are the source's (empty when the
        word has a window of its own that is empty, or the edit injects nothing)."""
        from ..timeline import injected_steps

        settings = self.result.settings
        ranges = settings["cross_step_ranges"]
        if settings["edit"].get("kind") == "none" or self.choice.source is None:
            return range(0)  # nothing injected, or a word the source lacks (refine's new ones)
        label = self.choice.label.split(" → ")[-1]
        word = label if label in ranges else "default"
        return injected_steps(self.result.settings, "cross", word)

    def draw(self) -> bytes:
        """Show the current step of the current selection (drawn once, then cached)."""
        step = self.step_slider.value
        timestep = self.history.timesteps[step]
        injected = step in self._injected_steps()
        note = " · injected: the target's map here IS the source's" if injected else ""
        self.step_label.value = (
            f"step <b>{step + 1}</b> of {self.history.steps_recorded} (t = {timestep:g}){note}"
        )
        # by position in the selectors: labels repeat ("a" is slot 0 and 3 of "a cat and a cat")
        key = (self.slot_dropdown.value, self.layer_dropdown.value, step)
        if key not in self._png_cache:
            source_maps, target_maps = self.current_maps
            reference = source_maps if source_maps is not None else target_maps
            blank = torch.zeros_like(reference[step])  # (H, W): the word is not in this prompt
            self.figure = timeline_figure(
                self.result.source_image,
                self.result.edited_image,
                blank if source_maps is None else source_maps[step],
                blank if target_maps is None else target_maps[step],
                vmax=self.vmax,
                label=f"{self.choice.label} · {self.layers.label}",
                step_text=f"step {step + 1}/{self.history.steps_recorded}, t = {timestep:g}"
                + ("\ninjected: the target copies the source's map" if injected else ""),
                show_maps_alone=self.show_maps_alone,
            )
            self._png_cache[key] = figure_png(self.figure, dpi=100, tight=False)
            self.renders += 1
        set_png(self.timeline_image, self._png_cache[key])
        missing = [
            name
            for name, key_ in (("source", self.choice.source), ("target", self.choice.target))
            if key_ is None
        ]
        self.status.value = (
            f"colour scale shared by source, target and all steps: 0 … {self.vmax:.3g}"
            + (f"; not in the {missing[0]} prompt (shown empty)" if missing else "")
        )
        return self._png_cache[key]
