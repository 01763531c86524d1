"""Differential tests: the same calls against Howdah's schema and against PGMQ 1.13's own SQL (the oracle).

Results must match in column names and types and in values, except timestamps (compared only for being NULL or
not). Error cases must fail in both, with PGMQ's SQLSTATE and message where PGMQ raises its own error (the
generated matrix of bad inputs is test_error_matrix.py). Deliberate differences are tested in test_bad_input.py.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from tests.integration.queue_sql.conftest import Outcome, run

Conn = psycopg.Connection[Any]

# Public functions Howdah has on top of PGMQ's (other components add functions named howdah_*).
HOWDAH_EXTRAS = {
    ("maintain_partitions", "queue_name text DEFAULT NULL::text"),
    ("send_topic", "routing_key text, msg jsonb, headers jsonb"),
}


def _normal(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return "<timestamp>"
    if isinstance(value, list):
        return [_normal(v) for v in value]
    return value


def _normalise(outcome: Outcome, *, sort: bool = False) -> Outcome:
    rows = tuple(tuple(_normal(v) for v in row) for row in outcome.rows)
    if sort:
        rows = tuple(sorted(rows, key=repr))
    return Outcome(columns=outcome.columns, rows=rows, sqlstate="error" if outcome.failed else None)


def same(howdah: Conn, oracle: Conn, query: str, params: Any = None, *, sort: bool = False) -> Outcome:
    """Runs `query` on both databases and asserts the outcomes match; returns Howdah's."""
    ours, theirs = run(howdah, query, params), run(oracle, query, params)
    assert _normalise(ours, sort=sort) == _normalise(theirs, sort=sort), (query, ours, theirs)
    return ours


def both_fail(howdah: Conn, oracle: Conn, query: str, params: Any = None) -> Outcome:
    """Both fail; where PGMQ raises its own error (P0001), Howdah raises the same SQLSTATE and message."""
    ours, theirs = run(howdah, query, params), run(oracle, query, params)
    assert ours.failed and theirs.failed, (query, ours, theirs)
    if theirs.sqlstate == "P0001":
        assert (ours.sqlstate, ours.message) == (theirs.sqlstate, theirs.message), query
    return ours


def _catalog(conn: Conn, query: str) -> set[tuple[Any, ...]]:
    return {tuple(r) for r in conn.execute(query).fetchall()}


FUNCTIONS = """
    SELECT p.proname::text, pg_get_function_arguments(p.oid), pg_get_function_result(p.oid)
      FROM pg_proc AS p
     WHERE p.pronamespace = 'pgmq'::regnamespace AND p.proname !~ '^_'
"""


def test_every_public_pgmq_function_exists_with_the_same_signature(conn: Conn, oracle: Conn) -> None:
    ours, theirs = _catalog(conn, FUNCTIONS), _catalog(oracle, FUNCTIONS)
    assert theirs - ours == set()
    extras = {(name, args) for name, args, _ in ours - theirs if not name.startswith("howdah_")}
    assert extras == HOWDAH_EXTRAS


@pytest.mark.parametrize("type_name", ["message_record", "queue_record", "metrics_result"])
def test_record_types_match(conn: Conn, oracle: Conn, type_name: str) -> None:
    query = f"""
        SELECT a.attnum, a.attname::text, format_type(a.atttypid, a.atttypmod)
          FROM pg_attribute AS a
         WHERE a.attrelid = 'pgmq.{type_name}'::regclass AND a.attnum > 0 ORDER BY a.attnum
    """
    assert conn.execute(query).fetchall() == oracle.execute(query).fetchall()


def _columns(conn: Conn, table: str) -> list[tuple[Any, ...]]:
    return conn.execute(
        """
        SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), a.attnotnull, a.attidentity,
               a.attgenerated,
               -- a generated column's expression is Howdah's own; its values are compared in test_topics_match
               CASE WHEN a.attgenerated = '' THEN pg_get_expr(d.adbin, d.adrelid) END,
               c.relpersistence
          FROM pg_attribute AS a
          JOIN pg_class AS c ON c.oid = a.attrelid
          LEFT JOIN pg_attrdef AS d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
         WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped
         ORDER BY a.attnum
        """,
        (table,),
    ).fetchall()


