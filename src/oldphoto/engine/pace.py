"""How fast a run's nodes go, in their own units of work (DDColor's blocks, Real-ESRGAN's tiles, a filter's bands).

Nodes count units through their reporter (`NodeReporter.count`); whoever watches the run (a worker's job meter, on
its own thread) reads `now()` for the live speed and `summary()` at the end. A count costs a lock and an append.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from oldphoto.protocol.metrics import Speed

# The live speed is measured over about this long: steady enough to read, recent enough to move with the work.
WINDOW_S = 3.0


@dataclass
class _Counted:
    unit: str
    began: float  # the start of the stage the node counts in
    done: int = 0
    total: int = 0
    last: float = 0.0
    recent: deque[tuple[float, int]] = field(default_factory=deque)  # (time, done) within the window


class Pace:
    def __init__(self, clock: Callable[[], float] = time.monotonic, window_s: float = WINDOW_S) -> None:
        self.clock = clock
        self.window_s = window_s
        self._lock = threading.Lock()
        self._stage_began: dict[str, float] = {}
        self._nodes: dict[str, _Counted] = {}
        self._current: str | None = None

    def stage_began(self, node: str) -> None:
        with self._lock:
            self._stage_began[node] = self.clock()
            self._current = None  # what counted before is no longer what the run does (a model loads, say)

    def counted(self, node: str, unit: str, done: int, total: int) -> None:
        now = self.clock()
        with self._lock:
            counted = self._nodes.get(node)
            if counted is None or counted.unit != unit:
                began = self._stage_began.get(node, now)
                counted = self._nodes[node] = _Counted(unit, began)
                counted.recent.append((began, 0))
            counted.done, counted.total, counted.last = done, total, now
            counted.recent.append((now, done))
            while len(counted.recent) > 2 and now - counted.recent[1][0] >= self.window_s:
                counted.recent.popleft()
            self._current = node

    def now(self) -> Speed | None:
        """The node counting in the current stage, with its speed over the last few seconds (its `per_s` None until a
        second count); None between counting stages."""
        with self._lock:
            if self._current is None:
                return None
            node, counted = self._current, self._nodes[self._current]
            (t0, d0), (t1, d1) = counted.recent[0], counted.recent[-1]
            per_s = (d1 - d0) / (t1 - t0) if t1 > t0 else None
            return _speed(node, counted, per_s)

    def summary(self) -> list[Speed]:
        """Every node that counted: units done over the time from its stage's start to its last unit."""
        with self._lock:
            return [
                _speed(node, c, c.done / (c.last - c.began) if c.last > c.began else None) for node, c in self._nodes.items()
            ]


def _speed(node: str, counted: _Counted, per_s: float | None) -> Speed:
    seconds = max(0.0, counted.last - counted.began)
    return Speed(
        node=node,
        unit=counted.unit,
        done=counted.done,
        total=counted.total,
        seconds=round(seconds, 3),
        per_s=None if per_s is None else round(per_s, 3),
    )
