"""Start the teacher's engine while round 0 trains: the first round needs it right after.

A back-end with a `start()` (the in-process engines: vLLM, llama.cpp, transformers) is started in a
background thread when the run begins; the first generating round waits for it. A failure to start is
raised there, as the same TeacherError the round would have met. Not used with
`teacher.unload_before_train` (the engine and the student then share one device's memory by turns).
"""

from __future__ import annotations

import logging
import threading

log = logging.getLogger(__name__)


class Warmup:
    def __init__(self, teacher=None):
        self.teacher, self.error = teacher, None
        self.thread: threading.Thread | None = None
        if teacher is not None and callable(getattr(teacher, "start", None)):
            self.thread = threading.Thread(target=self._run, name="teacher-warmup", daemon=True)
            self.thread.start()

    def _run(self) -> None:
        try:
            self.teacher.start()
        except BaseException as exc:  # noqa: BLE001 -- handed to the thread that needs the engine
            self.error = exc

    def settle(self) -> None:
        """At the end of a run: let a start still in progress finish, whatever it raised (the run's own
        error, if any, is the one to report)."""
        if self.thread is not None:
            self.thread.join()
            self.thread = None

    def wait(self) -> None:
        """Block until the engine is up; raise what starting it raised (once)."""
        if self.thread is None:
            return
        self.thread.join()
        self.thread = None
        if self.error is not None:
            error, self.error = self.error, None
            raise error