@pytest.mark.parametrize("table", ["pgmq.meta", "pgmq.notify_insert_throttle", "pgmq.topic_bindings"])
def test_pgmq_tables_match(conn: Conn, oracle: Conn, table: str) -> None:
    assert _columns(conn, table) == _columns(oracle, table)


@pytest.mark.parametrize("create", ["create", "create_unlogged", "create_non_partitioned"])
def test_queue_tables_and_indexes_match(conn: Conn, oracle: Conn, queue_name: str, create: str) -> None:
    same(conn, oracle, f"SELECT pgmq.{create}(queue_name => %s)", (queue_name,))
    for prefix in ("q", "a"):
        table = f"pgmq.{prefix}_{queue_name}"
        assert _columns(conn, table) == _columns(oracle, table)
    indexes = "SELECT indexname::text, indexdef FROM pg_indexes WHERE schemaname = 'pgmq' AND tablename IN (%s, %s)"
    params = (f"q_{queue_name}", f"a_{queue_name}")
    assert _catalog_params(conn, indexes, params) == _catalog_params(oracle, indexes, params)
    same(
        conn,
        oracle,
        "SELECT queue_name, is_partitioned, is_unlogged FROM pgmq.list_queues() WHERE queue_name = %s",
        (queue_name,),
    )


def _catalog_params(conn: Conn, query: str, params: Any) -> set[tuple[Any, ...]]:
    return {tuple(r) for r in conn.execute(query, params).fetchall()}


MSG_COLUMNS = "msg_id, read_ct, enqueued_at, last_read_at, vt, message, headers"


