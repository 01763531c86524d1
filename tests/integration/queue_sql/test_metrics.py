"""metrics: exact on small queues, bounded work (no sequential scan of the queue) on large ones."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

Conn = psycopg.Connection[Any]
EXACT_LIMIT = 10_000

COLUMNS = (
    "queue_name, queue_length, newest_msg_age_sec, oldest_msg_age_sec, total_messages, queue_visible_length, "
    "default_partition_length"
)


def metrics(conn: Conn, queue: str) -> tuple[Any, ...]:
    row = conn.execute(f"SELECT {COLUMNS} FROM pgmq.metrics(%s)", (queue,)).fetchone()
    assert row is not None
    return tuple(row)


def test_small_queue_values_are_exact(conn: Conn, queue_name: str) -> None:
    q = queue_name
    conn.execute("SELECT pgmq.create(%s)", (q,))
    assert metrics(conn, q) == (q, 0, None, None, 0, 0, None)
    conn.execute("SELECT * FROM pgmq.send_batch(%s::text, %s::jsonb[])", (q, [Jsonb({"i": i}) for i in range(5)]))
    conn.execute("SELECT * FROM pgmq.send(%s::text, %s::jsonb, 3600)", (q, Jsonb({})))
    assert metrics(conn, q) == (q, 6, 0, 0, 6, 5, None)
    conn.execute("SELECT * FROM pgmq.read(%s, 30, 2)", (q,))
    conn.execute("SELECT pgmq.delete(%s, 3::bigint)", (q,))
    assert metrics(conn, q) == (q, 5, 0, 0, 6, 2, None)
    # Ages come from the oldest and newest messages.
    conn.execute(f"UPDATE pgmq.q_{q} SET enqueued_at = now() - interval '90 seconds' WHERE msg_id = 1")
    conn.execute(f"UPDATE pgmq.q_{q} SET enqueued_at = now() - interval '30 seconds' WHERE msg_id = 6")
    assert metrics(conn, q)[2:4] == (30, 90)
    # A rolled-back send still used an id: total_messages counts ids handed out, like PGMQ.
    with conn.transaction(force_rollback=True):
        conn.execute("SELECT * FROM pgmq.send(%s::text, %s::jsonb)", (q, Jsonb({})))
    assert metrics(conn, q)[4] == 7
    all_rows = conn.execute("SELECT queue_name, queue_length FROM pgmq.metrics_all()").fetchall()
    assert (q, 5) in all_rows
    conn.execute("SELECT pgmq.drop_queue(%s)", (q,))


def _fill(conn: Conn, queue: str, n: int, *, invisible: int = 0) -> None:
    """Inserts n messages fast, the first `invisible` of them in flight; then refreshes statistics."""
    conn.execute(
        f"INSERT INTO pgmq.q_{queue} (vt, message) "
        "SELECT CASE WHEN g <= %s THEN now() + interval '1 hour' ELSE now() END, jsonb_build_object('g', g) "
        "FROM generate_series(1, %s) AS g",
        (invisible, n),
    )
    conn.execute(f"ANALYZE pgmq.q_{queue}")


def _work(conn: Conn, queue: str) -> tuple[tuple[Any, ...], int, int, int]:
    """metrics() plus the scans it caused on the queue table: sequential scans, rows they read, and rows fetched
    through indexes (differences of this backend's not-yet-flushed statistics around the call)."""

    def counters() -> tuple[int, ...]:
        row = conn.execute(
            "SELECT coalesce(sum(seq_scan), 0), coalesce(sum(seq_tup_read), 0), coalesce(sum(idx_tup_fetch), 0) "
            "FROM pg_stat_xact_user_tables WHERE relid = %s::regclass",
            (f"pgmq.q_{queue}",),
        ).fetchone()
        assert row is not None
        return tuple(int(v) for v in row)

    with conn.transaction(force_rollback=True):
        before = counters()
        result = metrics(conn, queue)
        after = counters()
    seq_scans, seq_read, index_read = (a - b for a, b in zip(after, before, strict=True))
    return result, seq_scans, seq_read, index_read


@pytest.mark.parametrize("invisible", [0, 500])
def test_large_queue_is_not_scanned(conn: Conn, queue_name: str, invisible: int) -> None:
    n = 3 * EXACT_LIMIT
    conn.execute("SELECT pgmq.create(%s)", (queue_name,))
    _fill(conn, queue_name, n, invisible=invisible)
    (_, length, newest, oldest, total, visible, _), seq_scans, seq_read, index_read = _work(conn, queue_name)
    assert seq_scans == 0 and seq_read == 0
    assert index_read <= 2 * 2 * (EXACT_LIMIT + 1) + 10  # two bounded vt-index scans, plus four id probes
    assert total == n
    assert length == pytest.approx(n, rel=0.1)  # estimated above the exact limit
    assert visible == pytest.approx(n - invisible, rel=0.1)
    assert (newest, oldest) == (0, 0)
    plan = "\n".join(
        r[0]
        for r in conn.execute(f"EXPLAIN SELECT 1 FROM pgmq.q_{queue_name} WHERE vt <= now() ORDER BY vt LIMIT 10001")
    )
    assert "Index" in plan and "Seq Scan" not in plan
    conn.execute("SELECT pgmq.drop_queue(%s)", (queue_name,))


def test_large_queue_with_many_in_flight_is_sampled(conn: Conn, queue_name: str) -> None:
    n = 3 * EXACT_LIMIT
    conn.execute("SELECT pgmq.create(%s)", (queue_name,))
    _fill(conn, queue_name, n, invisible=n // 2)
    (_, length, _, _, total, visible, _), _, seq_read, _ = _work(conn, queue_name)
    assert total == n and length == pytest.approx(n, rel=0.1)
    assert EXACT_LIMIT < visible < n - EXACT_LIMIT
    assert seq_read <= 2 * EXACT_LIMIT  # a page sample of about EXACT_LIMIT rows, never the whole table
    conn.execute("SELECT pgmq.drop_queue(%s)", (queue_name,))


def test_exact_just_below_the_limit(conn: Conn, queue_name: str) -> None:
    conn.execute("SELECT pgmq.create(%s)", (queue_name,))
    _fill(conn, queue_name, EXACT_LIMIT, invisible=7)
    assert metrics(conn, queue_name)[1:6] == (EXACT_LIMIT, 0, 0, EXACT_LIMIT, EXACT_LIMIT - 7)
    conn.execute("SELECT pgmq.drop_queue(%s)", (queue_name,))
