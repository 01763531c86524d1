"""Schedules in one process: the worker records declared schedules, and ``Worker.fire_due_schedules`` starts
exactly one run per due tick (all of them with ``catch_up``, the latest with ``skip``), however many workers fire
at once. Missed ticks are simulated by moving ``howdah.schedules.next_run_at`` into the past."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest

from howdah.durable import DurableApp, Worker, WorkflowContext

from ._helpers import Side, async_wait_until, running

FIVE_MINUTES = timedelta(minutes=5)


async def report(ctx: WorkflowContext, args: dict[str, Any]) -> str:
    await ctx.step("run", Side.arecord, ctx.workflow_id, "run")
    return str(args.get("region"))


@pytest.fixture
async def scheduled(db_url: str, queue_name: str, request: pytest.FixtureRequest) -> AsyncIterator[DurableApp]:
    """An app with one ``*/5`` schedule (its policy from the test's parameter) named after the test."""
    missed = getattr(request, "param", "catch_up")
    app = DurableApp(db_url, queue=queue_name, lease=5, retention=None)
    name = f"report_{queue_name}"
    app.schedule("*/5 * * * *", name=name, args={"region": "eu"}, missed=missed)(report)
    async with app:
        yield app
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        await conn.execute("DELETE FROM howdah.schedules WHERE name = %s", (name,))


async def schedule_row(db_url: str, name: str) -> dict[str, Any]:
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        cursor = await conn.execute(
            "SELECT cron, workflow_name, args, missed, next_run_at, last_run_at, clock_timestamp() "
            "FROM howdah.schedules WHERE name = %s",
            (name,),
        )
        row = await cursor.fetchone()
    assert row is not None, f"no schedule {name!r}"
    keys = ("cron", "workflow", "args", "missed", "next_run_at", "last_run_at", "now")
    return dict(zip(keys, row, strict=True))


async def move_next_run(db_url: str, name: str, back: timedelta) -> datetime:
    """Pretend everything was down: the schedule's next run is ``back`` ago (on a 5-minute tick)."""
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        cursor = await conn.execute(
            "UPDATE howdah.schedules SET next_run_at = date_bin('5 minutes', clock_timestamp(), "
            "'2000-01-01T00:00:00Z') - %s WHERE name = %s RETURNING next_run_at",
            (back, name),
        )
        row = await cursor.fetchone()
    assert row is not None
    return row[0]  # type: ignore[no-any-return]


async def runs_of(db_url: str, name: str) -> list[str]:
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        cursor = await conn.execute("SELECT id FROM howdah.workflows WHERE name = %s ORDER BY id", (name,))
        return [row[0] for row in await cursor.fetchall()]


def tick_of(workflow_id: str) -> datetime:
    return datetime.fromisoformat(workflow_id.rsplit("@", 1)[1])


async def test_a_worker_records_its_schedules(scheduled: DurableApp, db_url: str) -> None:
    name = next(iter(scheduled.schedules))
    async with running(scheduled):
        await async_wait_until(lambda: _has_schedule(db_url, name), what="the schedule row")
    row = await schedule_row(db_url, name)
    assert (row["cron"], row["workflow"], row["args"], row["missed"]) == (
        "*/5 * * * *",
        name,
        {"region": "eu"},
        "catch_up",
    )
    assert row["now"] < row["next_run_at"] <= row["now"] + FIVE_MINUTES
    assert row["next_run_at"].minute % 5 == 0 and row["next_run_at"].second == 0


async def _has_schedule(db_url: str, name: str) -> bool:
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        row = await (await conn.execute("SELECT 1 FROM howdah.schedules WHERE name = %s", (name,))).fetchone()
    return row is not None


@pytest.mark.parametrize("scheduled", ["catch_up"], indirect=True)
async def test_catch_up_starts_one_run_per_missed_tick_even_with_three_workers(
    scheduled: DurableApp, db_url: str
) -> None:
    name = next(iter(scheduled.schedules))
    async with running(scheduled):  # records the schedule; its first tick is minutes away
        await async_wait_until(lambda: _has_schedule(db_url, name), what="the schedule row")
    first = await move_next_run(db_url, name, timedelta(hours=1))
    workers = [Worker(scheduled) for _ in range(3)]
    started = await asyncio.gather(*(w.fire_due_schedules() for w in workers))
    again = await asyncio.gather(*(w.fire_due_schedules() for w in workers))
    ids = await runs_of(db_url, name)
    async with running(scheduled):
        for wf in ids:
            assert await scheduled.handle(wf).result(20) == "eu"
    row = await schedule_row(db_url, name)
    ticks = sorted(tick_of(wf) for wf in ids)
    assert sum(started) == len(ids) >= 13 and sum(again) == 0
    assert ticks == [first + FIVE_MINUTES * k for k in range(len(ticks))], "a tick was missed or repeated"
    assert row["last_run_at"] == ticks[-1]
    assert row["next_run_at"] == ticks[-1] + FIVE_MINUTES > row["now"]
    assert all(wf == f"{name}@{tick.isoformat()}" for wf, tick in zip(sorted(ids, key=tick_of), ticks, strict=True))
    for wf in ids:
        assert await Side.acount(wf, "run") == 1


@pytest.mark.parametrize("scheduled", ["skip"], indirect=True)
async def test_skip_starts_only_the_latest_missed_tick(scheduled: DurableApp, db_url: str) -> None:
    name = next(iter(scheduled.schedules))
    async with running(scheduled):
        await async_wait_until(lambda: _has_schedule(db_url, name), what="the schedule row")
    first = await move_next_run(db_url, name, timedelta(hours=1))
    workers = [Worker(scheduled) for _ in range(3)]
    started = await asyncio.gather(*(w.fire_due_schedules() for w in workers))
    [wf] = await runs_of(db_url, name)
    async with running(scheduled):
        assert await scheduled.handle(wf).result(20) == "eu"
    row = await schedule_row(db_url, name)
    assert sum(started) == 1
    tick = tick_of(wf)
    assert tick >= first + timedelta(hours=1)  # the latest tick, not the first missed one
    assert row["now"] - FIVE_MINUTES < tick <= row["now"]
    assert row["last_run_at"] == tick and row["next_run_at"] == tick + FIVE_MINUTES
