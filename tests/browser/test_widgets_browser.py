"""The widgets as a learner sees them: JupyterLab in headless Chromium, end to end.

Serves ``widgets_e2e.ipynb`` from a real JupyterLab on localhost, runs it in Debian's Chromium
through Playwright, and checks what the page shows, not what Python holds: the token table's
text, the pixels of the output images, the progress bar, the timeline image after a slider move.
Every state is saved as a screenshot under ``artifacts/browser/``; with
``P2P_TEACH_UPDATE_SCREENSHOTS=1`` the README's screenshots in ``docs/images/`` are rewritten
from the same images. Any request the page makes outside localhost fails the test.

The tests run in file order on one page and build on each other.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from jupyterlab_harness import NotebookPage, ScreenshotSaver
from PIL import Image

pytestmark = pytest.mark.browser

WIDGET_TIMEOUT_MS = 60_000
# A blank image (one flat colour, or a widget that never received its PNG) has no spread.
MIN_PIXEL_STD = 3.0

_PIECES_JS = """table => {
  const row = [...table.querySelectorAll('tr')].find(
    tr => tr.querySelector('th') && tr.querySelector('th').textContent.trim() === 'piece');
  return [...row.querySelectorAll('td[data-kind="word"]')].map(td => td.textContent.trim());
}"""
_CHANGED_PIECES_JS = """table => {
  const row = [...table.querySelectorAll('tr')].find(
    tr => tr.querySelector('th') && tr.querySelector('th').textContent.trim() === 'piece');
  return [...row.querySelectorAll('td.p2p-changed')].map(td => td.textContent.trim());
}"""


def pixel_std(png: bytes) -> float:
    """Standard deviation of all RGB values of a PNG: near 0 for a blank or flat image."""
    with Image.open(io.BytesIO(png)) as image:
        return float(np.asarray(image.convert("RGB"), dtype=np.float32).std())


def assert_image_shown(notebook: NotebookPage, css: str) -> bytes:
    """The ``<img>`` of the widget with class ``css`` is loaded and not blank; its screenshot."""
    image = notebook.page.locator(f"img.{css}, .{css} img").first
    image.wait_for(state="visible", timeout=WIDGET_TIMEOUT_MS)
    loaded = image.evaluate("img => img.complete && img.naturalWidth > 0 && img.naturalHeight > 0")
    assert loaded, f"the image .{css} is in the page but never loaded"
    png = image.screenshot()
    assert pixel_std(png) > MIN_PIXEL_STD, f"the image .{css} is blank (std {pixel_std(png):.2f})"
    return png


def assert_only_local_requests(notebook: NotebookPage) -> None:
    outside = notebook.requests.non_local()
    assert not outside, f"the page asked for addresses outside localhost: {outside}"


def type_into(notebook: NotebookPage, css: str, text: str) -> None:
    """Type into the text box of the widget with class ``css`` as a person does, then Enter."""
    box = notebook.page.locator(f".{css} input, .{css} textarea").first
    box.click()
    box.press("Control+A")
    box.press_sequentially(text, delay=5)
    box.press("Enter")


def wait_until(
    notebook: NotebookPage,
    js: str,
    arg: object,
    failure: str,
    timeout_ms: float = WIDGET_TIMEOUT_MS,
) -> None:
    """Wait for the page function ``js(arg)`` to be true; fail with ``failure`` if it never is.

    The failure message also quotes every ``p2p-status`` line on the page.
    """
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

    try:
        notebook.page.wait_for_function(js, arg=arg, timeout=timeout_ms)
    except PlaywrightTimeoutError:
        statuses = notebook.page.locator(".p2p-status").all_inner_texts()
        pytest.fail(
            f"{failure} (waited {timeout_ms / 1000:.0f} s); status lines: {statuses}",
            pytrace=False,
        )


def wait_for_new_image(notebook: NotebookPage, css: str, old_src: str | None, failure: str) -> None:
    """Wait until ``img.css`` shows a different, loaded picture than ``old_src``."""
    wait_until(
        notebook,
        "([css, before]) => { const img = document.querySelector('img.' + css);"
        " return !!img && img.complete && img.naturalWidth > 0 && img.src !== before; }",
        [css, old_src],
        failure,
    )


def test_widgets_render_without_errors(notebook_page: NotebookPage) -> None:
    assert notebook_page.widget_render_failures() == []
    assert notebook_page.page_errors == []
    assert_only_local_requests(notebook_page)


def test_tokenization_explorer_shows_the_real_pieces(
    notebook_page: NotebookPage, screenshots: ScreenshotSaver
) -> None:
    page = notebook_page.page
    explorer = page.locator(".p2p-token-explorer")
    explorer.wait_for(state="visible", timeout=WIDGET_TIMEOUT_MS)
    first_table = explorer.locator("table.p2p-token-table").first
    assert first_table.evaluate(_PIECES_JS) == ["a", "lion", "eating"]
    figure_before = assert_image_shown(notebook_page, "p2p-token-figure")
    figure_src_before = page.locator("img.p2p-token-figure").get_attribute("src")
    screenshots.save(notebook_page.screenshot_of(explorer), "01_tokenization_explorer_initial")

    type_into(notebook_page, "p2p-token-source", "A Hippopotamus in a hexagon")
    source = explorer.locator('table.p2p-token-table[data-prompt="a hippopotamus in a hexagon"]')
    source.wait_for(timeout=WIDGET_TIMEOUT_MS)
    assert source.evaluate(_PIECES_JS) == ["a", "hippo", "potam", "us", "in", "a", "hex", "agon"]

    type_into(notebook_page, "p2p-token-target", "a lion in a hexagon")
    target = explorer.locator('table.p2p-token-table[data-prompt="a lion in a hexagon"]')
    target.wait_for(timeout=WIDGET_TIMEOUT_MS)
    assert target.evaluate(_PIECES_JS) == ["a", "lion", "in", "a", "hex", "agon"]
    assert source.evaluate(_CHANGED_PIECES_JS) == ["hippo", "potam", "us"]
    assert target.evaluate(_CHANGED_PIECES_JS) == ["lion"]

    wait_for_new_image(  # the figure is redrawn too, not just the HTML table
        notebook_page, "p2p-token-figure", figure_src_before, "the token-table figure never changed"
    )
    figure_after = assert_image_shown(notebook_page, "p2p-token-figure")
    assert figure_after != figure_before, "the token-table figure did not change"
    screenshots.save(
        notebook_page.screenshot_of(explorer),
        "02_tokenization_explorer_typed",
        readme_name="tokenization_explorer",
    )
    assert notebook_page.widget_render_failures() == []
    assert_only_local_requests(notebook_page)


def progress_label(notebook: NotebookPage) -> str:
    return notebook.page.locator(".p2p-progress .widget-label").inner_text().strip()


def progress_bar_width(notebook: NotebookPage) -> str:
    return notebook.page.locator(".p2p-progress .progress-bar").evaluate("bar => bar.style.width")


def test_edit_runner_runs_to_the_last_step_and_shows_both_images(
    notebook_page: NotebookPage, screenshots: ScreenshotSaver
) -> None:
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

    page = notebook_page.page
    runner = page.locator(".p2p-edit-runner")
    runner.wait_for(state="visible", timeout=WIDGET_TIMEOUT_MS)
    screenshots.save(notebook_page.screenshot_of(runner), "03_edit_runner_ready")

    page.locator(".p2p-run-button").click()
    try:  # a mid-run view for the README; the tiny model may finish before it can be caught
        page.wait_for_function(
            "() => { const label = document.querySelector("
            "'.p2p-edit-runner.p2p-running .p2p-progress .widget-label');"
            " const img = document.querySelector('img.p2p-target-image');"
            " const m = label && label.textContent.match(/step (\\d+)\\/(\\d+)/);"
            " return m && +m[1] >= 2 && +m[1] < +m[2] && img && img.naturalWidth > 0; }",
            timeout=20_000,
            polling="raf",
        )
        screenshots.save(
            notebook_page.screenshot_of(runner), "04_edit_runner_running", "edit_runner_running"
        )
    except PlaywrightTimeoutError:  # only the optional screenshot is lost
        pass
    finished = (
        "() => { const runner = document.querySelector('.p2p-edit-runner');"
        " const status = runner.querySelector('.p2p-status');"
        " return !runner.classList.contains('p2p-running')"
        " && status.textContent.trim().startsWith('Done'); }"
    )
    wait_until(notebook_page, finished, None, "the edit never finished", timeout_ms=180_000)
    status = page.locator(".p2p-edit-runner .p2p-status").inner_text()
    assert status.startswith("Done"), f"the edit did not finish: {status!r}"
    steps_slider = runner.locator(".widget-slider").filter(
        has=page.locator(".widget-label", has_text="steps")
    )
    steps = int(steps_slider.locator(".widget-readout").inner_text())
    assert progress_label(notebook_page) == f"step {steps}/{steps}"
    assert progress_bar_width(notebook_page) == "100%"
    source_png = assert_image_shown(notebook_page, "p2p-source-image")
    target_png = assert_image_shown(notebook_page, "p2p-target-image")
    assert source_png != target_png, "source and edited images are the same picture"
    assert_image_shown(notebook_page, "p2p-result-image")
    screenshots.save(notebook_page.screenshot_of(runner), "05_edit_runner_done", "edit_runner")
    assert notebook_page.widget_render_failures() == []
    assert_only_local_requests(notebook_page)


def changed_pixel_fraction(png_a: bytes, png_b: bytes) -> float:
    """Share of pixels that differ between two same-sized PNGs (1.0 if the sizes differ)."""
    with Image.open(io.BytesIO(png_a)) as image_a, Image.open(io.BytesIO(png_b)) as image_b:
        a = np.asarray(image_a.convert("RGB"), dtype=np.int16)
        b = np.asarray(image_b.convert("RGB"), dtype=np.int16)
    if a.shape != b.shape:
        return 1.0
    return float((np.abs(a - b).max(axis=-1) > 8).mean())


def test_attention_timeline_slider_changes_the_picture(
    notebook_page: NotebookPage, screenshots: ScreenshotSaver
) -> None:
    page = notebook_page.page
    notebook_page.run_cell(-1)  # the timeline cell, run after Run as the notebook says
    timeline = page.locator(".p2p-timeline")
    timeline.wait_for(state="visible", timeout=WIDGET_TIMEOUT_MS)
    image = page.locator("img.p2p-timeline-image")
    handle = page.locator(".p2p-timeline-slider .noUi-handle")
    step_label = page.locator(".p2p-timeline-step")
    first_png = assert_image_shown(notebook_page, "p2p-timeline-image")
    first_src = image.get_attribute("src")
    first_label = step_label.inner_text()
    assert handle.get_attribute("aria-valuenow") in ("0", "0.0")
    screenshots.save(notebook_page.screenshot_of(timeline), "06_attention_timeline_first_step")

    handle.focus()
    handle.press("End")  # the keyboard moves noUiSlider's handle as a drag would
    wait_for_new_image(
        notebook_page,
        "p2p-timeline-image",
        first_src,
        "the timeline picture did not change after the slider moved to the last step",
    )
    assert handle.get_attribute("aria-valuenow") == handle.get_attribute("aria-valuemax")
    last_png = assert_image_shown(notebook_page, "p2p-timeline-image")
    fraction = changed_pixel_fraction(first_png, last_png)
    print(f"timeline: {fraction:.3f} of the pixels changed")
    assert fraction > 0.01, f"the timeline picture barely changed ({fraction:.4f} of pixels)"
    assert step_label.inner_text() != first_label
    screenshots.save(
        notebook_page.screenshot_of(timeline),
        "07_attention_timeline_last_step",
        "attention_timeline",
    )
    assert notebook_page.widget_render_failures() == []
    assert_only_local_requests(notebook_page)
