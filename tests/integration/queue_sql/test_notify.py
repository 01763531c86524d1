"""enable_notify_insert: notifications on PGMQ's channel, throttling, disabling.

Absence of a notification is checked without sleeping: after the sends, the sender notifies a sentinel channel;
notifications arrive in commit order, so once the sentinel is seen, every earlier one has been seen too.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

Conn = psycopg.Connection[Any]
SENTINEL = "howdah_test_sentinel"


@pytest.fixture
def listener(db_url: str) -> Iterator[Conn]:
    with psycopg.connect(db_url, autocommit=True) as connection:
        connection.execute(f"LISTEN {SENTINEL}")
        yield connection


def channel(queue: str) -> str:
    return f"pgmq.q_{queue.lower()}.INSERT"


def received(listener: Conn, sender: Conn) -> list[tuple[str, str]]:
    """Everything the listener got up to now (ending with the sentinel, which is not returned)."""
    sender.execute(f"NOTIFY {SENTINEL}")
    got: list[tuple[str, str]] = []
    for notify in listener.notifies(timeout=10):
        if notify.channel == SENTINEL:
            return got
        got.append((notify.channel, notify.payload))
    raise AssertionError(f"the sentinel notification did not arrive; got {got}")


def send(conn: Conn, queue: str, n: int = 1) -> None:
    if n == 1:
        conn.execute("SELECT * FROM pgmq.send(%s::text, %s::jsonb)", (queue, Jsonb({})))
    else:
        conn.execute("SELECT * FROM pgmq.send_batch(%s::text, %s::jsonb[])", (queue, [Jsonb({})] * n))


def test_every_insert_notifies_without_throttle(conn: Conn, listener: Conn, queue_name: str) -> None:
    conn.execute("SELECT pgmq.create(%s)", (queue_name,))
    listener.execute(f'LISTEN "{channel(queue_name)}"')
    send(conn, queue_name)
    assert received(listener, conn) == []  # not enabled yet
    conn.execute("SELECT pgmq.enable_notify_insert(%s, 0)", (queue_name,))
    send(conn, queue_name)
    send(conn, queue_name, 50)  # one statement, one notification
    with conn.transaction():  # two statements in one transaction: notifications are merged at commit
        send(conn, queue_name)
        send(conn, queue_name)
    assert received(listener, conn) == [(channel(queue_name), "")] * 3
    with conn.transaction(force_rollback=True):
        send(conn, queue_name)
    assert received(listener, conn) == []  # a rolled-back send notifies nobody


def test_throttle_limits_notifications(conn: Conn, listener: Conn, queue_name: str) -> None:
    conn.execute("SELECT pgmq.create(%s)", (queue_name,))
    listener.execute(f'LISTEN "{channel(queue_name)}"')
    conn.execute("SELECT pgmq.enable_notify_insert(%s, 3600000)", (queue_name,))  # at most one an hour
    for _ in range(5):
        send(conn, queue_name)
    assert received(listener, conn) == [(channel(queue_name), "")]
    (last,) = conn.execute(
        "SELECT last_notified_at > now() - interval '1 minute' FROM pgmq.list_notify_insert_throttles() "
        "WHERE queue_name = %s",
        (queue_name,),
    ).fetchone() or (None,)
    assert last is True
    # Changing the throttle resets it: the next insert notifies again.
    conn.execute("SELECT pgmq.update_notify_insert(%s, 3600000)", (queue_name,))
    send(conn, queue_name)
    send(conn, queue_name)
    assert received(listener, conn) == [(channel(queue_name), "")]
    conn.execute("SELECT pgmq.update_notify_insert(%s, 0)", (queue_name,))
    send(conn, queue_name)
    send(conn, queue_name)
    assert received(listener, conn) == [(channel(queue_name), "")] * 2


def test_disable_and_drop(conn: Conn, listener: Conn, queue_name: str) -> None:
    conn.execute("SELECT pgmq.create(%s)", (queue_name,))
    listener.execute(f'LISTEN "{channel(queue_name)}"')
    conn.execute("SELECT pgmq.enable_notify_insert(%s)", (queue_name,))
    conn.execute("SELECT pgmq.enable_notify_insert(%s, 0)", (queue_name,))  # enabling again replaces it
    triggers = conn.execute(
        "SELECT count(*) FROM pg_trigger WHERE tgrelid = %s::regclass AND NOT tgisinternal", (f"pgmq.q_{queue_name}",)
    ).fetchone()
    assert triggers == (1,)
    conn.execute("SELECT pgmq.disable_notify_insert(%s)", (queue_name,))
    conn.execute("SELECT pgmq.disable_notify_insert(%s)", (queue_name,))  # idempotent
    send(conn, queue_name)
    assert received(listener, conn) == []
    assert conn.execute(
        "SELECT count(*) FROM pgmq.list_notify_insert_throttles() WHERE queue_name = %s", (queue_name,)
    ).fetchone() == (0,)
    with pytest.raises(psycopg.errors.RaiseException, match="does not have notify_insert enabled"):  # PGMQ's
        conn.execute("SELECT pgmq.update_notify_insert(%s, 10)", (queue_name,))
    conn.execute("SELECT pgmq.enable_notify_insert(%s, 0)", (queue_name,))
    conn.execute("SELECT pgmq.drop_queue(%s)", (queue_name,))
    assert conn.execute(
        "SELECT count(*) FROM pgmq.notify_insert_throttle WHERE queue_name = %s", (queue_name,)
    ).fetchone() == (0,)


def test_mixed_case_queue_uses_the_lower_case_table_name(conn: Conn, listener: Conn, queue_name: str) -> None:
    name = queue_name.upper()
    conn.execute("SELECT pgmq.create(%s)", (name,))
    conn.execute("SELECT pgmq.enable_notify_insert(%s, 0)", (name,))
    listener.execute(f'LISTEN "{channel(name)}"')
    send(conn, name)
    assert received(listener, conn) == [(f"pgmq.q_{queue_name.lower()}.INSERT", "")]
