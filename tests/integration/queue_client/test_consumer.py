"""The streaming consumer: delivery, acks, retries, dead-lettering, heartbeats, shutdown and LISTEN wake-ups."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest

from howdah.queue import DETACH, AsyncQueue, InvalidArgument, Message, Queue, QueueError

from ._helpers import async_wait_until, queue_rows, scalar, visible_count, wait_until

# Options that keep the tests quick: no partition maintenance chatter, no long polls.
QUICK: dict[str, Any] = {"maintenance_interval": 3600, "poll_interval": 0.2}


def db_now(conn: psycopg.Connection[Any]) -> datetime:
    return scalar(conn, "SELECT clock_timestamp()")  # type: ignore[no-any-return]


def start_work(
    aq: AsyncQueue, queue: str, handler: Callable[[Message], Any], **options: Any
) -> tuple[asyncio.Task[None], asyncio.Event]:
    """Run ``aq.work`` in a task; returns it and its stop event."""
    stop = asyncio.Event()
    opts = {**QUICK, **options}
    task = asyncio.create_task(aq.work(queue, handler, stop=stop, handle_signals=False, **opts))
    return task, stop


async def finish(task: asyncio.Task[None], stop: asyncio.Event, timeout: float = 15) -> None:
    stop.set()
    await asyncio.wait_for(task, timeout)


# ----------------------------------------------------------------------------------------- delivery and acks
async def test_consume_delivers_in_order_and_deletes(
    async_queue: AsyncQueue, queue: str, conn: psycopg.Connection[Any]
) -> None:
    ids = await async_queue.send_batch(queue, [{"n": n} for n in range(5)])
    seen: list[Message] = []
    async with async_queue.consume(queue, batch_size=2, **QUICK) as messages:
        async for message in messages:
            seen.append(message)
            if len(seen) == 5:
                break
    assert [m.msg_id for m in seen] == ids
    assert [m.message for m in seen] == [{"n": n} for n in range(5)]
    assert all(isinstance(m, Message) and m.read_ct == 1 for m in seen)
    assert queue_rows(conn, queue) == []  # each was deleted, the last one on leaving the block
    assert queue_rows(conn, queue, "a") == []


async def test_work_with_archive_on_success(async_queue: AsyncQueue, queue: str, conn: psycopg.Connection[Any]) -> None:
    ids = await async_queue.send_batch(queue, ["a", "b", "c"])
    handled: list[int] = []

    async def handler(message: Message) -> None:
        handled.append(message.msg_id)

    task, stop = start_work(async_queue, queue, handler, on_success="archive")
    await async_wait_until(lambda: len(queue_rows(conn, queue, "a")) == 3, what="3 archived messages")
    await finish(task, stop)
    assert sorted(handled) == ids
    assert queue_rows(conn, queue) == []
    archived = queue_rows(conn, queue, "a")
    assert [(row[0], row[3]) for row in archived] == list(zip(ids, ["a", "b", "c"], strict=True))


async def test_work_with_a_sync_handler(async_queue: AsyncQueue, queue: str, conn: psycopg.Connection[Any]) -> None:
    ids = await async_queue.send_batch(queue, [1, 2, 3, 4])
    handled: list[int] = []

    def handler(message: Message) -> None:  # runs in a worker thread
        handled.append(message.message)

    task, stop = start_work(async_queue, queue, handler, batch_size=3)
    await async_wait_until(lambda: queue_rows(conn, queue) == [], what="queue drained")
    await finish(task, stop)
    assert sorted(handled) == [1, 2, 3, 4] and len(ids) == 4


async def test_work_runs_handlers_concurrently(async_queue: AsyncQueue, queue: str) -> None:
    await async_queue.send_batch(queue, list(range(3)))
    running: set[int] = set()
    all_three = asyncio.Event()

    async def handler(message: Message) -> None:
        running.add(message.msg_id)
        if len(running) == 3:
            all_three.set()
        await asyncio.wait_for(all_three.wait(), 10)  # only returns once three handlers overlap

    task, stop = start_work(async_queue, queue, handler, concurrency=3)
    await asyncio.wait_for(all_three.wait(), 15)
    await finish(task, stop)


async def test_the_iterator_refuses_use_outside_async_with(async_queue: AsyncQueue, queue: str) -> None:
    await async_queue.send(queue, "x")
    messages = async_queue.consume(queue)
    with pytest.raises(QueueError):
        async for _ in messages:
            pass
    with pytest.raises(QueueError):
        await messages.__anext__()
    # Nothing was read by the misuse.
    [message] = await async_queue.read(queue)
    assert message.read_ct == 1


async def test_the_iterator_ends_after_the_block(async_queue: AsyncQueue, queue: str) -> None:
    async with async_queue.consume(queue, **QUICK) as messages:
        pass
    with pytest.raises(StopAsyncIteration):
        await messages.__anext__()


async def test_consume_refuses_unknown_options(async_queue: AsyncQueue, queue: str) -> None:
    with pytest.raises(InvalidArgument):
        async_queue.consume(queue, visibility_timeout=30)
    with pytest.raises(InvalidArgument):
        await async_queue.work(queue, lambda m: None, concurrency=0, handle_signals=False, **QUICK)


# ------------------------------------------------------------------------------------------ failures, retries
def last_error(conn: psycopg.Connection[Any], queue: str) -> tuple[int, datetime, Any] | None:
    rows = queue_rows(conn, queue)
    if not rows or not rows[0][4] or "x-howdah-last-error" not in rows[0][4]:
        return None
    _, read_ct, vt, _, headers = rows[0]
    return read_ct, vt, headers["x-howdah-last-error"]


async def test_a_failing_body_releases_with_backoff_and_records_the_error(
    async_queue: AsyncQueue, queue: str, conn: psycopg.Connection[Any]
) -> None:
    msg_id = await async_queue.send(queue, {"poison": False}, headers={"trace": "t1"})
    for attempt, delay in ((1, 60), (2, 120)):  # retry_delay doubles with the read count
        before = db_now(conn)
        with pytest.raises(ValueError, match="boom"):
            async with async_queue.consume(queue, retry_base=60, **QUICK) as messages:
                async for message in messages:
                    assert (message.msg_id, message.read_ct) == (msg_id, attempt)
                    raise ValueError(f"boom {attempt}")
        found = last_error(conn, queue)
        assert found is not None
        read_ct, vt, error = found
        assert read_ct == attempt
        assert error == f"ValueError: boom {attempt}"
        assert vt >= before + timedelta(seconds=delay)
        [(_, _, _, _, headers)] = queue_rows(conn, queue)
        assert headers["trace"] == "t1"  # the caller's headers are kept
        await async_queue.set_vt(queue, msg_id, 0)  # skip the backoff for the next round


async def test_work_survives_a_failing_handler(
    async_queue: AsyncQueue, queue: str, conn: psycopg.Connection[Any]
) -> None:
    bad = await async_queue.send(queue, "bad")
    calls: list[int] = []

    def handler(message: Message) -> None:
        calls.append(message.msg_id)
        if message.message == "bad":
            raise RuntimeError("handler says no")

    task, stop = start_work(async_queue, queue, handler, retry_base=60)
    await async_wait_until(lambda: last_error(conn, queue), what="the failure recorded")
    good = await async_queue.send(queue, "good")
    await async_wait_until(lambda: good in calls, what="the next message handled")
    assert not task.done()
    await finish(task, stop)
    rows = queue_rows(conn, queue)
    assert [row[0] for row in rows] == [bad]
    assert rows[0][4]["x-howdah-last-error"] == "RuntimeError: handler says no"


async def test_after_max_reads_a_message_is_dead_lettered(
    async_queue: AsyncQueue, queue: str, conn: psycopg.Connection[Any]
) -> None:
    msg_id = await async_queue.send(queue, {"order": 1}, headers={"trace": "t"})
    calls: list[int] = []

    async def handler(message: Message) -> None:
        calls.append(message.read_ct)
        raise KeyError("missing")

    dlq = f"{queue}_dlq"
    task, stop = start_work(async_queue, queue, handler, max_reads=2, retry_base=0)
    await async_wait_until(lambda: queue_rows(conn, dlq), what="a message in the dead-letter queue")
    await finish(task, stop)
    assert calls == [1, 2]  # handled max_reads times, then moved instead of handled again
    assert queue_rows(conn, queue) == []
    [(_, read_ct, _, body, headers)] = queue_rows(conn, dlq)
    assert read_ct == 0 and body == {"order": 1}
    assert headers["trace"] == "t"
    assert headers["x-howdah-last-error"] == "KeyError: 'missing'"
    dead = headers["x-howdah-dead-letter"]
    assert dead["source_queue"] == queue
    assert dead["source_msg_id"] == msg_id
    assert dead["read_ct"] == 3
    assert "max_reads=2" in dead["reason"]
    assert {"enqueued_at", "dead_lettered_at"} <= set(dead)
    assert dlq in [q.queue_name for q in await async_queue.list_queues()]


async def test_a_named_dead_letter_queue(async_queue: AsyncQueue, queue: str, conn: psycopg.Connection[Any]) -> None:
    await async_queue.send(queue, "poison")

    async def handler(message: Message) -> None:
        raise RuntimeError("no")

    dlq = f"{queue}_graveyard"
    task, stop = start_work(async_queue, queue, handler, max_reads=1, retry_base=0, dead_letter_queue=dlq)
    await async_wait_until(lambda: queue_rows(conn, dlq), what="a message in the named dead-letter queue")
    await finish(task, stop)
    assert f"{queue}_dlq" not in [q.queue_name for q in await async_queue.list_queues()]


async def test_without_max_reads_nothing_is_dead_lettered(
    async_queue: AsyncQueue, queue: str, conn: psycopg.Connection[Any]
) -> None:
    await async_queue.send(queue, "forever")
    calls: list[int] = []

    async def handler(message: Message) -> None:
        calls.append(message.read_ct)
        raise RuntimeError("again")

    task, stop = start_work(async_queue, queue, handler, max_reads=None, retry_base=0)
    await async_wait_until(lambda: len(calls) >= 8, what="eight failed attempts")
    await finish(task, stop)
    assert calls[:8] == list(range(1, 9))
    assert [row[0] for row in queue_rows(conn, queue)]  # still in its queue
    assert f"{queue}_dlq" not in [q.queue_name for q in await async_queue.list_queues()]


# ------------------------------------------------------------------------------------------------- heartbeats
async def test_heartbeats_keep_held_messages_invisible_past_their_vt(
    db_url: str, async_queue: AsyncQueue, queue: str, conn: psycopg.Connection[Any]
) -> None:
    ids = await async_queue.send_batch(queue, ["slow", "prefetched 1", "prefetched 2"])
    started, release = asyncio.Event(), asyncio.Event()
    handled: list[int] = []

    async def handler(message: Message) -> None:
        started.set()
        await asyncio.wait_for(release.wait(), 30)
        handled.append(message.msg_id)

    task, stop = start_work(async_queue, queue, handler, vt=2, batch_size=10)
    await asyncio.wait_for(started.wait(), 10)
    async with AsyncQueue(db_url, pool_size=1) as other:
        began = time.monotonic()
        while time.monotonic() - began < 5.5:  # well past vt=2: only the heartbeats keep them hidden
            assert await other.read(queue, vt=30, qty=10) == []
            await asyncio.sleep(0.25)
    assert [row[1] for row in queue_rows(conn, queue)] == [1, 1, 1]  # read once each, never re-read
    release.set()
    await async_wait_until(lambda: queue_rows(conn, queue) == [], what="all handled")
    await finish(task, stop)
    assert sorted(handled) == ids


# -------------------------------------------------------------------------------------------------- shutdown
async def test_stop_ends_work_and_releases_prefetched_messages(
    async_queue: AsyncQueue, queue: str, conn: psycopg.Connection[Any]
) -> None:
    ids = await async_queue.send_batch(queue, [f"m{i}" for i in range(5)])
    started, release = asyncio.Event(), asyncio.Event()
    handled: list[int] = []

    async def handler(message: Message) -> None:
        started.set()
        await asyncio.wait_for(release.wait(), 30)
        handled.append(message.msg_id)

    task, stop = start_work(async_queue, queue, handler, vt=300, batch_size=10, concurrency=1)
    await asyncio.wait_for(started.wait(), 10)
    assert visible_count(conn, queue) == 0  # all five read: one in the handler, four prefetched
    stop.set()
    release.set()
    await asyncio.wait_for(task, 15)
    assert handled == ids[:1]  # the in-flight handler finished and its message was acked
    again = await async_queue.read(queue, vt=30, qty=10)  # vt was 300: readable now only if released
    assert [m.msg_id for m in again] == ids[1:]


async def test_prefetched_messages_are_released_while_the_in_flight_handler_finishes(
    async_queue: AsyncQueue, queue: str, conn: psycopg.Connection[Any]
) -> None:
    ids = await async_queue.send_batch(queue, [f"m{i}" for i in range(5)])
    started, release = asyncio.Event(), asyncio.Event()

    async def handler(message: Message) -> None:
        started.set()
        await asyncio.wait_for(release.wait(), 30)

    task, stop = start_work(async_queue, queue, handler, vt=300, batch_size=10, concurrency=1)
    try:
        await asyncio.wait_for(started.wait(), 10)
        stop.set()
        await async_wait_until(lambda: visible_count(conn, queue) == 4, timeout=3, what="prefetched released")
        assert [m.msg_id for m in await async_queue.read(queue, qty=10)] == ids[1:]
    finally:
        release.set()
        await asyncio.wait_for(task, 15)


async def test_a_handler_that_outlives_shutdown_timeout_is_cancelled_and_released(
    async_queue: AsyncQueue, queue: str
) -> None:
    msg_id = await async_queue.send(queue, "stuck")
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def handler(message: Message) -> None:
        started.set()
        try:
            await asyncio.Event().wait()  # never finishes by itself
        except asyncio.CancelledError:
            cancelled.set()
            raise

    task, stop = start_work(async_queue, queue, handler, vt=300, shutdown_timeout=0.5)
    await asyncio.wait_for(started.wait(), 10)
    await finish(task, stop)
    assert cancelled.is_set()
    [message] = await async_queue.read(queue)  # released at shutdown, not after vt=300
    assert (message.msg_id, message.read_ct) == (msg_id, 2)


async def test_a_stop_event_set_before_start_returns_at_once(async_queue: AsyncQueue, queue: str) -> None:
    await async_queue.send(queue, "untouched")
    stop = asyncio.Event()
    stop.set()
    await asyncio.wait_for(async_queue.work(queue, lambda m: None, stop=stop, handle_signals=False, **QUICK), 10)
    [message] = await async_queue.read(queue)
    assert message.read_ct == 1


# ----------------------------------------------------------------------------------------------- Queue.work
def test_sync_work_stops_on_a_threading_event(db_url: str, sync_queue: Queue, queue: str) -> None:
    import threading

    sync_queue.send(queue, "one")
    handled: list[int] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def run() -> None:
        try:
            sync_queue.work(queue, lambda m: handled.append(m.msg_id), stop=stop, handle_signals=False, **QUICK)
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    try:
        deadline = time.monotonic() + 3
        while not handled and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        worker.join(15)
    assert handled and not errors and not worker.is_alive()


# --------------------------------------------------------------------------------------------- LISTEN/NOTIFY
def idle_read_since(conn: psycopg.Connection[Any], since: datetime) -> bool:
    """Has a consumer's read started after ``since`` and finished (its connection idle again)?"""
    return bool(
        scalar(
            conn,
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND state = 'idle' AND query LIKE %s AND query_start > %s",
            ("%FROM pgmq.howdah_settle_and_read(%", since),
        )
    )


