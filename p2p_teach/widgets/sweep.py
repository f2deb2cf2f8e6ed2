"""The injection sweep widget: one edit at many injection fractions, from none to full.

A view over :func:`p2p_teach.sweep.injection_sweep` (which runs and caches the edits) and
:mod:`p2p_teach.figures.sweep`; it holds no model logic. **Compute** runs the missing cells
of the current row (target prompt × varied injection); everything else reads the cache:

* the fraction slider picks one cell and shows it large beside the source: no edit runs;
* switching target or cross/self shows that row from the cache if it was computed;
* pressing Compute again for a computed row runs nothing.

Stable attributes (for tests and notebooks): ``target_dropdown``, ``vary_buttons``,
``fraction_slider``, ``compute_button``, ``progress``, ``status``, ``grid_image``,
``cell_image``, ``scores_image``; state ``cache`` (a :class:`~p2p_teach.sweep.SweepCache`),
``sweeps`` ((target, vary) → :class:`~p2p_teach.sweep.SweepResult`), ``grid_figure``,
``scores_figure``, ``scores`` ((target, vary) → :class:`~p2p_teach.claims.SweepScores`),
``running``, ``refusals``.

What the plot measures: on the built-in model, whose images have object masks, the object IoU
with the source and whether the swapped word is drawn; on other models, layout similarity,
labelled with what it cannot tell (:func:`p2p_teach.claims.sweep_scores`).

CSS classes (for browser tests): ``p2p-sweep`` (the whole widget), ``p2p-sweep-target``,
``p2p-sweep-vary``, ``p2p-sweep-slider``, ``p2p-sweep-run``, ``p2p-sweep-progress``,
``p2p-status``, ``p2p-sweep-grid``, ``p2p-sweep-cell``, ``p2p-sweep-scores``; the widget
has ``p2p-running`` while a sweep computes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from numbers import Real
from typing import Any

import ipywidgets as widgets
from matplotlib.figure import Figure

from ..claims import SweepScores, sweep_scores
from ..figures.images import figure_png, side_by_side
from ..figures.sweep import fraction_label, sweep_grid_figure, sweep_scores_figure
from ..guards import check_pipeline
from ..sweep import DEFAULT_FRACTIONS, SweepCache, SweepResult, Varied, injection_sweep
from .common import check_text, png_image, set_png
from .run_guard import GuardedWidget, RunGuard

ROW_LABELS: dict[str, str] = {"cross": "cross-attention", "self": "self-attention"}


def _check_targets(targets: str | Sequence[str]) -> list[str]:
    """One target prompt (a string) or several, as a list; never a string's characters."""
    if isinstance(targets, str):
        targets = [targets]
    if not isinstance(targets, Sequence) or not targets:
        raise ValueError(
            f"targets={targets!r}: InjectionSweep needs a target prompt or a list of them. "
            "Fix: e.g. targets='photo of a cat riding on a motorcycle'."
        )
    for target in targets:
        check_text("each target", target)
    return list(dict.fromkeys(targets))


def _iterable(value: object) -> Iterable:
    return value if isinstance(value, Iterable) else ()


def _check_fractions(fractions: Sequence[float]) -> list[float]:
    """The sweep's injection fractions, sorted and rounded; at least one, each in [0, 1]."""
    example = f"Fix: e.g. fractions={list(DEFAULT_FRACTIONS)}."
    given = fractions
    fractions = [] if isinstance(fractions, (str, bytes)) else list(_iterable(fractions))
    if not fractions:
        raise ValueError(f"fractions={given!r}: give at least one fraction in [0, 1]. {example}")
    for fraction in fractions:
        if isinstance(fraction, bool) or not isinstance(fraction, Real) or not (
            0.0 <= fraction <= 1.0
        ):
            raise ValueError(
                f"fractions: {fraction!r} is not a fraction of the steps in [0, 1]. {example}"
            )
    return sorted({round(float(f), 4) for f in fractions})


