"""Partitioned queues without pg_partman: premade partitions, bursts, maintenance, retention."""

from __future__ import annotations

import datetime as dt
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

Conn = psycopg.Connection[Any]


def partitions(conn: Conn, table: str) -> dict[str, str]:
    """Partition name -> bound expression."""
    rows = conn.execute(
        """
        SELECT c.relname::text, pg_get_expr(c.relpartbound, c.oid)
          FROM pg_inherits AS i JOIN pg_class AS c ON c.oid = i.inhrelid
         WHERE i.inhparent = %s::regclass
        """,
        (table,),
    ).fetchall()
    return dict(rows)


def where(conn: Conn, table: str) -> dict[str, int]:
    """Partition name -> number of rows in it."""
    rows = conn.execute(f"SELECT tableoid::regclass::text, count(*) FROM {table} GROUP BY 1").fetchall()
    return {name.removeprefix("pgmq."): n for name, n in rows}


def maintain(conn: Conn, queue: str | None) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT queue, partition_table, action, range_from, range_to, moved_rows FROM pgmq.maintain_partitions(%s)",
        (queue,),
    ).fetchall()


def send_many(conn: Conn, queue: str, n: int) -> list[int]:
    rows = conn.execute(
        "SELECT * FROM pgmq.send_batch(%s::text, %s::jsonb[])", (queue, [Jsonb({"i": i}) for i in range(n)])
    ).fetchall()
    return [r[0] for r in rows]


def test_msg_id_partitions_premade_burst_and_maintenance(conn: Conn, queue_name: str) -> None:
    q = queue_name
    conn.execute("SELECT pgmq.create_partitioned(%s, '10', '30', 2)", (q,))
    assert conn.execute(
        "SELECT is_partitioned, is_unlogged FROM pgmq.list_queues() WHERE queue_name = %s", (q,)
    ).fetchone() == (True, False)
    # The current partition and `premake` ahead, plus a DEFAULT partition, for the queue and its archive.
    assert partitions(conn, f"pgmq.q_{q}") == {
        f"q_{q}_default": "DEFAULT",
        f"q_{q}_p0": "FOR VALUES FROM ('0') TO ('10')",
        f"q_{q}_p1": "FOR VALUES FROM ('10') TO ('20')",
        f"q_{q}_p2": "FOR VALUES FROM ('20') TO ('30')",
    }
    assert set(partitions(conn, f"pgmq.a_{q}")) == {f"a_{q}_default", f"a_{q}_p0", f"a_{q}_p1", f"a_{q}_p2"}

    # A burst far beyond the premade partitions: every send succeeds, the overflow waits in the default one.
    ids = send_many(conn, q, 95)
    assert ids == list(range(1, 96))
    assert where(conn, f"pgmq.q_{q}") == {f"q_{q}_p0": 9, f"q_{q}_p1": 10, f"q_{q}_p2": 10, f"q_{q}_default": 66}
    metrics = conn.execute(
        "SELECT queue_length, total_messages, queue_visible_length, default_partition_length FROM pgmq.metrics(%s)",
        (q,),
    ).fetchone()
    assert metrics == (95, 95, 95, 66)

    # Maintenance creates partitions for the rows in the default partition (moving them) and premakes ahead;
    # queue partitions behind the newest message are kept while they hold messages; archive ones past
    # retention are dropped.
    done = maintain(conn, q)
    created = {r[1]: r[5] for r in done if r[2] == "created"}
    assert created == {
        **{f"q_{q}_p{k}": 10 for k in range(3, 9)},
        f"q_{q}_p9": 6,
        f"q_{q}_p10": 0,
        f"q_{q}_p11": 0,
        **{f"a_{q}_p{k}": 0 for k in range(6, 12)},
    }
    assert {r[1] for r in done if r[2] == "dropped"} == {f"a_{q}_p0", f"a_{q}_p1", f"a_{q}_p2"}
    assert {r[1] for r in done if r[2].startswith("kept")} == {f"q_{q}_p{k}" for k in range(9)}
    assert f"q_{q}_default" not in where(conn, f"pgmq.q_{q}")
    assert sum(where(conn, f"pgmq.q_{q}").values()) == 95

    # Reads, archives and deletes work across partitions, oldest first.
    got = conn.execute("SELECT msg_id FROM pgmq.read(%s, 30, 25)", (q,)).fetchall()
    assert [r[0] for r in got] == list(range(1, 26))
    archived = conn.execute("SELECT * FROM pgmq.archive(%s, %s::bigint[])", (q, list(range(1, 21)))).fetchall()
    assert sorted(r[0] for r in archived) == list(range(1, 21))
    assert conn.execute("SELECT pgmq.delete(%s, 21::bigint)", (q,)).fetchone() == (True,)
    assert conn.execute("SELECT pgmq.archive(%s, 95::bigint)", (q,)).fetchone() == (True,)
    assert [r[0] for r in conn.execute("SELECT msg_id FROM pgmq.pop(%s, 2)", (q,)).fetchall()] == [26, 27]
    assert conn.execute(
        "SELECT queue_length, queue_visible_length, default_partition_length FROM pgmq.metrics(%s)", (q,)
    ).fetchone() == (71, 67, 20)
    # Archived rows whose archive partition is past retention went to the archive's default partition.
    assert where(conn, f"pgmq.a_{q}") == {f"a_{q}_default": 20, f"a_{q}_p9": 1}

    # The emptied queue partitions are dropped by the next run; the old archived rows get a partition and are
    # then dropped with it (retention).
    conn.execute("SELECT * FROM pgmq.delete(%s, %s::bigint[])", (q, list(range(22, 61))))
    done = maintain(conn, q)
    dropped = {r[1] for r in done if r[2] == "dropped"}
    assert {f"q_{q}_p{k}" for k in range(6)} <= dropped
    assert {f"a_{q}_p0", f"a_{q}_p1", f"a_{q}_p2"} <= dropped
    assert where(conn, f"pgmq.a_{q}") == {f"a_{q}_p9": 1}
    assert {r[2] for r in maintain(conn, q)} <= {"kept: still holds messages"}  # nothing to do
    assert conn.execute("SELECT pgmq.drop_queue(%s)", (q,)).fetchone() == (True,)
    assert conn.execute("SELECT count(*) FROM pg_class WHERE relname LIKE %s", (f"%_{q}_%",)).fetchone() == (0,)