def listening_since(conn: psycopg.Connection[Any], channel: str) -> datetime | None:
    return scalar(  # type: ignore[no-any-return]
        conn,
        "SELECT max(state_change) FROM pg_stat_activity WHERE datname = current_database() "
        "AND state = 'idle' AND query = %s",
        (f'LISTEN "{channel}"',),
    )


@pytest.mark.parametrize("name", ["lower", "MixedCase", "Ünïcode"])
async def test_listen_wakes_an_idle_consumer(
    name: str, async_queue: AsyncQueue, queue_name: str, conn: psycopg.Connection[Any], request: pytest.FixtureRequest
) -> None:
    queue = f"{name}_{queue_name}"
    await async_queue.create(queue)
    channel = scalar(conn, "SELECT 'pgmq.' || pgmq.format_table_name(%s, 'q') || '.INSERT'", (queue,))
    async with async_queue.consume(queue, poll_interval=30, maintenance_interval=3600) as messages:
        iterator = aiter(messages)
        mark = await async_wait_until(lambda: listening_since(conn, channel), what="the consumer's LISTEN connection")
        # Three rounds: the wake-up given when LISTEN connects can account for one delivery at most; with
        # poll_interval=30 the others can only come from a notification.
        for round_ in range(3):
            nxt: asyncio.Task[Message] = asyncio.create_task(anext(iterator))  # type: ignore[arg-type]
            await async_wait_until(lambda m=mark: idle_read_since(conn, m), what="the consumer idle after a read")
            msg_id = await async_queue.send(queue, {"round": round_})
            message = await asyncio.wait_for(nxt, 8)
            assert message.msg_id == msg_id
            mark = db_now(conn)


