"""Fair turns at a few slots: no one key (a user) holds more than its share, and waiting keys are served in turn.

A plain lock or semaphore serves whoever came first, so one user who sends six slow files at once makes everyone
behind them wait for all six. Here each key holds at most `share` slots at a time, however many requests it has
waiting, and a freed slot goes to the waiting key that holds the fewest, the one that has waited longest for its
turn among equals (round robin over keys, first come first served within a key). With two slots and a share of
one, a user's flood always leaves a slot to the others.
"""

from __future__ import annotations

import asyncio
from collections import Counter, OrderedDict, deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class FairSlots:
    def __init__(self, size: int, share: int) -> None:
        if not 1 <= share <= size:
            raise ValueError("share must be between 1 and size")
        self.size = size
        self.share = share
        self._held: Counter[str] = Counter()
        # Keys with waiters, oldest turn first; a key goes to the back each time it is served.
        self._waiting: OrderedDict[str, deque[asyncio.Future[None]]] = OrderedDict()

    @property
    def in_use(self) -> int:
        return sum(self._held.values())

    def held_by(self, key: str) -> int:
        return self._held[key]

    def waiting(self, key: str) -> int:
        return len(self._waiting.get(key, ()))

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        await self._acquire(key)
        try:
            yield
        finally:
            self._release(key)

    async def _acquire(self, key: str) -> None:
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(key, deque()).append(turn)
        self._grant()
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self._release(key)  # granted just as the waiter gave up: pass the slot on
            else:
                self._forget(key, turn)
            raise

    def _release(self, key: str) -> None:
        self._held[key] -= 1
        if self._held[key] <= 0:
            del self._held[key]
        self._grant()

    def _grant(self) -> None:
        while self.in_use < self.size:
            # The waiting key that holds the fewest slots, the longest-waiting one among equals.
            eligible = [k for k in self._waiting if self._held[k] < self.share]
            if not eligible:
                return  # every waiting key already holds its share
            key = min(eligible, key=self._held.__getitem__)
            queue = self._waiting[key]
            turn = queue.popleft()
            if not queue:
                del self._waiting[key]
            if turn.done():  # its waiter was cancelled and has not run since: nothing to grant
                continue
            if queue:
                self._waiting.move_to_end(key)  # served: back in line behind the other keys
            self._held[key] += 1
            turn.set_result(None)

    def _forget(self, key: str, turn: asyncio.Future[None]) -> None:
        queue = self._waiting.get(key)
        if queue is not None and turn in queue:
            queue.remove(turn)
            if not queue:
                del self._waiting[key]
