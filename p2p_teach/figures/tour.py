"""The pipeline as a picture: its seven components, present or absent, and what flows between.

A prompt goes tokenizer → text encoder → UNet (looping with the scheduler) → VAE → image, and
the safety checker with its feature extractor screens the image at the end. Absent components
(``None`` in the pipeline) are drawn dashed and grey.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from ..tour import ComponentInfo

# (x, y) centres of the boxes, in axis units (the axes span about 0..13 × 0..4)
_POSITIONS: dict[str, tuple[float, float]] = {
    "tokenizer": (0.9, 3.0),
    "text_encoder": (3.7, 3.0),
    "unet": (6.5, 3.0),
    "scheduler": (6.5, 1.0),
    "vae": (9.3, 3.0),
    "feature_extractor": (9.3, 1.0),
    "safety_checker": (12.1, 1.0),
}
# (from, to, label key) in flow order; labels come from ``edge_labels``
_EDGES: tuple[tuple[str, str, str], ...] = (
    ("tokenizer", "text_encoder", "input_ids"),
    ("text_encoder", "unet", "text_embeddings"),
    ("unet", "scheduler", "noise_prediction"),
    ("scheduler", "unet", "latents"),
    ("unet", "vae", "final_latents"),
    ("vae", "feature_extractor", "image"),
    ("feature_extractor", "safety_checker", "clip_input"),
)
_BOX_WIDTH, _BOX_HEIGHT = 1.75, 1.05


def pipeline_diagram(
    components: Sequence[ComponentInfo],
    edge_labels: Mapping[str, str] | None = None,
    title: str | None = None,
) -> Figure:
    """Draw the components as boxes (class and parameter count inside) joined by the data flow.

    Args:
        components: from :func:`p2p_teach.tour.pipeline_components`.
        edge_labels: optional text on the arrows, keyed by ``input_ids``, ``text_embeddings``,
            ``noise_prediction``, ``latents``, ``final_latents``, ``image``, ``clip_input``
            (for example shapes from :func:`p2p_teach.tour.flow_shapes`).
        title: optional figure title.
    """
    edge_labels = dict(edge_labels or {})
    by_name = {info.name: info for info in components}
    figure = Figure(figsize=(12.5, 4.0), layout="constrained")
    axis = figure.add_subplot()
    axis.set_xlim(-0.1, 13.1)
    axis.set_ylim(0.2, 4.0)
    axis.axis("off")
    for name, (x, y) in _POSITIONS.items():
        info = by_name.get(name)
        present = info is not None and info.present
        box = FancyBboxPatch(
            (x - _BOX_WIDTH / 2, y - _BOX_HEIGHT / 2),
            _BOX_WIDTH,
            _BOX_HEIGHT,
            boxstyle="round,pad=0.05",
            facecolor="#e8f1fb" if present else "#f4f4f4",
            edgecolor="#2f6db5" if present else "#9a9a9a",
            linestyle="-" if present else "--",
            linewidth=1.4,
        )
        axis.add_patch(box)
        lines = [name]
        if present:
            lines.append(info.class_name or "")
            if info.n_parameters is not None:
                lines.append(f"{info.parameters_text} parameters")
        else:
            lines.append("absent (None)")
        axis.text(
            x,
            y,
            "\n".join(lines),
            ha="center",
            va="center",
            fontsize=8,
            color="black" if present else "#7a7a7a",
        )
    for source, target, key in _EDGES:
        (x0, y0), (x1, y1) = _POSITIONS[source], _POSITIONS[target]
        bend = 0.0
        if source == "unet" and target == "scheduler":
            bend, x0, x1 = 0.35, x0 - 0.25, x1 - 0.25
        elif source == "scheduler" and target == "unet":
            bend, x0, x1 = 0.35, x0 + 0.25, x1 + 0.25
        arrow = FancyArrowPatch(
            _edge_point(x0, y0, x1, y1),
            _edge_point(x1, y1, x0, y0),
            arrowstyle="-|>",
            mutation_scale=12,
            color="#444444",
            connectionstyle=f"arc3,rad={bend}",
        )
        axis.add_patch(arrow)
        if key in edge_labels:
            if x0 != x1:  # horizontal: the label sits above the arrow
                label_x, label_y, align = (x0 + x1) / 2, y0 + 0.08, "center"
            elif source == "unet":  # the downward arrow of the loop: label on its left
                label_x, label_y, align = x0 - 0.3, (y0 + y1) / 2, "right"
            else:  # an upward or right-hand vertical arrow: label on its right
                label_x, label_y, align = x0 + 0.3, (y0 + y1) / 2, "left"
            axis.text(
                label_x,
                label_y,
                edge_labels[key],
                ha=align,
                va="bottom" if x0 != x1 else "center",
                fontsize=7,
                color="#1f1f1f",
            )
    axis.text(6.5, 3.75, "loop: one UNet call per timestep", ha="center", fontsize=7, color="#555")
    if title:
        figure.suptitle(title, fontsize=10)
    return figure


def _edge_point(x: float, y: float, toward_x: float, toward_y: float) -> tuple[float, float]:
    """Where the line from box centre (x, y) toward another centre leaves the box."""
    dx, dy = toward_x - x, toward_y - y
    if abs(dx) * _BOX_HEIGHT >= abs(dy) * _BOX_WIDTH:  # leaves through a side
        return x + (_BOX_WIDTH / 2 + 0.05) * (1 if dx > 0 else -1), y
    return x, y + (_BOX_HEIGHT / 2 + 0.07) * (1 if dy > 0 else -1)
