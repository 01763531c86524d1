"""Bad input gets a clear, named error (never a raw catalog error), and hostile names cannot inject SQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.types.json import Jsonb

from tests.integration.queue_sql.conftest import run

Conn = psycopg.Connection[Any]

UNDEFINED_TABLE = "42P01"
NULL_NOT_ALLOWED = "22004"
INVALID_PARAMETER = "22023"
RAISE = "P0001"  # PGMQ's own errors (RAISE EXCEPTION without a code); Howdah raises them with PGMQ's text
NAME_ERRORS = {NULL_NOT_ALLOWED, INVALID_PARAMETER, RAISE}


@pytest.fixture(scope="module")
def module_conn(db_url: str) -> Iterator[Conn]:
    with psycopg.connect(db_url, autocommit=True) as connection:
        connection.execute("CREATE TABLE public.canary (id integer)")
        yield connection


@pytest.fixture
def queue(conn: Conn, queue_name: str) -> str:
    conn.execute("SELECT pgmq.create(%s)", (queue_name,))
    return queue_name


# Every operation that takes a queue name, with harmless other arguments.
OPERATIONS = [
    "SELECT * FROM pgmq.send(%s::text, '{}'::jsonb)",
    "SELECT * FROM pgmq.send(%s::text, '{}'::jsonb, '{}'::jsonb)",
    "SELECT * FROM pgmq.send(%s::text, '{}'::jsonb, 0)",
    "SELECT * FROM pgmq.send(%s::text, '{}'::jsonb, now())",
    "SELECT * FROM pgmq.send(%s::text, '{}'::jsonb, '{}'::jsonb, 0)",
    "SELECT * FROM pgmq.send(%s::text, '{}'::jsonb, '{}'::jsonb, now())",
    "SELECT * FROM pgmq.send_batch(%s::text, ARRAY['{}'::jsonb])",
    "SELECT * FROM pgmq.send_batch(%s::text, ARRAY['{}'::jsonb], ARRAY['{}'::jsonb])",
    "SELECT * FROM pgmq.send_batch(%s::text, ARRAY['{}'::jsonb], 0)",
    "SELECT * FROM pgmq.send_batch(%s::text, ARRAY['{}'::jsonb], now())",
    "SELECT * FROM pgmq.read(%s::text, 30, 1)",
    "SELECT * FROM pgmq.read(%s::text, 30, 5)",
    "SELECT * FROM pgmq.read(%s::text, 30, 1, '{\"a\": 1}')",
    "SELECT * FROM pgmq.read_with_poll(%s::text, 30, 1, 0, 10)",
    "SELECT * FROM pgmq.pop(%s::text)",
    "SELECT * FROM pgmq.pop(%s::text, 3)",
    "SELECT pgmq.archive(%s::text, 1::bigint)",
    "SELECT * FROM pgmq.archive(%s::text, ARRAY[1]::bigint[])",
    "SELECT pgmq.delete(%s::text, 1::bigint)",
    "SELECT * FROM pgmq.delete(%s::text, ARRAY[1]::bigint[])",
    "SELECT * FROM pgmq.set_vt(%s::text, 1::bigint, 0)",
    "SELECT * FROM pgmq.set_vt(%s::text, 1::bigint, now())",
    "SELECT * FROM pgmq.set_vt(%s::text, ARRAY[1]::bigint[], 0)",
    "SELECT * FROM pgmq.set_vt(%s::text, ARRAY[1]::bigint[], now())",
    "SELECT * FROM pgmq.metrics(%s)",
    "SELECT pgmq.purge_queue(%s)",
    "SELECT * FROM pgmq.read_grouped(%s::text, 30, 1)",
    "SELECT * FROM pgmq.read_grouped_rr(%s::text, 30, 1)",
    "SELECT * FROM pgmq.read_grouped_head(%s::text, 30, 1)",
    "SELECT pgmq.create_fifo_index(%s)",
    "SELECT * FROM pgmq.maintain_partitions(%s)",
    "SELECT pgmq.convert_archive_partitioned(%s)",
]


@pytest.mark.parametrize("operation", OPERATIONS)
def test_missing_queue_is_named_undefined_table(conn: Conn, queue_name: str, operation: str) -> None:
    outcome = run(conn, operation, (queue_name,))
    assert (outcome.sqlstate, outcome.message) == (UNDEFINED_TABLE, f'queue "{queue_name}" does not exist')


@pytest.mark.parametrize("operation", [op for op in OPERATIONS if "maintain_partitions" not in op])
def test_null_queue_name_is_rejected(conn: Conn, operation: str) -> None:
    outcome = run(conn, operation, (None,))
    assert outcome.sqlstate == NULL_NOT_ALLOWED
    assert outcome.message == "queue_name must not be NULL"


# Where PGMQ checks for the queue itself, it raises P0001 with its own text; Howdah raises the same, and names
# the missing queue table in the error's SCHEMA and TABLE fields.
PGMQ_CHECKS_THE_QUEUE = [
    ("SELECT pgmq.enable_notify_insert(%s, 0)", 'Queue "{}" does not exist. Create it first using pgmq.create()'),
    (
        "SELECT pgmq.update_notify_insert(%s, 0)",
        'Queue "{}" does not exist. Create the queue first using pgmq.create()',
    ),
    ("SELECT pgmq.bind_topic('a.b', %s)", 'Queue "{}" does not exist. Create the queue first using pgmq.create()'),
]


@pytest.mark.parametrize(("operation", "message"), PGMQ_CHECKS_THE_QUEUE)
def test_missing_queue_where_pgmq_checks_it(conn: Conn, queue_name: str, operation: str, message: str) -> None:
    with pytest.raises(psycopg.errors.RaiseException) as caught:
        conn.execute(operation, (queue_name,))
    assert caught.value.diag.message_primary == message.format(queue_name)
    assert (caught.value.diag.schema_name, caught.value.diag.table_name) == ("pgmq", f"q_{queue_name}")


@pytest.mark.parametrize(("operation", "message"), PGMQ_CHECKS_THE_QUEUE)
def test_missing_queue_where_pgmq_checks_it_null_name(conn: Conn, operation: str, message: str) -> None:
    outcome = run(conn, operation, (None,))
    expected = "queue_name cannot be NULL or empty" if "bind_topic" in operation else message.format("<NULL>")
    assert (outcome.sqlstate, outcome.message) == (RAISE, expected)


def test_disabling_notify_of_a_missing_queue_does_nothing(conn: Conn, queue_name: str) -> None:
    # As in PGMQ (whose DROP TRIGGER IF EXISTS skips a missing table): disabling is idempotent.
    assert conn.execute("SELECT pgmq.disable_notify_insert(%s)", (queue_name,)).fetchone() == ("",)  # void
    outcome = run(conn, "SELECT pgmq.disable_notify_insert(%s)", (None,))
    assert (outcome.sqlstate, outcome.message) == (NULL_NOT_ALLOWED, "queue_name must not be NULL")


def test_dropping_a_missing_queue_returns_false(conn: Conn, queue_name: str) -> None:
    assert conn.execute("SELECT pgmq.drop_queue(%s)", (queue_name,)).fetchone() == (False,)


BAD_NAMES: list[tuple[str | None, str]] = [
    (None, NULL_NOT_ALLOWED),
    ("", INVALID_PARAMETER),
    ("x" * 48, RAISE),
    ("é" * 24, RAISE),  # 24 characters, but 48 bytes: PGMQ's error, with the byte count in its DETAIL
    ("a$b", RAISE),
    ("a;b", RAISE),
    ("a--b", RAISE),
    ("a'b", RAISE),
    ("tab\there", INVALID_PARAMETER),
    ("new\nline", INVALID_PARAMETER),
    ("x'); DROP TABLE public.canary; --", RAISE),
    ('x"; DROP TABLE public.canary; --', RAISE),
]


@pytest.mark.parametrize(("name", "sqlstate"), BAD_NAMES)
@pytest.mark.parametrize("create", ["create", "create_unlogged", "create_non_partitioned", "create_partitioned"])
def test_bad_names_are_rejected(module_conn: Conn, name: str | None, sqlstate: str, create: str) -> None:
    outcome = run(module_conn, f"SELECT pgmq.{create}(%s)", (name,))
    assert outcome.sqlstate == sqlstate, outcome
    assert module_conn.execute("SELECT to_regclass('public.canary') IS NOT NULL").fetchone() == (True,)


# Names PGMQ accepts that need quoting: they must work end to end.
ODD_NAMES = ['we"ird', "Mixed Case", "back\\slash", "per%cent", "dots.in.name", "ünïcödé", "🚀" * 11, "x" * 47]


@pytest.mark.parametrize("name", ODD_NAMES)
def test_odd_names_work_end_to_end(conn: Conn, name: str) -> None:
    conn.execute("SELECT pgmq.create(%s)", (name,))
    assert conn.execute("SELECT * FROM pgmq.send(%s::text, %s::jsonb)", (name, Jsonb({"a": 1}))).fetchone() == (1,)
    # PGMQ's table names are lower-cased, so names are case-insensitive (beyond ASCII only as far as the
    # database's locale lower-cases).
    spelled = name.upper() if name.isascii() else name
    (row,) = conn.execute("SELECT msg_id, message FROM pgmq.read(%s, 30, 1)", (spelled,)).fetchall()
    assert row == (1, {"a": 1})
    assert conn.execute("SELECT pgmq.archive(%s, 1::bigint)", (name,)).fetchone() == (True,)
    assert conn.execute("SELECT queue_length, total_messages FROM pgmq.metrics(%s)", (name,)).fetchone() == (0, 1)
    assert conn.execute("SELECT pgmq.drop_queue(%s)", (name,)).fetchone() == (True,)


def test_creating_the_same_queue_in_another_case_is_a_no_op(conn: Conn, queue_name: str) -> None:
    conn.execute("SELECT pgmq.create(%s)", (queue_name,))
    conn.execute("SELECT pgmq.create(%s)", (queue_name.upper(),))
    names = [r[0] for r in conn.execute("SELECT queue_name FROM pgmq.list_queues()").fetchall()]
    assert names.count(queue_name) == 1 and queue_name.upper() not in names
    conn.execute("SELECT pgmq.drop_queue(%s)", (queue_name.upper(),))
    assert run(conn, "SELECT * FROM pgmq.read(%s, 1, 1)", (queue_name,)).sqlstate == UNDEFINED_TABLE


def test_names_taken_by_other_objects_are_refused(conn: Conn, queue_name: str) -> None:
    conn.execute("SELECT pgmq.create(%s)", (queue_name,))
    outcome = run(conn, "SELECT pgmq.create(%s)", (f"{queue_name}_vt_idx",))  # would be pgmq.q_<name>_vt_idx
    assert outcome.sqlstate == "42P07"
    assert "already taken" in (outcome.message or "")


@pytest.mark.parametrize(
    ("query", "params", "sqlstate", "parameter"),
    [
        ("SELECT * FROM pgmq.send(%s::text, %s::jsonb, NULL::integer)", (Jsonb({}),), NULL_NOT_ALLOWED, "delay"),
        ("SELECT * FROM pgmq.send(%s::text, %s::jsonb, -1)", (Jsonb({}),), INVALID_PARAMETER, "delay"),
        ("SELECT * FROM pgmq.send(%s::text, %s::jsonb, NULL::timestamptz)", (Jsonb({}),), NULL_NOT_ALLOWED, "delay"),
        ("SELECT * FROM pgmq.send_batch(%s::text, NULL::jsonb[])", (), RAISE, "msgs"),
        ("SELECT * FROM pgmq.send_batch(%s::text, '{}'::jsonb[])", (), RAISE, "msgs"),
        ("SELECT * FROM pgmq.send_batch(%s::text, ARRAY[['{}']]::jsonb[])", (), INVALID_PARAMETER, "msgs"),
        (
            "SELECT * FROM pgmq.send_batch(%s::text, ARRAY['{}','{}']::jsonb[], ARRAY['{}']::jsonb[])",
            (),
            RAISE,
            "headers",
        ),
        (
            "SELECT * FROM pgmq.send_batch(%s::text, ARRAY['{}']::jsonb[], '{}'::jsonb[])",
            (),
            RAISE,
            "headers",
        ),
        ("SELECT * FROM pgmq.send_batch(%s::text, ARRAY['{}']::jsonb[], -5)", (), INVALID_PARAMETER, "delay"),
        ("SELECT * FROM pgmq.read(%s::text, -1, 1)", (), INVALID_PARAMETER, "vt"),
        ("SELECT * FROM pgmq.read(%s::text, 30, -1)", (), INVALID_PARAMETER, "qty"),
        ("SELECT * FROM pgmq.read(%s::text, NULL, 1)", (), NULL_NOT_ALLOWED, "vt"),
        ("SELECT * FROM pgmq.read(%s::text, 30, NULL)", (), NULL_NOT_ALLOWED, "qty"),
        ("SELECT * FROM pgmq.read_with_poll(%s::text, 30, 1, -1)", (), INVALID_PARAMETER, "max_poll_seconds"),
        ("SELECT * FROM pgmq.read_with_poll(%s::text, 30, 1, 1, -1)", (), INVALID_PARAMETER, "poll_interval_ms"),
        ("SELECT * FROM pgmq.pop(%s::text, -1)", (), INVALID_PARAMETER, "qty"),
        ("SELECT * FROM pgmq.set_vt(%s::text, 1::bigint, -1)", (), INVALID_PARAMETER, "vt"),
        ("SELECT * FROM pgmq.set_vt(%s::text, NULL::bigint, 1)", (), NULL_NOT_ALLOWED, "msg_id"),
        ("SELECT * FROM pgmq.set_vt(%s::text, ARRAY[1]::bigint[], NULL::timestamptz)", (), NULL_NOT_ALLOWED, "vt"),
        ("SELECT pgmq.archive(%s::text, NULL::bigint)", (), NULL_NOT_ALLOWED, "msg_id"),
        ("SELECT * FROM pgmq.delete(%s::text, NULL::bigint[])", (), NULL_NOT_ALLOWED, "msg_ids"),
        ("SELECT * FROM pgmq.read_grouped(%s::text, 30, -2)", (), INVALID_PARAMETER, "qty"),
        ("SELECT pgmq.enable_notify_insert(%s, -1)", (), RAISE, "throttle_interval_ms"),
        ("SELECT pgmq.update_notify_insert(%s, -1)", (), RAISE, "throttle_interval_ms"),
        ("SELECT pgmq.enable_notify_insert(%s, NULL)", (), NULL_NOT_ALLOWED, "throttle_interval_ms"),
    ],
)
def test_bad_arguments_name_the_parameter(
    conn: Conn, queue: str, query: str, params: tuple[Any, ...], sqlstate: str, parameter: str
) -> None:
    outcome = run(conn, query, (queue, *params))
    assert outcome.sqlstate == sqlstate, outcome
    assert (outcome.message or "").startswith(parameter + " "), outcome.message


def test_bad_partitioning_arguments(conn: Conn, queue_name: str) -> None:
    bad = [("abc", "1 day"), ("10", "1 day"), ("1 month 2 days", "1 year"), ("1.5 seconds", "1 day"), ("0", "10")]
    for args in bad:
        outcome = run(conn, "SELECT pgmq.create_partitioned(%s, %s, %s)", (queue_name, *args))
        assert outcome.sqlstate == INVALID_PARAMETER, (args, outcome)
    # PGMQ's own error (which the oracle never reaches: it has no pg_partman, checked before premake).
    outcome = run(conn, "SELECT pgmq.create_partitioned(%s, '10', '10', 0)", (queue_name,))
    assert (outcome.sqlstate, outcome.message) == (RAISE, "premake must be at least 1, got 0")
    # The queue name is checked first, as in PGMQ.
    outcome = run(conn, "SELECT pgmq.create_partitioned(%s, 'abc', '10', 0)", ("a;b",))
    assert (outcome.sqlstate, outcome.message) == (RAISE, "queue name contains invalid characters: $, ;, --, or \\'")
    conn.execute("SELECT pgmq.create(%s)", (queue_name,))
    # Maintaining a queue that is not partitioned is allowed and does nothing (loops may call it for every queue).
    assert conn.execute("SELECT * FROM pgmq.maintain_partitions(%s)", (queue_name,)).fetchall() == []


hostile_text = st.lists(
    st.sampled_from([*"aZ_09 .-\"\\'$;%()[]{}é€🚀\t\n\x7f", "DROP TABLE public.canary", '"); ', "--"]),
    max_size=12,
).map("".join)
json_text = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=20)  # no NUL in jsonb
payloads = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | json_text | st.just([]) | st.just({}),
    lambda children: (
        st.lists(children, min_size=1, max_size=4) | st.dictionaries(json_text, children, min_size=1, max_size=4)
    ),
    max_leaves=10,
)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=hostile_text, bodies=st.lists(payloads, min_size=1, max_size=5), unlogged=st.booleans())
def test_hostile_names_and_payloads(module_conn: Conn, name: str, bodies: list[Any], unlogged: bool) -> None:
    conn = module_conn
    name = f"{name}{uuid.uuid4().hex[:6]}"  # each example gets its own queue
    create = "create_unlogged" if unlogged else "create"
    outcome = run(conn, f"SELECT pgmq.{create}(%s)", (name,))
    try:
        if outcome.failed:
            assert outcome.sqlstate in NAME_ERRORS, outcome
            assert run(conn, "SELECT * FROM pgmq.send(%s::text, '{}'::jsonb)", (name,)).sqlstate in {
                UNDEFINED_TABLE,
                *NAME_ERRORS,
            }
            return
        first = conn.execute("SELECT * FROM pgmq.send(%s::text, %s::jsonb)", (name, Jsonb(bodies[0]))).fetchall()
        rest = conn.execute(
            "SELECT * FROM pgmq.send_batch(%s::text, %s::jsonb[])", (name, [Jsonb(b) for b in bodies])
        ).fetchall()
        assert len(first) == 1 and len(rest) == len(bodies)
        got = conn.execute("SELECT message FROM pgmq.read(%s, 30, %s)", (name, len(bodies) + 1)).fetchall()
        assert [r[0] for r in got] == [bodies[0], *bodies]  # nothing lost, nothing mangled, in order
        metrics = conn.execute("SELECT queue_length, total_messages FROM pgmq.metrics(%s)", (name,)).fetchone()
        assert metrics == (len(bodies) + 1, len(bodies) + 1)
    finally:
        if not outcome.failed:
            assert conn.execute("SELECT pgmq.drop_queue(%s)", (name,)).fetchone() == (True,)
        assert conn.execute("SELECT to_regclass('public.canary') IS NOT NULL").fetchone() == (True,)
