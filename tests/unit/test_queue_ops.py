"""Pure logic of the queue client, no database: argument checks in ``_ops``, name rules, backoff, options."""

from __future__ import annotations

import dataclasses
import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from psycopg import errors as pg_errors

from howdah.queue import (
    MAX_QUEUE_NAME,
    ConsumeOptions,
    InvalidArgument,
    InvalidQueueName,
    QueueDatabaseError,
    QueueError,
    QueueNotFound,
    _ops,
    notify_channel,
    validate_queue_name,
)
from howdah.queue._errors import translate

AWARE = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
NAIVE = datetime(2030, 1, 1, 12, 0)


# ------------------------------------------------------------------------------------------------ name rules
@pytest.mark.parametrize(
    "name",
    ["a", "orders", "Orders", "with space", "dot.ted", "ünïcödé", "x" * MAX_QUEUE_NAME, "é" * 23 + "x", 'q"uote'],
)
def test_valid_names_are_returned_unchanged(name: str) -> None:
    assert validate_queue_name(name) is name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "x" * (MAX_QUEUE_NAME + 1),
        "é" * 24,  # 24 characters, 48 bytes: the limit counts bytes
        "a$b",
        "a;b",
        "a--b",
        "it's",
        *[f"ctl{chr(c)}x" for c in [*range(0x20), 0x7F]],
    ],
    ids=repr,
)
def test_invalid_names(name: str) -> None:
    with pytest.raises(InvalidQueueName):
        validate_queue_name(name)


@pytest.mark.parametrize("name", [None, 1, 1.5, b"orders", ["orders"], ("o",)], ids=repr)
def test_a_name_must_be_a_string(name: object) -> None:
    with pytest.raises(InvalidQueueName, match="string"):
        validate_queue_name(name)


def test_name_errors_are_value_errors_and_queue_errors() -> None:
    assert issubclass(InvalidQueueName, ValueError) and issubclass(InvalidQueueName, QueueError)
    assert issubclass(InvalidArgument, ValueError) and issubclass(InvalidArgument, QueueError)
    assert issubclass(QueueNotFound, LookupError) and issubclass(QueueNotFound, QueueError)
    assert MAX_QUEUE_NAME == 47


def test_a_lone_surrogate_is_an_invalid_name() -> None:
    with pytest.raises(InvalidQueueName):
        validate_queue_name("bad\udc80")


# Every builder that takes a queue checks its name before anything else.
QUEUE_BUILDERS: dict[str, Any] = {
    "create": lambda q: _ops.create(q),
    "create_partitioned": lambda q: _ops.create_partitioned(q),
    "drop": lambda q: _ops.drop(q),
    "purge": lambda q: _ops.purge(q),
    "send": lambda q: _ops.send(q, 1),
    "send_batch": lambda q: _ops.send_batch(q, [1]),
    "read": lambda q: _ops.read(q),
    "read_with_poll": lambda q: _ops.read_with_poll(q),
    "read_grouped": lambda q: _ops.read_grouped(q),
    "pop": lambda q: _ops.pop(q),
    "delete": lambda q: _ops.delete(q, 1),
    "delete_batch": lambda q: _ops.delete_batch(q, [1]),
    "archive": lambda q: _ops.archive(q, 1),
    "archive_batch": lambda q: _ops.archive_batch(q, [1]),
    "set_vt": lambda q: _ops.set_vt(q, 1, 0),
    "set_vt_batch": lambda q: _ops.set_vt_batch(q, [1], 0),
    "metrics": lambda q: _ops.metrics(q),
    "enable_notify": lambda q: _ops.enable_notify(q),
    "disable_notify": lambda q: _ops.disable_notify(q),
    "notify_enabled": lambda q: _ops.notify_enabled(q),
    "bind_topic": lambda q: _ops.bind_topic("a.*", q),
    "list_topic_bindings": lambda q: _ops.list_topic_bindings(q),
    "release": lambda q: _ops.release(q, 1, 0, None),
    "dead_letter": lambda q: _ops.dead_letter(q, [1], "dlq", "why"),
    "settle_and_read": lambda q: _ops.settle_and_read(q, [1], False, [(2, 0, None)], 30, 1),
    "notify_throttle": lambda q: _ops.notify_throttle(q),
    "maintain": lambda q: _ops.maintain(q),
    "peek": lambda q: _ops.peek(q),
    "last_msg_id": lambda q: _ops.last_msg_id(q),
}


@pytest.mark.parametrize("builder", sorted(QUEUE_BUILDERS))
@pytest.mark.parametrize("name", ["", "x;DROP TABLE t", "a" * 48, 7], ids=repr)
def test_every_builder_checks_the_queue_name(builder: str, name: Any) -> None:
    with pytest.raises(InvalidQueueName):
        QUEUE_BUILDERS[builder](name)


