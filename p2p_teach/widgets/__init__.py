"""Thin ipywidgets views over the figure functions; each is a VBox with inspectable state."""

from .mapper import MapperExplorer
from .tokens import TokenExplorer
from .tour import PipelineTour

__all__ = ["MapperExplorer", "PipelineTour", "TokenExplorer"]
