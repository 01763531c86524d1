"""The worker's share of the machine: it reads only the dispatch messages it can start now (a busy worker leaves
the rest to other workers), and it runs sync steps on threads of its own, as many as its concurrency, which end
when it stops (the event loop's default executor is neither used nor replaced).
"""

from __future__ import annotations

import threading
from typing import Any

import psycopg
from psycopg import sql

from howdah.durable import DurableApp, WorkflowContext

from ._helpers import Registry, Side, async_wait_until, gated, mark, new_id, running, wait_until

WORKFLOWS = Registry()

STEP_THREADS: list[threading.Thread] = []  # every thread a sync step of ``threads`` ran on


@WORKFLOWS.workflow()
async def quick(ctx: WorkflowContext, args: dict[str, Any]) -> str:
    return await ctx.step("done", mark, ctx.workflow_id, "done")


@WORKFLOWS.workflow()
async def blocked(ctx: WorkflowContext, args: dict[str, Any]) -> str:
    return await ctx.step("hold", gated, ctx.workflow_id, "hold")


def where(index: int, rendezvous: threading.Barrier) -> str:
    """A sync step: meets another step at the barrier (so two threads are busy at once), says which thread ran it."""
    STEP_THREADS.append(threading.current_thread())
    rendezvous.wait(timeout=10)
    return threading.current_thread().name


RENDEZVOUS: dict[str, threading.Barrier] = {}


@WORKFLOWS.workflow()
async def threads(ctx: WorkflowContext, args: dict[str, Any]) -> list[str]:
    rendezvous = RENDEZVOUS.setdefault(ctx.workflow_id, threading.Barrier(2))
    return await ctx.gather(*(ctx.step(f"where {i}", where, i, rendezvous) for i in range(args["steps"])))


async def visibility(db_url: str, queue: str) -> tuple[int, int]:
    """(messages read and held by some worker, messages any worker may read now) on the dispatch queue."""
    table = sql.Identifier("pgmq", f"q_{queue}")
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        cursor = await conn.execute(
            sql.SQL(
                "SELECT count(*) FILTER (WHERE vt > clock_timestamp()), "
                "count(*) FILTER (WHERE vt <= clock_timestamp()) FROM {}"
            ).format(table)
        )
        row = await cursor.fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


async def test_a_busy_worker_holds_only_the_messages_it_can_start_now(app: DurableApp, db_url: str) -> None:
    """Three slots: a quick workflow frees one slot, which must take one more message, not another batch."""
    await app.start("quick", workflow_id=new_id("quick"))
    held = [new_id("held") for _ in range(7)]
    for wf in held:
        await app.start("blocked", workflow_id=wf)
    async with running(app, concurrency=3):

        async def three_running() -> bool:
            started = [await Side.acount(wf, "hold", "start") for wf in held]
            return sum(started) >= 3

        await async_wait_until(three_running, what="three blocked workflows to run")
        assert await visibility(db_url, app.queue_name) == (3, 4)  # 3 running; the other 4 free for other workers
        for wf in held:
            Side.open_gate(wf, "hold")
        for wf in held:
            assert await app.handle(wf).result(30) == "hold"


async def test_sync_steps_run_on_the_workers_own_threads_as_many_as_its_concurrency(app: DurableApp) -> None:
    STEP_THREADS.clear()
    async with running(app, concurrency=2):
        names = await (await app.start("threads", {"steps": 4})).result(30)
    assert len(names) == 4 and all(name.startswith("howdah-step") for name in names), names
    assert len(set(names)) <= 2  # four sync steps in flight, two threads: the worker's concurrency
    seen = list(STEP_THREADS)
    wait_until(lambda: not any(t.is_alive() for t in seen), timeout=10, what="the stopped worker's step threads to end")


async def sessions(db_url: str) -> int:
    """Client sessions on the test's database, other than the one asking."""
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        cursor = await conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
        )
        row = await cursor.fetchone()
    assert row is not None
    return int(row[0])


async def test_a_worker_opens_the_connections_its_slots_use_before_it_reads_work(app: DurableApp, db_url: str) -> None:
    """Six slots on a pool of eight: the connections are open (and stay open) before the first run, so runs never
    wait for sessions set up one at a time while the database is busiest."""
    before = await sessions(db_url)
    async with running(app, concurrency=6):
        assert await (await app.start("quick", workflow_id=new_id("quick"))).result(30) == "done"
        assert await sessions(db_url) - before >= 6 - 1  # the app's pool held one already