@pytest.mark.parametrize("builder", sorted(QUEUE_BUILDERS))
def test_builders_pass_the_name_as_a_parameter_never_in_the_sql(builder: str) -> None:
    op = QUEUE_BUILDERS[builder]("Some Queue")
    assert isinstance(op.query, str)
    assert "Some Queue" not in op.query
    assert "Some Queue" in op.params


def test_peek_arguments() -> None:
    assert _ops.peek("q", 5, 10).params == ("q", 5, 10)
    assert _ops.peek("q").params == ("q", 0, 100)
    for bad in ({"after_msg_id": "1"}, {"after_msg_id": True}, {"limit": 0}, {"limit": -1}, {"limit": 1.5}):
        with pytest.raises(InvalidArgument):
            _ops.peek("q", **bad)


def test_queue_operations_name_their_queue_for_not_found_errors() -> None:
    for builder in ("send", "read", "pop", "delete", "archive", "set_vt", "metrics", "purge", "drop"):
        assert QUEUE_BUILDERS[builder]("orders").queue == "orders", builder
    assert _ops.list_queues().queue is None
    assert _ops.metrics_all().queue is None


# --------------------------------------------------------------------------------------------------- JSON
def test_to_json_is_compact_and_strict() -> None:
    assert _ops.to_json({"a": [1, 2.5, None, True]}) == '{"a":[1,2.5,null,true]}'
    assert _ops.to_json("ünï") == '"\\u00fcn\\u00ef"'


@pytest.mark.parametrize(
    "value", [math.nan, math.inf, -math.inf, {1, 2}, object(), b"x", NAIVE, {"a": {"b": math.nan}}], ids=repr
)
def test_to_json_refuses_what_is_not_json(value: Any) -> None:
    with pytest.raises(InvalidArgument, match="payload is not JSON-serialisable"):
        _ops.to_json(value, "payload")


@pytest.mark.parametrize("value", [{1: "a"}, {None: 1}, {1: "a", "1": "b"}], ids=repr)
def test_to_json_refuses_non_string_keys(value: Any) -> None:
    with pytest.raises(InvalidArgument):
        _ops.to_json(value)


# ------------------------------------------------------------------------------------------------ send
def test_send_casts_integer_and_datetime_delays() -> None:
    op = _ops.send("q", {"a": 1}, headers={"h": 1}, delay=5)
    assert op.query.endswith("%s::integer)")
    assert op.params == ("q", '{"a":1}', '{"h":1}', 5)
    op = _ops.send("q", 1, delay=AWARE)
    assert op.query.endswith("%s::timestamptz)")
    assert op.params == ("q", "1", None, AWARE)
    other_zone = datetime(2030, 1, 1, tzinfo=timezone(timedelta(hours=5)))
    assert _ops.send("q", 1, delay=other_zone).params[3] is other_zone


@pytest.mark.parametrize("delay", [-1, 1.5, "5", True, None, timedelta(seconds=5), NAIVE, 2**31], ids=repr)
def test_send_refuses_bad_delays(delay: Any) -> None:
    with pytest.raises(InvalidArgument):
        _ops.send("q", 1, delay=delay)


@pytest.mark.parametrize("headers", [[], "h", 5, [("a", 1)], {"h": {1}}], ids=repr)
def test_send_refuses_bad_headers(headers: Any) -> None:
    with pytest.raises(InvalidArgument):
        _ops.send("q", 1, headers=headers)


def test_send_batch_params() -> None:
    op = _ops.send_batch("q", [1, "two", {"three": 3}], headers=[None, {"h": 2}, {}], delay=AWARE)
    assert op.params == ("q", ["1", '"two"', '{"three":3}'], [None, '{"h":2}', "{}"], AWARE)
    assert "::jsonb[]" in op.query and op.query.endswith("%s::timestamptz)")
    assert _ops.send_batch("q", (1, 2)).params[2] is None  # a tuple is a sequence too


@pytest.mark.parametrize(
    ("messages", "headers", "match"),
    [
        ([], None, "empty"),
        ("abc", None, "list"),
        (b"abc", None, "list"),
        ({"a": 1}, None, "list"),
        (iter([1]), None, "list"),
        (None, None, "list"),
        ([1, 2], [{}], "match"),
        ([1], [{}, {}], "match"),
        ([1], ["not a dict"], "headers\\[0\\]"),
        ([1, {1, 2}], None, "messages\\[1\\]"),
    ],
    ids=repr,
)
def test_send_batch_refuses(messages: Any, headers: Any, match: str) -> None:
    with pytest.raises(InvalidArgument, match=match):
        _ops.send_batch("q", messages, headers=headers)