# ------------------------------------------------------------------------------------------ sources, startup
async def test_many_consumers_can_start_at_once(db_url: str, async_queue: AsyncQueue, queue: str) -> None:
    # Each one creates the dead-letter queue if missing and enables notify on the queue: they must not collide.
    clients = [AsyncQueue(db_url, pool_size=2) for _ in range(5)]
    consumers = [c.consume(queue, **QUICK) for c in clients]
    try:
        started = await asyncio.gather(*(c.__aenter__() for c in consumers), return_exceptions=True)
        assert [s for s in started if isinstance(s, BaseException)] == []
    finally:
        await asyncio.gather(*(c.__aexit__(None, None, None) for c in consumers), return_exceptions=True)
        await asyncio.gather(*(c.close() for c in clients))
    assert f"{queue}_dlq" in [q.queue_name for q in await async_queue.list_queues()]


def _enable_notify_waiting(conn: psycopg.Connection[Any]) -> bool:
    return bool(
        scalar(
            conn,
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' "
            "AND query LIKE %s",
            ("%enable_notify_insert%",),
        )
    )


def test_enabling_notify_from_two_sessions_at_once(
    db_url: str, sync_queue: Queue, queue: str, conn: psycopg.Connection[Any]
) -> None:
    import threading

    outcome: list[BaseException | None] = []

    def second() -> None:
        try:
            sync_queue.enable_notify(queue, 0)
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    with psycopg.connect(db_url) as first:
        with first.transaction():
            Queue(first).enable_notify(queue, 0)
            racer = threading.Thread(target=second, daemon=True)
            racer.start()
            wait_until(lambda: _enable_notify_waiting(conn), timeout=10, what="the second enable waiting on a lock")
        racer.join(15)
    assert outcome == [None]


