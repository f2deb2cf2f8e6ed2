"""Fixtures for the browser tests: a JupyterLab server, headless Chromium, the notebook page.

One server, one browser and one executed notebook page serve every test in the folder; the
tests run in file order and build on each other (the timeline shows the run the runner made).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from jupyterlab_harness import (
    CHROMIUM_ARGS,
    CHROMIUM_PATH,
    LabServer,
    NotebookPage,
    RequestLog,
    ScreenshotSaver,
    jupyterlab_server,
    missing_requirements,
)

HERE = Path(__file__).parent
NOTEBOOK = HERE / "widgets_e2e.ipynb"
REPO_ROOT = HERE.parents[1]
ARTIFACTS_DIR = REPO_ROOT / "artifacts" / "browser"
README_IMAGES_DIR = REPO_ROOT / "docs" / "images"

# The notebook is served to the browser, not run by nbval.
collect_ignore_glob = ["*.ipynb"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "browser: end-to-end test in headless Chromium against a JupyterLab server"
    )


@pytest.fixture(scope="session")
def browser_requirements() -> None:
    """Fail, never skip, when the machine lacks what the browser tests need."""
    missing = missing_requirements()
    if missing:
        pytest.fail("Browser tests cannot run; missing: " + "; ".join(missing), pytrace=False)


@pytest.fixture(scope="session")
def lab_server(browser_requirements: None) -> Iterator[LabServer]:
    with jupyterlab_server(NOTEBOOK) as server:
        yield server


@pytest.fixture(scope="session")
def screenshots() -> Iterator[ScreenshotSaver]:
    yield ScreenshotSaver(ARTIFACTS_DIR, README_IMAGES_DIR if _update_readme_images() else None)


def _update_readme_images() -> bool:
    return os.environ.get("P2P_TEACH_UPDATE_SCREENSHOTS", "") not in ("", "0")


@pytest.fixture(scope="module")
def notebook_page(lab_server: LabServer, screenshots: ScreenshotSaver) -> Iterator[NotebookPage]:
    """The test notebook open in JupyterLab in headless Chromium, all cells run."""
    from playwright.sync_api import sync_playwright

    requests = RequestLog()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM_PATH), headless=True, args=list(CHROMIUM_ARGS)
        )
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            page = context.new_page()
            notebook = NotebookPage(page, lab_server, requests)
            try:
                notebook.open(NOTEBOOK.name)
                notebook.run_all_cells()
                yield notebook
            finally:
                screenshots.save(page.screenshot(full_page=True), "last_page")
                context.close()
        finally:
            browser.close()
