"""Helpers shared by the queue client tests: bounded waits and small SQL probes (no fixtures here)."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable
from typing import Any, TypeVar

import psycopg
from psycopg import sql

from howdah.queue._listener import leader_key, lock_tag
from tests.waiting import async_wait_until as async_wait_until
from tests.waiting import wait_until as wait_until

T = TypeVar("T")


async def maybe(value: T | Awaitable[T]) -> T:
    """Await ``value`` if the client was async; lets one test body drive ``Queue`` and ``AsyncQueue``."""
    if inspect.isawaitable(value):
        return await value  # type: ignore[no-any-return]
    return value


def table(prefix: str, queue: str) -> sql.Composed:
    """``pgmq.q_<queue>`` / ``pgmq.a_<queue>`` as a quoted identifier (queue names here are lower case)."""
    return sql.SQL("pgmq.{}").format(sql.Identifier(f"{prefix}_{queue.lower()}"))


def scalar(conn: psycopg.Connection[Any], query: str | sql.Composable, params: Any = None) -> Any:
    row = conn.execute(query, params).fetchone()
    return None if row is None else row[0]


def queue_rows(conn: psycopg.Connection[Any], queue: str, prefix: str = "q") -> list[tuple[Any, ...]]:
    """Every row of a queue's (or archive's) table: msg_id, read_ct, vt, message, headers, by msg_id.

    A table that does not exist (yet) has no rows.
    """
    if not scalar(conn, "SELECT to_regclass(%s) IS NOT NULL", (f'pgmq."{prefix}_{queue.lower()}"',)):
        return []
    query = sql.SQL("SELECT msg_id, read_ct, vt, message, headers FROM {} ORDER BY msg_id").format(table(prefix, queue))
    return conn.execute(query).fetchall()


def visible_count(conn: psycopg.Connection[Any], queue: str) -> int:
    query = sql.SQL("SELECT count(*) FROM {} WHERE vt <= clock_timestamp()").format(table("q", queue))
    return int(scalar(conn, query))


def queue_leader(conn: psycopg.Connection[Any], channel: str) -> tuple[int, str] | None:
    """(pid, application_name) of the session leading the queue notifying ``channel`` (its process's listener
    connection, which LISTENs on the channel); None while no process leads it."""
    row = conn.execute(
        "SELECT a.pid, a.application_name FROM pg_locks AS l JOIN pg_stat_activity AS a USING (pid) "
        "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %s AND l.objid = %s AND l.objsubid = 1 "
        "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        lock_tag(leader_key(channel)),
    ).fetchone()
    return None if row is None else (row[0], row[1])