def test_time_partitions(conn: Conn, queue_name: str) -> None:
    q = queue_name
    conn.execute("SELECT pgmq.create_partitioned(%s, '1 hour', '1 day', 3)", (q,))
    parts = partitions(conn, f"pgmq.q_{q}")
    assert len(parts) == 5 and parts[f"q_{q}_default"] == "DEFAULT"
    hour = conn.execute("SELECT to_char(date_trunc('hour', now() AT TIME ZONE 'UTC'), 'YYYYMMDDHH24MI')").fetchone()
    assert hour is not None and f"q_{q}_p{hour[0]}" in parts
    ids = send_many(conn, q, 5)
    assert where(conn, f"pgmq.q_{q}") == {f"q_{q}_p{hour[0]}": 5}
    assert conn.execute("SELECT * FROM pgmq.archive(%s, %s::bigint[])", (q, ids[:2])).fetchall()
    assert where(conn, f"pgmq.a_{q}") == {f"a_{q}_p{hour[0]}": 2}

    # Simulate partitions from long ago: the archive's is dropped; the queue's is kept while it holds a message
    # (a late insert of an old message), then dropped once empty.
    conn.execute(
        f'CREATE TABLE pgmq."q_{q}_p200001010000" PARTITION OF pgmq."q_{q}" '
        "FOR VALUES FROM ('2000-01-01 00:00+00') TO ('2000-01-01 01:00+00')"
    )
    conn.execute(
        f'CREATE TABLE pgmq."a_{q}_p200001010000" PARTITION OF pgmq."a_{q}" '
        "FOR VALUES FROM ('2000-01-01 00:00+00') TO ('2000-01-01 01:00+00')"
    )
    conn.execute(f"INSERT INTO pgmq.q_{q} (enqueued_at, vt, message) VALUES ('2000-01-01 00:30+00', now(), '{{}}')")
    done = maintain(conn, q)
    assert [(r[1], r[2]) for r in done] == [
        (f"q_{q}_p200001010000", "kept: still holds messages"),
        (f"a_{q}_p200001010000", "dropped"),
    ]
    assert conn.execute("SELECT count(*) FROM pgmq.pop(%s, 10)", (q,)).fetchone() == (4,)
    assert [(r[1], r[2]) for r in maintain(conn, q)] == [(f"q_{q}_p200001010000", "dropped")]
    assert conn.execute("SELECT queue_length FROM pgmq.metrics(%s)", (q,)).fetchone() == (0,)
    conn.execute("SELECT pgmq.drop_queue(%s)", (q,))


