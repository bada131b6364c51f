from __future__ import annotations

import threading
from typing import Protocol

from oldphoto.errors import Cancelled


class Flag(Protocol):
    def set(self) -> None: ...
    def is_set(self) -> bool: ...


class CancelToken:
    """Checked between nodes and at every reported block or tile.

    Backed by any event-like flag, so a `multiprocessing.Event` lets another process cancel a run.
    """

    def __init__(self, flag: Flag | None = None) -> None:
        self._flag: Flag = flag if flag is not None else threading.Event()

    def cancel(self) -> None:
        self._flag.set()

    @property
    def cancelled(self) -> bool:
        return self._flag.is_set()

    def check(self) -> None:
        if self._flag.is_set():
            raise Cancelled()
