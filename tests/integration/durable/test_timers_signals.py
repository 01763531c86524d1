"""Durable timers and signals with an in-process worker: a sleeping workflow frees its worker, signals carry
payloads, time out, and are kept when they arrive before the workflow waits; bad signals are named errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from howdah.durable import (
    DurableApp,
    NotSerializable,
    WorkflowContext,
    WorkflowFinished,
    WorkflowNotFound,
)

from ._helpers import Registry, Side, async_wait_until, gated, mark, new_id, running

WORKFLOWS = Registry()


async def wait_status(app: DurableApp, workflow_id: str, *statuses: str, timeout: float = 20) -> None:
    async def reached() -> bool:
        return (await app.get(workflow_id)).status in statuses

    await async_wait_until(reached, timeout=timeout, what=f"{workflow_id} to be {'/'.join(statuses)}")


# --------------------------------------------------------------------------------------------------- sleeping
@WORKFLOWS.workflow()
async def sleeper(ctx: WorkflowContext, args: dict[str, Any]) -> str:
    await ctx.step("before", mark, ctx.workflow_id, "before")
    await ctx.sleep(args["seconds"])
    await ctx.step("after", mark, ctx.workflow_id, "after")
    return "rested"


@WORKFLOWS.workflow()
async def quick(ctx: WorkflowContext, args: dict[str, Any]) -> str:
    return await ctx.step("only", mark, ctx.workflow_id, "only")


async def test_a_sleeping_workflow_leaves_its_worker_free(app: DurableApp) -> None:
    async with running(app, concurrency=1):  # one slot: the quick workflow can only run if the sleeper left it
        slow = await app.start("sleeper", {"seconds": 3}, workflow_id=new_id())
        await wait_status(app, slow.workflow_id, "sleeping")
        info = await app.get(slow.workflow_id)
        assert info.wake_at is not None and info.wake_at > info.updated_at
        fast = await app.start("quick", workflow_id=new_id())
        assert await fast.result(10) == "only"
        assert (await app.get(slow.workflow_id)).status == "sleeping"
        assert await Side.acount(slow.workflow_id, "after") == 0
        assert await slow.result(20) == "rested"
    assert await Side.acount(slow.workflow_id, "before") == 1
    assert await Side.acount(slow.workflow_id, "after") == 1
    sleep_step = next(s for s in await app.steps(slow.workflow_id) if s.kind == "sleep")
    assert sleep_step.result is not None
    assert datetime.fromisoformat(sleep_step.result["value"]) <= datetime.now(UTC)


@WORKFLOWS.workflow()
async def sleeps_until(ctx: WorkflowContext, args: dict[str, Any]) -> str:
    await ctx.sleep_until(datetime.fromisoformat(args["when"]))
    return "woke"


async def test_sleep_until_a_past_instant_does_not_wait(app: DurableApp) -> None:
    async with running(app):
        past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
        handle = await app.start("sleeps_until", {"when": past}, workflow_id=new_id())
        assert await handle.result(10) == "woke"


# ---------------------------------------------------------------------------------------------------- signals
@WORKFLOWS.workflow()
async def approval(ctx: WorkflowContext, args: dict[str, Any]) -> dict[str, Any]:
    wf = ctx.workflow_id
    if args.get("gate_first"):
        await ctx.step("prepare", gated, wf, "prepare")
    decision = await ctx.wait_for_signal("decision", timeout=args.get("timeout"))
    await ctx.step("after", mark, wf, "after")
    return {"decision": decision}


@pytest.mark.parametrize("timeout", [None, 60], ids=["no-timeout", "before-the-timeout"])
async def test_a_signal_delivers_its_payload(app: DurableApp, timeout: int | None) -> None:
    async with running(app):
        handle = await app.start("approval", {"timeout": timeout}, workflow_id=new_id())
        await wait_status(app, handle.workflow_id, "waiting")
        assert (await app.get(handle.workflow_id)).waiting_for is not None
        assert await app.signal(handle.workflow_id, "unrelated", 1) > 0  # wakes it; it waits again
        await async_wait_until(lambda: _waiting_again(app, handle.workflow_id), what="the replay to wait again")
        await app.signal(handle.workflow_id, "decision", {"approved": True, "by": "ops"})
        assert await handle.result(20) == {"decision": {"approved": True, "by": "ops"}}
    assert await Side.acount(handle.workflow_id, "after") == 1


async def _waiting_again(app: DurableApp, workflow_id: str) -> bool:
    info = await app.get(workflow_id)
    return info.status == "waiting" and info.attempts >= 2


async def test_a_signal_does_not_hand_out_a_message_a_worker_holds(app: DurableApp, db_url: str) -> None:
    async with running(app):
        handle = await app.start("approval", workflow_id=new_id())
        await wait_status(app, handle.workflow_id, "waiting")
    # No worker from here on; the test plays one.
    await app.signal(handle.workflow_id, "unrelated", 1)  # wakes it: its message becomes visible
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        cursor = await conn.execute("SELECT message FROM pgmq.read(%s, 30, 1)", (app.queue_name,))
        held = await cursor.fetchall()
        assert held == [({"workflow_id": handle.workflow_id},)]  # read with a 30 s lease, not claimed yet
        await app.signal(handle.workflow_id, "decision", "yes")  # arrives between the read and the claim
        cursor = await conn.execute("SELECT message FROM pgmq.read(%s, 30, 1)", (app.queue_name,))
        assert await cursor.fetchall() == [], "the held message was handed out again: two runs of one workflow"


async def test_waiting_for_a_signal_times_out_with_none(app: DurableApp) -> None:
    async with running(app):
        handle = await app.start("approval", {"timeout": 1}, workflow_id=new_id())
        assert await handle.result(20) == {"decision": None}
    signal_step = next(s for s in await app.steps(handle.workflow_id) if s.kind == "signal")
    assert signal_step.result == {"payload": None, "timed_out": True}


async def test_a_signal_sent_before_the_workflow_waits_is_received(app: DurableApp) -> None:
    async with running(app):
        handle = await app.start("approval", {"gate_first": True}, workflow_id=new_id())
        wf = handle.workflow_id
        await async_wait_until(lambda: Side.acount(wf, "prepare", "start"), what="the first step to run")
        await app.signal(wf, "decision", "early")  # the workflow is still in its first step
        Side.open_gate(wf, "prepare")
        assert await handle.result(20) == {"decision": "early"}


async def test_a_signal_sent_from_sql_wakes_the_workflow(app: DurableApp, db_url: str) -> None:
    async with running(app):
        handle = await app.start("approval", workflow_id=new_id())
        await wait_status(app, handle.workflow_id, "waiting")
        async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
            await conn.execute(
                "SELECT howdah.send_signal(%s, 'decision', %s::jsonb)", (handle.workflow_id, '{"via": "sql"}')
            )
        assert await handle.result(20) == {"decision": {"via": "sql"}}


async def test_signals_to_finished_or_unknown_workflows_are_named_errors(app: DurableApp) -> None:
    async with running(app):
        handle = await app.start("quick", workflow_id=new_id())
        await handle.result(10)
    with pytest.raises(WorkflowFinished):
        await app.signal(handle.workflow_id, "decision", 1)
    with pytest.raises(WorkflowNotFound):
        await app.signal(new_id("missing"), "decision", 1)
    with pytest.raises(NotSerializable):
        await app.signal(handle.workflow_id, "decision", {1, 2})
    assert await Side.acount(handle.workflow_id, "only") == 1


@WORKFLOWS.workflow()
async def collector(ctx: WorkflowContext, args: dict[str, Any]) -> list[Any]:
    return [await ctx.wait_for_signal("item") for _ in range(3)]


async def test_signals_of_one_name_are_taken_once_each_in_send_order(app: DurableApp) -> None:
    handle = await app.start("collector", workflow_id=new_id())
    for n in range(4):  # all sent before any worker runs it; the fourth stays unconsumed
        await app.signal(handle.workflow_id, "item", {"n": n})
    async with running(app):
        assert await handle.result(20) == [{"n": 0}, {"n": 1}, {"n": 2}]
    with pytest.raises(WorkflowFinished):
        await app.signal(handle.workflow_id, "item", {"n": 4})


@WORKFLOWS.workflow()
async def two_signals(ctx: WorkflowContext, args: dict[str, Any]) -> list[Any]:
    wf = ctx.workflow_id
    _, first, second = await ctx.gather(
        ctx.step("prepare", gated, wf, "prepare"), ctx.wait_for_signal("a"), ctx.wait_for_signal("b")
    )
    return [first, second]


async def test_gathered_signals_sent_while_the_workflow_runs_still_wake_it(app: DurableApp) -> None:
    async with running(app):
        handle = await app.start("two_signals", workflow_id=new_id())
        wf = handle.workflow_id
        await async_wait_until(lambda: Side.acount(wf, "prepare", "start"), what="the gathered step to run")
        await app.signal(wf, "a", 1)  # both arrive while the run is still executing its step
        await app.signal(wf, "b", 2)
        Side.open_gate(wf, "prepare")
        await async_wait_until(lambda: _ended(app, wf), timeout=5, what="the workflow to take both signals")
        assert await handle.result(1) == [1, 2]


async def _ended(app: DurableApp, workflow_id: str) -> bool:
    return (await app.get(workflow_id)).status in ("succeeded", "failed", "cancelled")