def test_sub_minute_time_partitions(conn: Conn, queue_name: str) -> None:
    q = queue_name
    conn.execute("SELECT pgmq.create_partitioned(%s, '5 seconds', '1 minute', 4)", (q,))
    bounds = conn.execute(
        "SELECT relname, lo, hi FROM pgmq._howdah_partitions(%s::regclass, true) WHERE NOT is_default ORDER BY lo",
        (f"pgmq.q_{q}",),
    ).fetchall()
    assert len(bounds) == 5
    for (name, lo, hi), following in zip(bounds, [*bounds[1:], None], strict=True):
        assert hi - lo == 5
        assert name == f"q_{q}_p" + dt.datetime.fromtimestamp(int(lo), dt.UTC).strftime("%Y%m%d%H%M%S")
        assert following is None or following[1] == hi
    # Wherever the messages land, maintenance gives them a partition of their own: none stays in the default.
    send_many(conn, q, 5)
    maintain(conn, q)
    assert f"q_{q}_default" not in where(conn, f"pgmq.q_{q}")
    assert sum(where(conn, f"pgmq.q_{q}").values()) == 5
    conn.execute("SELECT pgmq.drop_queue(%s)", (q,))


@pytest.mark.parametrize(("interval", "months"), [("1 month", 1), ("3 months", 3), ("1 year", 12)])
def test_month_and_year_partitions_start_on_the_first_of_a_month(
    conn: Conn, queue_name: str, interval: str, months: int
) -> None:
    """Months are no fixed number of seconds: each partition runs from the first of a month (UTC, counted from
    January 2001 in steps of the interval: quarters for '3 months') to the first of the month it ends on."""
    q = queue_name
    conn.execute("SELECT pgmq.create_partitioned(%s, %s, '2 years', 2)", (q, interval))
    bounds = conn.execute(
        "SELECT relname, lo, hi FROM pgmq._howdah_partitions(%s::regclass, true) WHERE NOT is_default ORDER BY lo",
        (f"pgmq.q_{q}",),
    ).fetchall()
    assert len(bounds) == 3
    now = dt.datetime.now(dt.UTC)
    starts = [dt.datetime.fromtimestamp(int(lo), dt.UTC) for _, lo, _ in bounds]
    assert starts[0] <= now < dt.datetime.fromtimestamp(int(bounds[0][2]), dt.UTC)
    for (name, _lo, hi), start, following in zip(bounds, starts, [*bounds[1:], None], strict=True):
        end = dt.datetime.fromtimestamp(int(hi), dt.UTC)
        assert (start.day, start.hour, start.minute, end.day, end.hour) == (1, 0, 0, 1, 0)
        assert ((start.year - 2001) * 12 + start.month - 1) % months == 0
        assert (end.year - start.year) * 12 + end.month - start.month == months
        assert name == f"q_{q}_p" + start.strftime("%Y%m%d%H%M")
        assert following is None or following[1] == hi
    send_many(conn, q, 3)
    maintain(conn, q)
    assert where(conn, f"pgmq.q_{q}") == {bounds[0][0]: 3}
    conn.execute("SELECT pgmq.drop_queue(%s)", (q,))


