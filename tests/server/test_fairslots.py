"""Fair turns at the checker pool (server/fairslots.py): a user never holds more than their share, a waiting user
is served before a flooding one gets another turn, and a caller that gives up leaves no slot behind."""

from __future__ import annotations

import asyncio

import pytest

from oldphoto.server.fairslots import FairSlots


def run(coroutine):  # noqa: ANN001, ANN201 - test helper
    return asyncio.run(coroutine)


async def _hold(slots: FairSlots, key: str, log: list[str], release: asyncio.Event) -> None:
    async with slots.hold(key):
        log.append(key)
        await release.wait()


def test_one_key_holds_at_most_its_share_and_leaves_the_rest_to_others() -> None:
    async def scenario() -> None:
        slots = FairSlots(size=2, share=1)
        release = asyncio.Event()
        log: list[str] = []
        flood = [asyncio.create_task(_hold(slots, "attacker", log, release)) for _ in range(6)]
        await asyncio.sleep(0)
        assert slots.held_by("attacker") == 1 and slots.waiting("attacker") == 5
        victim = asyncio.create_task(_hold(slots, "victim", log, release))
        await asyncio.sleep(0)
        assert log == ["attacker", "victim"]  # the free slot went to the victim at once
        release.set()
        await asyncio.gather(*flood, victim)
        assert slots.in_use == 0

    run(scenario())


def test_a_waiting_key_is_served_before_a_flooding_key_gets_another_turn() -> None:
    async def scenario() -> None:
        slots = FairSlots(size=2, share=2)  # no share cap below the pool: only the turn order is fair
        log: list[str] = []
        gates = {name: asyncio.Event() for name in ("a1", "a2", "a3", "b1")}

        async def one(key: str, name: str) -> None:
            async with slots.hold(key):
                log.append(name)
                await gates[name].wait()

        tasks = [asyncio.create_task(one("a", n)) for n in ("a1", "a2", "a3")]
        await asyncio.sleep(0)
        tasks.append(asyncio.create_task(one("b", "b1")))
        await asyncio.sleep(0)
        assert log == ["a1", "a2"]
        gates["a1"].set()
        await asyncio.sleep(0.01)
        assert log == ["a1", "a2", "b1"]  # b waited for its turn; a's third comes after
        for gate in gates.values():
            gate.set()
        await asyncio.gather(*tasks)
        assert log == ["a1", "a2", "b1", "a3"]

    run(scenario())


def test_a_cancelled_waiter_or_holder_leaves_no_slot_behind() -> None:
    async def scenario() -> None:
        slots = FairSlots(size=1, share=1)
        release = asyncio.Event()
        log: list[str] = []
        holder = asyncio.create_task(_hold(slots, "a", log, release))
        waiter = asyncio.create_task(_hold(slots, "b", log, release))
        await asyncio.sleep(0)
        waiter.cancel()
        holder.cancel()
        await asyncio.gather(holder, waiter, return_exceptions=True)
        assert slots.in_use == 0 and slots.waiting("b") == 0
        async with slots.hold("c"):
            assert slots.in_use == 1

    run(scenario())


def test_the_share_must_fit_the_pool() -> None:
    with pytest.raises(ValueError):
        FairSlots(size=2, share=3)
