"""``Queue`` (sync) and ``AsyncQueue``: thin shells that execute the operations of :mod:`._ops`.

Both accept a DSN (they then own an autocommit pool), a psycopg pool, or a connection the caller owns —
pass the caller's connection (or ``queue.bind(conn)``) to send or read inside the caller's transaction.
Every public method is generated from the operation builder of the same name, so the two classes cannot
drift apart.
"""

from __future__ import annotations

import asyncio
import functools
import select
import threading
from collections.abc import Awaitable, Callable
from typing import Any, Concatenate, ParamSpec, TypeVar

import psycopg
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from howdah.queue import _ops
from howdah.queue._consumer import Consumer
from howdah.queue._errors import InvalidArgument, QueueDatabaseError, translate
from howdah.queue._options import CONCURRENCY, ConsumeOptions

P = ParamSpec("P")
T = TypeVar("T")

DEFAULT_POOL_SIZE = 10


def _has_news(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> bool:
    """Whether an idle connection is closed or has something to read. A healthy idle connection is silent; a
    server that terminated its backend or restarted closed the socket (usually with a last error message)."""
    if conn.closed:
        return True
    try:
        readable, _, _ = select.select([conn.fileno()], [], [], 0)
    except (OSError, ValueError, psycopg.Error):
        return True
    return bool(readable)


class IdleCheck:
    """The ``check=`` of a psycopg ``ConnectionPool``: a pooled connection that died while idle (a Postgres
    restart, a terminated backend) is detected before use and replaced, instead of failing its first caller.

    A silent socket costs no round trip; one that has news gets psycopg_pool's own check (an empty query). When
    that fails, the pool's other idle connections are checked at once too (they usually died with it), so the
    caller does not meet them one after another. Set ``pool`` once the pool exists.
    """

    def __init__(self) -> None:
        self.pool: ConnectionPool | None = None

    def __call__(self, conn: psycopg.Connection[Any]) -> None:
        if not _has_news(conn):
            return
        try:
            ConnectionPool.check_connection(conn)
        except psycopg.Error:
            if self.pool is not None:
                self.pool.check()
            raise


class AsyncIdleCheck:
    """:class:`IdleCheck` for an ``AsyncConnectionPool``."""

    def __init__(self) -> None:
        self.pool: AsyncConnectionPool | None = None

    async def __call__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        if not _has_news(conn):
            return
        try:
            await AsyncConnectionPool.check_connection(conn)
        except psycopg.Error:
            if self.pool is not None:
                await self.pool.check()
            raise


def owned_pool(dsn: str, max_size: int) -> ConnectionPool:
    """An unopened autocommit pool whose dead idle connections are replaced before use."""
    check = IdleCheck()
    pool = ConnectionPool(dsn, min_size=1, max_size=max_size, kwargs={"autocommit": True}, open=False, check=check)
    check.pool = pool
    return pool


def owned_async_pool(dsn: str, max_size: int) -> AsyncConnectionPool:
    """The async twin of :func:`owned_pool`."""
    check = AsyncIdleCheck()
    pool = AsyncConnectionPool(dsn, min_size=1, max_size=max_size, kwargs={"autocommit": True}, open=False, check=check)
    check.pool = pool
    return pool


def _run_sync(conn: psycopg.Connection[Any], op: _ops.Op[T]) -> T:
    try:
        rows = conn.execute(op.query, op.params).fetchall()
    except psycopg.Error as exc:
        raise translate(exc, op.queue) from exc
    return op.shape(rows)


async def _run_async(conn: psycopg.AsyncConnection[Any], op: _ops.Op[T]) -> T:
    try:
        cursor = await conn.execute(op.query, op.params)
        rows = await cursor.fetchall()
    except psycopg.Error as exc:
        raise translate(exc, op.queue) from exc
    return op.shape(rows)


def _sync(builder: Callable[P, _ops.Op[T]]) -> Callable[Concatenate[Queue, P], T]:
    @functools.wraps(builder)
    def method(self: Queue, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self.execute(builder(*args, **kwargs))

    return method


def _async(builder: Callable[P, _ops.Op[T]]) -> Callable[Concatenate[AsyncQueue, P], Awaitable[T]]:
    @functools.wraps(builder)
    async def method(self: AsyncQueue, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await self.execute(builder(*args, **kwargs))

    return method


class Queue:
    """Synchronous client of a Howdah (or PGMQ) queue schema.

    ``source``: a DSN (an autocommit pool of ``pool_size`` connections is opened and owned), a
    :class:`psycopg_pool.ConnectionPool`, or a :class:`psycopg.Connection` whose transaction the calls join.
    """

    def __init__(self, source: str | ConnectionPool | psycopg.Connection[Any], *, pool_size: int = DEFAULT_POOL_SIZE):
        self._conn: psycopg.Connection[Any] | None = None
        self._pool: ConnectionPool | None = None
        self._owns_pool = False
        if isinstance(source, str):
            self._pool = owned_pool(source, pool_size)
            self._owns_pool = True
            try:
                self._pool.open(wait=True, timeout=30)
            except Exception as exc:
                raise QueueDatabaseError(f"cannot connect to the queue database: {exc}") from exc
        elif isinstance(source, ConnectionPool):
            self._pool = source
        elif isinstance(source, psycopg.Connection):
            self._conn = source
        else:
            raise InvalidArgument(
                f"Queue needs a DSN, a psycopg ConnectionPool or a psycopg Connection, not {type(source).__name__}"
            )
        self.conninfo: str | None = source if isinstance(source, str) else getattr(source, "conninfo", None)

    def execute(self, op: _ops.Op[T]) -> T:
        """Run one operation built by :mod:`howdah.queue._ops` (the methods below all come here)."""
        if self._conn is not None:
            return _run_sync(self._conn, op)
        assert self._pool is not None
        try:
            with self._pool.connection() as conn:
                return _run_sync(conn, op)
        except psycopg.Error as exc:  # the pool itself failed (PoolTimeout, connection lost on checkout)
            raise translate(exc, op.queue) from exc

    def bind(self, conn: psycopg.Connection[Any]) -> Queue:
        """A view of this client whose calls run on ``conn`` (inside its current transaction, if any)."""
        return Queue(conn)

    def close(self) -> None:
        if self._owns_pool and self._pool is not None:
            self._pool.close()

    def __enter__(self) -> Queue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def work(self, queue: str, handler: Callable[[Any], Any], **options: Any) -> None:
        """Run a worker loop until SIGTERM/SIGINT or ``stop`` (a ``threading.Event`` another thread may set) is set;
        see :meth:`AsyncQueue.work` for the options.

        The sync handler runs in a worker thread; the loop itself is the async engine, so both APIs share it.
        """
        if self.conninfo is None:
            raise InvalidArgument("work() needs a Queue built from a DSN or a pool, not a single connection")
        conninfo = self.conninfo

        stop = options.pop("stop", None)

        async def main() -> None:
            async with AsyncQueue(conninfo) as aqueue:
                if isinstance(stop, threading.Event):  # set from another thread: bridge it into the loop
                    bridged = asyncio.Event()

                    async def watch() -> None:
                        while not stop.is_set():
                            await asyncio.sleep(0.05)
                        bridged.set()

                    watcher = asyncio.create_task(watch())
                    try:
                        await aqueue.work(queue, handler, stop=bridged, **options)
                    finally:
                        watcher.cancel()
                else:
                    await aqueue.work(queue, handler, stop=stop, **options)

        asyncio.run(main())

    # Operation methods (create, send, read, …) are generated from howdah.queue._ops below.
    create = _sync(_ops.create)
    create_partitioned = _sync(_ops.create_partitioned)
    drop = _sync(_ops.drop)
    purge = _sync(_ops.purge)
    send = _sync(_ops.send)
    send_batch = _sync(_ops.send_batch)
    read = _sync(_ops.read)
    read_with_poll = _sync(_ops.read_with_poll)
    read_grouped = _sync(_ops.read_grouped)
    pop = _sync(_ops.pop)
    delete = _sync(_ops.delete)
    delete_batch = _sync(_ops.delete_batch)
    archive = _sync(_ops.archive)
    archive_batch = _sync(_ops.archive_batch)
    set_vt = _sync(_ops.set_vt)
    set_vt_batch = _sync(_ops.set_vt_batch)
    list_queues = _sync(_ops.list_queues)
    metrics = _sync(_ops.metrics)
    metrics_all = _sync(_ops.metrics_all)
    enable_notify = _sync(_ops.enable_notify)
    disable_notify = _sync(_ops.disable_notify)
    bind_topic = _sync(_ops.bind_topic)
    unbind_topic = _sync(_ops.unbind_topic)
    send_topic = _sync(_ops.send_topic)
    list_topic_bindings = _sync(_ops.list_topic_bindings)
    maintain = _sync(_ops.maintain)
    peek = _sync(_ops.peek)
    last_msg_id = _sync(_ops.last_msg_id)
    listen_channel = _sync(_ops.listen_channel)


class AsyncQueue:
    """Asynchronous client of a Howdah (or PGMQ) queue schema; the twin of :class:`Queue`.

    With a DSN, the pool opens on first use (or in ``async with``). It also offers :meth:`consume` and
    :meth:`work`, the streaming consumer.
    """

    def __init__(
        self,
        source: str | AsyncConnectionPool | psycopg.AsyncConnection[Any],
        *,
        pool_size: int = DEFAULT_POOL_SIZE,
    ):
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._pool: AsyncConnectionPool | None = None
        self._owns_pool = False
        self._opened = True
        if isinstance(source, str):
            self._pool = owned_async_pool(source, pool_size)
            self._owns_pool = True
            self._opened = False
        elif isinstance(source, AsyncConnectionPool):
            self._pool = source
        elif isinstance(source, psycopg.AsyncConnection):
            self._conn = source
        else:
            raise InvalidArgument(
                "AsyncQueue needs a DSN, a psycopg AsyncConnectionPool or a psycopg AsyncConnection, "
                f"not {type(source).__name__}"
            )
        self.conninfo: str | None = source if isinstance(source, str) else getattr(source, "conninfo", None)
        self._open_lock = asyncio.Lock()

    async def open(self) -> None:
        if self._opened:
            return
        async with self._open_lock:
            if self._opened:
                return
            assert self._pool is not None
            try:
                await self._pool.open(wait=True, timeout=30)
            except Exception as exc:
                raise QueueDatabaseError(f"cannot connect to the queue database: {exc}") from exc
            self._opened = True

    async def execute(self, op: _ops.Op[T]) -> T:
        """Run one operation built by :mod:`howdah.queue._ops` (the methods below all come here)."""
        if self._conn is not None:
            return await _run_async(self._conn, op)
        if not self._opened:
            await self.open()
        assert self._pool is not None
        try:
            async with self._pool.connection() as conn:
                return await _run_async(conn, op)
        except psycopg.Error as exc:  # the pool itself failed (PoolTimeout, connection lost on checkout)
            raise translate(exc, op.queue) from exc

    def bind(self, conn: psycopg.AsyncConnection[Any]) -> AsyncQueue:
        """A view of this client whose calls run on ``conn`` (inside its current transaction, if any)."""
        return AsyncQueue(conn)

    async def close(self) -> None:
        if self._owns_pool and self._pool is not None and self._opened:
            await self._pool.close()

    async def __aenter__(self) -> AsyncQueue:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def consume(self, queue: str, **options: Any) -> Consumer:
        """Stream messages of ``queue``; see :class:`howdah.queue.Consumer` for the options."""
        return Consumer(self, queue, ConsumeOptions.build(queue, **options))

    async def work(
        self,
        queue: str,
        handler: Callable[[Any], Any],
        *,
        concurrency: int = CONCURRENCY,
        stop: asyncio.Event | None = None,
        handle_signals: bool = True,
        **options: Any,
    ) -> None:
        """Run ``handler(message)`` for every message, up to ``concurrency`` (32) at once, until ``stop`` is set
        (or SIGTERM/SIGINT arrives). Pass ``concurrency=1`` for one message at a time, in the order read.

        A handler returning normally acks the message (delete, or archive with ``on_success="archive"``);
        raising releases it for a retry with backoff, and after ``max_reads`` reads it is dead-lettered. Acks
        and releases are written in batches (``settle_batch_size``, ``settle_linger``; see
        :class:`ConsumeOptions`), never before the handler returned. Sync handlers run in a pool of
        ``concurrency`` threads. On shutdown in-flight handlers may finish (up to ``shutdown_timeout``
        seconds), pending settles are written and read-but-unstarted messages are released at once.
        """
        consumer = Consumer(self, queue, ConsumeOptions.build(queue, **options))
        await consumer.run(handler, concurrency=concurrency, stop=stop, handle_signals=handle_signals)

    create = _async(_ops.create)
    create_partitioned = _async(_ops.create_partitioned)
    drop = _async(_ops.drop)
    purge = _async(_ops.purge)
    send = _async(_ops.send)
    send_batch = _async(_ops.send_batch)
    read = _async(_ops.read)
    read_with_poll = _async(_ops.read_with_poll)
    read_grouped = _async(_ops.read_grouped)
    pop = _async(_ops.pop)
    delete = _async(_ops.delete)
    delete_batch = _async(_ops.delete_batch)
    archive = _async(_ops.archive)
    archive_batch = _async(_ops.archive_batch)
    set_vt = _async(_ops.set_vt)
    set_vt_batch = _async(_ops.set_vt_batch)
    list_queues = _async(_ops.list_queues)
    metrics = _async(_ops.metrics)
    metrics_all = _async(_ops.metrics_all)
    enable_notify = _async(_ops.enable_notify)
    disable_notify = _async(_ops.disable_notify)
    bind_topic = _async(_ops.bind_topic)
    unbind_topic = _async(_ops.unbind_topic)
    send_topic = _async(_ops.send_topic)
    list_topic_bindings = _async(_ops.list_topic_bindings)
    maintain = _async(_ops.maintain)
    peek = _async(_ops.peek)
    last_msg_id = _async(_ops.last_msg_id)
    listen_channel = _async(_ops.listen_channel)