class InjectionSweep(GuardedWidget, widgets.VBox):
    """Grid of edits over injection fractions, a cell viewer, and each cell's measures."""

    def __init__(
        self,
        pipe: Any,
        source: str = "photo of a cat riding on a bicycle",
        targets: Sequence[str] = (
            "photo of a cat riding on a motorcycle",
            "photo of a cat riding on a train",
        ),
        *,
        fractions: Sequence[float] = DEFAULT_FRACTIONS,
        seed: int = 1,
        steps: int = 10,
        guidance: float | None = None,
        fixed_self: float | None = None,
        fixed_cross: float | None = None,
        cache: SweepCache | None = None,
        threaded: bool = True,
    ) -> None:
        check_pipeline(pipe, "InjectionSweep")
        targets = _check_targets(targets)
        self.pipe = pipe
        self.source = check_text("source", source)
        self.fractions = _check_fractions(fractions)
        self.seed, self.steps, self.guidance = seed, steps, guidance
        # vary → the other injection's fraction; None: injection_sweep's own default
        self.fixed: dict[str, float | None] = {"cross": fixed_self, "self": fixed_cross}
        self.cache = cache if cache is not None else SweepCache()
        self.threaded = threaded
        self.sweeps: dict[tuple[str, str], SweepResult] = {}
        self._computing: tuple[str, str] | None = None  # the row a run is computing
        self.scores: dict[tuple[str, str], SweepScores] = {}
        self.grid_figure: Figure | None = None
        self.scores_figure: Figure | None = None
        self.error: str | None = None
        self._make_controls(targets)

        self.compute_button.on_click(lambda _button: self.request_compute())
        self.fraction_slider.observe(lambda _change: self.show_cell(), names="value")
        self.target_dropdown.observe(lambda _change: self.show_row(), names="value")
        self.vary_buttons.observe(lambda _change: self.show_row(), names="value")

        super().__init__(
            [
                widgets.HTML(f"<b>source:</b> {source}"),
                self.target_dropdown,
                widgets.HBox([self.vary_buttons]),
                widgets.HBox([self.compute_button, self.progress]),
                self.status,
                self.grid_image,
                widgets.HBox([self.fraction_slider]),
                widgets.HBox([self.cell_image, self.scores_image]),
            ]
        )
        self.add_class("p2p-sweep")
        self.guard = RunGuard(
            self.status,
            lambda: "A sweep is already computing; this press was ignored. Wait for it to "
            "finish.",
            disable=[self.compute_button],
            owner=self,
        )
        self.show_row()

    def _make_controls(self, targets: Sequence[str]) -> None:
        """The target, what to vary, Compute, the progress, the status and the pictures."""
        self.target_dropdown = widgets.Dropdown(
            options=list(targets), value=targets[0], description="target",
            layout=widgets.Layout(width="70%"),
        )  # fmt: skip
        self.target_dropdown.add_class("p2p-sweep-target")
        self.vary_buttons = widgets.ToggleButtons(
            options=[("cross-attention", "cross"), ("self-attention", "self")],
            value="cross",
            description="vary",
        )
        self.vary_buttons.add_class("p2p-sweep-vary")
        self.fraction_slider = widgets.SelectionSlider(
            options=[(f"{f:g}", f) for f in self.fractions],
            value=self.fractions[-1],
            description="fraction",
            continuous_update=True,
        )
        self.fraction_slider.add_class("p2p-sweep-slider")
        self.compute_button = widgets.Button(
            description="Compute", button_style="primary", icon="th"
        )
        self.compute_button.add_class("p2p-sweep-run")
        self.progress = widgets.IntProgress(
            value=0, min=0, max=len(self.fractions), description=f"cell 0/{len(self.fractions)}"
        )
        self.progress.add_class("p2p-sweep-progress")
        self.status = widgets.Label()
        self.status.add_class("p2p-status")
        self.grid_image = png_image("p2p-sweep-grid")
        self.cell_image = png_image("p2p-sweep-cell")
        self.scores_image = png_image("p2p-sweep-scores")

    # ------------------------------------------------------------------ state

    @property
    def row_key(self) -> tuple[str, str]:
        """(target prompt, varied injection) of the row on show."""
        return (self.target_dropdown.value, self.vary_buttons.value)

    # ------------------------------------------------------------------ computing

    def request_compute(self) -> bool:
        """What Compute does: compute the current row (in a thread if ``threaded``)."""
        return self._start(self._compute_claimed, threaded=self.threaded)

    def compute(self, target: str | None = None, vary: Varied | None = None) -> SweepResult | None:
        """Compute a row now, in this thread (default: the row on show); None if refused."""
        if target is not None:
            self.target_dropdown.value = target
        if vary is not None:
            self.vary_buttons.value = vary
        if not self._start(self._compute_claimed, threaded=False):
            return None
        return self.sweeps.get(self.row_key)

    def _on_cell(self, index: int, count: int, fraction: float) -> None:
        self.progress.max = count
        self.progress.value = index
        self.progress.description = f"cell {index + 1}/{count}"
        vary = self._computing[1] if self._computing else self.vary_buttons.value
        self.status.value = f"{ROW_LABELS[vary]} {fraction_label(fraction)}…"

    def _compute_claimed(self) -> None:
        target, vary = self._computing = self.row_key  # the row this run computes
        misses_before = self.cache.misses
        self.error = None
        self.progress.bar_style = "info"
        try:
            sweep = injection_sweep(
                self.pipe, self.source, target, vary=vary, fractions=self.fractions,
                fixed=self.fixed[vary], seed=self.seed, steps=self.steps,
                guidance=self.guidance, cache=self.cache, on_cell=self._on_cell,
            )  # fmt: skip
        except Exception as error:  # bad prompts: say so in the widget
            self._show_failure(error, "compute the sweep")
            return
        self.sweeps[(target, vary)] = sweep
        self.scores[(target, vary)] = sweep_scores(self.pipe, sweep, self.source, target)
        self.progress.value = self.progress.max
        self.progress.description = f"cell {self.progress.max}/{self.progress.max}"
        self.progress.bar_style = "success"
        computed = self.cache.misses - misses_before
        done = f"{computed} edits computed, {len(self.fractions) - computed} from the cache."
        if self.row_key == (target, vary):
            self.show_row(f"Done: {done}")
        else:  # the learner picked another row while this one computed
            self.show_row()
            self.status.value = (
                f"Done: {ROW_LABELS[vary]} for {target!r}: {done} Pick that row to see it."
            )

    # ------------------------------------------------------------------ showing

    def show_row(self, message: str | None = None) -> None:
        """Show the row on show from the cache, or say that it needs Compute."""
        sweep = self.sweeps.get(self.row_key)
        if sweep is None:
            set_png(self.grid_image, b"")
            set_png(self.cell_image, b"")
            self.status.value = message or (
                f"Not computed yet: press Compute for {len(self.fractions)} edits "
                f"({ROW_LABELS[self.vary_buttons.value]} from 0 to 1)."
            )
            self._show_scores()
            return
        target, vary = self.row_key
        fixed_name = "self" if vary == "cross" else "cross"
        self.grid_figure = sweep_grid_figure(
            {f"{ROW_LABELS[vary]}\n({fixed_name} fixed at {sweep.fixed:g})": sweep.images()},
            source_image=sweep.source_image,
            title=f"{self.source!r} → {target!r}",
        )
        set_png(self.grid_image, figure_png(self.grid_figure, tight=False))
        self._show_scores()
        self.show_cell()
        if message:
            self.status.value = message

    def show_cell(self) -> None:
        """Show the slider's fraction large beside the source (from the cache, never an edit)."""
        sweep = self.sweeps.get(self.row_key)
        if sweep is None:
            return
        fraction = self.fraction_slider.value
        target, vary = self.row_key
        figure = side_by_side(
            [sweep.source_image, sweep.cells[fraction].edited_image],
            ["source", f"{ROW_LABELS[vary]} {fraction_label(fraction)}"],
            size=2.6,
        )
        set_png(self.cell_image, figure_png(figure, tight=False))
        cell = self.scores[self.row_key].cells[fraction]
        label = f"{ROW_LABELS[vary]} {fraction_label(fraction)}"
        self.status.value = f"{label}: {cell} (from the cache)"

    def _show_scores(self) -> None:
        """The row on show's measures against the fraction (nothing for a row not computed)."""
        scores = self.scores.get(self.row_key)
        if scores is None:
            set_png(self.scores_image, b"")
            return
        target, vary = self.row_key
        self.scores_figure = sweep_scores_figure(
            scores, title=f"{ROW_LABELS[vary]} varied, → …{target[-28:]}"
        )
        set_png(self.scores_image, figure_png(self.scores_figure, tight=False))
