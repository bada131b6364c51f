"""The loop-lag probe measures how late a due task runs: a loop blocked for 200 ms shows a lag of about that."""

from __future__ import annotations

import asyncio
import time

from oldphoto.server.looplag import LoopLag


def test_a_blocked_loop_shows_as_lag_in_the_histogram_and_the_maximum() -> None:
    async def scenario() -> LoopLag:
        lag = LoopLag(interval_s=0.01)
        lag.start()
        await asyncio.sleep(0.05)
        time.sleep(0.2)  # the loop is blocked: what a synchronous store call on it would do
        await asyncio.sleep(0.05)
        await lag.stop()
        return lag

    lag = asyncio.run(scenario())
    assert 0.15 < lag.max_s < 0.5
    histogram, maximum = list(lag.collect())
    buckets = {sample.labels["le"]: sample.value for sample in histogram.samples if sample.name.endswith("_bucket")}
    assert buckets["0.1"] < buckets["0.25"] == buckets["+Inf"] == lag.samples
    assert maximum.samples[0].value == lag.max_s
