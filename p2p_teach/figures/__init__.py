"""Pure figure functions: data in, matplotlib Figure (or HTML text) out; no widgets, no model."""

from .attention import changed_word_rows, pick_steps, word_steps_figure
from .images import figure_png, image_png, result_figure, side_by_side
from .mapper import alignment_figure, mapper_comparison_figure, mapper_figure
from .sweep import layout_survival_figure, sweep_grid_figure
from .timeline import concentration_figure, step_lines_figure, timeline_figure
from .tokens import changed_words, token_table_figure, token_table_html
from .tour import pipeline_diagram

__all__ = [
    "changed_word_rows",
    "word_steps_figure",
    "pick_steps",
    "alignment_figure",
    "changed_words",
    "concentration_figure",
    "layout_survival_figure",
    "sweep_grid_figure",
    "step_lines_figure",
    "timeline_figure",
    "figure_png",
    "image_png",
    "mapper_comparison_figure",
    "mapper_figure",
    "pipeline_diagram",
    "result_figure",
    "side_by_side",
    "token_table_figure",
    "token_table_html",
]
