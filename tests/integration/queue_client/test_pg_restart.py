"""A consumer rides out a Postgres restart: it reconnects, goes on, and loses nothing.

This restarts the session's embedded server, which breaks every open connection of the session; it lives in its
own module so no other test holds one, and the server is started again whatever happens.
"""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest

from howdah.queue import AsyncQueue, Message, notify_channel

from ._helpers import async_wait_until, queue_leader, queue_rows

pytestmark = pytest.mark.slow


def _listening(db_url: str, channel: str) -> bool:
    """The consumer's process leads the queue: its listener connection holds the lead and LISTENs."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        return queue_leader(conn, channel) is not None


def _remaining(db_url: str, queue: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(db_url, autocommit=True) as conn:
        return queue_rows(conn, queue)


async def test_a_consumer_survives_a_postgres_restart(pg_cluster: Any, db_url: str, queue_name: str) -> None:
    server = pg_cluster.server
    if server is None:
        pytest.skip("HOWDAH_DATABASE_URL is set: this test restarts the embedded server, which we do not own here")
    queue = queue_name
    handled: set[int] = set()  # at-least-once: a message may be handled twice across the restart, never lost
    restarted = asyncio.Event()
    parked: list[int] = []

    async def handler(message: Message) -> None:
        handled.add(message.message["n"])
        if len(handled) >= 50 and not restarted.is_set() and len(parked) < 3:
            # Three handlers stay in flight across the restart (their acks meet dead connections); the fourth
            # slot goes on reading, so reads meet the outage too.
            parked.append(message.msg_id)
            await asyncio.wait_for(restarted.wait(), 60)

    async with AsyncQueue(db_url) as before:
        await before.create(queue)
        await before.send_batch(queue, [{"n": n} for n in range(300)])
    consumer = AsyncQueue(db_url)
    stop = asyncio.Event()
    task = asyncio.create_task(
        consumer.work(
            queue,
            handler,
            concurrency=4,
            stop=stop,
            handle_signals=False,
            vt=5,
            batch_size=10,
            poll_interval=0.2,
            maintenance_interval=3600,
        )
    )
    try:
        await async_wait_until(lambda: len(parked) == 3, timeout=30, what="three handlers parked")
        await async_wait_until(lambda: _listening(db_url, notify_channel(queue)), what="the consumer's LISTEN")
        try:
            await asyncio.to_thread(server.stop, "fast")
            assert server.pid() is None
        finally:
            await asyncio.to_thread(server.start)
        restarted.set()
        assert not task.done(), "the consumer gave up during the restart"

        async with AsyncQueue(db_url) as after:
            await after.send_batch(queue, [{"n": n} for n in range(300, 400)])
        await async_wait_until(lambda: len(handled) == 400, timeout=60, what="all 400 messages handled")
        await async_wait_until(lambda: not _remaining(db_url, queue), timeout=30, what="every message acked")
        await async_wait_until(lambda: _listening(db_url, notify_channel(queue)), timeout=30, what="LISTEN again")
        assert not task.done()
    finally:
        restarted.set()
        stop.set()
        try:
            await asyncio.wait_for(task, 30)
        finally:
            await consumer.close()
            if server.pid() is None:  # whatever failed above, leave the session a running server
                await asyncio.to_thread(server.start)
    assert handled == set(range(400))
