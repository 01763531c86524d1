"""Queue depth history (control migration 0011): the reconciler's sweep samples every queue once a minute and
keeps an hour of samples."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from psycopg import sql

from howdah.control.queries import QUERIES as Q
from howdah.control.reconciler import Reconciler
from howdah.queue import AsyncQueue
from tests.waiting import async_wait_until

from .conftest import Api


def _nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return [plan, *(node for child in plan.get("Plans", []) for node in _nodes(child))]


async def test_each_queue_is_sampled_once_a_minute_and_an_hour_is_kept(api: Api) -> None:
    async with api.pool.connection() as conn:
        await AsyncQueue(conn).create("sampled")
        for n in range(2):
            await AsyncQueue(conn).send("sampled", {"n": n})
        await conn.execute("DELETE FROM control.queue_depth_samples")
        await conn.execute(
            "INSERT INTO control.queue_depth_samples VALUES "
            "(date_trunc('minute', now()) - interval '61 minutes', 'sampled', 9), "
            "(date_trunc('minute', now()) - interval '59 minutes', 'sampled', 8)"
        )
        queues = (await (await conn.execute("SELECT count(*) FROM pgmq.meta")).fetchone() or [0])[0]
    assert await api.reconciler.sample_queue_depths() == queues  # every queue, the data plane's too
    async with api.pool.connection() as conn:
        rows = await (await conn.execute(
            "SELECT now() - at < interval '2 minutes', queue_length FROM control.queue_depth_samples "
            "WHERE queue_name = 'sampled' ORDER BY at"
        )).fetchall()  # fmt: skip
    assert rows == [(False, 8), (True, 2)]  # the sample older than an hour dropped, the hour's kept


async def test_a_minute_already_sampled_reads_no_queue(api: Api) -> None:
    # One transaction, so one now(): one minute, whenever this runs. Rolled back.
    async with api.pool.connection() as conn, conn.transaction(force_rollback=True):
        await conn.execute("DELETE FROM control.queue_depth_samples")
        first = await (await conn.execute(Q["sample_queue_depths"])).fetchone()
        assert first is not None and first[0] > 0
        explain = sql.SQL("EXPLAIN (ANALYZE, FORMAT JSON) ") + Q["sample_queue_depths"]
        explained = await conn.execute(explain)
        plan = (await explained.fetchone() or [None])[0]
        plan = json.loads(plan) if isinstance(plan, str) else plan
        scans = [n for n in _nodes(plan[0]["Plan"]) if n["Node Type"] == "Function Scan"]
        assert [n["Function Name"] for n in scans] == ["metrics_all"]
        assert [n["Actual Loops"] for n in scans] == [0]  # never run: the minute had its sample
        again = await (await conn.execute(Q["sample_queue_depths"])).fetchone()
        assert again == (0,)


async def test_the_reconcilers_sweep_samples(api: Api, db_url: str) -> None:
    async with api.pool.connection() as conn:
        await conn.execute("DELETE FROM control.queue_depth_samples")

    async def sampled() -> int:
        async with api.pool.connection() as conn:
            row = await (await conn.execute("SELECT count(*) FROM control.queue_depth_samples")).fetchone()
        return int(row[0]) if row else 0

    stop = asyncio.Event()
    running = asyncio.create_task(Reconciler(api.pool, db_url, sweep_interval=3600).run(stop))
    try:
        assert await async_wait_until(sampled, timeout=20, what="a sample from the first sweep")
    finally:
        stop.set()
        await asyncio.wait_for(running, 30)
