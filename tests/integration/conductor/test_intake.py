"""The conductor's intake: poison and malformed CRUD events are archived and reported, never retried forever."""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from howdah.conductor import Conductor
from howdah.conductor.runner import POISON_READS
from howdah.control.events import STATE_QUEUE, data_plane_queue
from howdah.providers.local import LocalProvider
from tests.waiting import async_wait_until


@pytest.fixture
async def conductor(db_url: str) -> AsyncIterator[Conductor]:
    home = Path(tempfile.mkdtemp(prefix="howdah-conductor-"))
    home.chmod(0o755)
    agent = Conductor(db_url, "intake", LocalProvider(home), status_interval=3600)
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        await async_wait_until(lambda: _exists(conn, data_plane_queue("intake")), what="the data plane's queue")
    try:
        yield agent
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)
        shutil.rmtree(home, ignore_errors=True)


async def _exists(conn: psycopg.AsyncConnection[Any], queue: str) -> bool:
    cur = await conn.execute("SELECT count(*) FROM pgmq.list_queues() WHERE queue_name = %s", (queue,))
    row = await cur.fetchone()
    return bool(row and row[0])


async def _archived(conn: psycopg.AsyncConnection[Any], msg_id: int) -> bool:
    cur = await conn.execute(f"SELECT count(*) FROM pgmq.a_{data_plane_queue('intake')} WHERE msg_id = %s", (msg_id,))
    row = await cur.fetchone()
    return bool(row and row[0])


async def _state_events(conn: psycopg.AsyncConnection[Any], instance_id: str) -> list[dict[str, Any]]:
    cur = await conn.execute(
        f"SELECT message FROM pgmq.q_{STATE_QUEUE} WHERE message->>'instance_id' = %s", (instance_id,)
    )
    return [row[0] for row in await cur.fetchall()]


async def test_malformed_and_poison_events_are_archived_and_reported(conductor: Conductor, db_url: str) -> None:
    queue = data_plane_queue("intake")
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        cur = await conn.execute("SELECT pgmq.send(%s, %s::jsonb)", (queue, json.dumps({"nonsense": True})))
        malformed = (await cur.fetchone())[0]  # type: ignore[index]
        await async_wait_until(lambda: _archived(conn, malformed), what="the malformed event to be archived")

        # an event that has already been read too often (as if handling it crashed the conductor each time)
        instance_id = str(uuid.uuid4())
        event = {"event_id": str(uuid.uuid4()), "instance_id": instance_id, "kind": "Create", "generation": 1}
        async with conn.transaction():  # one commit: the conductor never sees it with a low read count
            cur = await conn.execute("SELECT pgmq.send(%s, %s::jsonb)", (queue, json.dumps(event)))
            poison = (await cur.fetchone())[0]  # type: ignore[index]
            await conn.execute(
                f"UPDATE pgmq.q_{queue} SET read_ct = %s WHERE msg_id = %s", (POISON_READS, poison)
            )  # the next read makes it POISON_READS + 1
        # The conductor archives the event and reports the Error in one transaction: once the report is there,
        # so is the archived event, and nothing else is left to happen to it.
        reported = await async_wait_until(lambda: _state_events(conn, instance_id), what="the Error report")
        assert [(r["event"], r["failure"]) for r in reported] == [("Error", "permanent")]
        assert f"read {POISON_READS + 1} times" in reported[0]["error"]
        assert await _archived(conn, poison)
        cur = await conn.execute(
            "SELECT count(*) FROM howdah.workflows WHERE args->>'instance_id' = %s", (instance_id,)
        )
        assert (await cur.fetchone()) == (0,)  # no workflow was started for it
