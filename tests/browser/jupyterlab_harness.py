"""Serve a notebook from a real JupyterLab on localhost and drive it in headless Chromium.

Why JupyterLab rather than voila: learners open the course notebooks in JupyterLab (or
Notebook 7, which is built from the same JupyterLab components and the same widget manager), so
that is the page whose breakage a learner would meet: the lab's widget manager loading the
widget bundles, a kernel round trip for every keystroke, images pushed from the kernel.
voila would be simpler to drive but is a page few learners ever see.

The server runs with temporary runtime, config, settings and workspace folders, no token or
password, on 127.0.0.1 and a free port, from a temporary copy of the notebook (so autosave never
touches the repository). :func:`jupyterlab_server` always shuts it down, kernels included.

Chromium is Debian's (``/usr/bin/chromium``) driven by Playwright; Playwright's own browser
downloads are never used. Every request the page makes is recorded; any host other than
localhost / 127.0.0.1 is blocked and reported by :meth:`RequestLog.non_local`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

CHROMIUM_PATH = Path(os.environ.get("P2P_TEACH_CHROMIUM", "/usr/bin/chromium"))
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1"})
LOCAL_SCHEMES = frozenset({"data", "blob", "about"})

# Chromium flags that stop its own background traffic (updates, sync, field trials, ...): the
# machine has no network, and the request check must see only what the page itself asks for.
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-domain-reliability",
    "--disable-features=OptimizationHints,Translate,MediaRouter,DialMediaRouteProvider",
    "--metrics-recording-only",
    "--no-default-browser-check",
    "--no-pings",
)

# JupyterLab user settings for a deterministic page: every cell stays in the DOM (no virtual
# scrolling), no news or update pop-ups.
LAB_USER_SETTINGS: dict[str, dict] = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
}


def missing_requirements() -> list[str]:
    """What the browser test needs and this machine lacks, each with the fix (empty if none)."""
    missing: list[str] = []
    if not (CHROMIUM_PATH.is_file() and os.access(CHROMIUM_PATH, os.X_OK)):
        missing.append(
            f"Chromium at {CHROMIUM_PATH} (fix: bash .ci/install_browser.sh, i.e. "
            "apt-get install chromium)"
        )
    for module, package in (("playwright", "playwright"), ("jupyterlab", "jupyterlab")):
        try:
            __import__(module)
        except ImportError:
            missing.append(f"the Python package {package!r} (fix: pip install -e '.[browser]')")
    return missing


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LabServer:
    """A running JupyterLab: its base URL, root folder and log file."""

    url: str
    root: Path
    log_path: Path
    process: subprocess.Popen

    def notebook_url(self, name: str) -> str:
        return f"{self.url}/lab/tree/{name}"

    def log_tail(self, n_chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n_chars:]
        except OSError:
            return "(no server log)"


def _write_user_settings(settings_dir: Path) -> None:
    for relative, values in LAB_USER_SETTINGS.items():
        path = settings_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))


def _wait_until_up(server: LabServer, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"JupyterLab exited with code {server.process.returncode} before serving.\n"
                f"{server.log_tail()}"
            )
        with (
            contextlib.suppress(OSError, urllib.error.URLError),
            urllib.request.urlopen(f"{server.url}/api/status", timeout=2) as response,
        ):
            if response.status == 200:
                return
        time.sleep(0.3)
    raise RuntimeError(f"JupyterLab did not answer within {timeout_s:.0f} s.\n{server.log_tail()}")


def _shut_down(server: LabServer) -> None:
    """Ask the server to stop (it shuts its kernels down), then terminate, then kill."""
    if server.process.poll() is None:
        with contextlib.suppress(OSError, urllib.error.URLError):
            request = urllib.request.Request(f"{server.url}/api/shutdown", method="POST")
            urllib.request.urlopen(request, timeout=5).close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.process.wait(timeout=15)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if server.process.poll() is not None:
            break
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.process.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.process.wait(timeout=10)


@contextlib.contextmanager
def jupyterlab_server(notebook: Path, startup_timeout_s: float = 90.0) -> Iterator[LabServer]:
    """Start JupyterLab on a free localhost port serving a temporary copy of ``notebook``."""
    with tempfile.TemporaryDirectory(prefix="p2p-teach-lab-") as tmp:
        tmp_path = Path(tmp)
        root = tmp_path / "root"
        root.mkdir()
        shutil.copy2(notebook, root / notebook.name)
        settings_dir = tmp_path / "settings"
        _write_user_settings(settings_dir)
        env = dict(os.environ)
        env.pop("MPLBACKEND", None)  # the kernel should behave as a learner's does
        env.update(
            JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
            JUPYTER_CONFIG_DIR=str(tmp_path / "config"),
            IPYTHONDIR=str(tmp_path / "ipython"),
            JUPYTER_NO_CONFIG="1",
            PYTHONUNBUFFERED="1",
        )
        port = free_port()
        command = [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--ip=127.0.0.1",
            f"--port={port}",
            "--port-retries=0",
            f"--ServerApp.root_dir={root}",
            "--IdentityProvider.token=",
            "--ServerApp.password=",
            "--ServerApp.disable_check_xsrf=True",
            "--ServerApp.terminals_enabled=False",
            "--LabApp.expose_app_in_browser=True",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            "--LabApp.news_url=",
            f"--LabApp.user_settings_dir={settings_dir}",
            f"--LabApp.workspaces_dir={tmp_path / 'workspaces'}",
            "--LabApp.extension_manager=readonly",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            command.append("--allow-root")  # CI containers run as root
        log_path = tmp_path / "jupyterlab.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                command,
                cwd=root,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        server = LabServer(f"http://127.0.0.1:{port}", root, log_path, process)
        try:
            _wait_until_up(server, startup_timeout_s)
            yield server
        finally:
            _shut_down(server)


@dataclass
class RequestLog:
    """Every URL the page asked for (requests and websockets), in order."""

    urls: list[str] = field(default_factory=list)

    def record(self, url: str) -> None:
        self.urls.append(url)

    def non_local(self) -> list[str]:
        return [url for url in self.urls if not is_local_url(url)]


def is_local_url(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme in LOCAL_SCHEMES:
        return True
    return parts.hostname in LOCAL_HOSTS


class ScreenshotSaver:
    """Writes each screenshot to the artifacts folder, and README ones to docs/images if asked."""

    def __init__(self, artifacts_dir: Path, readme_dir: Path | None) -> None:
        self.artifacts_dir = artifacts_dir
        self.readme_dir = readme_dir
        artifacts_dir.mkdir(parents=True, exist_ok=True)

    def save(self, png: bytes, name: str, readme_name: str | None = None) -> Path:
        path = self.artifacts_dir / f"{name}.png"
        path.write_bytes(png)
        if self.readme_dir is not None and readme_name is not None:
            self.readme_dir.mkdir(parents=True, exist_ok=True)
            (self.readme_dir / f"{readme_name}.png").write_bytes(png)
        return path


# JavaScript run in the page; ``window.jupyterapp`` exists because the server is started with
# ``expose_app_in_browser``.
_NOTEBOOK_READY_JS = """() => {
  const panel = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  return !!(panel && panel.sessionContext && panel.content && panel.content.widgets);
}"""
_RUN_ALL_JS = """async () => {
  const app = window.jupyterapp;
  const panel = app.shell.currentWidget;
  await panel.context.ready;
  await panel.sessionContext.ready;
  app.shell.collapseLeft();
  app.shell.collapseRight();
  await app.commands.execute('notebook:run-all-cells');
}"""
_ALL_EXECUTED_JS = """() => {
  const panel = window.jupyterapp.shell.currentWidget;
  const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
  const cells = panel.content.widgets.filter(cell => cell.model.type === 'code');
  const done = cells.every(cell => cell.model.executionCount !== null);
  return done && kernel && kernel.status === 'idle';
}"""
_CELL_ERRORS_JS = """() => {
  const panel = window.jupyterapp.shell.currentWidget;
  const errors = [];
  panel.content.widgets.forEach((cell, index) => {
    if (cell.model.type !== 'code') return;
    for (const output of cell.model.outputs.toJSON()) {
      if (output.output_type === 'error') {
        errors.push(`cell ${index}: ${output.ename}: ${output.evalue}`);
      }
    }
  });
  return errors;
}"""
_CELL_AT_JS = """index => {
  const cells = window.jupyterapp.shell.currentWidget.content.widgets;
  return index < 0 ? cells.length + index : index;
}"""
_EXECUTION_COUNT_JS = f"""index => {{
  const cells = window.jupyterapp.shell.currentWidget.content.widgets;
  return cells[({_CELL_AT_JS})(index)].model.executionCount;
}}"""
_RUN_CELL_JS = f"""async index => {{
  const app = window.jupyterapp;
  app.shell.currentWidget.content.activeCellIndex = ({_CELL_AT_JS})(index);
  await app.commands.execute('notebook:run-cell');
}}"""
_WIDGET_RENDER_FAILURES = ("Error displaying widget", "Error rendering output item")


class NotebookPage:
    """A notebook open in JupyterLab in a Playwright page, with its requests recorded."""

    def __init__(self, page, server: LabServer, requests: RequestLog) -> None:
        self.page = page
        self.server = server
        self.requests = requests
        self.page_errors: list[str] = []
        context = page.context
        context.on("request", lambda request: requests.record(request.url))
        page.on("websocket", lambda websocket: requests.record(websocket.url))
        page.on("pageerror", lambda error: self.page_errors.append(str(error)))
        # Anything outside localhost is recorded above, then refused at once, so a page that
        # wants a CDN fails fast instead of hanging until a timeout.
        context.route(lambda url: not is_local_url(url), lambda route: route.abort())

    def open(self, notebook_name: str, timeout_s: float = 60.0) -> None:
        self.page.goto(self.server.notebook_url(notebook_name), timeout=timeout_s * 1000)
        self.page.wait_for_function(_NOTEBOOK_READY_JS, timeout=timeout_s * 1000)

    def run_all_cells(self, timeout_s: float = 150.0) -> None:
        """Run every cell, wait for the kernel to go idle, and fail on any cell error."""
        self.page.evaluate(_RUN_ALL_JS)
        try:
            self.page.wait_for_function(_ALL_EXECUTED_JS, timeout=timeout_s * 1000, polling=250)
        finally:
            errors = self.page.evaluate(_CELL_ERRORS_JS)
            if errors:
                raise AssertionError("notebook cells raised:\n" + "\n".join(errors))

    def widget_render_failures(self) -> list[str]:
        """Texts of outputs where JupyterLab says a widget or output could not be shown."""
        found = []
        for text in _WIDGET_RENDER_FAILURES:
            locator = self.page.get_by_text(text)
            found += [locator.nth(i).inner_text() for i in range(locator.count())]
        return found

    def screenshot_of(self, locator) -> bytes:
        """PNG of one element, whole: the viewport grows for the moment so nothing is clipped.

        The notebook scrolls inside its own panel, so an element taller than that panel would
        otherwise come out cut off, with the status bar across it.
        """
        viewport = self.page.viewport_size
        box = locator.bounding_box()
        needed = int(box["height"]) + 400 if box else viewport["height"]
        if needed > viewport["height"]:
            self.page.set_viewport_size({"width": viewport["width"], "height": needed})
        try:
            locator.scroll_into_view_if_needed()
            return locator.screenshot(animations="disabled")
        finally:
            self.page.set_viewport_size(viewport)

    def run_cell(self, index: int, timeout_s: float = 120.0) -> None:
        """Run one cell (negative: from the end) as a person does, and wait until it is done."""
        count_before = self.page.evaluate(_EXECUTION_COUNT_JS, index)
        self.page.evaluate(_RUN_CELL_JS, index)
        self.page.wait_for_function(
            "([index, before]) => {"
            f" const count = ({_EXECUTION_COUNT_JS})(index);"
            f" return count !== null && count !== before && ({_ALL_EXECUTED_JS})(); }}",
            arg=[index, count_before],
            timeout=timeout_s * 1000,
            polling=250,
        )
        errors = self.page.evaluate(_CELL_ERRORS_JS)
        if errors:
            raise AssertionError("notebook cells raised:\n" + "\n".join(errors))
