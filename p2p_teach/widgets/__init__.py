"""Thin ipywidgets views over the figure functions; each is a VBox with inspectable state."""

from .edit_runner import EditRunner
from .inversion import InversionWidget
from .mapper import MapperExplorer
from .panels import LocalBlendPanel, RefinePanel, ReweightPanel
from .question import PredictQuestion
from .self_attention import SelfAttentionExplorer
from .sweep import InjectionSweep
from .timeline import AttentionTimeline
from .tokens import TokenExplorer
from .tour import PipelineTour

__all__ = [
    "AttentionTimeline",
    "EditRunner",
    "InjectionSweep",
    "InversionWidget",
    "LocalBlendPanel",
    "MapperExplorer",
    "PipelineTour",
    "PredictQuestion",
    "RefinePanel",
    "ReweightPanel",
    "SelfAttentionExplorer",
    "TokenExplorer",
]
