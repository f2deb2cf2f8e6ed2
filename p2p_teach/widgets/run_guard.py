"""One run at a time: the polite refusal shared by the widgets that run edits.

Jupyter handles a button press while an earlier press's work is still running in a background
thread, so a widget must decide what a second press means. Here it means nothing: the status
line says an edit is running and the press is counted in ``refusals``. The logic is plain
Python, so tests can press twice without a browser.

:class:`GuardedWidget` and :class:`GuardedEditWidget` are the parts the widgets share around
their guard: ``running``, ``refusals``, ``wait``, a failure shown in the widget, and (for the
widgets that run one edit) Run in a thread or now and the per-step progress bar.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import ipywidgets as widgets

if TYPE_CHECKING:
    from ..engine import EditResult, StepInfo


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

    def start(
        self,
        work: Callable[[], object],
        threaded: bool,
        on_error: Callable[[Exception], None] | None = None,
    ) -> bool:
        """Claim, run ``work`` (in a daemon thread if ``threaded``), release when it ends.

        ``on_error`` receives an exception that ``work`` lets out (a background thread would
        otherwise lose it where no learner looks); without it the exception propagates.
        Returns False when refused. A background run's thread is :attr:`thread`.
        """
        if not self.claim():
            return False

        def guarded() -> None:
            try:
                work()
            except Exception as error:
                if on_error is None:
                    raise
                on_error(error)
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


class GuardedWidget:
    """Mixin for a widget whose runs go through a :class:`RunGuard`.

    The widget sets ``guard``, ``status`` (a Label), ``progress`` (an IntProgress) and
    ``error`` (None, or the last run's failure as text) in its ``__init__``.
    """

    guard: RunGuard
    status: widgets.Label
    progress: widgets.IntProgress
    error: str | None

    @property
    def running(self) -> bool:
        """True while a run holds the claim."""
        return self.guard.running

    @property
    def refusals(self) -> int:
        """How many presses were refused because a run was going."""
        return self.guard.refusals

    def wait(self, timeout: float | None = None) -> object:
        """Wait for a background run to finish."""
        self.guard.wait(timeout)
        return None

    def _show_failure(self, error: Exception, what: str) -> None:
        """Show a failed run in the widget, not as a traceback: ``error``, red bar, status."""
        self.error = f"{type(error).__name__}: {error}"
        self.progress.bar_style = "danger"
        self.status.value = f"Could not {what}. {self.error}"

    def _show_late_failure(self, error: Exception) -> None:
        """A failure after the run's own checks (drawing its result): shown, not lost."""
        self._show_failure(error, "show the result")

    def _start(self, work: Callable[[], object], threaded: bool) -> bool:
        """Start ``work`` through the guard; a failure it lets out is shown in the widget."""
        return self.guard.start(work, threaded=threaded, on_error=self._show_late_failure)


class GuardedEditWidget(GuardedWidget):
    """Mixin for a widget that runs one :func:`~p2p_teach.engine.edit` per Run press.

    Besides :class:`GuardedWidget`'s attributes the widget sets ``threaded``, ``result`` (the
    last :class:`~p2p_teach.engine.EditResult`) and ``last_step``, and defines
    ``_run_claimed`` (the run itself, called while the guard holds the claim).
    """

    threaded: bool
    result: EditResult | None
    last_step: StepInfo | None

    def _run_claimed(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def request_run(self) -> bool:
        """What Run does: start the edit (in a thread if ``threaded``); False if refused."""
        return self._start(self._run_claimed, threaded=self.threaded)

    def run(self) -> EditResult | None:
        """Run the edit now, in this thread. Returns None if refused or if the edit failed."""
        if not self._start(self._run_claimed, threaded=False):
            return None
        return self.result if self.error is None else None

    def wait(self, timeout: float | None = None) -> EditResult | None:
        """Wait for a background run to finish; return the last result."""
        super().wait(timeout)
        return self.result

    def _show_step(self, info: StepInfo) -> None:
        """The progress bar after one engine step: ``step i/n``."""
        self.last_step = info
        self.progress.description = f"step {info.step + 1}/{info.num_steps}"
        self.progress.value = info.step + 1  # after its label: the two never disagree