@pytest.mark.parametrize("headers", [5, iter([None]), (h for h in [None])], ids=["int", "iterator", "generator"])
def test_send_batch_refuses_headers_that_are_not_a_list(headers: Any) -> None:
    with pytest.raises(InvalidArgument):
        _ops.send_batch("q", [1], headers=headers)


# ------------------------------------------------------------------------------------------------- read
def test_read_params() -> None:
    assert _ops.read("q").params == ("q", 30, 1, "{}")
    assert _ops.read("q", vt=0, qty=5, conditional={"k": "v"}).params == ("q", 0, 5, '{"k":"v"}')
    assert _ops.read_with_poll("q", 10, 2, 3, 50).params == ("q", 10, 2, 3, 50)
    assert "pgmq.read_grouped_rr(" in _ops.read_grouped("q", mode="round_robin").query
    assert "pgmq.read_grouped_head(" in _ops.read_grouped("q", mode="head").query
    assert "pgmq.read_grouped(" in _ops.read_grouped("q").query
    assert _ops.pop("q", 3).params == ("q", 3)


@pytest.mark.parametrize(
    "call",
    [
        lambda: _ops.read("q", vt=-1),
        lambda: _ops.read("q", vt=1.0),
        lambda: _ops.read("q", vt=True),
        lambda: _ops.read("q", vt=2**31),
        lambda: _ops.read("q", qty=0),
        lambda: _ops.read("q", qty=-1),
        lambda: _ops.read("q", qty="1"),
        lambda: _ops.read("q", conditional=["k"]),
        lambda: _ops.read("q", conditional={"k": math.nan}),
        lambda: _ops.read_with_poll("q", max_poll_seconds=-1),
        lambda: _ops.read_with_poll("q", poll_interval_ms=0),
        lambda: _ops.read_grouped("q", mode="lifo"),
        lambda: _ops.read_grouped("q", qty=0),
        lambda: _ops.pop("q", 0),
        lambda: _ops.enable_notify("q", -1),
    ],
)
def test_read_arguments_are_checked(call: Any) -> None:
    with pytest.raises(InvalidArgument):
        call()


# ------------------------------------------------------------------------------------ ids, set_vt, consumer ops
@pytest.mark.parametrize("msg_id", ["1", 1.0, True, None, [1]], ids=repr)
def test_a_msg_id_must_be_an_integer(msg_id: Any) -> None:
    for builder in (_ops.delete, _ops.archive):
        with pytest.raises(InvalidArgument):
            builder("q", msg_id)
    with pytest.raises(InvalidArgument):
        _ops.set_vt("q", msg_id, 0)


@pytest.mark.parametrize("msg_ids", ["123", b"12", {1, 2}, None, 5, [1, "2"], [1, True], [1.0]], ids=repr)
def test_msg_ids_must_be_a_list_of_integers(msg_ids: Any) -> None:
    for builder in (_ops.delete_batch, _ops.archive_batch):
        with pytest.raises(InvalidArgument):
            builder("q", msg_ids)
    with pytest.raises(InvalidArgument):
        _ops.set_vt_batch("q", msg_ids, 0)


def test_msg_ids_params() -> None:
    assert _ops.delete_batch("q", (3, 1, 2)).params == ("q", [3, 1, 2])
    assert _ops.archive_batch("q", []).params == ("q", [])


def test_set_vt_casts() -> None:
    assert _ops.set_vt("q", 1, 30).query.endswith("%s::integer)")
    assert _ops.set_vt("q", 1, AWARE).query.endswith("%s::timestamptz)")
    assert _ops.set_vt_batch("q", [1], AWARE).params == ("q", [1], AWARE)


@pytest.mark.parametrize("vt", [NAIVE, "10", 1.5, None, True, timedelta(seconds=1)], ids=repr)
def test_set_vt_refuses_bad_vts(vt: Any) -> None:
    with pytest.raises(InvalidArgument):
        _ops.set_vt("q", 1, vt)
    with pytest.raises(InvalidArgument):
        _ops.set_vt_batch("q", [1], vt)


def test_create_variants() -> None:
    assert "pgmq.create(" in _ops.create("q").query
    assert "pgmq.create_unlogged(" in _ops.create("q", unlogged=True).query
    assert _ops.create_partitioned("q", 100, "1 day").params == ("q", "100", "1 day")


def test_consumer_helpers() -> None:
    assert _ops.release("q", 7, 3, "boom").params == ("q", 7, 3, "boom")
    with pytest.raises(InvalidArgument):
        _ops.release("q", 7, -1, None)
    assert _ops.dead_letter("q", [1, 2], "q_dlq", "why").params == ("q", [1, 2], "q_dlq", "why")
    with pytest.raises(InvalidQueueName):
        _ops.dead_letter("q", [1], "bad;dlq", "why")
    assert _ops.maintain().params == (None,)


