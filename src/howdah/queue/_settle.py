"""Batched settling: handled messages are deleted (or archived) together, failed ones released together.

A consumer hands the :class:`Settler` each message once its handler has returned (never before). Settles wait
in memory and go out in ONE statement (``pgmq.howdah_settle_and_read``) when ``settle_batch_size`` of them are
pending, after ``settle_linger`` seconds, or, most often, together with the consumer's next read, which then
costs no round trip of its own. Stopping flushes what is pending.

The at-least-once window is the one a single ack has: a message whose handler returned but whose settle has
not committed yet (a crash, a lost connection) is delivered again once its visibility timeout runs out. Until
it is settled a message stays *held*, so heartbeats keep it invisible however long the linger.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from howdah.queue import _ops
from howdah.queue._errors import QueueError
from howdah.queue._types import Message

log = logging.getLogger("howdah.queue.consumer")

Release = tuple[int, int, str | None]  # msg_id, delay in seconds, the handler's error
Execute = Callable[[_ops.Op[Any]], Awaitable[Any]]


@dataclass
class Pending:
    """Settles not yet written: pure bookkeeping, no I/O."""

    done: list[int] = field(default_factory=list)
    released: list[Release] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.done) + len(self.released)

    def take(self) -> Pending:
        taken = Pending(self.done, self.released)
        self.done, self.released = [], []
        return taken

    def put_back(self, taken: Pending) -> None:
        self.done[:0] = taken.done
        self.released[:0] = taken.released


class Settler:
    """Collects the settles of one consumer and writes them in batches (see the module docstring).

    ``forget(ids)`` is called before a batch is written: the consumer stops holding (heartbeating) them, so no
    heartbeat can land after a release and push its retry back.
    """

    def __init__(
        self,
        queue: str,
        execute: Execute,
        forget: Callable[[list[int]], Awaitable[None]],
        *,
        archive: bool,
        batch_size: int,
        linger: float,
    ) -> None:
        self.queue = queue
        self._execute = execute
        self._forget = forget
        self._archive = archive
        self._batch_size = batch_size
        self._linger = linger
        self._pending = Pending()
        self._timer: asyncio.Task[None] | None = None
        self._flushing: set[asyncio.Task[Any]] = set()

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def done(self, message: Message) -> None:
        """``message`` was handled: delete (or archive) it with the next batch."""
        self._pending.done.append(message.msg_id)
        await self._after_add()

    async def release(self, message: Message, delay: int, error: str | None) -> None:
        """``message`` failed: make it visible again after ``delay`` seconds, with the next batch."""
        self._pending.released.append((message.msg_id, delay, error))
        await self._after_add()

    async def _after_add(self) -> None:
        if self._linger <= 0:
            await self.flush()  # settle each message at once, before its slot moves on
        elif len(self._pending) >= self._batch_size:
            self._spawn_flush()
        elif self._timer is None:
            self._timer = asyncio.create_task(self._linger_then_flush(), name="howdah-settle-linger")

    async def _linger_then_flush(self) -> None:
        await asyncio.sleep(self._linger)
        self._timer = None
        await self._background_flush()

    def _spawn_flush(self) -> None:
        task = asyncio.create_task(self._background_flush(), name="howdah-settle")
        self._flushing.add(task)
        task.add_done_callback(self._flushing.discard)

    async def _background_flush(self) -> None:
        try:
            await self.flush()
        except QueueError as exc:  # kept pending: the next read or flush writes them
            log.warning("settling messages of %s failed (%s); retried with the next statement", self.queue, exc)

    async def flush(self) -> None:
        """Write every pending settle now (no read)."""
        if self._pending:
            await self.settle_and_read(0, 0)

    async def settle_and_read(self, vt: int, qty: int) -> list[Message]:
        """Write the pending settles and read up to ``qty`` messages, in one statement.

        On a database error the settles are put back (written again with the next statement: deleting twice
        is harmless) and the error propagates; the messages of a read that failed come back after ``vt``.
        """
        taken = self._pending.take()
        if self._timer is not None and not self._pending:
            self._timer.cancel()
            self._timer = None
        if taken:
            await self._forget(taken.done + [r[0] for r in taken.released])
        elif qty == 0:
            return []
        try:
            messages: list[Message] = await self._execute(
                _ops.settle_and_read(self.queue, taken.done, self._archive, taken.released, vt, qty)
            )
        except BaseException:
            self._pending.put_back(taken)
            raise
        return messages

    async def close(self) -> None:
        """Flush what is pending (at most a few attempts); what cannot be written reappears after its vt."""
        if self._timer is not None:
            self._timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timer
            self._timer = None
        for task in list(self._flushing):
            with contextlib.suppress(Exception):
                await task
        for _ in range(3):
            try:
                await self.flush()
                return
            except Exception as exc:
                log.warning("settling %d message(s) of %s failed: %s", len(self._pending), self.queue, exc)
                await asyncio.sleep(0.1)
        log.warning(
            "could not settle %d message(s) of %s; they are delivered again when their vt runs out",
            len(self._pending),
            self.queue,
        )
