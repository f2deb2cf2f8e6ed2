"""Small helpers shared by the widgets: PNG image widgets that size and hide themselves."""

from __future__ import annotations

import ipywidgets as widgets


def png_image(css_class: str) -> widgets.Image:
    """An empty PNG ``ipywidgets.Image`` with a CSS class, hidden until it has a picture.

    It keeps its natural size (a VBox would otherwise stretch it to the full width and blur
    it) but never overflows its container.
    """
    image = widgets.Image(
        format="png",
        layout=widgets.Layout(align_self="flex-start", max_width="100%", display="none"),
    )
    image.add_class(css_class)
    return image


def set_png(image: widgets.Image, data: bytes) -> None:
    """Show PNG bytes in an image widget; empty bytes hide it (no broken-image icon)."""
    image.value = data
    image.layout.display = None if data else "none"
