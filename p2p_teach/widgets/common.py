"""Small helpers shared by the widgets: PNG image widgets that size and hide themselves, and
a range check for the values a slider or bounded box will hold."""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Real

import ipywidgets as widgets

SEED_MAX = 2**31 - 1  # the largest value an ipywidgets integer box holds
STEPS_MAX = 100


def check_range(name: str, value: Real, low: Real, high: Real) -> Real:
    """``value`` if ``low ≤ value ≤ high``; otherwise a ValueError naming the control's range
    (a slider would silently clamp it)."""
    if isinstance(value, bool) or not isinstance(value, Real) or not low <= value <= high:
        raise ValueError(
            f"{name}={value!r}: this widget's control runs from {low:g} to {high:g}. Fix: pass "
            f"a value in that range (the functions without widgets, e.g. edit(), take more)."
        )
    return value


def check_choice(name: str, value: object, choices: Sequence[object]) -> object:
    """``value`` if it is one of ``choices``; otherwise a ValueError listing them (a dropdown
    would raise a bare ``TraitError: Invalid selection``)."""
    if value not in choices:
        raise ValueError(
            f"{name}={value!r} is not one of this widget's choices "
            f"{', '.join(repr(c) for c in choices)}. Fix: pass one of them."
        )
    return value


def check_text(name: str, value: object) -> str:
    """``value`` if it is a string (a text box holds nothing else); otherwise a TypeError."""
    if not isinstance(value, str):
        raise TypeError(
            f"{name} must be a string, not {type(value).__name__} {value!r:.40}. "
            f"Fix: e.g. {name}='a big red circle'."
        )
    return value


def seed_box(seed: int) -> widgets.BoundedIntText:
    """The seed input of the widgets that run edits (``seed`` checked against its range)."""
    return widgets.BoundedIntText(
        value=check_range("seed", seed, 0, SEED_MAX), min=0, max=SEED_MAX, description="seed"
    )


def steps_slider(steps: int) -> widgets.IntSlider:
    """The denoising-steps slider of the widgets that run edits (``steps`` checked)."""
    return widgets.IntSlider(
        value=check_range("steps", steps, 1, STEPS_MAX), min=1, max=STEPS_MAX,
        description="steps",
    )  # fmt: skip


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
