"""Bad input meets a named error of ``howdah.queue``, never a raw psycopg (or Python) error."""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from psycopg_pool import ConnectionPool

from howdah.queue import (
    AsyncQueue,
    InvalidArgument,
    InvalidQueueName,
    Queue,
    QueueDatabaseError,
    QueueError,
    QueueNotFound,
)

from ._helpers import maybe, queue_rows, scalar

Client = Queue | AsyncQueue
NAMED = (QueueNotFound, InvalidQueueName, InvalidArgument)


# ------------------------------------------------------------------------------------------ missing queues
MISSING_QUEUE_CALLS: dict[str, Callable[[Client, str], Any]] = {
    "send": lambda c, q: c.send(q, {"a": 1}),
    "send_batch": lambda c, q: c.send_batch(q, [1, 2]),
    "read": lambda c, q: c.read(q),
    "read_with_poll": lambda c, q: c.read_with_poll(q, max_poll_seconds=1),
    "pop": lambda c, q: c.pop(q),
    "delete": lambda c, q: c.delete(q, 1),
    "delete_batch": lambda c, q: c.delete_batch(q, [1, 2]),
    "archive": lambda c, q: c.archive(q, 1),
    "archive_batch": lambda c, q: c.archive_batch(q, [1]),
    "set_vt": lambda c, q: c.set_vt(q, 1, 10),
    "set_vt_batch": lambda c, q: c.set_vt_batch(q, [1], 10),
    "metrics": lambda c, q: c.metrics(q),
    "purge": lambda c, q: c.purge(q),
    "peek": lambda c, q: c.peek(q),
    "last_msg_id": lambda c, q: c.last_msg_id(q),
    # PGMQ raises its own P0001 'Queue "x" does not exist. ...' for these two
    "enable_notify": lambda c, q: c.enable_notify(q),
    "bind_topic": lambda c, q: c.bind_topic("orders.*", q),
}


@pytest.mark.parametrize("operation", sorted(MISSING_QUEUE_CALLS))
async def test_missing_queue_is_queue_not_found(client: Client, operation: str) -> None:
    missing = f"missing_{uuid.uuid4().hex[:8]}"
    with pytest.raises(QueueNotFound) as caught:
        await maybe(MISSING_QUEUE_CALLS[operation](client, missing))
    assert caught.value.queue == missing
    assert missing in str(caught.value)
    assert isinstance(caught.value.__cause__, psycopg.Error)  # translated once, the cause kept


async def test_consuming_a_missing_queue_is_queue_not_found(async_queue: AsyncQueue) -> None:
    with pytest.raises(QueueNotFound):
        async with async_queue.consume(f"missing_{uuid.uuid4().hex[:8]}") as messages:
            async for _ in messages:
                pass


# ------------------------------------------------------------------------------------------- hostile names
HOSTILE_NAMES = [
    "",
    "a" * 48,
    "é" * 24,  # 24 characters but 48 bytes
    "x;DROP TABLE canary",
    "x'; DROP TABLE canary; --",
    "a--b",
    "price$",
    "it's",
    "nul\x00byte",
    "new\nline",
    "tab\there",
    "del\x7f",
    123,
    None,
    b"bytes",
    ["list"],
]


@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=repr)
async def test_hostile_queue_names_are_invalid_queue_name(client: Client, name: Any) -> None:
    for call in (
        lambda: client.create(name),
        lambda: client.send(name, 1),
        lambda: client.read(name),
        lambda: client.drop(name),
        lambda: client.metrics(name),
    ):
        with pytest.raises(InvalidQueueName):
            await maybe(call())


async def test_quoting_survives_odd_but_valid_names(client: Client, conn: psycopg.Connection[Any]) -> None:
    conn.execute("CREATE TABLE IF NOT EXISTS canary (id int)")
    for name in ['we"ird', "spa ce", "dot.ted", "back\\slash", "percent%s", "ünï"]:
        name = f"{name}_{uuid.uuid4().hex[:6]}"
        await maybe(client.create(name))
        msg_id = await maybe(client.send(name, {"name": name}))
        [message] = await maybe(client.read(name))
        assert (message.msg_id, message.message) == (msg_id, {"name": name})
        assert await maybe(client.drop(name)) is True
    assert scalar(conn, "SELECT to_regclass('public.canary') IS NOT NULL")


# --------------------------------------------------------------------------------------------- bad payloads
class NotJson:
    pass


BAD_PAYLOADS = [
    {1, 2},
    frozenset(),
    math.nan,
    math.inf,
    -math.inf,
    {"deep": [1, {"x": math.nan}]},
    NotJson(),
    {"obj": NotJson()},
    b"bytes",
    datetime(2024, 1, 1),
    Decimal("1.5"),
    {("tuple", "key"): 1},
    object,
]


