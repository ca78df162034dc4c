"""One read shared by the calls made at once, never older than any of them."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Coalesced(Generic[T]):
    """Calls of ``read`` made at once share one run of it.

    A call made while a run is going waits for the next run, which starts when that one
    ends: what a call gets was read after the call was made (a burst of N calls costs two
    runs, not N), and a failure reaches every call that waited for that run.
    """

    def __init__(self, read: Callable[[], Awaitable[T]], name: str) -> None:
        self._read = read
        self._name = name
        self._next: asyncio.Future[T] | None = None
        self._runner: asyncio.Task[None] | None = None

    async def __call__(self) -> T:
        if self._next is None:
            self._next = asyncio.get_running_loop().create_future()
            if self._runner is None or self._runner.done():
                self._runner = asyncio.create_task(self._run(), name=self._name)
        # shielded: one caller cancelled does not cancel the run the others wait for
        return await asyncio.shield(self._next)

    async def _run(self) -> None:
        while self._next is not None:
            waiting, self._next = self._next, None
            try:
                value = await self._read()
            except asyncio.CancelledError:
                waiting.cancel()
                raise
            except Exception as exc:  # noqa: BLE001 - handed to every caller, which raises it
                waiting.set_exception(exc)
                waiting.exception()  # retrieved: every caller may have gone
                continue
            waiting.set_result(value)
