"""Per-user and per-address rate limits (the `limits` library, moving windows): in memory, or in Redis in scale-out
mode, so that a user's limits hold across every web node."""

from __future__ import annotations

import math
import time

from limits import RateLimitItem, parse
from limits.storage import MemoryStorage, storage_from_string
from limits.strategies import MovingWindowRateLimiter

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
    def __init__(self, storage_url: str | None = None, rules: dict[str, str] | None = None, namespace: str = "oldphoto") -> None:
        self.storage = storage_from_string(storage_url) if storage_url else MemoryStorage()
        self.limiter = MovingWindowRateLimiter(self.storage)
        self.rules: dict[str, RateLimitItem] = {name: parse(rule) for name, rule in (rules or RULES).items()}
        self.namespace = namespace  # deployments sharing one Redis keep their counts apart

    def hit(self, rule: str, key: str) -> None:
        item = self.rules[rule]
        if not self.limiter.hit(item, self.namespace, rule, key):
            reset, _ = self.limiter.get_window_stats(item, self.namespace, rule, key)
            raise RateLimited("Too many requests; slow down a little.", retry_after=max(1, math.ceil(reset - time.time())))

    def allow(self, rule: str, key: str) -> bool:
        return self.limiter.hit(self.rules[rule], self.namespace, rule, key)