def test_month_retention_drops_archive_partitions_a_calendar_month_old(conn: Conn, queue_name: str) -> None:
    """Retention counts calendar months back from now (UTC): the archive partition of three months ago is dropped
    by maintenance, last month's (which ended less than '1 month' ago) stays."""
    q = queue_name
    conn.execute("SELECT pgmq.create_partitioned(%s, '1 month', '1 month', 1)", (q,))
    archive = f"a_{q}"
    for name, back in (("three_ago", 3), ("last", 1)):
        conn.execute(
            f"""DO $$ BEGIN EXECUTE format('CREATE TABLE pgmq.%I PARTITION OF pgmq.%I FOR VALUES FROM (%L) TO (%L)',
                   '{archive}_{name}', '{archive}',
                   pgmq._howdah_bin_start('1 month', now() - interval '{back} months'),
                   pgmq._howdah_bin_start('1 month', now() - interval '{back - 1} months')); END $$"""
        )
    done = {(row[1], row[2]) for row in maintain(conn, q)}
    assert (f"{archive}_three_ago", "dropped") in done
    assert f"{archive}_last" in partitions(conn, f"pgmq.{archive}") and f"{archive}_three_ago" not in partitions(
        conn, f"pgmq.{archive}"
    )
    conn.execute("SELECT pgmq.drop_queue(%s)", (q,))


def test_maintain_all_queues_and_archive_conversion(conn: Conn, queue_name: str) -> None:
    plain, part = f"{queue_name}_plain", f"{queue_name}_part"
    conn.execute("SELECT pgmq.create(%s)", (plain,))
    conn.execute("SELECT pgmq.create_partitioned(%s, '5', '100', 1)", (part,))
    send_many(conn, part, 12)
    done = maintain(conn, None)
    assert {r[0] for r in done} == {part}
    assert {r[1] for r in done if r[2] == "created"} >= {f"q_{part}_p2", f"q_{part}_p3"}

    # convert_archive_partitioned: the plain queue keeps its table; its archive becomes partitioned and keeps
    # its rows.
    ids = send_many(conn, plain, 12)
    conn.execute("SELECT * FROM pgmq.archive(%s, %s::bigint[])", (plain, ids[:7]))
    conn.execute("SELECT pgmq.convert_archive_partitioned(%s, '5', '100', 2)", (plain,))
    assert where(conn, f"pgmq.a_{plain}") == {f"a_{plain}_p0": 4, f"a_{plain}_p1": 3}
    assert set(partitions(conn, f"pgmq.a_{plain}")) == {
        f"a_{plain}_default",
        f"a_{plain}_p0",
        f"a_{plain}_p1",
        f"a_{plain}_p2",
        f"a_{plain}_p3",
        f"a_{plain}_p4",
    }
    assert conn.execute("SELECT pgmq.archive(%s, 12::bigint)", (plain,)).fetchone() == (True,)
    conn.execute("SELECT pgmq.convert_archive_partitioned(%s)", (plain,))  # already partitioned: a no-op
    assert conn.execute("SELECT count(*) FROM pgmq.a_" + plain).fetchone() == (8,)
    for name in (plain, part):
        conn.execute("SELECT pgmq.drop_queue(%s)", (name,))


def test_notify_uses_the_parent_table_name(conn: Conn, queue_name: str, db_url: str) -> None:
    conn.execute("SELECT pgmq.create_partitioned(%s, '10', '100')", (queue_name,))
    conn.execute("SELECT pgmq.enable_notify_insert(%s, 0)", (queue_name,))
    with psycopg.connect(db_url, autocommit=True) as listener:
        listener.execute(f'LISTEN "pgmq.q_{queue_name}.INSERT"')
        send_many(conn, queue_name, 30)  # spans several partitions and the default one
        got = list(listener.notifies(timeout=10, stop_after=1))
    assert [n.channel for n in got] == [f"pgmq.q_{queue_name}.INSERT"]
    conn.execute("SELECT pgmq.drop_queue(%s)", (queue_name,))
