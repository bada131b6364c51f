"""A graceful stop in two steps, as an operator's SIGTERM asks for it (docs/deploy.md, "Stopping a node").

The first signal drains: no new job is taken, and the jobs running may finish within `grace_s`; what is still running
then is handed back to the queue at once (not after its lease). A second signal stops at once.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable


class Shutdown:
    def __init__(self, grace_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.grace_s = grace_s
        self.clock = clock
        self.draining = threading.Event()
        self.stopped = threading.Event()  # set when the stop is due: the second signal, or the grace spent
        self.deadline = math.inf

    def signal(self) -> None:
        """A SIGTERM or SIGINT: the first drains, the next stops."""
        if self.draining.is_set():
            self.stopped.set()
            return
        self.deadline = self.clock() + self.grace_s
        self.draining.set()

    def due(self, running: int) -> bool:
        """True once the stop is due: stopped, or draining with nothing left running or the grace spent."""
        if self.draining.is_set() and (running == 0 or self.clock() >= self.deadline):
            self.stopped.set()
        return self.stopped.is_set()
