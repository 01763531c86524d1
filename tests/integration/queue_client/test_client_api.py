"""The client's operations against a real schema, each driven through ``Queue`` and ``AsyncQueue``."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg import sql

from howdah.queue import AsyncQueue, Message, Queue, QueueInfo, QueueMetrics, QueueNotFound

from ._helpers import maybe, queue_rows, scalar, table

Client = Queue | AsyncQueue


def db_now(conn: psycopg.Connection[Any]) -> datetime:
    return scalar(conn, "SELECT clock_timestamp()")  # type: ignore[no-any-return]


# ------------------------------------------------------------------------------------------ create / list / drop
async def test_create_is_listed_and_idempotent(client: Client, queue_name: str) -> None:
    await maybe(client.create(queue_name))
    await maybe(client.create(queue_name))  # creating an existing queue is a no-op, as in PGMQ
    infos = [i for i in await maybe(client.list_queues()) if i.queue_name == queue_name]
    assert len(infos) == 1
    info = infos[0]
    assert isinstance(info, QueueInfo)
    assert (info.is_partitioned, info.is_unlogged) == (False, False)
    assert isinstance(info.created_at, datetime) and info.created_at.tzinfo is not None


async def test_create_unlogged(client: Client, queue_name: str, conn: psycopg.Connection[Any]) -> None:
    await maybe(client.create(queue_name, unlogged=True))
    [info] = [i for i in await maybe(client.list_queues()) if i.queue_name == queue_name]
    assert info.is_unlogged
    persistence = scalar(
        conn, "SELECT relpersistence FROM pg_class WHERE oid = %s::regclass", (f"pgmq.q_{queue_name}",)
    )
    assert persistence == "u"
    msg_id = await maybe(client.send(queue_name, {"unlogged": True}))
    [message] = await maybe(client.read(queue_name))
    assert (message.msg_id, message.message) == (msg_id, {"unlogged": True})


async def test_list_queues_is_sorted_by_name(client: Client, queue_name: str) -> None:
    names = [f"{queue_name}_b", f"{queue_name}_a", f"{queue_name}_c"]
    for name in names:
        await maybe(client.create(name))
    listed = [i.queue_name for i in await maybe(client.list_queues())]
    assert [n for n in listed if n.startswith(queue_name)] == sorted(names)
    assert listed == sorted(listed)


async def test_drop(client: Client, queue: str) -> None:
    await maybe(client.send(queue, 1))
    assert await maybe(client.drop(queue)) is True
    assert queue not in [i.queue_name for i in await maybe(client.list_queues())]
    with pytest.raises(QueueNotFound):
        await maybe(client.send(queue, 1))
    assert await maybe(client.drop(queue)) is False  # dropping a missing queue says so, no error


# ------------------------------------------------------------------------------------------------ send / read
async def test_send_then_read_returns_a_typed_message(
    client: Client, queue: str, conn: psycopg.Connection[Any]
) -> None:
    before = db_now(conn)
    msg_id = await maybe(client.send(queue, {"order": 7, "items": ["a", "b"], "total": 12.5, "note": None}))
    assert isinstance(msg_id, int)
    [message] = await maybe(client.read(queue, vt=30))
    assert isinstance(message, Message)
    assert message.msg_id == msg_id
    assert message.read_ct == 1
    assert message.message == {"order": 7, "items": ["a", "b"], "total": 12.5, "note": None}
    assert message.headers is None
    assert before <= message.enqueued_at <= message.last_read_at  # type: ignore[operator]
    assert message.vt >= message.last_read_at + timedelta(seconds=29)  # type: ignore[operator]
    for stamp in (message.enqueued_at, message.last_read_at, message.vt):
        assert stamp is not None and stamp.tzinfo is not None
    with pytest.raises(dataclasses.FrozenInstanceError):
        message.read_ct = 2  # type: ignore[misc]
    # Invisible for its vt: a second read finds nothing.
    assert await maybe(client.read(queue)) == []


@pytest.mark.parametrize(
    "payload",
    [0, -1, 2**70, 1.5, "text", "", "üñíçødé ✓", True, False, None, [], {}, [1, [2, [3]]], {"nested": {"a": [1]}}],
    ids=repr,
)
async def test_any_json_value_round_trips(client: Client, queue: str, payload: Any) -> None:
    await maybe(client.send(queue, payload))
    [message] = await maybe(client.read(queue))
    assert message.message == payload
    assert type(message.message) is type(payload)


async def test_send_with_headers(client: Client, queue: str) -> None:
    headers = {"trace": "abc", "x-pgmq-group": "g1", "n": 3}
    await maybe(client.send(queue, "body", headers=headers))
    [message] = await maybe(client.read(queue))
    assert message.headers == headers


async def test_send_with_integer_delay(client: Client, queue: str, conn: psycopg.Connection[Any]) -> None:
    before = db_now(conn)
    await maybe(client.send(queue, "later", delay=60))
    assert await maybe(client.read(queue)) == []
    [(_, read_ct, vt, _, _)] = queue_rows(conn, queue)
    assert read_ct == 0
    assert vt >= before + timedelta(seconds=60)


async def test_send_with_datetime_delay(client: Client, queue: str, conn: psycopg.Connection[Any]) -> None:
    at = (db_now(conn) + timedelta(hours=1)).astimezone(UTC)
    await maybe(client.send(queue, "at", delay=at))
    assert await maybe(client.read(queue)) == []
    [(_, _, vt, _, _)] = queue_rows(conn, queue)
    assert vt == at
    # A time in the past is simply "visible now".
    await maybe(client.send(queue, "past", delay=datetime(2000, 1, 1, tzinfo=UTC)))
    [message] = await maybe(client.read(queue))
    assert message.message == "past"


async def test_send_batch(client: Client, queue: str) -> None:
    ids = await maybe(client.send_batch(queue, [{"i": i} for i in range(5)]))
    assert len(ids) == 5 and ids == sorted(ids) and len(set(ids)) == 5
    messages = await maybe(client.read(queue, qty=10))
    assert [m.msg_id for m in messages] == ids
    assert [m.message for m in messages] == [{"i": i} for i in range(5)]
    assert all(m.headers is None for m in messages)


async def test_send_batch_with_headers_and_delays(client: Client, queue: str, conn: psycopg.Connection[Any]) -> None:
    ids = await maybe(client.send_batch(queue, ["a", "b", "c"], headers=[{"h": 1}, None, {"h": 3}]))
    messages = await maybe(client.read(queue, qty=3))
    assert [(m.msg_id, m.message, m.headers) for m in messages] == [
        (ids[0], "a", {"h": 1}),
        (ids[1], "b", None),
        (ids[2], "c", {"h": 3}),
    ]
    before = db_now(conn)
    await maybe(client.send_batch(queue, ["x", "y"], delay=120))
    at = before + timedelta(hours=2)
    await maybe(client.send_batch(queue, ["z"], delay=at))
    assert await maybe(client.read(queue, qty=10)) == []
    rows = {row[3]: row[2] for row in queue_rows(conn, queue)}
    assert rows["x"] >= before + timedelta(seconds=120) and rows["y"] >= before + timedelta(seconds=120)
    assert rows["z"] == at


async def test_read_qty_order_and_conditional(client: Client, queue: str) -> None:
    ids = await maybe(client.send_batch(queue, [{"kind": "a", "n": 1}, {"kind": "b", "n": 2}, {"kind": "a", "n": 3}]))
    only_a = await maybe(client.read(queue, vt=30, qty=5, conditional={"kind": "a"}))
    assert [m.msg_id for m in only_a] == [ids[0], ids[2]]
    [rest] = await maybe(client.read(queue, qty=5))
    assert rest.msg_id == ids[1]


async def test_read_vt_zero_and_read_count(client: Client, queue: str) -> None:
    msg_id = await maybe(client.send(queue, "again"))
    for expected in (1, 2, 3):
        [message] = await maybe(client.read(queue, vt=0))  # vt=0: visible again at once
        assert (message.msg_id, message.read_ct) == (msg_id, expected)


async def test_read_with_poll(client: Client, queue: str) -> None:
    assert await maybe(client.read_with_poll(queue, vt=30, qty=1, max_poll_seconds=1, poll_interval_ms=50)) == []
    msg_id = await maybe(client.send(queue, "polled"))
    [message] = await maybe(client.read_with_poll(queue, vt=30, qty=5, max_poll_seconds=5))
    assert (message.msg_id, message.message) == (msg_id, "polled")


async def test_pop_reads_and_deletes(client: Client, queue: str, conn: psycopg.Connection[Any]) -> None:
    ids = await maybe(client.send_batch(queue, [1, 2, 3]))
    popped = await maybe(client.pop(queue, qty=2))
    assert [m.msg_id for m in popped] == ids[:2]
    assert [m.message for m in popped] == [1, 2]
    assert [row[0] for row in queue_rows(conn, queue)] == ids[2:]
    [last] = await maybe(client.pop(queue))
    assert last.msg_id == ids[2]
    assert await maybe(client.pop(queue)) == []


# ---------------------------------------------------------------------------------------------------- set_vt
async def test_set_vt_seconds_and_datetime(client: Client, queue: str, conn: psycopg.Connection[Any]) -> None:
    msg_id = await maybe(client.send(queue, "vt"))
    [read] = await maybe(client.read(queue, vt=300))
    assert await maybe(client.read(queue)) == []
    again = await maybe(client.set_vt(queue, msg_id, 0))
    assert isinstance(again, Message) and again.msg_id == msg_id and again.read_ct == read.read_ct
    [reread] = await maybe(client.read(queue, vt=5))
    assert reread.msg_id == msg_id
    at = (db_now(conn) + timedelta(minutes=10)).astimezone(UTC)
    moved = await maybe(client.set_vt(queue, msg_id, at))
    assert moved is not None and moved.vt == at
    before = db_now(conn)
    pushed = await maybe(client.set_vt(queue, msg_id, 100))
    assert pushed is not None and pushed.vt >= before + timedelta(seconds=100)
    assert await maybe(client.set_vt(queue, msg_id + 1000, 0)) is None  # no such message


async def test_set_vt_batch(client: Client, queue: str) -> None:
    ids = await maybe(client.send_batch(queue, ["a", "b", "c"]))
    assert len(await maybe(client.read(queue, vt=300, qty=3))) == 3
    released = await maybe(client.set_vt_batch(queue, [ids[0], ids[2], ids[2] + 1000], 0))
    assert sorted(m.msg_id for m in released) == [ids[0], ids[2]]
    assert [m.msg_id for m in await maybe(client.read(queue, qty=10))] == [ids[0], ids[2]]
    assert await maybe(client.set_vt_batch(queue, [], 0)) == []


# ---------------------------------------------------------------------------------------- archive / delete / purge
async def test_archive(client: Client, queue: str, conn: psycopg.Connection[Any]) -> None:
    msg_id = await maybe(client.send(queue, {"keep": True}, headers={"h": 1}))
    assert await maybe(client.archive(queue, msg_id)) is True
    assert queue_rows(conn, queue) == []
    [(archived_id, _, _, body, headers)] = queue_rows(conn, queue, "a")
    assert (archived_id, body, headers) == (msg_id, {"keep": True}, {"h": 1})
    archived_at = scalar(conn, sql.SQL("SELECT archived_at FROM {}").format(table("a", queue)))
    assert archived_at is not None
    assert await maybe(client.archive(queue, msg_id)) is False


async def test_archive_batch(client: Client, queue: str, conn: psycopg.Connection[Any]) -> None:
    ids = await maybe(client.send_batch(queue, [1, 2, 3]))
    archived = await maybe(client.archive_batch(queue, [ids[0], ids[1], ids[2] + 1000]))
    assert sorted(archived) == ids[:2]
    assert [row[0] for row in queue_rows(conn, queue)] == ids[2:]
    assert [row[0] for row in queue_rows(conn, queue, "a")] == ids[:2]
    assert await maybe(client.archive_batch(queue, [])) == []


async def test_delete(client: Client, queue: str, conn: psycopg.Connection[Any]) -> None:
    msg_id = await maybe(client.send(queue, "bye"))
    assert await maybe(client.delete(queue, msg_id)) is True
    assert await maybe(client.delete(queue, msg_id)) is False
    assert queue_rows(conn, queue) == [] and queue_rows(conn, queue, "a") == []


async def test_delete_batch(client: Client, queue: str, conn: psycopg.Connection[Any]) -> None:
    ids = await maybe(client.send_batch(queue, [1, 2, 3]))
    deleted = await maybe(client.delete_batch(queue, [ids[0], ids[2], ids[2] + 1000]))
    assert sorted(deleted) == [ids[0], ids[2]]
    assert [row[0] for row in queue_rows(conn, queue)] == [ids[1]]
    assert await maybe(client.delete_batch(queue, [])) == []


async def test_purge(client: Client, queue: str, conn: psycopg.Connection[Any]) -> None:
    assert await maybe(client.purge(queue)) == 0
    await maybe(client.send_batch(queue, list(range(7))))
    assert await maybe(client.purge(queue)) == 7
    assert queue_rows(conn, queue) == []


# ---------------------------------------------------------------------------------------------------- metrics
async def test_metrics(client: Client, queue: str) -> None:
    empty = await maybe(client.metrics(queue))
    assert isinstance(empty, QueueMetrics)
    assert (empty.queue_name, empty.queue_length, empty.queue_visible_length, empty.total_messages) == (queue, 0, 0, 0)
    assert empty.newest_msg_age_sec is None and empty.oldest_msg_age_sec is None
    ids = await maybe(client.send_batch(queue, [1, 2, 3]))
    await maybe(client.send(queue, 4, delay=600))
    await maybe(client.read(queue, vt=600))
    await maybe(client.delete(queue, ids[1]))
    metrics = await maybe(client.metrics(queue))
    assert metrics.queue_length == 3  # ids[0] (read, invisible), ids[2] (visible), the delayed one
    assert metrics.queue_visible_length == 1
    assert metrics.total_messages == 4
    assert metrics.oldest_msg_age_sec is not None and metrics.oldest_msg_age_sec >= 0
    assert metrics.scrape_time.tzinfo is not None


async def test_metrics_all(client: Client, queue: str) -> None:
    other = f"{queue}_2"
    await maybe(client.create(other))
    await maybe(client.send(other, "x"))
    by_name = {m.queue_name: m for m in await maybe(client.metrics_all())}
    assert by_name[queue].queue_length == 0
    assert by_name[other].queue_length == 1
    assert all(isinstance(m, QueueMetrics) for m in by_name.values())


# ------------------------------------------------------------------------------------------ peek / last_msg_id
async def test_peek_does_not_read(client: Client, queue: str) -> None:
    ids = await maybe(client.send_batch(queue, ["a", "b", "c"]))
    peeked = await maybe(client.peek(queue))
    assert [(m.msg_id, m.message, m.read_ct) for m in peeked] == list(zip(ids, ["a", "b", "c"], [0, 0, 0], strict=True))
    assert [m.msg_id for m in await maybe(client.peek(queue, after_msg_id=ids[0], limit=1))] == [ids[1]]
    [read] = await maybe(client.read(queue, vt=300))
    assert read.read_ct == 1  # peeking changed nothing
    assert [m.msg_id for m in await maybe(client.peek(queue))] == ids  # invisible messages are peeked too


async def test_last_msg_id(client: Client, queue: str) -> None:
    assert await maybe(client.last_msg_id(queue)) == 0
    ids = await maybe(client.send_batch(queue, [1, 2]))
    assert await maybe(client.last_msg_id(queue)) == ids[-1]
    await maybe(client.delete(queue, ids[-1]))
    assert await maybe(client.last_msg_id(queue)) == ids[0]


@pytest.mark.parametrize("prefix", ["MixedCase", "Ünïcode"])
async def test_peek_and_last_msg_id_find_queues_with_upper_case_names(
    client: Client, queue_name: str, prefix: str, conn: psycopg.Connection[Any], request: pytest.FixtureRequest
) -> None:
    queue = f"{prefix}_{queue_name}"
    await maybe(client.create(queue))
    msg_id = await maybe(client.send(queue, "x"))
    assert [m.msg_id for m in await maybe(client.peek(queue))] == [msg_id]
    assert await maybe(client.last_msg_id(queue)) == msg_id