# -------------------------------------------------------------------------------------------------- backoff
def test_retry_delay_doubles_per_read_and_is_capped() -> None:
    assert [_ops.retry_delay(n) for n in range(0, 11)] == [1, 1, 2, 4, 8, 16, 32, 64, 128, 256, 300]
    assert _ops.retry_delay(5, base=0.5) == 8
    assert _ops.retry_delay(3, base=10, cap=25) == 25
    assert _ops.retry_delay(1, base=0) == 0
    assert all(isinstance(_ops.retry_delay(n, base=0.3), int) for n in range(1, 20))


def test_retry_delay_never_overflows() -> None:
    assert _ops.retry_delay(5000) == 300


# --------------------------------------------------------------------------------------------- ConsumeOptions
def test_consume_options_defaults() -> None:
    opts = ConsumeOptions.build("orders")
    assert (opts.vt, opts.batch_size, opts.max_reads, opts.on_success) == (30, 10, 5, "delete")
    assert opts.dead_letter_queue == "orders_dlq"
    assert opts.heartbeat == 10
    assert ConsumeOptions.build("orders", vt=1).heartbeat == 0.5  # never hammer the database
    assert ConsumeOptions.build("orders", heartbeat_interval=2.5).heartbeat == 2.5
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.vt = 5  # type: ignore[misc]


def test_consume_options_dead_letter_queue() -> None:
    assert ConsumeOptions.build("orders", dead_letter_queue="graveyard").dead_letter_queue == "graveyard"
    assert ConsumeOptions.build("orders", max_reads=None).dead_letter_queue is None
    with pytest.raises(InvalidArgument, match="own dead-letter"):
        ConsumeOptions.build("orders", dead_letter_queue="ORDERS")
    with pytest.raises(InvalidArgument, match="dead-letter queue name is invalid"):
        ConsumeOptions.build("x" * 44)  # "<name>_dlq" would be 48 bytes
    assert ConsumeOptions.build("x" * 44, dead_letter_queue="short_dlq").dead_letter_queue == "short_dlq"
    with pytest.raises((InvalidArgument, InvalidQueueName)):
        ConsumeOptions.build("orders", dead_letter_queue="bad;name")


@pytest.mark.parametrize(
    "options",
    [
        {"vt": 0},
        {"batch_size": 0},
        {"max_reads": 0},
        {"on_success": "keep"},
        {"poll_interval": 0},
        {"shutdown_timeout": -1},
        {"maintenance_interval": 0},
        {"visibility_timeout": 30},
        {"bogus": 1, "vt": 5},
    ],
    ids=repr,
)
def test_consume_options_refuse(options: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgument):
        ConsumeOptions.build("orders", **options)


def test_consume_options_check_the_queue_name() -> None:
    with pytest.raises(InvalidQueueName):
        ConsumeOptions.build("bad;name")


@pytest.mark.parametrize(
    "options",
    [{"vt": 2.5}, {"vt": "30"}, {"batch_size": 1.5}, {"retry_base": -1}, {"heartbeat_interval": -1}],
    ids=repr,
)
def test_consume_options_refuse_wrong_types_and_signs(options: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgument):
        ConsumeOptions.build("orders", **options)


def test_notify_channel() -> None:
    assert notify_channel("Orders") == "pgmq.q_orders.INSERT"


# ------------------------------------------------------------------------------------------ error translation
@pytest.mark.parametrize(
    ("error", "queue", "expected"),
    [
        (pg_errors.UndefinedTable, "orders", QueueNotFound),
        (pg_errors.UndefinedTable, None, QueueDatabaseError),
        (pg_errors.InvalidParameterValue, "orders", InvalidArgument),
        (pg_errors.NullValueNotAllowed, "orders", InvalidArgument),
        (pg_errors.InvalidTextRepresentation, "orders", InvalidArgument),
        (pg_errors.NumericValueOutOfRange, "orders", InvalidArgument),
        (pg_errors.RaiseException, "orders", InvalidArgument),
        (pg_errors.CheckViolation, "orders", InvalidArgument),
        (pg_errors.InvalidName, "orders", InvalidQueueName),
        (pg_errors.NameTooLong, "orders", InvalidQueueName),
        (pg_errors.AdminShutdown, "orders", QueueDatabaseError),
        (pg_errors.UndefinedFunction, "orders", QueueDatabaseError),
    ],
)
def test_translate(error: type[Exception], queue: str | None, expected: type[QueueError]) -> None:
    translated = translate(error("boom"), queue)  # type: ignore[arg-type]
    assert type(translated) is expected
    if expected is QueueNotFound:
        assert translated.queue == queue  # type: ignore[attr-defined]


def test_translate_untranslatable_character_is_bad_input() -> None:
    assert isinstance(translate(pg_errors.UntranslatableCharacter("\\u0000"), "orders"), InvalidArgument)
