"""Per-user and per-address rate limits (the `limits` library, moving windows): in memory, or in Redis in scale-out
mode, so that a user's limits hold across every web node."""

from __future__ import annotations

import math
import time

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string

from oldphoto.errors import OldphotoError


class RateLimited(OldphotoError):
    code = "rate_limited"
    http_status = 429

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


RULES: dict[str, str] = {
    "session:address": "30/minute",
    "job:user": "30/minute",
    "job:address": "60/minute",
    "ws_message:connection": "20/second",
}


class RateLimiter:
    """Async, so that a count kept in Redis (scale-out) is never a blocking call on the event loop."""

    def __init__(self, storage_url: str | None = None, rules: dict[str, str] | None = None, namespace: str = "oldphoto") -> None:
        self.storage = _async_storage(storage_url) if storage_url else MemoryStorage()
        self.limiter = MovingWindowRateLimiter(self.storage)
        self.rules: dict[str, RateLimitItem] = {name: parse(rule) for name, rule in (rules or RULES).items()}
        self.namespace = namespace  # deployments sharing one Redis keep their counts apart

    async def hit(self, rule: str, key: str) -> None:
        item = self.rules[rule]
        if not await self.limiter.hit(item, self.namespace, rule, key):
            reset, _ = await self.limiter.get_window_stats(item, self.namespace, rule, key)
            raise RateLimited("Too many requests; slow down a little.", retry_after=max(1, math.ceil(reset - time.time())))

    async def allow(self, rule: str, key: str) -> bool:
        return await self.limiter.hit(self.rules[rule], self.namespace, rule, key)


def _async_storage(url: str) -> Storage:
    """A Redis URL as the `limits` library's asyncio storage, on redis-py (already a dependency of scale-out)."""
    scheme, rest = url.split("://", 1)
    storage = storage_from_string(f"async+{scheme}://{rest}", implementation="redispy")
    assert isinstance(storage, Storage)  # the `async+` scheme gives the asyncio kind
    return storage
