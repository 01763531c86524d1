"""Step timeouts (``ctx.step(…, timeout=…)``: ``StepTimeout``, retried like a transient error) and workflow
deadlines (``app.start(…, timeout=…)``, ``howdah.start_workflow(…, timeout => …)``: the workflow and its
children are cancelled once it passes)."""

from __future__ import annotations

import asyncio
from typing import Any

from howdah.durable import DurableApp, RetryPolicy, StepFailed, StepTimeout, WorkflowCancelled, WorkflowContext

from ._helpers import Registry, Side, async_wait_until, new_id, running, scalar

WORKFLOWS = Registry()
QUICK = RetryPolicy(max_attempts=3, initial_delay=0.01, max_delay=0.02)


async def slow_unless_retried(workflow_id: str, step: str, hang_attempts: int) -> str:
    await Side.arecord(workflow_id, step, "start")
    if await Side.acount(workflow_id, step, "start") <= hang_attempts:
        await asyncio.sleep(60)
    return "done"


@WORKFLOWS.workflow()
async def timed_step(ctx: WorkflowContext, args: dict[str, Any]) -> Any:
    try:
        return await ctx.step(
            "slow", slow_unless_retried, ctx.workflow_id, "slow", args["hang"], retry=QUICK, timeout=0.2
        )
    except StepFailed as exc:
        return {"failed": exc.error["type"], "attempts": exc.error["attempts"]}


async def test_a_step_past_its_timeout_is_retried_then_succeeds(app: DurableApp) -> None:
    async with running(app):
        handle = await app.start(timed_step, {"hang": 1})
        assert await handle.result(timeout=20) == "done"
    assert await Side.acount(handle.workflow_id, "slow", "start") == 2
    assert [s.attempts for s in await app.steps(handle.workflow_id)] == [2]


async def test_a_step_that_always_times_out_fails_with_step_timeout(app: DurableApp) -> None:
    async with running(app):
        handle = await app.start(timed_step, {"hang": 99})
        assert await handle.result(timeout=20) == {"failed": "StepTimeout", "attempts": 3}
    assert await Side.acount(handle.workflow_id, "slow", "start") == 3


def test_step_timeout_is_transient() -> None:
    assert RetryPolicy().retryable(StepTimeout("slow", 1.0))


@WORKFLOWS.workflow()
async def waits_for_child(ctx: WorkflowContext, args: dict[str, Any]) -> Any:
    return await ctx.child("never_signalled", {})


@WORKFLOWS.workflow()
async def never_signalled(ctx: WorkflowContext, args: dict[str, Any]) -> Any:
    return await ctx.wait_for_signal("never")


@WORKFLOWS.workflow()
async def long_step(ctx: WorkflowContext, args: dict[str, Any]) -> Any:
    return await ctx.step("long", slow_unless_retried, ctx.workflow_id, "long", 99)


async def wait_done(app: DurableApp, workflow_id: str) -> None:
    async def done() -> bool:
        return (await app.get(workflow_id)).done

    await async_wait_until(done, timeout=20, what=f"{workflow_id} to finish")


async def test_a_waiting_workflow_past_its_deadline_is_cancelled_with_its_children(app: DurableApp) -> None:
    async with running(app):
        handle = await app.start(waits_for_child, {}, timeout=1.0)
        child_id = f"{handle.workflow_id}/0"

        async def child_waits() -> bool:
            return any(w.id == child_id and w.status == "waiting" for w in await app.list_workflows())

        await async_wait_until(child_waits, timeout=20, what="the child to wait")
        try:
            await handle.result(timeout=20)
            raise AssertionError("the workflow outlived its deadline")
        except WorkflowCancelled:
            pass
        await wait_done(app, child_id)
    parent, child = await app.get(handle.workflow_id), await app.get(child_id)
    assert (parent.status, parent.error and parent.error["type"]) == ("cancelled", "DeadlineExceeded")
    assert child.status == "cancelled"


async def test_a_running_step_past_the_workflow_deadline_is_cut_short(app: DurableApp) -> None:
    async with running(app):
        handle = await app.start(long_step, {}, timeout=0.5)
        await wait_done(app, handle.workflow_id)
    info = await app.get(handle.workflow_id)
    assert (info.status, info.error and info.error["type"]) == ("cancelled", "DeadlineExceeded")
    assert await Side.acount(handle.workflow_id, "long", "start") == 1  # not retried past the deadline
    assert await app.steps(handle.workflow_id) == []


async def test_sql_starts_take_a_timeout(app: DurableApp, db_url: str) -> None:
    async with running(app):
        await app.register()
        wf = new_id("sql-deadline")
        scalar(
            db_url,
            "SELECT id FROM howdah.start_workflow('never_signalled', '{}', workflow_id => %s, "
            "timeout => interval '0.5 seconds')",
            (wf,),
        )
        await wait_done(app, wf)
    info = await app.get(wf)
    assert (info.status, info.error and info.error["type"]) == ("cancelled", "DeadlineExceeded")