def test_message_life_cycle_matches(conn: Conn, oracle: Conn, queue_name: str) -> None:
    q = queue_name
    h, o = conn, oracle
    same(h, o, "SELECT pgmq.create(queue_name => %s)", (q,))
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    earlier = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    # Every send overload, called by parameter name as the clients do.
    same(h, o, "SELECT * FROM pgmq.send(queue_name => %s::text, msg => %s::jsonb)", (q, Jsonb({"n": 1})))
    same(
        h,
        o,
        "SELECT * FROM pgmq.send(queue_name => %s::text, msg => %s::jsonb, headers => %s::jsonb)",
        (q, Jsonb({"n": 2}), Jsonb({"h": "x"})),
    )
    same(
        h,
        o,
        "SELECT * FROM pgmq.send(queue_name => %s::text, msg => %s::jsonb, delay => %s::integer)",
        (q, Jsonb({"n": 3}), 3600),
    )
    same(
        h,
        o,
        "SELECT * FROM pgmq.send(queue_name => %s::text, msg => %s::jsonb, delay => %s::timestamptz)",
        (q, Jsonb({"n": 4}), earlier),
    )
    same(
        h,
        o,
        "SELECT * FROM pgmq.send(%s::text, %s::jsonb, %s::jsonb, %s::integer)",
        (q, Jsonb({"n": 5}), Jsonb({"k": [1, 2]}), 0),
    )
    same(
        h,
        o,
        "SELECT * FROM pgmq.send(%s::text, %s::jsonb, %s::jsonb, %s::timestamptz)",
        (q, Jsonb({"n": 6}), None, later),
    )
    # Every send_batch overload.
    batch = [Jsonb({"b": i}) for i in range(3)]
    heads = [Jsonb({"g": i}) for i in range(3)]
    same(h, o, "SELECT * FROM pgmq.send_batch(queue_name => %s::text, msgs => %s::jsonb[])", (q, batch))
    same(
        h,
        o,
        "SELECT * FROM pgmq.send_batch(queue_name => %s::text, msgs => %s::jsonb[], headers => %s::jsonb[])",
        (q, batch, heads),
    )
    same(
        h,
        o,
        "SELECT * FROM pgmq.send_batch(queue_name => %s::text, msgs => %s::jsonb[], delay => %s::integer)",
        (q, batch, 3600),
    )
    same(h, o, "SELECT * FROM pgmq.send_batch(%s::text, %s::jsonb[], %s::timestamptz)", (q, batch, earlier))
    same(h, o, "SELECT * FROM pgmq.send_batch(%s::text, %s::jsonb[], %s::jsonb[], %s::integer)", (q, batch, heads, 0))
    same(
        h,
        o,
        "SELECT * FROM pgmq.send_batch(%s::text, %s::jsonb[], %s::jsonb[], %s::timestamptz)",
        (q, batch, [Jsonb({"x": 1}), None, Jsonb({})], later),
    )
    same(h, o, f"SELECT {MSG_COLUMNS} FROM pgmq.q_{q} ORDER BY msg_id")

    # Reads: plain, conditional, more than available; pop; visibility.
    same(h, o, "SELECT * FROM pgmq.read(queue_name => %s::text, vt => %s::integer, qty => %s::integer)", (q, 30, 2))
    same(h, o, "SELECT * FROM pgmq.read(%s::text, %s::integer, %s::integer, %s::jsonb)", (q, 30, 5, Jsonb({"b": 1})))
    same(h, o, "SELECT * FROM pgmq.read(%s::text, %s::integer, %s::integer, %s::jsonb)", (q, 30, 5, Jsonb({})))
    same(h, o, "SELECT * FROM pgmq.read(%s::text, %s::integer, %s::integer)", (q, 30, 0))
    same(h, o, "SELECT * FROM pgmq.pop(queue_name => %s::text)", (q,))
    same(h, o, "SELECT * FROM pgmq.pop(queue_name => %s::text, qty => %s::integer)", (q, 2))
    same(
        h,
        o,
        "SELECT * FROM pgmq.read_with_poll(%s::text, %s::integer, %s::integer, %s::integer, %s::integer)",
        (q, 30, 10, 1, 10),
    )
    # Everything visible was read or popped: nothing left to read.
    same(h, o, "SELECT * FROM pgmq.read(%s::text, %s::integer, %s::integer)", (q, 30, 10))

    # set_vt, all four overloads.
    same(h, o, "SELECT * FROM pgmq.set_vt(queue_name => %s::text, msg_id => %s::bigint, vt => %s::integer)", (q, 1, 0))
    same(h, o, "SELECT * FROM pgmq.set_vt(%s::text, %s::bigint, %s::timestamptz)", (q, 2, earlier))
    # (PGMQ returns these in no particular order, Howdah by msg_id.)
    same(h, o, "SELECT * FROM pgmq.set_vt(%s::text, %s::bigint[], %s::integer)", (q, [3, 4, 999], 0), sort=True)
    same(h, o, "SELECT * FROM pgmq.set_vt(%s::text, %s::bigint[], %s::timestamptz)", (q, [5, 6], earlier), sort=True)
    same(h, o, "SELECT * FROM pgmq.set_vt(%s::text, %s::bigint, %s::integer)", (q, 999, 0))
    same(h, o, "SELECT msg_id, read_ct FROM pgmq.read(%s::text, %s::integer, %s::integer)", (q, 30, 4))

    # archive and delete, one and many, present and absent ids.
    same(h, o, "SELECT pgmq.archive(queue_name => %s::text, msg_id => %s::bigint)", (q, 1))
    same(h, o, "SELECT pgmq.archive(%s::text, %s::bigint)", (q, 1))
    same(
        h, o, "SELECT * FROM pgmq.archive(queue_name => %s::text, msg_ids => %s::bigint[])", (q, [2, 3, 999]), sort=True
    )
    same(h, o, "SELECT pgmq.delete(queue_name => %s::text, msg_id => %s::bigint)", (q, 4))
    same(h, o, "SELECT pgmq.delete(%s::text, %s::bigint)", (q, 4))
    same(
        h, o, "SELECT * FROM pgmq.delete(queue_name => %s::text, msg_ids => %s::bigint[])", (q, [5, 6, 999]), sort=True
    )
    same(h, o, "SELECT * FROM pgmq.delete(%s::text, %s::bigint[])", (q, []))
    same(
        h,
        o,
        f"SELECT msg_id, read_ct, enqueued_at, last_read_at, archived_at, vt, message, headers "
        f"FROM pgmq.a_{q} ORDER BY msg_id",
    )

    # metrics (small queue: every count is exact), purge, drop.
    same(
        h,
        o,
        "SELECT queue_name, queue_length, newest_msg_age_sec, oldest_msg_age_sec, total_messages, "
        "queue_visible_length, default_partition_length FROM pgmq.metrics(queue_name => %s)",
        (q,),
    )
    row = same(h, o, "SELECT * FROM pgmq.metrics(%s)", (q,))
    assert row.rows[0][1] > 0
    same(
        h,
        o,
        "SELECT queue_name, queue_length, total_messages, queue_visible_length FROM pgmq.metrics_all() "
        "WHERE queue_name = %s",
        (q,),
    )
    same(h, o, "SELECT pgmq.purge_queue(queue_name => %s)", (q,))
    same(h, o, "SELECT pgmq.purge_queue(%s)", (q,))
    same(h, o, "SELECT queue_length, total_messages FROM pgmq.metrics(%s)", (q,))
    same(h, o, "SELECT pgmq.drop_queue(queue_name => %s)", (q,))
    same(h, o, "SELECT pgmq.drop_queue(%s)", (q,))
    same(h, o, "SELECT count(*) FROM pgmq.list_queues() WHERE queue_name = %s", (q,))
    same(h, o, "SELECT pgmq.drop_queue(%s, %s)", (q, False))