@pytest.mark.parametrize("payload", BAD_PAYLOADS, ids=repr)
async def test_non_json_payloads_are_invalid_argument(client: Client, queue: str, payload: Any) -> None:
    with pytest.raises(InvalidArgument):
        await maybe(client.send(queue, payload))
    with pytest.raises(InvalidArgument):
        await maybe(client.send_batch(queue, [1, payload]))
    with pytest.raises(InvalidArgument):
        await maybe(client.send(queue, 1, headers={"h": payload}))


@pytest.mark.parametrize("headers", [[], "h", 5, ["a", "b"], {"h": {1, 2}}], ids=repr)
async def test_bad_headers_are_invalid_argument(client: Client, queue: str, headers: Any) -> None:
    with pytest.raises(InvalidArgument):
        await maybe(client.send(queue, 1, headers=headers))


@pytest.mark.parametrize(
    ("messages", "headers"),
    [
        ([], None),
        ((), None),
        ("abc", None),
        (b"abc", None),
        ({"a": 1}, None),
        ((m for m in [1, 2]), None),
        ([1, 2], [{"a": 1}]),
        ([1], [{"a": 1}, {"b": 2}]),
        ([1, 2], []),
        ([1, 2], ["x", {"a": 1}]),
    ],
    ids=repr,
)
async def test_bad_batches_are_invalid_argument(
    client: Client, queue: str, conn: psycopg.Connection[Any], messages: Any, headers: Any
) -> None:
    with pytest.raises(InvalidArgument):
        await maybe(client.send_batch(queue, messages, headers=headers))
    assert queue_rows(conn, queue) == []


BAD_ARGUMENTS: dict[str, Callable[[Client, str], Any]] = {
    "read vt<0": lambda c, q: c.read(q, vt=-1),
    "read qty=0": lambda c, q: c.read(q, qty=0),
    "read qty<0": lambda c, q: c.read(q, qty=-5),
    "read qty float": lambda c, q: c.read(q, qty=1.5),
    "read vt str": lambda c, q: c.read(q, vt="30"),
    "read vt bool": lambda c, q: c.read(q, vt=True),
    "read vt huge": lambda c, q: c.read(q, vt=2**31),
    "read conditional list": lambda c, q: c.read(q, conditional=["a"]),
    "read_with_poll max<0": lambda c, q: c.read_with_poll(q, max_poll_seconds=-1),
    "read_with_poll interval=0": lambda c, q: c.read_with_poll(q, poll_interval_ms=0),
    "pop qty=0": lambda c, q: c.pop(q, qty=0),
    "send delay<0": lambda c, q: c.send(q, 1, delay=-1),
    "send delay float": lambda c, q: c.send(q, 1, delay=1.5),
    "send delay timedelta": lambda c, q: c.send(q, 1, delay=timedelta(seconds=5)),
    "send naive datetime": lambda c, q: c.send(q, 1, delay=datetime.now()),
    "send_batch naive datetime": lambda c, q: c.send_batch(q, [1], delay=datetime.now()),
    "set_vt naive datetime": lambda c, q: c.set_vt(q, 1, datetime.now()),
    "set_vt vt str": lambda c, q: c.set_vt(q, 1, "10"),
    "set_vt vt huge": lambda c, q: c.set_vt(q, 1, 2**40),
    "set_vt_batch naive datetime": lambda c, q: c.set_vt_batch(q, [1], datetime.now()),
    "delete id str": lambda c, q: c.delete(q, "1"),
    "delete id bool": lambda c, q: c.delete(q, True),
    "delete id huge": lambda c, q: c.delete(q, 2**70),
    "archive id float": lambda c, q: c.archive(q, 1.0),
    "delete_batch ids str": lambda c, q: c.delete_batch(q, "123"),
    "delete_batch ids mixed": lambda c, q: c.delete_batch(q, [1, "2"]),
    "delete_batch ids huge": lambda c, q: c.delete_batch(q, [1, 2**70]),
    "archive_batch ids None": lambda c, q: c.archive_batch(q, None),
    "set_vt_batch ids set": lambda c, q: c.set_vt_batch(q, {1, 2}, 0),
}


@pytest.mark.parametrize("case", sorted(BAD_ARGUMENTS))
async def test_bad_arguments_are_invalid_argument(client: Client, queue: str, case: str) -> None:
    with pytest.raises(InvalidArgument):
        await maybe(BAD_ARGUMENTS[case](client, queue))


