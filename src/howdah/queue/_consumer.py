"""The streaming consumer: LISTEN/NOTIFY wake-ups, batched prefetch, heartbeats, acks and dead-lettering.

One engine serves both APIs: ``async with queue.consume(name) as messages: async for m in messages`` and the
handler loop ``queue.work(name, handler)`` (sync or async).

Delivery is at-least-once. A message read by this consumer is *held*: while held, a heartbeat keeps pushing
its visibility timeout forward, so no other consumer sees it however long the handler runs. A handled message
is deleted (or archived); a failed one is released with an exponential retry delay and its error recorded in
its headers; a message read more than ``max_reads`` times is moved to the dead-letter queue instead of being
handled again. If this process dies, its held messages simply reappear when their timeout runs out.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import inspect
import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Literal

import psycopg
from psycopg import sql

from howdah.backoff import Backoff
from howdah.queue import _ops
from howdah.queue._errors import InvalidArgument, QueueDatabaseError, QueueError
from howdah.queue._names import validate_queue_name
from howdah.queue._types import Message

if TYPE_CHECKING:
    from howdah.queue._client import AsyncQueue

log = logging.getLogger("howdah.queue.consumer")

DLQ_SUFFIX = "_dlq"


class _Detach:
    def __repr__(self) -> str:
        return "DETACH"


DETACH = _Detach()
"""A handler returns this when it settled its message itself (deleted it, or parked it with ``set_vt``, after
:meth:`Consumer.detach`): the consumer then neither acks it nor keeps extending its visibility timeout."""


@dataclass(frozen=True)
class ConsumeOptions:
    """How a consumer reads and acknowledges (all durations in seconds)."""

    vt: int = 30
    batch_size: int = 10
    max_reads: int | None = 5
    dead_letter_queue: str | None = None
    on_success: Literal["delete", "archive"] = "delete"
    poll_interval: float = 1.0
    heartbeat_interval: float | None = None
    shutdown_timeout: float = 30.0
    listen: bool = True
    enable_notify: bool = True
    maintenance_interval: float = 60.0
    retry_base: float = 1.0
    retry_cap: float = 300.0
    stop: asyncio.Event | None = None
    handle_signals: bool = False

    @classmethod
    def build(cls, queue: str, **options: Any) -> ConsumeOptions:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise InvalidArgument(f"unknown consumer option(s) {unknown}; known: {sorted(known)}")
        validate_queue_name(queue)
        opts = cls(**options)
        for name in ("vt", "batch_size", "max_reads"):
            value = getattr(opts, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise InvalidArgument(f"{name} must be an integer, not {type(value).__name__}")
        for name in ("poll_interval", "heartbeat_interval", "shutdown_timeout", "maintenance_interval",
                     "retry_base", "retry_cap"):  # fmt: skip
            value = getattr(opts, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float) or value < 0):
                raise InvalidArgument(f"{name} must be a non-negative number of seconds, not {value!r}")
        if opts.heartbeat_interval == 0:
            raise InvalidArgument("heartbeat_interval must be positive (or None for vt/3)")
        if opts.vt < 1 or opts.batch_size < 1:
            raise InvalidArgument("vt and batch_size must be at least 1")
        if opts.max_reads is not None and opts.max_reads < 1:
            raise InvalidArgument("max_reads must be at least 1 (or None to never dead-letter)")
        if opts.on_success not in ("delete", "archive"):
            raise InvalidArgument(f"on_success must be 'delete' or 'archive', not {opts.on_success!r}")
        if min(opts.poll_interval, opts.shutdown_timeout, opts.maintenance_interval) <= 0:
            raise InvalidArgument("poll_interval, shutdown_timeout and maintenance_interval must be positive")
        if opts.max_reads is not None:
            dlq = opts.dead_letter_queue or queue + DLQ_SUFFIX
            try:
                validate_queue_name(dlq)
            except QueueError as exc:
                hint = "" if opts.dead_letter_queue else "; pass dead_letter_queue="
                raise InvalidArgument(f"dead-letter queue name is invalid ({exc}){hint}") from exc
            if dlq.lower() == queue.lower():
                raise InvalidArgument("a queue cannot be its own dead-letter queue")
            opts = dataclasses.replace(opts, dead_letter_queue=dlq)
        return opts

    @property
    def heartbeat(self) -> float:
        return self.heartbeat_interval or max(0.5, self.vt / 3)


def notify_channel(queue: str) -> str:
    """The channel PGMQ's insert trigger notifies (``pgmq.q_<name>.INSERT``)."""
    return f"pgmq.q_{queue.lower()}.INSERT"


