"""At most one active workflow per key: ``on_conflict="reject"`` raises :class:`WorkflowConflict` (from Python
and, as SQLSTATE HW409, from SQL) and ``on_conflict="queue"`` runs them one after another in start order."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import psycopg
import pytest

from howdah.durable import DurableApp, PermanentError, WorkflowConflict, WorkflowContext, WorkflowFailed

from ._helpers import FAST_RETRY, Registry, Side, async_wait_until, new_id, running

WORKFLOWS = Registry()


async def gated(workflow_id: str, step: str) -> str:
    await Side.arecord(workflow_id, step, "start")
    await Side.wait_gate(workflow_id, step)
    await Side.arecord(workflow_id, step, "end")
    return step


async def mark(workflow_id: str, step: str, fail: bool = False) -> str:
    await Side.arecord(workflow_id, step)
    await asyncio.sleep(0.01)  # widen the window in which an overlap would show
    if fail:
        raise PermanentError(f"{step} broke")
    return step


@WORKFLOWS.workflow(key="instance_id", on_conflict="reject")
async def exclusive(ctx: WorkflowContext, args: dict[str, Any]) -> str:
    return await ctx.step("work", gated, ctx.workflow_id, "work")


@WORKFLOWS.workflow(key=lambda args: f"{args['org']}/{args['name']}", on_conflict="reject")
async def exclusive_by_function(ctx: WorkflowContext, args: dict[str, Any]) -> str:
    return await ctx.step("work", gated, ctx.workflow_id, "work")


@WORKFLOWS.workflow(key="instance_id", on_conflict="queue")
async def serial(ctx: WorkflowContext, args: dict[str, Any]) -> str:
    wf = ctx.workflow_id
    await ctx.step("enter", mark, wf, "enter")
    if args.get("gate"):
        await ctx.step("hold", gated, wf, "hold")
    await ctx.step("leave", mark, wf, "leave", args.get("fail", False), retry=FAST_RETRY)
    return wf


async def wait_status(app: DurableApp, workflow_id: str, *statuses: str, timeout: float = 20) -> None:
    async def reached() -> bool:
        return (await app.get(workflow_id)).status in statuses

    await async_wait_until(reached, timeout=timeout, what=f"{workflow_id} to be {'/'.join(statuses)}")


async def workflow_count(db_url: str) -> int:
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        row = await (await conn.execute("SELECT count(*) FROM howdah.workflows")).fetchone()
    assert row is not None
    return int(row[0])


# ------------------------------------------------------------------------------------------------------ reject
async def test_reject_raises_workflow_conflict_naming_the_active_workflow(app: DurableApp, db_url: str) -> None:
    async with running(app):
        first = await app.start("exclusive", {"instance_id": "i-1"}, workflow_id=new_id())
        before = await workflow_count(db_url)
        with pytest.raises(WorkflowConflict) as conflict:
            await app.start("exclusive", {"instance_id": "i-1"}, workflow_id=new_id())
        assert conflict.value.active_id == first.workflow_id
        assert conflict.value.key == "i-1"
        assert await workflow_count(db_url) == before  # nothing written for the refused start
        other = await app.start("exclusive", {"instance_id": "i-2"}, workflow_id=new_id())  # another key: fine
        again = await app.start("exclusive", {"instance_id": "i-1"}, workflow_id=first.workflow_id)
        assert again.created is False  # the same id is idempotent, not a conflict

        for handle in (first, other):
            Side.open_gate(handle.workflow_id, "work")
            await handle.result(20)
        after = await app.start("exclusive", {"instance_id": "i-1"}, workflow_id=new_id())  # key free again
        Side.open_gate(after.workflow_id, "work")
        assert await after.result(20) == "work"


async def test_reject_from_sql_raises_hw409(app: DurableApp, db_url: str) -> None:
    async with running(app):
        first = await app.start("exclusive", {"instance_id": "i-sql"}, workflow_id=new_id())
        async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
            with pytest.raises(psycopg.Error) as raised:
                await conn.execute("SELECT howdah.start_workflow('exclusive', '{\"instance_id\": \"i-sql\"}')")
        assert raised.value.sqlstate == "HW409"
        assert raised.value.diag.message_detail == f"active workflow: {first.workflow_id}"
        Side.open_gate(first.workflow_id, "work")
        await first.result(20)


async def test_a_key_function_is_applied_to_the_args(app: DurableApp) -> None:
    async with running(app):
        first = await app.start("exclusive_by_function", {"org": "acme", "name": "db1"}, workflow_id=new_id())
        with pytest.raises(WorkflowConflict) as conflict:
            await app.start("exclusive_by_function", {"org": "acme", "name": "db1", "x": 1})
        assert conflict.value.key == "acme/db1" and conflict.value.active_id == first.workflow_id
        other = await app.start("exclusive_by_function", {"org": "acme", "name": "db2"}, workflow_id=new_id())
        assert (await app.get(first.workflow_id)).key == "acme/db1"
        for handle in (first, other):
            Side.open_gate(handle.workflow_id, "work")
            await handle.result(20)


# ------------------------------------------------------------------------------------------------------- queue
async def intervals(db_url: str, ids: list[str]) -> list[tuple[str, Any, Any]]:
    """(workflow id, enter time, leave time), in order of entering."""
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        cursor = await conn.execute(
            "SELECT e.workflow_id, e.at, l.at FROM effects e JOIN effects l USING (workflow_id) "
            "WHERE e.step = 'enter' AND l.step = 'leave' AND e.workflow_id = ANY(%s) ORDER BY e.at",
            (ids,),
        )
        return [(str(r[0]), r[1], r[2]) for r in await cursor.fetchall()]


async def test_queue_runs_one_after_another_in_start_order(app: DurableApp, db_url: str) -> None:
    async with running(app, concurrency=8):
        handles = [
            await app.start("serial", {"instance_id": "i-q", "n": n}, workflow_id=new_id(f"q{n}")) for n in range(6)
        ]
        bystander = await app.start("serial", {"instance_id": "i-other"}, workflow_id=new_id("other"))
        assert all(h.created for h in handles)
        results = [await h.result(30) for h in handles]
        await bystander.result(20)
    ids = [h.workflow_id for h in handles]
    assert results == ids
    runs = await intervals(db_url, ids)
    assert [r[0] for r in runs] == ids, "not run in start order"
    for (prev_id, _, prev_leave), (next_id, next_enter, _) in itertools.pairwise(runs):
        assert prev_leave < next_enter, f"{next_id} entered before {prev_id} left"


async def test_a_queued_workflow_waits_pending_and_takes_over_when_the_active_one_ends(app: DurableApp) -> None:
    async with running(app):
        active = await app.start("serial", {"instance_id": "i-w", "gate": True}, workflow_id=new_id("active"))
        queued = await app.start("serial", {"instance_id": "i-w"}, workflow_id=new_id("queued"))
        cancelled = await app.start("serial", {"instance_id": "i-w"}, workflow_id=new_id("dropped"))
        last = await app.start("serial", {"instance_id": "i-w"}, workflow_id=new_id("last"))
        await async_wait_until(lambda: Side.acount(active.workflow_id, "hold", "start"), what="the active one")
        assert (await queued.status()).status == "pending"
        assert await cancelled.cancel() == 1  # a queued workflow can be cancelled; the queue moves past it
        assert await Side.acount(queued.workflow_id) == 0
        Side.open_gate(active.workflow_id, "hold")
        assert await active.result(20) == active.workflow_id
        assert await queued.result(20) == queued.workflow_id
        assert await last.result(20) == last.workflow_id
    assert (await cancelled.status()).status == "cancelled"
    assert await Side.acount(cancelled.workflow_id) == 0


async def test_a_failed_or_cancelled_holder_releases_its_key(app: DurableApp) -> None:
    async with running(app):
        failing = await app.start("serial", {"instance_id": "i-f", "fail": True}, workflow_id=new_id("failing"))
        after_failure = await app.start("serial", {"instance_id": "i-f"}, workflow_id=new_id("next"))
        with pytest.raises(WorkflowFailed):
            await failing.result(20)
        assert await after_failure.result(20) == after_failure.workflow_id

        holder = await app.start("serial", {"instance_id": "i-c", "gate": True}, workflow_id=new_id("holder"))
        after_cancel = await app.start("serial", {"instance_id": "i-c"}, workflow_id=new_id("next"))
        await async_wait_until(lambda: Side.acount(holder.workflow_id, "hold", "start"), what="the holder")
        await holder.cancel()
        Side.open_gate(holder.workflow_id, "hold")
        assert await after_cancel.result(20) == after_cancel.workflow_id
    assert (await holder.status()).status == "cancelled"