async def test_named_errors_share_one_root(client: Client) -> None:
    with pytest.raises(QueueError):
        await maybe(client.read("no;such"))
    with pytest.raises(ValueError):  # InvalidQueueName and InvalidArgument are ValueErrors too
        await maybe(client.read("ok", qty=0))
    with pytest.raises(LookupError):  # QueueNotFound is a LookupError
        await maybe(client.read(f"missing_{uuid.uuid4().hex[:8]}"))


# -------------------------------------------------------------- former bugs, kept as regression tests
@pytest.mark.parametrize("where", ["message", "headers"])
async def test_a_nul_character_in_json_is_invalid_argument(client: Client, queue: str, where: str) -> None:
    with pytest.raises(InvalidArgument):
        if where == "message":
            await maybe(client.send(queue, {"text": "nul\x00byte"}))
        else:
            await maybe(client.send(queue, 1, headers={"h": "\x00"}))


async def test_a_lone_surrogate_in_a_queue_name_is_invalid_queue_name(client: Client) -> None:
    with pytest.raises(InvalidQueueName):
        await maybe(client.send("bad\ud800name", 1))


async def test_non_string_keys_are_refused_not_silently_rewritten(client: Client, queue: str) -> None:
    with pytest.raises(InvalidArgument):
        await maybe(client.send(queue, {1: "a", "1": "b"}))


def test_a_pool_that_cannot_connect_is_queue_database_error() -> None:
    dead = "postgresql://nobody@127.0.0.1:9/nothing?connect_timeout=1"
    with (
        ConnectionPool(dead, min_size=0, max_size=1, timeout=0.5, open=True) as pool,
        pytest.raises(QueueDatabaseError),
    ):
        Queue(pool).send("orders", 1)


# ------------------------------------------------------------------------------------ property: hostile input
NAME_ALPHABET = st.characters()
HOSTILE_FRAGMENTS = [
    *["$", ";", "--", "'", '"', "\\", "%s", "%", "{}", ")", "/*", "*/", "\x00"],
    *["'; DROP TABLE canary_property; --", '"); DROP TABLE canary_property; --'],
    "$$; DROP TABLE canary_property; $$",
]
hostile_names = st.one_of(
    st.from_regex(r"[a-zA-Z0-9_ .\-\"\\%{}()éÉß]{1,20}", fullmatch=True),
    st.text(NAME_ALPHABET, min_size=1, max_size=16),
    st.text(NAME_ALPHABET, max_size=60),
    st.sampled_from(HOSTILE_FRAGMENTS).flatmap(
        lambda bad: st.tuples(st.text(NAME_ALPHABET, max_size=10), st.text(NAME_ALPHABET, max_size=10)).map(
            lambda parts: parts[0] + bad + parts[1]
        )
    ),
)
json_strings = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=30)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    # jsonb keeps numbers as numeric: beyond ~1e15 a float can come back as an equal-looking int
    | st.floats(allow_nan=False, allow_infinity=False, min_value=-1e15, max_value=1e15)
    | json_strings,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(json_strings, children, max_size=4),
    max_leaves=12,
)
non_json = st.one_of(
    st.just(math.nan),
    st.just(math.inf),
    st.sets(st.integers(), max_size=2),
    st.builds(NotJson),
    st.binary(max_size=4),
    st.just(Decimal("0.1")),
)
# Mostly JSON (so that many examples reach the read-back check), sometimes hostile.
payloads = st.one_of(
    json_values, json_values, json_values, non_json, st.lists(st.one_of(json_values, non_json), max_size=3)
)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=hostile_names, payload=payloads)
def test_property_hostile_names_and_payloads(
    sync_queue: Queue, conn: psycopg.Connection[Any], name: str, payload: Any
) -> None:
    conn.execute("CREATE TABLE IF NOT EXISTS canary_property (id int PRIMARY KEY)")
    conn.execute("INSERT INTO canary_property VALUES (1) ON CONFLICT DO NOTHING")
    created = False
    try:
        try:
            sync_queue.create(name)
            created = True
        except NAMED:
            event("name refused")
            return
        sync_queue.purge(name)  # names that fold to the same table share it
        try:
            msg_id = sync_queue.send(name, payload, headers={"payload": payload})
        except NAMED:
            event("payload refused")
            assert sync_queue.read(name, qty=10) == []
            return
        [message] = sync_queue.read(name, qty=10)
        assert message.msg_id == msg_id
        assert message.message == payload
        assert message.headers == {"payload": payload}
        event("round-tripped")
    finally:
        if created:
            sync_queue.drop(name)
        assert scalar(conn, "SELECT count(*) FROM canary_property") == 1
