"""Concurrent readers: a message is never handed to two readers within its visibility timeout, nothing is lost,
and FIFO groups are consumed strictly in order even with several readers."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

Conn = psycopg.Connection[Any]
READERS = 4


def _run_readers(db_url: str, work: Callable[[Conn], bool]) -> None:
    """Runs `work` in READERS threads, each with its own connection, until it returns False everywhere."""
    errors: list[BaseException] = []
    start = threading.Barrier(READERS)

    def reader() -> None:
        try:
            with psycopg.connect(db_url, autocommit=True) as conn:
                start.wait(timeout=30)
                while work(conn):
                    pass
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(READERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert not any(t.is_alive() for t in threads)


@pytest.mark.parametrize("operation", ["read", "pop"])
def test_concurrent_readers_never_share_a_message(conn: Conn, db_url: str, queue_name: str, operation: str) -> None:
    n = 400
    conn.execute("SELECT pgmq.create(%s)", (queue_name,))
    conn.execute("SELECT pgmq.send_batch(%s, %s::jsonb[])", (queue_name, [Jsonb({"i": i}) for i in range(n)]))
    seen: list[int] = []
    lock = threading.Lock()
    round_robin = iter(range(10**9))

    def work(c: Conn) -> bool:
        qty = 1 + next(round_robin) % 7
        if operation == "read":
            rows = c.execute("SELECT msg_id FROM pgmq.read(%s, 60, %s)", (queue_name, qty)).fetchall()
            ids = [r[0] for r in rows]
            if ids:
                c.execute("SELECT * FROM pgmq.delete(%s, %s::bigint[])", (queue_name, ids))
        else:
            ids = [r[0] for r in c.execute("SELECT msg_id FROM pgmq.pop(%s, %s)", (queue_name, qty)).fetchall()]
        with lock:
            seen.extend(ids)
        return bool(ids)

    _run_readers(db_url, work)
    assert sorted(seen) == list(range(1, n + 1))  # every message exactly once


@pytest.mark.parametrize("fn", ["read_grouped", "read_grouped_rr", "read_grouped_head"])
def test_concurrent_fifo_readers_keep_group_order(conn: Conn, db_url: str, queue_name: str, fn: str) -> None:
    groups = 6
    per_group = 20
    conn.execute("SELECT pgmq.create(%s)", (queue_name,))
    conn.execute("SELECT pgmq.create_fifo_index(%s)", (queue_name,))
    msgs = [Jsonb({"i": i}) for i in range(groups * per_group)]
    heads = [Jsonb({"x-pgmq-group": f"g{i % groups}"}) for i in range(groups * per_group)]
    ids = [
        r[0]
        for r in conn.execute(
            "SELECT * FROM pgmq.send_batch(%s, %s::jsonb[], %s::jsonb[])", (queue_name, msgs, heads)
        ).fetchall()
    ]
    remaining = {f"g{g}": [i for k, i in enumerate(ids) if k % groups == g] for g in range(groups)}
    lock = threading.Lock()
    violations: list[str] = []

    def work(c: Conn) -> bool:
        rows = c.execute(f"SELECT msg_id, headers ->> 'x-pgmq-group' FROM pgmq.{fn}(%s, 60, 4)", (queue_name,))
        batch = rows.fetchall()
        with lock:  # each group's messages must come out as the group's oldest remaining ones, in order
            for group in {g for _, g in batch}:
                got = [i for i, g in batch if g == group]
                expected = remaining[group][: len(got)]
                if got != expected:
                    violations.append(f"{group}: got {got}, expected {expected}")
                del remaining[group][: len(got)]
        if batch:
            c.execute("SELECT * FROM pgmq.delete(%s, %s::bigint[])", (queue_name, [i for i, _ in batch]))
        return bool(batch) or c.execute(f"SELECT EXISTS (SELECT 1 FROM pgmq.q_{queue_name})").fetchone() == (True,)

    _run_readers(db_url, work)
    assert violations == []
    assert all(not left for left in remaining.values())
