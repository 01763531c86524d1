"""Infrastructure errors are not handler failures: a run that loses its database connection is retried
promptly, and pooled connections that died (a Postgres restart, a terminated backend) are replaced before use.
Finding the database (starting the embedded server when no URL is given) does not stall the event loop.

The fault is real: a trigger on ``howdah.steps`` terminates the backend that is writing one chosen checkpoint,
so the worker's connection dies in the middle of the checkpoint, as in a Postgres restart. A sequence (not rolled
back with the aborted transaction) tells the test that it fired.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

import howdah.pg
from howdah.durable import DurableApp, WorkflowContext
from howdah.queue import AsyncQueue, Queue

from ._helpers import Registry, Side, async_wait_until, mark, new_id, running, scalar

WORKFLOWS = Registry()

FAULT = """
CREATE SEQUENCE IF NOT EXISTS fault_fired;
CREATE TABLE IF NOT EXISTS faults (workflow_id text NOT NULL, step text NOT NULL);
CREATE OR REPLACE FUNCTION kill_checkpoint() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Once only: the sequence is not rolled back with the aborted transaction.
    -- Names qualified: the checkpoint calling this runs with a search_path of pg_catalog only.
    IF EXISTS (SELECT 1 FROM public.faults WHERE workflow_id = NEW.workflow_id AND step = NEW.name)
       AND nextval('public.fault_fired') = 1 THEN
        PERFORM pg_terminate_backend(pg_backend_pid());
        PERFORM pg_sleep(5);  -- the termination interrupts this
    END IF;
    RETURN NEW;
END;
$$;
CREATE OR REPLACE TRIGGER kill_checkpoint BEFORE INSERT ON howdah.steps
    FOR EACH ROW EXECUTE FUNCTION kill_checkpoint();
"""


@pytest.fixture(scope="module", autouse=True)
def fault(db_url: str) -> Iterator[None]:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(FAULT)
    yield
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("DROP TRIGGER kill_checkpoint ON howdah.steps")


def fired(db_url: str) -> int:
    return int(scalar(db_url, "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM fault_fired"))


@WORKFLOWS.workflow()
async def sleepy(ctx: WorkflowContext, args: dict[str, Any]) -> str:
    for _ in range(args["naps"]):
        # Every wake-up is one more read of the dispatch message. Long enough to be still ahead once its record
        # has committed on a loaded machine (a sleep already over when recorded does not suspend).
        await ctx.sleep(0.2)
    return await ctx.step("after the naps", mark, ctx.workflow_id, "after the naps")


async def test_a_run_that_lost_its_connection_is_retried_promptly(app: DurableApp, db_url: str) -> None:
    """Before: the failed run counted as a handler failure, parked for 2^(read_ct-1) s (300 s after 10 naps)."""
    wf = new_id("naps")
    scalar(db_url, "INSERT INTO faults (workflow_id, step) VALUES (%s, 'after the naps') RETURNING 1", (wf,))
    async with running(app):
        handle = await app.start(sleepy, {"naps": 10}, workflow_id=wf)
        await async_wait_until(lambda: fired(db_url) == 1, timeout=20, what="the checkpoint to be killed")
        read_ct = scalar(db_url, f"SELECT max(read_ct) FROM pgmq.q_{app.queue_name}")
        assert read_ct is None or read_ct >= 10  # a message read often: the old delay was at its 300 s cap
        assert await handle.result(timeout=20) == "after the naps"
    # The step body ran again (its first checkpoint was lost with the connection): at least once, recorded once.
    assert await Side.acount(wf, "after the naps") == 2
    assert [s.name for s in await app.steps(wf) if s.kind == "step"] == ["after the naps"]


def terminate_others(db_url: str) -> int:
    """Kill every other connection to this database, as a Postgres restart would, and return once they are gone
    (``pg_terminate_backend`` with a timeout waits for each backend to exit: its socket is closed by then)."""
    return int(
        scalar(
            db_url,
            "SELECT count(pg_terminate_backend(pid, 10000)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
    )


async def test_the_app_replaces_dead_pooled_connections_before_use(app: DurableApp, db_url: str) -> None:
    await app.list_workflows()  # the pool has a connection now
    assert terminate_others(db_url) >= 1
    assert await app.list_workflows(limit=1) is not None  # not OperationalError on the first call


async def test_owned_async_queue_pools_replace_dead_connections(db_url: str, queue_name: str) -> None:
    async with AsyncQueue(db_url) as queue:
        await queue.create(queue_name)
        assert terminate_others(db_url) >= 1
        assert await queue.send(queue_name, {"n": 1}) >= 1


def test_owned_sync_queue_pools_replace_dead_connections(db_url: str, queue_name: str) -> None:
    with Queue(db_url) as queue:
        queue.create(queue_name)
        assert terminate_others(db_url) >= 1
        assert queue.send(queue_name, {"n": 1}) >= 1


async def test_an_app_without_a_url_finds_its_database_off_the_event_loop(
    db_url: str, queue_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: ``open()`` started the embedded server (initdb, pg_ctl, waiting) on the event loop's thread."""
    ticks = 0
    ticking = threading.Event()

    def embedded_start(*, start: bool = True) -> str:
        """Stands in for starting the embedded server: it returns only once the event loop has run meanwhile."""
        if not ticking.wait(timeout=5):
            raise AssertionError("the event loop stood still while the embedded server was starting")
        return db_url

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            if ticks >= 3:
                ticking.set()
            await asyncio.sleep(0.001)

    monkeypatch.setattr(howdah.pg, "database_url", embedded_start)
    tick = asyncio.create_task(ticker())
    try:
        async with DurableApp(queue=queue_name, retention=None) as durable:
            assert durable.dsn == db_url
            assert await durable.list_workflows(limit=1) is not None
    finally:
        tick.cancel()
    assert ticks >= 3
