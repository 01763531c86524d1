"""Fan-out / fan-in with an in-process worker: ``ctx.gather`` of steps and of child workflows, ``ctx.map`` with
bounded concurrency, and failing branches (fail the parent with the branch's error unless the workflow handles it).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from howdah.durable import (
    DurableApp,
    PermanentError,
    StepFailed,
    WorkflowContext,
    WorkflowFailed,
)

from ._helpers import FAST_RETRY, Registry, Side, async_wait_until, new_id, running

WORKFLOWS = Registry()


async def value_of(workflow_id: str, step: str, value: Any, fail: bool = False) -> Any:
    await Side.arecord(workflow_id, step)
    await asyncio.sleep(0.01)
    if fail:
        raise PermanentError(f"{step} broke")
    return value


def sync_value_of(workflow_id: str, step: str, value: Any) -> Any:
    Side.record(workflow_id, step)
    return value


async def wait_status(app: DurableApp, workflow_id: str, *statuses: str, timeout: float = 20) -> None:
    async def reached() -> bool:
        return (await app.get(workflow_id)).status in statuses

    await async_wait_until(reached, timeout=timeout, what=f"{workflow_id} to be {'/'.join(statuses)}")


# ----------------------------------------------------------------------------------------------- gather steps
@WORKFLOWS.workflow()
async def gather_steps(ctx: WorkflowContext, args: dict[str, Any]) -> list[Any]:
    wf = ctx.workflow_id
    results = await ctx.gather(
        ctx.step("a", value_of, wf, "a", "A"),
        ctx.step("b", sync_value_of, wf, "b", {"b": 2}),
        ctx.step("c", value_of, wf, "c", [3]),
    )
    await ctx.wait_for_signal("go")  # the next run replays the gather from its checkpoints
    return results


async def test_gather_of_steps_returns_results_in_order_and_replays_them(app: DurableApp) -> None:
    async with running(app):
        handle = await app.start("gather_steps", workflow_id=new_id())
        await wait_status(app, handle.workflow_id, "waiting")
        await app.signal(handle.workflow_id, "go")
        assert await handle.result(20) == ["A", {"b": 2}, [3]]
    for step in "abc":
        assert await Side.acount(handle.workflow_id, step) == 1, step


@WORKFLOWS.workflow()
async def gather_with_failure(ctx: WorkflowContext, args: dict[str, Any]) -> dict[str, Any]:
    wf = ctx.workflow_id
    branches = (
        ctx.step("fine", value_of, wf, "fine", 1),
        ctx.step("broken", value_of, wf, "broken", 2, True, retry=FAST_RETRY),
    )
    if not args.get("handle"):
        return {"results": await ctx.gather(*branches)}
    try:
        await ctx.gather(*branches)
    except StepFailed as exc:
        return {"handled": exc.step, "type": exc.error["type"]}
    raise AssertionError("the broken branch did not fail")


async def test_a_failing_branch_fails_the_parent_with_its_error(app: DurableApp) -> None:
    async with running(app):
        handle = await app.start("gather_with_failure", workflow_id=new_id())
        with pytest.raises(WorkflowFailed):
            await handle.result(20)
    error = (await app.get(handle.workflow_id)).error
    assert error is not None
    assert (error["type"], error["message"], error["step"]) == ("PermanentError", "broken broke", "broken")
    assert await Side.acount(handle.workflow_id, "fine") == 1  # the other branch still ran
    assert await Side.acount(handle.workflow_id, "broken") == 1


async def test_a_failing_branch_can_be_handled_by_the_workflow(app: DurableApp) -> None:
    async with running(app):
        handle = await app.start("gather_with_failure", {"handle": True}, workflow_id=new_id())
        assert await handle.result(20) == {"handled": "broken", "type": "PermanentError"}


# -------------------------------------------------------------------------------------------- gather children
@WORKFLOWS.workflow()
async def child(ctx: WorkflowContext, args: dict[str, Any]) -> int:
    return int(await ctx.step("work", value_of, ctx.workflow_id, "work", args["n"] * 10, args.get("fail", False)))


@WORKFLOWS.workflow()
async def parent(ctx: WorkflowContext, args: dict[str, Any]) -> list[Any]:
    handles = [await ctx.start_child("child", {"n": n, "fail": n in args.get("fail", [])}) for n in range(3)]
    return await ctx.gather(*(h.result() for h in handles))


async def test_gather_of_child_workflows(app: DurableApp) -> None:
    async with running(app, concurrency=1):  # the parent must wait (and be replayed) while its children run
        handle = await app.start("parent", workflow_id=new_id())
        assert await handle.result(20) == [0, 10, 20]
    wf = handle.workflow_id
    children = [w for w in await app.list_workflows(limit=200) if w.parent_id == wf]
    assert len(children) == 3
    assert all(c.status == "succeeded" and c.id.startswith(f"{wf}/") for c in children)
    for c in children:
        assert await Side.acount(c.id, "work") == 1
    assert (await app.get(wf)).attempts >= 2


async def test_a_failing_child_fails_the_parent_with_the_childs_error(app: DurableApp) -> None:
    async with running(app, concurrency=2):
        handle = await app.start("parent", {"fail": [1]}, workflow_id=new_id())
        with pytest.raises(WorkflowFailed):
            await handle.result(20)
    error = (await app.get(handle.workflow_id)).error
    assert error is not None and error["type"] == "WorkflowFailed"
    assert "PermanentError: work broke" in error["message"]
    assert f"{handle.workflow_id}/1" in error["message"]


@WORKFLOWS.workflow()
async def parent_of_child_calls(ctx: WorkflowContext, args: dict[str, Any]) -> list[Any]:
    return await ctx.gather(ctx.child("child", {"n": 1}), ctx.child("child", {"n": 2}))


async def test_gather_of_child_calls(app: DurableApp) -> None:
    async with running(app, concurrency=1):
        handle = await app.start("parent_of_child_calls", workflow_id=new_id())
        await async_wait_until(lambda: _done(app, handle.workflow_id), timeout=20, what="the parent to end")
    info = await app.get(handle.workflow_id)
    assert info.status == "succeeded", info.error
    assert info.result == [10, 20]


async def _done(app: DurableApp, workflow_id: str) -> bool:
    return (await app.get(workflow_id)).status in ("succeeded", "failed", "cancelled")


# ----------------------------------------------------------------------------------------------------- map
RUNNING: dict[str, dict[str, int]] = {}


async def square_once_all_slots_busy(item: dict[str, Any]) -> int:
    """Holds its slot until ``concurrency`` items have run at once, so a map that runs fewer at a time times out
    here, and records the most items ever running together."""
    wf, limit = item["wf"], item["limit"]
    state = RUNNING.setdefault(wf, {"active": 0, "peak": 0})
    state["active"] += 1
    state["peak"] = max(state["peak"], state["active"])
    try:
        deadline = time.monotonic() + 10
        while state["peak"] < limit:
            if time.monotonic() > deadline:
                raise PermanentError(f"never {limit} items at once (peak {state['peak']})")
            await asyncio.sleep(0.005)
        await Side.arecord(wf, f"item {item['n']}")
        if item["n"] in item["fail"]:
            raise PermanentError(f"item {item['n']} broke")
        return int(item["n"]) ** 2
    finally:
        state["active"] -= 1


@WORKFLOWS.workflow()
async def mapper(ctx: WorkflowContext, args: dict[str, Any]) -> Any:
    items = [{"wf": ctx.workflow_id, "n": n, "limit": args["limit"], "fail": args.get("fail", [])} for n in range(9)]
    try:
        squares = await ctx.map(square_once_all_slots_busy, items, concurrency=args["limit"], name="sq")
    except StepFailed as exc:
        if not args.get("handle"):
            raise
        return {"handled": exc.step}
    await ctx.wait_for_signal("go")
    return squares


async def test_map_runs_at_most_concurrency_steps_at_once(app: DurableApp) -> None:
    async with running(app):
        handle = await app.start("mapper", {"limit": 3}, workflow_id=new_id())
        await wait_status(app, handle.workflow_id, "waiting")
        await app.signal(handle.workflow_id, "go")
        assert await handle.result(20) == [n * n for n in range(9)]
    assert RUNNING[handle.workflow_id]["peak"] == 3
    for n in range(9):
        assert await Side.acount(handle.workflow_id, f"item {n}") == 1
    names = [s.name for s in await app.steps(handle.workflow_id) if s.kind == "step"]
    assert names == [f"sq[{n}]" for n in range(9)]


async def test_a_failing_map_item_fails_the_parent_unless_handled(app: DurableApp) -> None:
    async with running(app):
        failing = await app.start("mapper", {"limit": 2, "fail": [4]}, workflow_id=new_id())
        handled = await app.start("mapper", {"limit": 2, "fail": [4], "handle": True}, workflow_id=new_id())
        with pytest.raises(WorkflowFailed):
            await failing.result(20)
        assert await handled.result(20) == {"handled": "sq[4]"}
    error = (await app.get(failing.workflow_id)).error
    assert error is not None
    assert (error["type"], error["step"], error["message"]) == ("PermanentError", "sq[4]", "item 4 broke")