def test_null_messages_are_stored_and_read_back_as_pgmq_does(conn: Conn, oracle: Conn, queue_name: str) -> None:
    """PGMQ's own regression suite sends a NULL message and reads it back; send_topic alone refuses one."""
    h, o, q = conn, oracle, queue_name
    same(h, o, "SELECT pgmq.create(%s)", (q,))
    later = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    for query, params in [
        ("SELECT * FROM pgmq.send(%s::text, NULL::jsonb)", (q,)),
        ("SELECT * FROM pgmq.send(%s::text, NULL::jsonb, %s::jsonb)", (q, Jsonb({"h": 1}))),
        ("SELECT * FROM pgmq.send(%s::text, NULL::jsonb, 0)", (q,)),
        ("SELECT * FROM pgmq.send(%s::text, NULL::jsonb, %s::timestamptz)", (q, later)),
        ("SELECT * FROM pgmq.send(%s::text, NULL::jsonb, NULL::jsonb, 0)", (q,)),
        ("SELECT * FROM pgmq.send(%s::text, NULL::jsonb, NULL::jsonb, %s::timestamptz)", (q, later)),
        ("SELECT * FROM pgmq.send_batch(%s::text, ARRAY[NULL, '{\"m\": 1}', NULL]::jsonb[])", (q,)),
        ("SELECT * FROM pgmq.send_batch(%s::text, ARRAY[NULL]::jsonb[], ARRAY[NULL]::jsonb[])", (q,)),
    ]:
        same(h, o, query, params)
    same(h, o, "SELECT msg_id, read_ct, message, headers FROM pgmq.read(%s, 30, 20)", (q,))
    same(h, o, "SELECT msg_id, message FROM pgmq.pop(%s)", (q,))
    same(h, o, "SELECT pgmq.archive(%s, 2::bigint)", (q,))
    same(h, o, "SELECT msg_id, message, headers FROM pgmq.a_" + q + " ORDER BY msg_id")
    same(h, o, "SELECT * FROM pgmq.bind_topic(%s, %s)", (f"{q}.*", q))
    both_fail(h, o, "SELECT pgmq.send_topic(%s::text, NULL::jsonb)", (f"{q}.x",))
    same(h, o, "SELECT * FROM pgmq.send_batch_topic(%s::text, ARRAY[NULL]::jsonb[])", (f"{q}.x",))
    same(h, o, "SELECT msg_id, message FROM pgmq.q_" + q + " ORDER BY msg_id")


