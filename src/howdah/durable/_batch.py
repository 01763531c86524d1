"""Natural batching: requests that wait at the same moment go to the database together (:class:`Batcher`).

Requests are sent by a task of the batcher's, one batch at a time: those made in the same turn of the event loop
go out together, and those made while a batch is out go together once it is back. Nothing lingers on a timer,
so a lone request pays only the hop to that task, and a busy worker's requests share round trips and commits
in proportion to how many wait at once. (Sending a lone request from its caller's own task instead saves the
hop, about 0.2 ms a step for a lone workflow, but sends alone the first of the requests made in one turn: with
16 workflows in flight a worker then finished a quarter fewer of them.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

I = TypeVar("I")  # noqa: E741 - an item
R = TypeVar("R")  # a result

MAX_BATCH = 64


class Batcher(Generic[I, R]):
    """Sends items through ``send`` (items → one result or exception per item, in order), one batch at a time,
    at most ``max_batch`` items per batch.

    ``send`` raising fails every item of its batch with that exception. A caller that stops waiting (cancelled)
    does not take its item back: it may already be out; its result is dropped.
    """

    def __init__(
        self, send: Callable[[list[I]], Awaitable[Sequence[R | BaseException]]], max_batch: int = MAX_BATCH
    ) -> None:
        self._send = send
        self._max = max_batch
        self._waiting: list[tuple[I, asyncio.Future[R]]] = []
        self._sender: asyncio.Task[None] | None = None

    async def submit(self, item: I) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if self._sender is None:
            self._sender = asyncio.create_task(self._send_all(), name="howdah-batch")
        return await future

    async def _send_all(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting[: self._max], self._waiting[self._max :]
                try:
                    results = await self._send([item for item, _ in batch])
                    if len(results) != len(batch):
                        raise RuntimeError(f"a batch of {len(batch)} came back with {len(results)} results")
                except asyncio.CancelledError:
                    self._waiting[:0] = batch
                    raise
                except Exception as exc:  # every item of the batch fails with it
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, future), result in zip(batch, results, strict=True):
                    if future.done():
                        continue
                    if isinstance(result, BaseException):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
        finally:
            self._sender = None
            waiting, self._waiting = self._waiting, []
            for _, future in waiting:  # only when the sender itself was cancelled: nobody would send them
                future.cancel()