async def test_consume_on_a_callers_autocommit_connection(
    db_url: str, async_queue: AsyncQueue, queue: str, conn: psycopg.Connection[Any]
) -> None:
    ids = await async_queue.send_batch(queue, [1, 2])
    seen: list[int] = []
    async with (
        await psycopg.AsyncConnection.connect(db_url, autocommit=True) as mine,
        AsyncQueue(mine).consume(queue, **QUICK) as messages,  # no LISTEN: it polls
    ):
        async for message in messages:
            seen.append(message.msg_id)
            if len(seen) == 2:
                break
    assert seen == ids
    assert queue_rows(conn, queue) == []


async def test_consume_on_a_non_autocommit_connection_commits_or_refuses(
    db_url: str, async_queue: AsyncQueue, queue: str, conn: psycopg.Connection[Any]
) -> None:
    await async_queue.send(queue, "once")
    async with await psycopg.AsyncConnection.connect(db_url) as mine:
        try:
            async with AsyncQueue(mine).consume(queue, **QUICK) as messages:
                async for _ in messages:
                    break
        except InvalidArgument:
            return  # refusing the connection is a fine answer
        handled_and_acked = queue_rows(conn, queue) == []  # seen from another session, before ours ends
    assert handled_and_acked


# -------------------------------------------------------------------------------------- settling by hand
async def test_a_detached_message_is_left_as_the_handler_settled_it(
    async_queue: AsyncQueue, queue: str, conn: psycopg.Connection[Any]
) -> None:
    parked_id, done_id = await async_queue.send_batch(queue, ["park me", "handle me"])
    consumer = async_queue.consume(queue, vt=2, **QUICK)  # heartbeats every ~0.7 s
    stop = asyncio.Event()
    parked_at: list[datetime] = []

    async def handler(message: Message) -> Any:
        if message.msg_id != parked_id:
            return None
        await consumer.detach(message)
        moved = await async_queue.set_vt(queue, message.msg_id, 600)
        assert moved is not None
        parked_at.append(moved.vt)
        return DETACH

    task = asyncio.create_task(consumer.run(handler, stop=stop, handle_signals=False))
    await async_wait_until(lambda: [row[0] for row in queue_rows(conn, queue)] == [parked_id], what="one handled")
    began = time.monotonic()
    while time.monotonic() - began < 2.5:  # several heartbeat periods: none may touch the parked message
        [(_, _, vt, _, _)] = queue_rows(conn, queue)
        assert vt == parked_at[0]
        await asyncio.sleep(0.2)
    await finish(task, stop)
    [(msg_id, read_ct, vt, _, _)] = queue_rows(conn, queue)  # not acked, not released at shutdown
    assert (msg_id, read_ct, vt) == (parked_id, 1, parked_at[0])
    assert done_id not in [row[0] for row in queue_rows(conn, queue)]