def test_errors_match(conn: Conn, oracle: Conn, queue_name: str) -> None:
    h, o = conn, oracle
    missing = f"missing_{queue_name}"
    # A missing queue is undefined_table in both (PGMQ's is the raw "relation ... does not exist").
    for query, params in [
        ("SELECT * FROM pgmq.send(%s::text, %s::jsonb)", (missing, Jsonb({}))),
        ("SELECT * FROM pgmq.send_batch(%s::text, %s::jsonb[])", (missing, [Jsonb({})])),
        ("SELECT * FROM pgmq.read(%s::text, 30, 1)", (missing,)),
        ("SELECT * FROM pgmq.pop(%s::text)", (missing,)),
        ("SELECT pgmq.archive(%s::text, 1::bigint)", (missing,)),
        ("SELECT pgmq.delete(%s::text, 1::bigint)", (missing,)),
        ("SELECT * FROM pgmq.set_vt(%s::text, 1::bigint, 10)", (missing,)),
        ("SELECT * FROM pgmq.metrics(%s)", (missing,)),
        ("SELECT pgmq.purge_queue(%s)", (missing,)),
    ]:
        ours = both_fail(h, o, query, params)
        assert ours.sqlstate == run(o, query, params).sqlstate == "42P01"
        assert ours.message == f'queue "{missing}" does not exist'
    # Bad names and bad batches fail in both, with PGMQ's messages.
    same(h, o, "SELECT pgmq.create(%s)", (queue_name,))
    for name in ["a$b", "a;b", "a--b", "a'b", "x" * 48]:
        both_fail(h, o, "SELECT pgmq.create(%s)", (name,))
    both_fail(h, o, "SELECT pgmq.validate_queue_name(%s)", ("x" * 48,))
    same(h, o, "SELECT pgmq.validate_queue_name(%s)", ("x" * 47,))
    same(h, o, "SELECT pgmq.format_table_name(%s, %s)", ("MixedCase", "q"))
    both_fail(h, o, "SELECT pgmq.format_table_name(%s, %s)", ("a;b", "q"))
    both_fail(h, o, "SELECT * FROM pgmq.send_batch(%s::text, %s::jsonb[])", (queue_name, []))
    both_fail(h, o, "SELECT * FROM pgmq.send_batch(%s::text, NULL::jsonb[])", (queue_name,))
    both_fail(
        h,
        o,
        "SELECT * FROM pgmq.send_batch(%s::text, %s::jsonb[], %s::jsonb[])",
        (queue_name, [Jsonb({}), Jsonb({})], [Jsonb({})]),
    )
    # (The oracle has no pg_partman, which PGMQ checks before premake: see test_bad_partitioning_arguments.)
    both_fail(h, o, "SELECT pgmq.create_partitioned(%s, '10', '100', 0)", ("p;" + queue_name,))
    both_fail(h, o, "SELECT pgmq.enable_notify_insert(%s, -1)", (queue_name,))
    both_fail(h, o, "SELECT pgmq.enable_notify_insert(%s)", (missing,))
    both_fail(h, o, "SELECT pgmq.update_notify_insert(%s, 10)", (queue_name,))
    same(h, o, "SELECT pgmq.drop_queue(%s)", (queue_name,))


ROUTING_KEYS = ["logs.error", "app.user-service.auth", "a", "logs.api.error", "x.error", "error"]
BAD_KEYS = ["", ".logs", "logs.", "logs..error", "logs.error!", "logs error", "logs.*", "k" * 256]
PATTERNS = ["logs.*", "logs.#", "*.error", "#.error", "app.*.#", "#", "a*b.c"]
BAD_PATTERNS = ["", ".logs.*", "logs.*.", "logs..error", "logs.**", "logs.##", "logs.*#", "logs.#*", "logs!", "p" * 256]


