"""The inversion's figures and widget: what they show, uploads, failures shown in the widget."""

from __future__ import annotations

import datetime
import io

import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

from p2p_teach.figures.inversion import (
    inversion_step_figure,
    reconstructions_figure,
    trajectory_figure,
)
from p2p_teach.inversion import drawing, held_out_drawing
from p2p_teach.widgets.inversion import InversionWidget, image_from_upload


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_drawings_are_captioned_as_drawn():
    image, caption = drawing("star", "blue", background="black")
    assert caption == "a big blue star" and image.size == (64, 64)
    pixels = np.asarray(image)
    assert tuple(pixels[0, 0]) == (20, 20, 20) and tuple(pixels[32, 32]) == (30, 60, 220)
    assert drawing("star", "blue", position="left", name_position=True)[1].endswith("on the left")
    with pytest.raises(ValueError, match="colour='mauve'"):
        drawing("star", "mauve")
    _, held_out = held_out_drawing(1)
    assert held_out.startswith("a ")


def test_step_figure_shows_both_phases():
    image = Image.new("RGB", (64, 64), "red")
    ddim_phase = inversion_step_figure(image, None, None, [], [], [], phase="ddim", step=0,
                                       num_steps=3, guidance=2.0)  # fmt: skip
    assert isinstance(ddim_phase, Figure) and "DDIM inversion" in ddim_phase.get_suptitle()
    down = inversion_step_figure(image, image, image, [[1e-3, 5e-4], [2e-4]], [1e-3, 2e-3],
                                 [5e-4, 2e-4], phase="null-text", step=1, num_steps=3,
                                 guidance=2.0)  # fmt: skip
    losses_axis, errors_axis = down.axes[3], down.axes[4]
    assert sum(len(line.get_xdata()) for line in losses_axis.get_lines()) == 3
    assert [list(line.get_ydata()) for line in errors_axis.get_lines()] == [
        [1e-3, 2e-3], [5e-4, 2e-4]
    ]  # fmt: skip


def test_reconstruction_and_trajectory_figures_title_what_they_show():
    image = Image.new("RGB", (64, 64), "red")
    figure = reconstructions_figure(image, {"plain": image, "null": image},
                                    {"plain": 21.04, "null": 33.96})  # fmt: skip
    titles = [axis.get_title() for axis in figure.axes]
    assert titles == ["the image", "plain\n21.0 dB", "null\n34.0 dB"]
    assert len(trajectory_figure([image] * 4, [0, 1, 2, 3]).axes) == 4


def test_uploads_are_read_in_both_ipywidgets_forms():
    image = Image.new("RGB", (100, 80), (1, 2, 3))
    assert image_from_upload(()) is None
    eight = ({"name": "a.png", "content": memoryview(png_bytes(image))},)
    seven = {"a.png": {"content": png_bytes(image), "metadata": {"name": "a.png"}}}
    for value in (eight, seven):
        assert np.array_equal(np.asarray(image_from_upload(value)), np.asarray(image))
    with pytest.raises(ValueError, match="notes.txt is not an image"):
        image_from_upload(({"name": "notes.txt", "content": b"hello"},))


def test_widget_inverts_a_drawing_and_shows_every_step(pipe):
    view = InversionWidget(pipe, steps=3, inner_steps=2, guidance=3.0, threaded=False)
    assert view.caption_text.value == "a big red circle"
    view.colour_dropdown.value = "blue"
    assert view.caption_text.value == "a big blue circle"
    inversion = view.run()
    assert inversion is not None and view.error is None and inversion.caption == "a big blue circle"
    assert view.steps_seen == [("ddim", 0), ("ddim", 1), ("ddim", 2), ("null-text", 0),
                               ("null-text", 1), ("null-text", 2)]  # fmt: skip
    assert view.progress.value == 6 and view.progress.bar_style == "success"
    for image in (view.trajectory_image, view.ddim_image, view.null_text_image,
                  view.losses_image, view.result_image):  # fmt: skip
        assert bytes(image.value).startswith(b"\x89PNG")
    assert "dB" in view.status.value and not view.edit_button.disabled


def test_widget_inverts_an_upload_and_says_it_was_resized(pipe):
    view = InversionWidget(pipe, steps=2, inner_steps=1, guidance=3.0, threaded=False)
    content = png_bytes(Image.new("RGB", (200, 100), (200, 30, 30)))
    upload = {
        "name": "photo.png",
        "type": "image/png",
        "size": len(content),
        "last_modified": datetime.datetime(2026, 1, 1),
        "content": memoryview(content),
    }
    view.upload.value = (upload,)
    assert view.image_source.value == "upload"
    view.caption_text.value = "a red photo"
    assert view.run() is not None
    assert "200×100, resized to 64×64" in view.status.value


def test_widget_shows_failures_instead_of_raising(pipe):
    view = InversionWidget(pipe, steps=2, threaded=False)
    view.image_source.value = "upload"
    assert view.run() is None and "no image uploaded yet" in view.status.value
    view.image_source.value = "drawing"
    view.caption_text.value = ""
    assert view.run() is None and "caption" in view.error
    assert view.progress.bar_style == "danger" and view.edit_button.disabled
    assert view.open_edit() is None and "invert an image first" in view.status.value


def test_edit_hands_the_inversion_to_an_edit_runner(pipe):
    view = InversionWidget(pipe, steps=2, inner_steps=1, guidance=3.0, threaded=False)
    inversion = view.run()
    view.target_text.value = "a big blue circle"
    runner = view.open_edit()
    assert view.edit_box.children == (runner,)
    assert runner.source_text.value == "a big red circle" and runner.source_text.disabled
    assert runner.steps_slider.value == 2 and runner.steps_slider.disabled
    assert runner.edit_arguments()["inversion"] is inversion
    result = runner.run()
    assert result is not None and result.settings["null_embeddings_given"]