async def test_an_explicit_ack_in_the_iterator(
    async_queue: AsyncQueue, queue: str, conn: psycopg.Connection[Any]
) -> None:
    ids = await async_queue.send_batch(queue, [1, 2])
    seen = []
    async with async_queue.consume(queue, **QUICK) as messages:
        async for message in messages:
            await messages.ack(message)  # acking again when moving on is harmless
            seen.append(message.msg_id)
            if len(seen) == 2:
                break
    assert seen == ids and queue_rows(conn, queue) == []


@pytest.mark.parametrize("how", ["nack", "detach"])
async def test_a_message_settled_by_hand_in_the_iterator_is_not_acked_again(
    how: str, async_queue: AsyncQueue, queue: str, conn: psycopg.Connection[Any]
) -> None:
    first, _ = await async_queue.send_batch(queue, ["settle me by hand", "then this"])
    async with async_queue.consume(queue, retry_base=60, **QUICK) as messages:
        async for message in messages:
            if message.msg_id == first:
                if how == "nack":
                    await messages.nack(message, "not now")
                else:
                    await messages.detach(message)
                    await async_queue.set_vt(queue, message.msg_id, 600)
                continue
            break
    assert [row[0] for row in queue_rows(conn, queue)] == [first]


# ------------------------------------------------------------------------------------------ partition upkeep
async def test_a_consumer_of_a_partitioned_queue(async_queue: AsyncQueue, queue_name: str) -> None:
    await async_queue.create_partitioned(queue_name, 1000, 100_000)
    ids = await async_queue.send_batch(queue_name, list(range(5)))
    handled: list[int] = []

    async def handler(message: Message) -> None:
        handled.append(message.msg_id)

    task, stop = start_work(async_queue, queue_name, handler, maintenance_interval=0.5)
    await async_wait_until(lambda: len(handled) == 5, what="five handled")
    await finish(task, stop)
    assert sorted(handled) == ids
    assert await async_queue.read(queue_name, qty=10) == []


async def test_a_clean_run_on_a_plain_queue_logs_no_warning(
    async_queue: AsyncQueue, queue: str, caplog: pytest.LogCaptureFixture
) -> None:
    await async_queue.send(queue, "fine")
    handled = asyncio.Event()

    async def handler(message: Message) -> None:
        handled.set()

    with caplog.at_level(logging.WARNING, logger="howdah.queue"):
        task, stop = start_work(async_queue, queue, handler)
        await asyncio.wait_for(handled.wait(), 10)
        await finish(task, stop)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