def test_topics_match(conn: Conn, oracle: Conn, queue_name: str) -> None:
    h, o = conn, oracle
    queues = [f"{queue_name}_{i}" for i in range(3)]
    for q in queues:
        same(h, o, "SELECT pgmq.create(%s)", (q,))
    for key in ROUTING_KEYS:
        same(h, o, "SELECT pgmq.validate_routing_key(routing_key => %s)", (key,))
    for key in [*BAD_KEYS, None]:
        both_fail(h, o, "SELECT pgmq.validate_routing_key(%s)", (key,))
    for pattern in PATTERNS:
        same(h, o, "SELECT pgmq.validate_topic_pattern(pattern => %s)", (pattern,))
    for pattern in [*BAD_PATTERNS, None]:
        both_fail(h, o, "SELECT pgmq.validate_topic_pattern(%s)", (pattern,))
    for i, pattern in enumerate(PATTERNS):
        same(h, o, "SELECT pgmq.bind_topic(pattern => %s, queue_name => %s)", (pattern, queues[i % 3]))
    same(h, o, "SELECT pgmq.bind_topic(%s, %s)", ("logs.*", queues[0]))  # binding twice is a no-op
    both_fail(h, o, "SELECT pgmq.bind_topic(%s, %s)", ("logs.*", f"missing_{queue_name}"))
    both_fail(h, o, "SELECT pgmq.bind_topic(%s, %s)", ("logs..x", queues[0]))
    mine = "SELECT pattern, queue_name, compiled_regex FROM pgmq.list_topic_bindings() WHERE queue_name LIKE %s"
    same(h, o, mine, (f"{queue_name}%",), sort=True)
    same(
        h,
        o,
        "SELECT pattern, queue_name, compiled_regex FROM pgmq.list_topic_bindings(queue_name => %s)",
        (queues[1],),
        sort=True,
    )
    for key in ROUTING_KEYS:
        same(
            h,
            o,
            "SELECT * FROM pgmq.test_routing(routing_key => %s) WHERE queue_name LIKE %s",
            (key, f"{queue_name}%"),
            sort=True,
        )
        same(h, o, "SELECT pgmq.send_topic(routing_key => %s::text, msg => %s::jsonb)", (key, Jsonb({"k": key})))
    same(h, o, "SELECT pgmq.send_topic(%s::text, %s::jsonb, %s::integer)", ("logs.error", Jsonb({"d": 1}), 3600))
    same(
        h,
        o,
        "SELECT pgmq.send_topic(%s::text, %s::jsonb, %s::jsonb, %s::integer)",
        ("logs.error", Jsonb({"d": 2}), Jsonb({"h": 1}), 0),
    )
    both_fail(h, o, "SELECT pgmq.send_topic(%s::text, %s::jsonb, %s::integer)", ("logs.error", Jsonb({}), -1))
    both_fail(h, o, "SELECT pgmq.send_topic(%s::text, %s::jsonb)", ("bad..key", Jsonb({})))
    batch = [Jsonb({"m": 1}), Jsonb({"m": 2})]
    hdrs = [Jsonb({"x": 1}), Jsonb({"x": 2})]
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    for query, params in [
        ("SELECT * FROM pgmq.send_batch_topic(routing_key => %s::text, msgs => %s::jsonb[])", ("logs.error", batch)),
        ("SELECT * FROM pgmq.send_batch_topic(%s::text, %s::jsonb[], %s::jsonb[])", ("x.error", batch, hdrs)),
        ("SELECT * FROM pgmq.send_batch_topic(%s::text, %s::jsonb[], %s::integer)", ("logs.api.error", batch, 10)),
        ("SELECT * FROM pgmq.send_batch_topic(%s::text, %s::jsonb[], %s::timestamptz)", ("a", batch, later)),
        (
            "SELECT * FROM pgmq.send_batch_topic(%s::text, %s::jsonb[], %s::jsonb[], %s::integer)",
            ("logs.error", batch, hdrs, 0),
        ),
        (
            "SELECT * FROM pgmq.send_batch_topic(%s::text, %s::jsonb[], %s::jsonb[], %s::timestamptz)",
            ("error", batch, hdrs, later),
        ),
    ]:
        same(h, o, query, params, sort=True)
    both_fail(h, o, "SELECT * FROM pgmq.send_batch_topic(%s::text, %s::jsonb[])", ("logs.error", []))
    for q in queues:
        same(h, o, f"SELECT msg_id, read_ct, message, headers FROM pgmq.q_{q} ORDER BY msg_id")
    same(h, o, "SELECT pgmq.unbind_topic(pattern => %s, queue_name => %s)", ("logs.*", queues[0]))
    same(h, o, "SELECT pgmq.unbind_topic(%s, %s)", ("logs.*", queues[0]))
    same(h, o, "SELECT pgmq.drop_queue(%s)", (queues[1],))
    same(h, o, mine, (f"{queue_name}%",), sort=True)
    for q in (queues[0], queues[2]):
        same(h, o, "SELECT pgmq.drop_queue(%s)", (q,))