class Consumer:
    """Reads ``queue`` in batches and hands out messages; use as ``async with`` + ``async for``."""

    def __init__(self, aqueue: AsyncQueue, queue: str, options: ConsumeOptions) -> None:
        self._q = aqueue
        self.queue = queue
        self.options = options
        self._buffer: collections.deque[Message] = collections.deque()
        self._held: dict[int, Message] = {}
        self._wake = asyncio.Event()
        self._fill_lock = asyncio.Lock()
        self._heartbeat_lock = asyncio.Lock()
        self._stop = options.stop or asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._current: Message | None = None
        self._started = False
        self._signals: list[int] = []
        self._channel = notify_channel(queue)

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
        if opts.listen and opts.enable_notify and not await self._q.execute(_ops.notify_enabled(self.queue)):
            try:
                await self._q.enable_notify(self.queue, 0)
            except QueueError as exc:  # another consumer enabled it at the same moment: fine
                log.info("enabling notify on %s: %s", self.queue, exc)
        self._channel = await self._q.execute(_ops.listen_channel(self.queue))
        self._tasks.append(asyncio.create_task(self._heartbeat_loop(), name="howdah-heartbeat"))
        if any(q.is_partitioned for q in await self._q.list_queues() if q.queue_name.lower() == self.queue.lower()):
            self._tasks.append(asyncio.create_task(self._maintenance_loop(), name="howdah-maintenance"))
        if opts.listen and self._q.conninfo:
            self._tasks.append(asyncio.create_task(self._listen_loop(self._q.conninfo), name="howdah-listen"))
        if opts.handle_signals:
            self._install_signals()
        self._started = True

    def stop(self) -> None:
        """Ask the consumer to stop: no new messages are handed out; prefetched ones are released."""
        self._stop.set()
        self._wake.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    async def close(self) -> None:
        self.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        self._remove_signals()
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
            if not self._buffer and not self.stopping:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.options.poll_interval)
        return None

    async def _fill(self) -> None:
        self._wake.clear()  # a notification arriving from now on wakes the wait after this read
        opts = self.options
        messages = await self._retrying(_ops.read(self.queue, opts.vt, opts.batch_size))
        if not messages:
            return
        dead = [m for m in messages if opts.max_reads is not None and m.read_ct > opts.max_reads]
        if dead:
            assert opts.dead_letter_queue is not None
            reason = f"read {max(m.read_ct for m in dead)} times, more than max_reads={opts.max_reads}"
            moved = await self._retrying(
                _ops.dead_letter(self.queue, [m.msg_id for m in dead], opts.dead_letter_queue, reason)
            )
            log.warning("moved %d message(s) of %s to %s: %s", len(moved), self.queue, opts.dead_letter_queue, reason)
        for message in messages:
            if opts.max_reads is None or message.read_ct <= opts.max_reads:
                self._held[message.msg_id] = message
                self._buffer.append(message)

    # ----------------------------------------------------------------------------------------- acknowledge
    async def ack(self, message: Message) -> None:
        """The message was handled: delete it (or archive it, with ``on_success="archive"``)."""
        self._forget_current(message)
        op = _ops.archive if self.options.on_success == "archive" else _ops.delete
        try:
            await self._retrying(op(self.queue, message.msg_id), attempts=5)
        finally:
            self._held.pop(message.msg_id, None)

    async def nack(self, message: Message, error: BaseException | str | None) -> None:
        """The handler failed: make the message visible again after the retry delay, noting the error."""
        self._forget_current(message)
        delay = _ops.retry_delay(message.read_ct, self.options.retry_base, self.options.retry_cap)
        text = None if error is None else (error if isinstance(error, str) else f"{type(error).__name__}: {error}")
        try:
            await self._retrying(_ops.release(self.queue, message.msg_id, delay, text), attempts=5)
        except QueueDatabaseError:
            log.warning(
                "could not release message %s of %s; it reappears when its vt runs out",
                message.msg_id,
                self.queue,
            )
        finally:
            self._held.pop(message.msg_id, None)

    async def _release_buffered(self) -> None:
        buffered = list(self._buffer)
        self._buffer.clear()
        if not buffered:
            return
        async with self._heartbeat_lock:
            for message in buffered:
                self._held.pop(message.msg_id, None)
        try:
            await self._retrying(_ops.set_vt_batch(self.queue, [m.msg_id for m in buffered], 0), attempts=3)
        except QueueError as exc:
            log.warning(
                "could not release %d prefetched message(s) of %s (%s); they reappear after their vt",
                len(buffered),
                self.queue,
                exc,
            )

    async def _release_all(self) -> None:
        """Give back every held message (prefetched or interrupted) so others can take it at once."""
        self._buffer.clear()
        if not self._held:
            return
        ids = list(self._held)
        self._held.clear()
        try:
            await self._retrying(_ops.set_vt_batch(self.queue, ids, 0), attempts=3)
        except QueueError as exc:
            log.warning(
                "could not release %d message(s) of %s (%s); they reappear when their vt runs out",
                len(ids),
                self.queue,
                exc,
            )

    async def _retrying(self, op: _ops.Op[Any], attempts: int | None = None) -> Any:
        """Run ``op``, riding out lost connections (e.g. a Postgres restart) with capped backoff."""
        failures = 0
        while True:
            try:
                return await self._q.execute(op)
            except QueueDatabaseError as exc:
                failures += 1
                if attempts is not None and failures >= attempts:
                    raise
                if self.stopping and attempts is None:
                    return []
                delay = Backoff(initial=0.1, cap=5.0).delay(failures)
                log.warning("queue %s: %s; retrying in %.2fs", self.queue, exc, delay)
                await asyncio.sleep(delay)

    # ---------------------------------------------------------------------------------- background tasks
    async def detach(self, message: Message) -> None:
        """Stop holding ``message`` before settling it yourself (deleting it, or parking it with ``set_vt``).

        When this returns no heartbeat for it is in flight, so nothing overwrites the visibility timeout you set
        next. Return :data:`DETACH` from the handler so the consumer does not ack it either.
        """
        self._forget_current(message)
        async with self._heartbeat_lock:
            self._held.pop(message.msg_id, None)

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

    async def _listen_loop(self, conninfo: str) -> None:
        channel = sql.SQL("LISTEN {}").format(sql.Identifier(self._channel))
        failures = 0
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(conninfo, autocommit=True)
                async with conn:
                    await conn.execute(channel)
                    failures = 0
                    self._wake.set()  # notifications may have been missed while (re)connecting
                    async for _ in conn.notifies():
                        self._wake.set()
            except psycopg.Error as exc:
                failures += 1
                delay = Backoff(initial=0.2, cap=5.0).delay(failures)
                log.info(
                    "LISTEN connection for %s lost (%s); polling, reconnecting in %.1fs",
                    self.queue,
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)

    # -------------------------------------------------------------------------------------- handler loop
    async def run(
        self,
        handler: Callable[[Message], Any],
        *,
        concurrency: int = 1,
        stop: asyncio.Event | None = None,
        handle_signals: bool = True,
    ) -> None:
        """Call ``handler`` for each message with ``concurrency`` handlers at once until stopped."""
        if concurrency < 1:
            raise InvalidArgument("concurrency must be at least 1")
        if stop is not None:
            self._stop = stop
        if handle_signals and not self.options.handle_signals:
            self.options = dataclasses.replace(self.options, handle_signals=True)
        is_async = inspect.iscoroutinefunction(handler)

        async def handle(message: Message) -> None:
            try:
                outcome = await handler(message) if is_async else await asyncio.to_thread(handler, message)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("handler failed on message %s of %s: %r", message.msg_id, self.queue, exc)
                await self.nack(message, exc)
                return
            if outcome is DETACH:
                self._held.pop(message.msg_id, None)
                return
            try:
                await self.ack(message)
            except QueueError as exc:  # it reappears after its vt: at-least-once, never lost
                log.warning("could not ack message %s of %s: %s", message.msg_id, self.queue, exc)

        async def slot() -> None:
            while (message := await self.next()) is not None:
                await handle(message)

        async with self:
            workers = [asyncio.create_task(slot(), name=f"howdah-handler-{i}") for i in range(concurrency)]
            stopped = asyncio.create_task(self._stop.wait())
            await asyncio.wait([stopped, *workers], return_when=asyncio.FIRST_COMPLETED)
            self.stop()  # also when a handler slot died: the others stop too, and the error surfaces
            stopped.cancel()
            await self._release_buffered()  # prefetched, not yet handled: others may take them right away
            _, pending = await asyncio.wait(workers, timeout=self.options.shutdown_timeout)
            for task in pending:  # handlers that did not finish in time: their messages are released
                task.cancel()
            outcomes = await asyncio.gather(*workers, return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, Exception):
                raise outcome
