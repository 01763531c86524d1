"""The streaming consumer: reads that fit the load, batched settling, heartbeats and dead-lettering.

One engine serves both APIs: ``async with queue.consume(name) as messages: async for m in messages`` and the
handler loop ``queue.work(name, handler, concurrency=N)`` (sync or async handlers).

Delivery is at-least-once. A message read by this consumer is *held* until it is settled: while held, a
heartbeat keeps pushing its visibility timeout forward, so no other consumer sees it however long the handler
runs. A handled message is deleted (or archived) and a failed one released with a retry delay and its error
recorded, in batches (:mod:`._settle`), and the next read carries the batch in the same statement. A message
read more than ``max_reads`` times is moved to the dead-letter queue instead of being handled again. If this
process dies, its held messages (handled but unsettled ones too) reappear when their timeout runs out.

Wake-ups come from the process's shared LISTEN connection (:mod:`._listener`), one waiting consumer per
notification. Of all the processes consuming a queue one (the leader) hears its notifications; the others are
woken when the leader's process cannot keep up, and poll every ``poll_interval``, the fallback when notifications
do not come. Under a steady stream a read takes several messages: after a read that came back short, the next one
comes ``read_interval`` after it at the earliest, while a read that came back full is followed by the next at once;
and while notifications come faster than reads, the listener stops listening and wakes a consumer every
``read_interval`` instead (see :mod:`._listener` for what a notification costs).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import dataclasses
import inspect
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from howdah.backoff import Backoff
from howdah.queue import _ops
from howdah.queue._errors import InvalidArgument, QueueDatabaseError, QueueError
from howdah.queue._listener import Listener
from howdah.queue._options import CONCURRENCY, ConsumeOptions, notify_channel
from howdah.queue._readsize import ReadSize
from howdah.queue._settle import Settler
from howdah.queue._types import Message

if TYPE_CHECKING:
    from howdah.queue._client import AsyncQueue

log = logging.getLogger("howdah.queue.consumer")

OUTAGE = Backoff(initial=0.1, cap=5.0)  # riding out a lost connection


class _Detach:
    def __repr__(self) -> str:
        return "DETACH"


DETACH = _Detach()
"""A handler returns this when it settled its message itself (deleted it, or parked it with ``set_vt``, after
:meth:`Consumer.detach`): the consumer then neither acks it nor keeps extending its visibility timeout."""


class Consumer:
    """Reads ``queue`` and hands out messages; use as ``async with`` + ``async for``, or :meth:`run`."""

    def __init__(self, aqueue: AsyncQueue, queue: str, options: ConsumeOptions) -> None:
        self._q = aqueue
        self.queue = queue
        self.options = options
        self._size = ReadSize(options.batch_size, options.max_batch_size, options.read_ahead)
        self._buffer: collections.deque[Message] = collections.deque()
        self._held: dict[int, Message] = {}
        self._fill_lock = asyncio.Lock()
        self._heartbeat_lock = asyncio.Lock()
        self._stop = options.stop or asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._current: Message | None = None
        self._started = False
        self._signals: list[int] = []
        self._channel = notify_channel(queue)
        self._listener: Listener | None = None
        self._drained = False  # the last read came back short: wait for a wake-up before the next
        self._seen = 0  # the channel's wake-up count before the last read
        self._last_read = 0.0
        self._settler = Settler(
            queue, aqueue.execute, self._forget, archive=options.on_success == "archive",
            batch_size=options.settle_batch_size, linger=options.settle_linger,
        )  # fmt: skip
        self.finished = 0
        """How many messages this consumer's handlers finished (acked, released or detached)."""
        self.reads = 0
        """How many reads this consumer made (each one statement, settles included)."""
        self.empty_reads = 0
        """How many of them found no message."""
        self.before_wait: Callable[[], Awaitable[None]] | None = None
        """Test hook: awaited after a read found the queue drained, before waiting for a wake-up."""

    # ------------------------------------------------------------------------------------------ lifecycle
    async def __aenter__(self) -> Consumer:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        if self._current is not None:
            current, self._current = self._current, None
            if exc is None:
                await self.ack(current)
            else:
                await self.nack(current, exc)
        await self.close()

    async def start(self) -> None:
        if self._started:
            return
        await self._q.open()
        opts = self.options
        conn = self._q._conn
        if conn is not None and not conn.autocommit:
            raise InvalidArgument(
                "a consumer needs an autocommit connection (its acks must commit on their own); pass a DSN, a pool "
                "or a connection with autocommit=True"
            )
        await self._q.metrics(self.queue)  # QueueNotFound now rather than on the first read
        if opts.dead_letter_queue:
            await self._q.create(opts.dead_letter_queue)
        throttle = await self._q.execute(_ops.notify_throttle(self.queue))
        if opts.listen and opts.enable_notify and throttle is None:
            try:
                await self._q.enable_notify(self.queue, 0)
            except QueueError as exc:  # another consumer enabled it at the same moment: fine
                log.info("enabling notify on %s: %s", self.queue, exc)
            throttle = await self._q.execute(_ops.notify_throttle(self.queue))
        self._channel = await self._q.execute(_ops.listen_channel(self.queue))
        self._tasks.append(asyncio.create_task(self._heartbeat_loop(), name="howdah-heartbeat"))
        if any(q.is_partitioned for q in await self._q.list_queues() if q.queue_name.lower() == self.queue.lower()):
            self._tasks.append(asyncio.create_task(self._maintenance_loop(), name="howdah-maintenance"))
        if opts.listen and self._q.conninfo:
            self._listener = Listener.shared(self._q.conninfo)
            await self._listener.subscribe(
                self._channel, throttle or 0, poll_interval=opts.poll_interval, read_interval=opts.read_interval
            )
        if opts.handle_signals:
            self._install_signals()
        self._started = True

    def stop(self) -> None:
        """Ask the consumer to stop: no new messages are handed out; prefetched ones are released."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    async def close(self) -> None:
        self.stop()
        for task in self._tasks:
            task.cancel()
        for failed in await asyncio.gather(*self._tasks, return_exceptions=True):
            if isinstance(failed, Exception):  # a background loop that failed: say so, then close anyway
                log.error("queue %s: background task failed: %r", self.queue, failed, exc_info=failed)
        self._tasks.clear()
        self._remove_signals()
        if self._listener is not None:
            listener, self._listener = self._listener, None
            await listener.unsubscribe(self._channel)
        await self._settler.close()
        await self._release_all()

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(signum, self.stop)
                self._signals.append(signum)
            except (RuntimeError, ValueError, NotImplementedError):  # not the main thread / platform
                log.debug("cannot install a handler for signal %s here", signum)

    def _remove_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in self._signals:
            loop.remove_signal_handler(signum)
        self._signals.clear()

    # ------------------------------------------------------------------------------------------ iteration
    def __aiter__(self) -> Consumer:
        return self

    async def __anext__(self) -> Message:
        if not self._started:
            raise QueueError("iterate a consumer inside `async with queue.consume(...) as messages:`")
        if self._current is not None:
            current, self._current = self._current, None
            await self.ack(current)
        message = await self.next()
        if message is None:
            raise StopAsyncIteration
        self._current = message
        return message

    async def next(self) -> Message | None:
        """The next message to handle, waiting for one; ``None`` once the consumer is stopping."""
        while not self.stopping:
            if self._buffer:
                return self._buffer.popleft()
            async with self._fill_lock:
                if not self._buffer and not self.stopping:
                    await self._fill()
        return None

    # ------------------------------------------------------------------------------------------- reading
    @property
    def concurrency(self) -> int:
        return self._size.concurrency

    def _room(self) -> int:
        """How many more messages this consumer may hold (those waiting to be settled are about to go)."""
        return max(0, self._size.limit() - (len(self._held) - self._settler.pending))

    async def _fill(self) -> None:
        """One read of as many messages as there is room for, carrying the pending settles. After a read that
        came back short, wait first for a wake-up (or the poll interval), then for ``read_interval``."""
        if self._drained:
            if self.before_wait is not None:
                await self.before_wait()
            woken = await self._wait_for_messages()
            if self.stopping:
                return
            if woken:
                await self._until_stopped(self._last_read + self.options.read_interval - time.monotonic())
        want = self._room()
        if want == 0:  # everything held is still being handled (an iterator's caller kept messages)
            await self._until_stopped(self.options.poll_interval)
            return
        if self.stopping:
            return
        self._seen = self._listener.seq(self._channel) if self._listener is not None else 0
        self._last_read = time.monotonic()
        messages = await self._retrying(lambda: self._settler.settle_and_read(self.options.vt, want))
        self.reads += 1
        self.empty_reads += not messages
        self._drained = len(messages) < want
        self._size.after_read(time.monotonic(), self.finished, want, len(messages))
        if self._listener is not None:
            self._listener.read(self._channel, self._seen, len(messages), self._drained)
        await self._take(messages)

    async def _wait_for_messages(self) -> bool:
        if self._listener is None:
            await self._until_stopped(self.options.poll_interval)
            return False
        wait = asyncio.ensure_future(self._listener.wait(self._channel, self._seen, self.options.poll_interval))
        stop = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({wait, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            if not wait.done():
                wait.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await wait
        return wait.done() and not wait.cancelled() and wait.result()

    async def _until_stopped(self, seconds: float) -> None:
        if seconds > 0 and not self.stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), seconds)

    async def _take(self, messages: list[Message]) -> None:
        opts = self.options
        dead = [m for m in messages if opts.max_reads is not None and m.read_ct > opts.max_reads]
        if dead:
            assert opts.dead_letter_queue is not None
            reason = f"read {max(m.read_ct for m in dead)} times, more than max_reads={opts.max_reads}"
            moved = await self._retrying(
                lambda: self._q.execute(
                    _ops.dead_letter(self.queue, [m.msg_id for m in dead], opts.dead_letter_queue or "", reason)
                )
            )
            log.warning("moved %d message(s) of %s to %s: %s", len(moved), self.queue, opts.dead_letter_queue, reason)
        for message in messages:
            if opts.max_reads is None or message.read_ct <= opts.max_reads:
                self._held[message.msg_id] = message
                self._buffer.append(message)

    # ------------------------------------------------------------------------------------------- settling
    async def ack(self, message: Message) -> None:
        """The message was handled: delete it (or archive it, with ``on_success="archive"``), batched."""
        if self._finish(message):
            await self._settle_quietly(self._settler.done(message))

    async def nack(self, message: Message, error: BaseException | str | None) -> None:
        """The handler failed: make the message visible again after the retry delay, noting the error."""
        if not self._finish(message):
            return
        delay = _ops.retry_delay(message.read_ct, self.options.retry_base, self.options.retry_cap)
        text = None if error is None else (error if isinstance(error, str) else f"{type(error).__name__}: {error}")
        await self._settle_quietly(self._settler.release(message, delay, text))

    async def _settle_quietly(self, settle: Awaitable[None]) -> None:
        try:
            await settle  # writes only with settle_linger=0; otherwise it is queued
        except QueueError as exc:  # kept pending; at worst it reappears after its vt: at-least-once, never lost
            log.warning("could not settle a message of %s yet: %s", self.queue, exc)

    async def _forget(self, msg_ids: list[int]) -> None:
        async with self._heartbeat_lock:
            for msg_id in msg_ids:
                self._held.pop(msg_id, None)

    async def _release(self, msg_ids: list[int], what: str) -> None:
        if not msg_ids:
            return
        try:
            await self._retrying(lambda: self._q.execute(_ops.set_vt_batch(self.queue, msg_ids, 0)), attempts=3)
        except QueueError as exc:
            log.warning(
                "could not release %d %s message(s) of %s (%s); they reappear after their vt",
                len(msg_ids), what, self.queue, exc,
            )  # fmt: skip

    async def _release_buffered(self) -> None:
        buffered = [m.msg_id for m in self._buffer]
        self._buffer.clear()
        await self._forget(buffered)
        await self._release(buffered, "prefetched")

    async def _release_all(self) -> None:
        """Give back every held message (prefetched or interrupted) so others can take it at once."""
        self._buffer.clear()
        ids = list(self._held)
        self._held.clear()
        await self._release(ids, "held")

    async def _retrying(self, call: Callable[[], Awaitable[Any]], attempts: int | None = None) -> Any:
        """Run ``call``, riding out lost connections (e.g. a Postgres restart) with capped backoff."""
        delays = OUTAGE.delays()
        failures = 0
        while True:
            try:
                return await call()
            except QueueDatabaseError as exc:
                failures += 1
                if attempts is not None and failures >= attempts:
                    raise
                if self.stopping and attempts is None:
                    return []
                delay = next(delays)
                log.warning("queue %s: %s; retrying in %.2fs", self.queue, exc, delay)
                await asyncio.sleep(delay)

    # ---------------------------------------------------------------------------------- background tasks
    async def detach(self, message: Message) -> None:
        """Stop holding ``message`` before settling it yourself (deleting it, or parking it with ``set_vt``).

        When this returns no heartbeat for it is in flight, so nothing overwrites the visibility timeout you set
        next. Return :data:`DETACH` from the handler so the consumer does not ack it either.
        """
        self._finish(message)
        await self._forget([message.msg_id])

    def _finish(self, message: Message) -> bool:
        """The consumer is done with ``message`` (its handler returned, failed or detached it): counted in
        :attr:`finished` if this consumer still holds it; returns whether it does."""
        self._forget_current(message)
        if message.msg_id not in self._held:
            return False
        self.finished += 1
        return True

    def _forget_current(self, message: Message) -> None:
        """A message settled by hand inside ``async for`` must not be acked again when the loop moves on."""
        if self._current is not None and self._current.msg_id == message.msg_id:
            self._current = None

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.options.heartbeat)
            async with self._heartbeat_lock:
                if not self._held:
                    continue
                try:
                    await self._q.execute(_ops.set_vt_batch(self.queue, list(self._held), self.options.vt))
                except QueueError as exc:
                    log.warning("heartbeat for %s failed: %s", self.queue, exc)

    async def _maintenance_loop(self) -> None:
        while True:
            try:
                await self._q.execute(_ops.maintain(self.queue))
            except QueueError as exc:
                log.warning("partition maintenance of %s failed: %s", self.queue, exc)
            await asyncio.sleep(self.options.maintenance_interval)

    # -------------------------------------------------------------------------------------- handler loop
    async def run(
        self,
        handler: Callable[[Message], Any],
        *,
        concurrency: int = CONCURRENCY,
        stop: asyncio.Event | None = None,
        handle_signals: bool = True,
    ) -> None:
        """Call ``handler`` for each message, up to ``concurrency`` at once, until stopped.

        Reads ask only for the room the consumer has (see :class:`ConsumeOptions`), and the next read starts as
        soon as no read message waits for a slot, while handlers still run.
        """
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise InvalidArgument("concurrency must be an integer of at least 1")
        self._size.concurrency = concurrency
        if stop is not None:
            self._stop = stop
        if handle_signals and not self.options.handle_signals:
            self.options = dataclasses.replace(self.options, handle_signals=True)
        is_async = inspect.iscoroutinefunction(handler)
        threads = None if is_async else ThreadPoolExecutor(concurrency, thread_name_prefix="howdah-handler")
        loop = asyncio.get_running_loop()
        running: set[asyncio.Task[None]] = set()
        slot_freed = asyncio.Event()

        async def handle(message: Message) -> None:
            try:
                if threads is None:
                    outcome = await handler(message)
                else:
                    outcome = await loop.run_in_executor(threads, contextvars.copy_context().run, handler, message)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("handler failed on message %s of %s: %r", message.msg_id, self.queue, exc)
                await self.nack(message, exc)
                return
            if outcome is DETACH:
                await self.detach(message)  # a no-op when the handler already detached it
                return
            await self.ack(message)

        def finished(task: asyncio.Task[None]) -> None:
            running.discard(task)
            slot_freed.set()

        async with self:
            stopped = asyncio.ensure_future(self._stop.wait())
            try:
                while not self.stopping:
                    while self._buffer and len(running) < concurrency:
                        task = asyncio.create_task(handle(self._buffer.popleft()), name="howdah-handler")
                        running.add(task)
                        task.add_done_callback(finished)
                    if not self._buffer and self._room() > 0:
                        await self._fill()
                        continue
                    slot_freed.clear()
                    freed = asyncio.ensure_future(slot_freed.wait())
                    await asyncio.wait({stopped, freed}, return_when=asyncio.FIRST_COMPLETED)
                    freed.cancel()
            finally:
                self.stop()
                stopped.cancel()
                await self._release_buffered()  # read, not yet handled: others may take them right away
                if running:
                    _, pending = await asyncio.wait(running, timeout=self.options.shutdown_timeout)
                    for task in pending:  # handlers that did not finish in time: their messages are released
                        task.cancel()
                    await asyncio.gather(*pending, return_exceptions=True)
                if threads is not None:
                    threads.shutdown(wait=False)
