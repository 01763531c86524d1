"""The consumer's cost per message: settles batched with the next read, reads sized to the room a consumer has,
handlers run concurrently, and wake-ups from one shared LISTEN connection that wake one waiting consumer and are
never lost (neither between an empty read and the wait, nor inside a throttled queue's interval)."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest

from howdah.queue import AsyncQueue, Consumer, Message, Queue
from howdah.queue._listener import Listener, leader_key, lock_tag, member_key

from ._helpers import async_wait_until, queue_rows, visible_count

QUICK: dict[str, Any] = {"maintenance_interval": 3600, "poll_interval": 0.2}
NEVER_POLL: dict[str, Any] = {"maintenance_interval": 3600, "poll_interval": 60}  # only wake-ups deliver


def archived_at(conn: psycopg.Connection[Any], queue: str) -> dict[int, Any]:
    rows = conn.execute(f'SELECT msg_id, archived_at FROM pgmq."a_{queue.lower()}"').fetchall()
    return dict(rows)


def run_until_stopped(consumer: Consumer, handler: Any, **kwargs: Any) -> tuple[asyncio.Task[None], asyncio.Event]:
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(handler, stop=stop, handle_signals=False, **kwargs))
    return task, stop


# ------------------------------------------------------------------------------------------------- settling
@pytest.mark.parametrize(("linger", "statements"), [(1.0, {1, 2}), (0.0, {10})])
async def test_handled_messages_are_settled_together_unless_settle_linger_is_zero(
    linger: float, statements: set[int], async_queue: AsyncQueue, queue: str, conn: psycopg.Connection[Any]
) -> None:
    ids = await async_queue.send_batch(queue, list(range(10)))
    consumer = async_queue.consume(queue, on_success="archive", batch_size=10, settle_linger=linger, **QUICK)
    handled: list[int] = []

    async def handler(message: Message) -> None:
        handled.append(message.msg_id)

    task, stop = run_until_stopped(consumer, handler)
    await async_wait_until(lambda: len(handled) == 10, what="ten handled")
    await async_wait_until(lambda: len(archived_at(conn, queue)) == 10, what="ten archived")
    stop.set()
    await asyncio.wait_for(task, 15)
    # archived_at is the archiving transaction's start. Batched: the read that overlaps the last handler carries
    # the nine before it, the next statement the last one; with settle_linger=0 each is settled on its own.
    assert sorted(archived_at(conn, queue)) == ids
    assert len(set(archived_at(conn, queue).values())) in statements
    assert queue_rows(conn, queue) == []


async def test_pending_settles_are_written_on_stop(
    async_queue: AsyncQueue, queue: str, conn: psycopg.Connection[Any]
) -> None:
    ids = await async_queue.send_batch(queue, ["a", "b", "c"])
    consumer = async_queue.consume(queue, settle_linger=600, settle_batch_size=1000, **NEVER_POLL)
    handled: list[int] = []

    async def handler(message: Message) -> None:
        handled.append(message.msg_id)

    task, stop = run_until_stopped(consumer, handler)
    await async_wait_until(lambda: len(handled) == 3, what="three handled")
    stop.set()
    await asyncio.wait_for(task, 15)
    assert sorted(handled) == ids and queue_rows(conn, queue) == []


async def test_a_handler_still_running_is_never_settled(
    async_queue: AsyncQueue, queue: str, conn: psycopg.Connection[Any]
) -> None:
    slow, _fast = await async_queue.send_batch(queue, ["slow", "fast"])
    release = asyncio.Event()
    consumer = async_queue.consume(queue, settle_linger=0.001, **QUICK)

    async def handler(message: Message) -> None:
        if message.msg_id == slow:
            await asyncio.wait_for(release.wait(), 30)

    task, stop = run_until_stopped(consumer, handler, concurrency=2)
    await async_wait_until(lambda: [row[0] for row in queue_rows(conn, queue)] == [slow], what="the fast one settled")
    assert [row[0] for row in queue_rows(conn, queue)] == [slow]  # still there while its handler runs
    release.set()
    await async_wait_until(lambda: queue_rows(conn, queue) == [], what="the slow one settled")
    stop.set()
    await asyncio.wait_for(task, 15)


# -------------------------------------------------------------------------------------- room and concurrency
async def test_concurrency_runs_that_many_handlers_at_once_and_no_more(async_queue: AsyncQueue, queue: str) -> None:
    ids = await async_queue.send_batch(queue, list(range(40)))
    running, most = 0, 0
    handled: list[int] = []

    async def handler(message: Message) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.005)
        running -= 1
        handled.append(message.msg_id)

    task, stop = run_until_stopped(async_queue.consume(queue, **QUICK), handler, concurrency=8)
    await async_wait_until(lambda: len(handled) == 40, what="forty handled")
    stop.set()
    await asyncio.wait_for(task, 15)
    assert sorted(handled) == ids
    assert most == 8  # eight 5 ms handlers overlap: one process is not capped at 200 messages a second


async def test_without_read_ahead_a_consumer_reads_only_what_it_can_start_now(
    async_queue: AsyncQueue, queue: str, conn: psycopg.Connection[Any]
) -> None:
    await async_queue.send_batch(queue, list(range(20)))
    gates: dict[int, asyncio.Event] = {}
    started: list[int] = []

    async def handler(message: Message) -> None:
        gates[message.msg_id] = asyncio.Event()
        started.append(message.msg_id)
        await asyncio.wait_for(gates[message.msg_id].wait(), 30)

    consumer = async_queue.consume(queue, batch_size=4, read_ahead=0, **QUICK)
    task, stop = run_until_stopped(consumer, handler, concurrency=4)
    try:
        await async_wait_until(lambda: len(started) == 4, what="four handlers running")
        assert visible_count(conn, queue) == 16  # four read, all four started: nothing hoarded
        gates[started[0]].set()  # one slot frees: exactly one more is read
        await async_wait_until(lambda: len(started) == 5, what="a fifth handler")
        assert visible_count(conn, queue) == 15
        assert len(queue_rows(conn, queue)) == 19
    finally:
        stop.set()
        for gate in gates.values():
            gate.set()
        await asyncio.wait_for(task, 15)


async def test_after_a_short_read_the_next_read_waits_read_interval_and_takes_what_came_meanwhile(
    db_url: str, async_queue: AsyncQueue, queue: str
) -> None:
    """Under a trickle one read takes several messages: a read that came back short (not only an empty one) is
    followed by the next one ``read_interval`` after it at the earliest, woken or not."""
    handled: list[int] = []

    async def handler(message: Message) -> None:
        handled.append(message.msg_id)

    consumer = async_queue.consume(queue, read_interval=0.5, **NEVER_POLL)
    task, stop = run_until_stopped(consumer, handler)
    listener = Listener.shared(db_url)
    channel = await channel_of(async_queue, queue)
    try:
        await async_wait_until(lambda: listener.waiting(channel) == 1, what="the consumer waiting")
        reads = consumer.reads
        first = await async_queue.send(queue, "first")
        await async_wait_until(lambda: handled == [first], what="the first handled")
        rest = [await async_queue.send(queue, i) for i in range(5)]  # a few ms, well inside the interval
        await async_wait_until(lambda: len(handled) == 6, what="all six handled")
        assert handled == [first, *rest]
        assert consumer.reads - reads == 2  # one read for the first (short: 1 of 10), one for the five
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


async def test_a_stream_stops_listening_and_a_message_sent_as_it_ends_is_still_woken(
    db_url: str, async_queue: AsyncQueue, sync_queue: Queue, queue: str
) -> None:
    """Sends back to back: the process stops listening (no notification costs its backend a transaction) and
    reads every read_interval; empty reads end the stream. A message committed after the read that ended it but
    before LISTEN is back in place (sent here with a blocking call from inside the consumer, so the listener
    cannot LISTEN meanwhile) is handled at once, though nobody polls (poll_interval is 60 s) and its
    notification went unheard."""
    handled: list[int] = []
    late: list[int] = []
    listener = Listener.shared(db_url)
    channel = await channel_of(async_queue, queue)

    async def handler(message: Message) -> None:
        handled.append(message.msg_id)

    async def hook() -> None:  # right after the read that ended the stream, once
        stats = listener.stats(channel)
        if stats["streams"] and not stats["streaming"] and not late:
            late.append(sync_queue.send(queue, "as the stream ends"))  # blocks the loop: LISTEN comes after

    consumer = async_queue.consume(queue, **NEVER_POLL)
    consumer.before_wait = hook
    task, stop = run_until_stopped(consumer, handler)
    try:
        await async_wait_until(lambda: listener.waiting(channel) == 1, what="the consumer waiting")
        sent = [await async_queue.send(queue, {"i": i}) for i in range(100)]
        await async_wait_until(lambda: len(handled) >= 100, what="the stream handled")
        assert listener.stats(channel)["streams"] == 1
        await async_wait_until(lambda: late and late[0] in handled, timeout=10, what="the late message handled")
        assert handled == [*sent, *late]
        after = await async_queue.send(queue, "listening again")
        await async_wait_until(lambda: after in handled, timeout=10, what="a message after the stream handled")
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


# -------------------------------------------------------------------------------------------------- wake-ups
async def channel_of(async_queue: AsyncQueue, queue: str) -> str:
    return await async_queue.listen_channel(queue)


async def test_one_listen_connection_serves_every_consumer_and_queue_of_a_process(
    db_url: str, async_queue: AsyncQueue, queue: str, queue_name: str, conn: psycopg.Connection[Any]
) -> None:
    other = f"{queue_name}_b"
    await async_queue.create(other)
    consumers = [async_queue.consume(q, **NEVER_POLL) for q in (queue, queue, other, other)]
    for consumer in consumers:
        await consumer.start()
    try:
        # Each queue's listening connection holds the queue's leader lock (it listens on the queue's channel) and
        # its member lock: one connection holds all four.
        channels = [await channel_of(async_queue, q) for q in (queue, other)]
        tags = [lock_tag(key(c)) for c in channels for key in (leader_key, member_key)]
        holders = conn.execute(
            "SELECT count(*), count(DISTINCT pid) FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND objsubid = 1 AND (classid::bigint, objid::bigint) IN "
            "(SELECT * FROM unnest(%s::bigint[], %s::bigint[])) "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            ([t[0] for t in tags], [t[1] for t in tags]),
        ).fetchone()
        assert holders == (4, 1)
    finally:
        for consumer in consumers:
            await consumer.close()


async def test_a_notification_wakes_one_waiting_consumer_not_all(
    db_url: str, async_queue: AsyncQueue, queue: str
) -> None:
    consumers = [async_queue.consume(queue, **NEVER_POLL) for _ in range(3)]
    idle_reads = [0, 0, 0]
    got: list[Message] = []

    def counting(i: int) -> Any:
        async def hook() -> None:
            idle_reads[i] += 1

        return hook

    for i, consumer in enumerate(consumers):
        consumer.before_wait = counting(i)
        await consumer.start()
    listener = Listener.shared(db_url)
    channel = await channel_of(async_queue, queue)
    tasks = [asyncio.create_task(c.next()) for c in consumers]
    try:
        await async_wait_until(lambda: listener.waiting(channel) == 3, what="three consumers waiting")
        before = list(idle_reads)
        msg_id = await async_queue.send(queue, "one")
        done, _ = await asyncio.wait(tasks, timeout=10, return_when=asyncio.FIRST_COMPLETED)
        got = [t.result() for t in done if t.result() is not None]
        assert [m.msg_id for m in got] == [msg_id]
        await async_wait_until(lambda: listener.waiting(channel) == 2, what="the others still waiting")
        assert sum(idle_reads) - sum(before) == 0  # the two others never read: they were not woken
    finally:
        for consumer in consumers:
            consumer.stop()
        await asyncio.gather(*tasks, return_exceptions=True)
        for consumer in consumers:
            await consumer.close()


async def test_a_message_sent_between_an_empty_read_and_the_wait_is_handled_at_once(
    db_url: str, async_queue: AsyncQueue, queue: str
) -> None:
    """The race: the consumer's read finds nothing, the message is sent and its notification arrives, and only
    then does the consumer start waiting. The hook holds the consumer exactly there."""
    consumer = async_queue.consume(queue, **NEVER_POLL)
    paused, resume = asyncio.Event(), asyncio.Event()

    async def hook() -> None:
        paused.set()
        await asyncio.wait_for(resume.wait(), 30)

    consumer.before_wait = hook
    listener = Listener.shared(db_url)
    channel = await channel_of(async_queue, queue)
    async with consumer:
        nxt = asyncio.create_task(consumer.next())
        await asyncio.wait_for(paused.wait(), 10)  # after the empty read, before the wait
        seq = listener.seq(channel)
        msg_id = await async_queue.send(queue, "in the gap")
        await async_wait_until(lambda: listener.seq(channel) > seq, what="the notification heard")
        consumer.before_wait = None
        resume.set()
        message = await asyncio.wait_for(nxt, 10)  # poll_interval is 60 s: only the noted wake-up delivers it
        assert message is not None and message.msg_id == msg_id


async def test_a_message_sent_inside_a_throttle_interval_is_handled_when_it_ends(
    db_url: str, async_queue: AsyncQueue, queue: str
) -> None:
    await async_queue.enable_notify(queue, 400)  # one notification per 400 ms at most
    handled: list[int] = []
    first = asyncio.Event()

    async def handler(message: Message) -> None:
        handled.append(message.msg_id)
        first.set()

    consumer = async_queue.consume(queue, **NEVER_POLL)
    task, stop = run_until_stopped(consumer, handler)
    listener = Listener.shared(db_url)
    channel = await channel_of(async_queue, queue)
    try:
        await async_wait_until(lambda: listener.waiting(channel) == 1, what="the consumer waiting")
        a = await async_queue.send(queue, "notified")
        await asyncio.wait_for(first.wait(), 10)
        await async_wait_until(lambda: listener.waiting(channel) == 1, what="the consumer waiting again")
        b = await async_queue.send(queue, "inside the interval: not notified")
        await async_wait_until(lambda: b in handled, timeout=10, what="the unnotified message handled")
        assert handled == [a, b]
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


async def _drain(async_queue: AsyncQueue, queue: str, backlog: int, concurrency: int = 10, **options: Any) -> Consumer:
    """Send ``backlog`` messages, handle them all with a fresh consumer running ``concurrency`` handlers at once,
    stop it; the consumer (for its counts)."""
    await async_queue.send_batch(queue, list(range(backlog)))
    handled: list[int] = []
    consumer = async_queue.consume(queue, **options, **QUICK)

    async def handler(message: Message) -> None:
        handled.append(message.msg_id)

    task, stop = run_until_stopped(consumer, handler, concurrency=concurrency)
    await async_wait_until(lambda: len(handled) == backlog, what="the backlog handled", timeout=60)
    stop.set()
    await asyncio.wait_for(task, 15)
    assert len(set(handled)) == backlog
    return consumer


async def test_a_backlog_is_read_in_reads_that_grow_up_to_max_batch_size(async_queue: AsyncQueue, queue: str) -> None:
    """While reads come back full and handlers keep up, a consumer holds more than ``batch_size``: a backlog of
    2,000 messages takes far fewer reads than 200, and no read asks for more than ``max_batch_size``."""
    consumer = await _drain(async_queue, queue, 2000, batch_size=10, max_batch_size=100)
    assert consumer.reads < 100  # 10 at a time would take 200 reads
    assert consumer.reads >= 2000 // 100


async def test_without_read_ahead_a_backlog_is_read_batch_size_at_a_time(async_queue: AsyncQueue, queue: str) -> None:
    consumer = await _drain(async_queue, queue, 200, batch_size=10, read_ahead=0)
    assert consumer.reads >= 20