def _fifo_queue(h: Conn, o: Conn, q: str) -> None:
    same(h, o, "SELECT pgmq.create(%s)", (q,))
    # Groups: A A B A C B, plus two messages without a group.
    groups = ["A", "A", "B", "A", "C", "B", None, None]
    msgs = [Jsonb({"i": i}) for i in range(len(groups))]
    heads = [Jsonb({"x-pgmq-group": g}) if g else None for g in groups]
    same(h, o, "SELECT * FROM pgmq.send_batch(%s::text, %s::jsonb[], %s::jsonb[])", (q, msgs, heads))


@pytest.mark.parametrize(
    ("fn", "ordered"),
    [("read_grouped", False), ("read_grouped_rr", True), ("read_grouped_head", False)],
)
def test_fifo_reads_match(conn: Conn, oracle: Conn, queue_name: str, fn: str, ordered: bool) -> None:
    h, o = conn, oracle
    _fifo_queue(h, o, queue_name)
    query = f"SELECT {MSG_COLUMNS} FROM pgmq.{fn}(queue_name => %s::text, vt => %s::integer, qty => %s::integer)"
    for qty in (3, 2, 10, 10):
        same(h, o, query, (queue_name, 30, qty), sort=not ordered)
    # Free group A's head: the group becomes available again.
    same(h, o, "SELECT pgmq.delete(%s::text, 1::bigint)", (queue_name,))
    same(h, o, "SELECT * FROM pgmq.set_vt(%s::text, %s::bigint[], 0)", (queue_name, list(range(1, 9))), sort=True)
    for qty in (1, 4, 10):
        same(h, o, query, (queue_name, 30, qty), sort=not ordered)
    poll = (
        f"SELECT {MSG_COLUMNS} FROM pgmq.{fn}_with_poll(%s::text, %s::integer, %s::integer, %s::integer, %s::integer)"
    )
    same(h, o, "SELECT * FROM pgmq.set_vt(%s::text, %s::bigint[], 0)", (queue_name, list(range(1, 9))), sort=True)
    same(h, o, poll, (queue_name, 30, 5, 1, 10), sort=not ordered)
    same(h, o, "SELECT pgmq.create_fifo_index(%s)", (queue_name,))
    same(h, o, "SELECT pgmq.create_fifo_indexes_all()")
    same(h, o, "SELECT pgmq.drop_queue(%s)", (queue_name,))


