"""Calls made at once share one read, and none gets a value read before it was made."""

from __future__ import annotations

import asyncio

import pytest

from ferry_promotion.adapters.coalesce import Coalesced


async def settle() -> None:
    """Let every task that can run, run until it waits."""
    for _ in range(10):
        await asyncio.sleep(0)


class Remote:
    """A value that changes; each read records when it started and takes a while."""

    def __init__(self) -> None:
        self.value = 0
        self.reads = 0
        self.gate = asyncio.Event()
        self.fail: Exception | None = None

    async def read(self) -> int:
        self.reads += 1
        seen = self.value  # the value as of the read's start
        await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        return seen


async def test_a_burst_costs_two_reads_and_no_call_gets_a_value_older_than_itself() -> None:
    remote = Remote()
    head = Coalesced(remote.read, "test")
    first = asyncio.create_task(head())
    await settle()
    assert remote.reads == 1  # running, with value 0
    remote.value = 1  # the remote moves while the first read runs
    later = [asyncio.create_task(head()) for _ in range(20)]
    await settle()
    assert remote.reads == 1  # the 20 wait for the next read, not this one
    remote.gate.set()
    assert await first == 0
    assert await asyncio.gather(*later) == [1] * 20  # read after they were made
    assert remote.reads == 2


async def test_a_failed_read_reaches_every_waiter_and_the_next_call_reads_again() -> None:
    remote = Remote()
    head = Coalesced(remote.read, "test")
    remote.fail = RuntimeError("unreachable")
    calls = [asyncio.create_task(head()) for _ in range(3)]
    await settle()
    remote.gate.set()
    for call in calls:
        with pytest.raises(RuntimeError, match="unreachable"):
            await call
    remote.fail = None
    remote.value = 7
    assert await head() == 7
    assert remote.reads == 2


async def test_a_cancelled_caller_does_not_cancel_the_read_the_others_wait_for() -> None:
    remote = Remote()
    head = Coalesced(remote.read, "test")
    gone = asyncio.create_task(head())
    stays = asyncio.create_task(head())
    await settle()
    gone.cancel()
    await settle()
    remote.value = 3
    remote.gate.set()
    assert await stays == 0
    assert gone.cancelled()
