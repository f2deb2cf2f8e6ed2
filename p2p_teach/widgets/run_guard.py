"""One run at a time: the polite refusal shared by the widgets that run edits.

Jupyter handles a button press while an earlier press's work is still running in a background
thread, so a widget must decide what a second press means. Here it means nothing: the status
line says an edit is running and the press is counted in ``refusals``. The logic is plain
Python, so tests can press twice without a browser.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

import ipywidgets as widgets


class RunGuard:
    """Claim before running, release after; a claim while running is refused politely.

    Args:
        status: the label that shows the refusal.
        busy_message: what the refusal says (called at refusal time, e.g. to name the step).
        disable: widgets disabled while a run holds the claim (Run and Save buttons).
        owner: the widget that gets the CSS class ``p2p-running`` while a run holds the claim.
    """

    def __init__(
        self,
        status: widgets.Label,
        busy_message: Callable[[], str],
        disable: Sequence[widgets.Widget] = (),
        owner: widgets.DOMWidget | None = None,
    ) -> None:
        self.status = status
        self.busy_message = busy_message
        self.disable = list(disable)
        self.owner = owner
        self.running = False
        self.refusals = 0
        self.thread: threading.Thread | None = None  # the last background run
        self._lock = threading.Lock()

    def claim(self) -> bool:
        """True: the caller may run (and must :meth:`release`). False: refused, status says so."""
        with self._lock:
            if self.running:
                self.refusals += 1
                self.status.value = self.busy_message()
                return False
            self.running = True
        for widget in self.disable:
            widget.disabled = True
        if self.owner is not None:
            self.owner.add_class("p2p-running")
        return True

    def release(self) -> None:
        """End the run: controls come back."""
        with self._lock:
            self.running = False
        for widget in self.disable:
            widget.disabled = False
        if self.owner is not None:
            self.owner.remove_class("p2p-running")

    def start(self, work: Callable[[], object], threaded: bool) -> bool:
        """Claim, run ``work`` (in a daemon thread if ``threaded``), release when it ends.

        Returns False when refused. A background run's thread is :attr:`thread`.
        """
        if not self.claim():
            return False

        def guarded() -> None:
            try:
                work()
            finally:
                self.release()

        if threaded:
            self.thread = threading.Thread(target=guarded, daemon=True)
            self.thread.start()
        else:
            guarded()
        return True

    def wait(self, timeout: float | None = None) -> None:
        """Wait for the last background run to end."""
        if self.thread is not None:
            self.thread.join(timeout)
