"""Ending a run on SIGINT or SIGTERM at a step boundary, so that it can save first.

`handled()` (the command line holds it) turns both signals into `Interrupted`; inside
`deferred()` (the training loop) a signal is only noted, and the loop asks `pending()`
after each step, saves, and raises `Interrupted` itself. A second signal while one is
pending does not wait. Outside `handled()` nothing changes (Ctrl-C is KeyboardInterrupt).
"""
from __future__ import annotations

import contextlib
import signal
import threading
from typing import Optional

SIGNALS = (signal.SIGINT, signal.SIGTERM)
_state = {"deferring": False, "pending": None}


class Interrupted(Exception):
    """The run was stopped by a signal; `step` steps were done, `saved` the checkpoint written (or None)."""

    def __init__(self, signum: int, step: Optional[int] = None, steps: Optional[int] = None,
                 saved: Optional[str] = None):
        self.signum, self.step, self.steps, self.saved = signum, step, steps, saved
        super().__init__(f"{self.name} at step {step} of {steps}" if step is not None else self.name)

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_status(self) -> int:
        return 128 + self.signum  # the shell's convention: 130 for SIGINT, 143 for SIGTERM


def _handler(signum, frame):
    if _state["deferring"] and _state["pending"] is None:
        _state["pending"] = signum
        return
    raise Interrupted(signum)


@contextlib.contextmanager
def handled():
    """SIGINT and SIGTERM raise Interrupted (or wait for the step boundary, see deferred())."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, _handler) for s in SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        _state.update(deferring=False, pending=None)


@contextlib.contextmanager
def deferred():
    """A signal arriving inside waits for the caller to ask pending() at its next step boundary."""
    _state.update(deferring=True, pending=None)
    try:
        yield
    finally:
        _state["deferring"] = False


def pending() -> Optional[int]:
    """The signal received since deferred() began, if any."""
    return _state["pending"]