def test_notify_settings_match(conn: Conn, oracle: Conn, queue_name: str) -> None:
    h, o = conn, oracle
    same(h, o, "SELECT pgmq.create(%s)", (queue_name,))
    same(
        h,
        o,
        "SELECT pgmq.enable_notify_insert(queue_name => %s::text, throttle_interval_ms => %s::integer)",
        (queue_name, 100),
    )
    listing = "SELECT queue_name, throttle_interval_ms FROM pgmq.list_notify_insert_throttles() WHERE queue_name = %s"
    same(h, o, listing, (queue_name,))
    same(
        h,
        o,
        "SELECT pgmq.update_notify_insert(queue_name => %s::text, throttle_interval_ms => %s::integer)",
        (queue_name, 0),
    )
    same(h, o, listing, (queue_name,))
    same(h, o, "SELECT pgmq.enable_notify_insert(%s)", (queue_name,))
    same(h, o, listing, (queue_name,))
    same(h, o, "SELECT pgmq.disable_notify_insert(queue_name => %s::text)", (queue_name,))
    same(h, o, listing, (queue_name,))
    same(h, o, "SELECT pgmq.drop_queue(%s)", (queue_name,))


def _notices(conn: Conn, query: str, params: Any) -> list[str]:
    """The notices and warnings a statement sends the client, as '<severity> <SQLSTATE> <message>'."""
    got: list[str] = []

    def collect(diag: psycopg.errors.Diagnostic) -> None:
        got.append(f"{diag.severity_nonlocalized} {diag.sqlstate} {diag.message_primary}")

    conn.add_notice_handler(collect)
    try:
        run(conn, query, params)
    finally:
        conn.remove_notice_handler(collect)
    return got


def test_notices_match(conn: Conn, oracle: Conn, queue_name: str) -> None:
    for query, params in [
        ("SELECT pgmq.create(%s)", (queue_name,)),
        ("SELECT pgmq.create(%s)", (queue_name,)),  # exists already: "... already exists, skipping"
        ("SELECT pgmq.create_unlogged(%s)", (queue_name,)),
        ("SELECT pgmq.detach_archive(%s)", (queue_name,)),  # deprecated
        ("SELECT pgmq.enable_notify_insert(%s)", (queue_name,)),  # no trigger to replace yet
        ("SELECT pgmq.disable_notify_insert(%s)", (queue_name,)),
        ("SELECT pgmq.disable_notify_insert(%s)", (queue_name,)),  # no trigger to drop
        ("SELECT pgmq.disable_notify_insert(%s)", (f"missing_{queue_name}",)),  # no queue: nothing to do
        ("SELECT pgmq.drop_queue(%s, false)", (queue_name,)),  # deprecated
        ("SELECT pgmq.drop_queue(%s)", (queue_name,)),  # gone
    ]:
        ours, theirs = _notices(conn, query, params), _notices(oracle, query, params)
        assert ours == theirs, query
    assert ours == [f"NOTICE 00000 pgmq queue `{queue_name}` does not exist"]


def test_converting_an_archive_that_is_already_partitioned_sends_pgmqs_notice(
    conn: Conn, oracle: Conn, queue_name: str
) -> None:
    # PGMQ's conversion needs pg_partman, which the oracle database lacks; its check for an archive that is
    # already partitioned comes first, so the oracle's archive is swapped by hand for a partitioned table.
    mixed = queue_name.upper()
    for c in (conn, oracle):
        c.execute("SELECT pgmq.create(%s)", (mixed,))
    conn.execute("SELECT pgmq.convert_archive_partitioned(%s, '10', '100')", (mixed,))
    oracle.execute(f"DROP TABLE pgmq.a_{queue_name}")
    oracle.execute(f"CREATE TABLE pgmq.a_{queue_name} (msg_id bigint) PARTITION BY RANGE (msg_id)")
    for query in (
        "SELECT pgmq.convert_archive_partitioned(%s)",
        "SELECT pgmq.convert_archive_partitioned(%s, 'not an interval', 'nor this')",  # not looked at
    ):
        ours, theirs = _notices(conn, query, (mixed,)), _notices(oracle, query, (mixed,))
        assert ours == theirs == [f"NOTICE 00000 Table a_{queue_name}s is already partitioned"], query
        same(conn, oracle, query, (mixed,))
    for c in (conn, oracle):
        c.execute("SELECT pgmq.drop_queue(%s)", (mixed,))
