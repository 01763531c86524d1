"""Cancellation (at the next step boundary, cascading to children), retrying failed or cancelled workflows from
their last successful step, and retention (purging old finished workflows in batches)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import psycopg
import pytest

from howdah.durable import (
    DurableApp,
    DurableError,
    PermanentError,
    WorkflowCancelled,
    WorkflowContext,
    WorkflowFailed,
)

from ._helpers import FAST_RETRY, Registry, Side, async_wait_until, gated, mark, new_id, running

WORKFLOWS = Registry()


async def fails_until_fixed(workflow_id: str, step: str) -> str:
    await Side.arecord(workflow_id, step)
    async with await psycopg.AsyncConnection.connect(Side.dsn, autocommit=True) as conn:
        cursor = await conn.execute("SELECT 1 FROM gates WHERE workflow_id = %s AND point = 'fixed'", (workflow_id,))
        if not await cursor.fetchone():
            raise PermanentError("the downstream service rejected us")
    return step


async def wait_status(app: DurableApp, workflow_id: str, *statuses: str, timeout: float = 20) -> None:
    async def reached() -> bool:
        return (await app.get(workflow_id)).status in statuses

    await async_wait_until(reached, timeout=timeout, what=f"{workflow_id} to be {'/'.join(statuses)}")


@WORKFLOWS.workflow()
async def three_steps(ctx: WorkflowContext, args: dict[str, Any]) -> list[str]:
    wf, out = ctx.workflow_id, []
    out.append(await ctx.step("s1", gated if args.get("gate_s1") else mark, wf, "s1"))
    if args.get("sleep"):
        await ctx.sleep(args["sleep"])
    out.append(await ctx.step("s2", fails_until_fixed if args.get("s2_fails") else mark, wf, "s2", retry=FAST_RETRY))
    out.append(await ctx.step("s3", mark, wf, "s3"))
    return out


@WORKFLOWS.workflow()
async def parent_of_gated(ctx: WorkflowContext, args: dict[str, Any]) -> Any:
    handle = await ctx.start_child("three_steps", {"gate_s1": True})
    return await handle.result()


# ------------------------------------------------------------------------------------------------ cancellation
async def test_cancel_stops_a_running_workflow_at_the_next_step_boundary(app: DurableApp) -> None:
    async with running(app):
        handle = await app.start("three_steps", {"gate_s1": True}, workflow_id=new_id())
        wf = handle.workflow_id
        await async_wait_until(lambda: Side.acount(wf, "s1", "start"), what="s1 to start")
        assert await handle.cancel() == 1
        assert (await app.get(wf)).status == "running"  # flagged: it stops when s1 ends
        Side.open_gate(wf, "s1")
        with pytest.raises(WorkflowCancelled):
            await handle.result(20)
    info = await app.get(wf)
    assert info.status == "cancelled"
    assert info.error is not None and info.error["type"] == "Cancelled"
    assert await Side.acount(wf, "s1", "end") == 1
    assert await Side.acount(wf, "s2") == 0 and await Side.acount(wf, "s3") == 0
    assert [s.name for s in await app.steps(wf)] == ["s1"]  # the step that was running is kept

    # Retrying the cancelled workflow resumes after s1.
    async with running(app):
        again = await app.retry(wf)
        assert await again.result(20) == ["s1", "s2", "s3"]
    assert [await Side.acount(wf, s, p) for s, p in [("s1", "end"), ("s2", "run"), ("s3", "run")]] == [1, 1, 1]


async def test_cancel_cascades_to_children(app: DurableApp) -> None:
    async with running(app):
        handle = await app.start("parent_of_gated", workflow_id=new_id())
        wf, child = handle.workflow_id, f"{handle.workflow_id}/0"
        await async_wait_until(lambda: Side.acount(child, "s1", "start"), what="the child's first step")
        await wait_status(app, wf, "waiting")
        assert await app.cancel(wf) == 2
        assert (await app.get(wf)).status == "cancelled"  # not executing: stopped at once
        Side.open_gate(child, "s1")
        await wait_status(app, child, "cancelled")
    assert await Side.acount(child, "s2") == 0
    assert (await app.get(child)).parent_id == wf


async def test_cancel_of_a_sleeping_or_pending_workflow_is_immediate(app: DurableApp) -> None:
    pending = await app.start("three_steps", workflow_id=new_id())  # no worker yet
    assert await pending.cancel() == 1
    assert (await pending.status()).status == "cancelled"
    async with running(app):
        sleeper = await app.start("three_steps", {"sleep": 30}, workflow_id=new_id())
        await wait_status(app, sleeper.workflow_id, "sleeping")
        assert await sleeper.cancel() == 1
        with pytest.raises(WorkflowCancelled):
            await sleeper.result(5)
        done = await app.start("three_steps", workflow_id=new_id())
        await done.result(20)  # the worker went on: the cancelled ones left nothing behind in its way
    assert await Side.acount(pending.workflow_id) == 0
    assert await Side.acount(sleeper.workflow_id, "s2") == 0
    assert await done.cancel() == 0  # finished: nothing to cancel
    assert (await done.status()).status == "succeeded"


@WORKFLOWS.workflow()
async def approval_after_pause(ctx: WorkflowContext, args: dict[str, Any]) -> Any:
    wf = ctx.workflow_id
    await ctx.step("s1", mark, wf, "s1")
    await Side.arecord(wf, "paused", "pause")  # workflow code between two boundaries, as in any replay
    await Side.wait_gate(wf, "pause")
    return await ctx.wait_for_signal("approval")


async def test_cancel_before_a_signal_wait_stops_the_workflow(app: DurableApp) -> None:
    async with running(app):
        handle = await app.start("approval_after_pause", workflow_id=new_id())
        wf = handle.workflow_id
        await async_wait_until(lambda: Side.acount(wf, "paused"), what="the run to pause after s1")
        assert await handle.cancel() == 1  # running: flagged
        Side.open_gate(wf, "pause")
        await async_wait_until(
            lambda: _status_in(app, wf, "cancelled", "succeeded", "failed"), timeout=5, what="the cancel to land"
        )
    assert (await app.get(wf)).status == "cancelled"


async def _status_in(app: DurableApp, workflow_id: str, *statuses: str) -> bool:
    return (await app.get(workflow_id)).status in statuses


# ------------------------------------------------------------------------------------------------------ retry
async def test_retry_of_a_failed_workflow_resumes_after_the_last_successful_step(app: DurableApp) -> None:
    async with running(app):
        handle = await app.start("three_steps", {"s2_fails": True}, workflow_id=new_id())
        wf = handle.workflow_id
        with pytest.raises(WorkflowFailed):
            await handle.result(20)
        failed = await app.get(wf)
        assert failed.error is not None and failed.error["step"] == "s2"
        Side.open_gate(wf, "fixed")
        again = await app.retry(wf)
        assert again.workflow_id == wf
        assert await again.result(20) == ["s1", "s2", "s3"]
    assert await Side.acount(wf, "s1") == 1  # not repeated
    assert await Side.acount(wf, "s2") == 2  # the failed attempt and the successful one
    assert await Side.acount(wf, "s3") == 1
    info = await app.get(wf)
    assert info.status == "succeeded" and info.error is None


async def test_only_failed_or_cancelled_workflows_can_be_retried(app: DurableApp) -> None:
    async with running(app):
        handle = await app.start("three_steps", workflow_id=new_id())
        await handle.result(20)
    with pytest.raises(DurableError, match="only failed or cancelled"):
        await app.retry(handle.workflow_id)


# -------------------------------------------------------------------------------------------------- retention
async def age(db_url: str, ids: list[str], days: int) -> None:
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        await conn.execute(
            "UPDATE howdah.workflows SET finished_at = finished_at - make_interval(days => %s) WHERE id = ANY(%s)",
            (days, ids),
        )


async def existing(db_url: str, ids: list[str]) -> set[str]:
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        cursor = await conn.execute("SELECT id FROM howdah.workflows WHERE id = ANY(%s)", (ids,))
        return {row[0] for row in await cursor.fetchall()}


async def test_purge_deletes_old_finished_workflows_in_batches_and_keeps_the_rest(app: DurableApp, db_url: str) -> None:
    async with running(app):
        old = [await app.start("three_steps", workflow_id=new_id("old")) for _ in range(5)]
        recent = await app.start("three_steps", workflow_id=new_id("recent"))
        parent = await app.start("parent_of_gated", workflow_id=new_id("family"))
        Side.open_gate(f"{parent.workflow_id}/0", "s1")
        for handle in [*old, recent, parent]:
            await handle.result(20)
        active = await app.start("three_steps", {"sleep": 600}, workflow_id=new_id("active"))
        await wait_status(app, active.workflow_id, "sleeping")
    old_ids = [h.workflow_id for h in old] + [parent.workflow_id, f"{parent.workflow_id}/0"]
    await age(db_url, old_ids, 3)
    await age(db_url, [active.workflow_id], 3)  # no finished_at: nothing to age, it stays active

    assert await app.store.purge(timedelta(days=1).total_seconds(), 2) == 2  # one batch
    assert await app.purge_finished(timedelta(days=1), batch=2) == 4  # the rest, batch after batch
    everyone = [*old_ids, recent.workflow_id, active.workflow_id]
    assert await existing(db_url, everyone) == {recent.workflow_id, active.workflow_id}
    assert await app.steps(old[0].workflow_id) == []
    assert await app.purge_finished(timedelta(days=1)) == 0


async def test_the_worker_applies_the_apps_retention(db_url: str, queue_name: str) -> None:
    app = DurableApp(db_url, queue=f"{queue_name}_r", lease=5, retention=timedelta(days=1))
    WORKFLOWS.install(app)
    async with app:
        async with running(app):
            handles = [await app.start("three_steps", workflow_id=new_id("kept")) for _ in range(2)]
            for handle in handles:
                await handle.result(20)
        await age(db_url, [handles[0].workflow_id], 2)
        async with running(app):  # the retention pass runs when the worker starts
            await async_wait_until(lambda: _gone(db_url, handles[0]), what="the aged workflow to be purged")
        assert await existing(db_url, [h.workflow_id for h in handles]) == {handles[1].workflow_id}


async def _gone(db_url: str, handle: Any) -> bool:
    return not await existing(db_url, [handle.workflow_id])
