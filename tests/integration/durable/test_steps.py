"""Steps against a real Postgres and an in-process worker: checkpoints and replay, retries and failures,
determinism (recorded time/randomness, non-determinism detection), duplicate names and non-JSON results.

Every step body writes a row to ``effects`` when it runs, so "ran once" is a count in SQL. A workflow that
waits for a signal ends its run there; the signal starts a new run that replays everything before it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest

from howdah.durable import (
    DurableApp,
    PermanentError,
    RetryPolicy,
    StepFailed,
    TransientError,
    WorkflowContext,
    WorkflowFailed,
)

from ._helpers import FAST_RETRY, Registry, Side, async_wait_until, new_id, running

WORKFLOWS = Registry()


class CustomGlitch(Exception):
    """A user exception type made retryable through ``RetryPolicy.retry_on``."""


EXCEPTIONS: dict[str, type[BaseException]] = {
    "transient": TransientError,
    "permanent": PermanentError,
    "custom": CustomGlitch,
    "key": KeyError,
    "exception": Exception,
}


async def async_effect(workflow_id: str, step: str) -> str:
    await Side.arecord(workflow_id, step)
    return f"{step}: async"


def sync_effect(workflow_id: str, step: str) -> dict[str, Any]:
    Side.record(workflow_id, step)
    return {"step": step, "sync": True}


async def echo(value: Any) -> Any:
    return value


async def wait_status(app: DurableApp, workflow_id: str, *statuses: str, timeout: float = 20) -> None:
    async def reached() -> bool:
        return (await app.get(workflow_id)).status in statuses

    await async_wait_until(reached, timeout=timeout, what=f"{workflow_id} to be {'/'.join(statuses)}")


# ------------------------------------------------------------------------------------- checkpoint and replay
@WORKFLOWS.workflow()
async def replayed(ctx: WorkflowContext, args: dict[str, Any]) -> dict[str, Any]:
    wf = ctx.workflow_id
    first = await ctx.step("async step", async_effect, wf, "async step")
    second = await ctx.step("sync step", sync_effect, wf, "sync step")
    go = await ctx.wait_for_signal("go")  # this run ends here; the signal's run replays both steps above
    third = await ctx.step("after", async_effect, wf, "after")
    return {"first": first, "second": second, "go": go, "third": third}


async def test_steps_run_once_and_replays_return_the_checkpoint(app: DurableApp) -> None:
    async with running(app):
        handle = await app.start("replayed", workflow_id=new_id())
        wf = handle.workflow_id
        await wait_status(app, wf, "waiting")
        assert await Side.acount(wf, "async step") == 1
        assert await Side.acount(wf, "sync step") == 1
        await app.signal(wf, "go", {"n": 1})
        result = await handle.result(20)
    assert result == {
        "first": "async step: async",
        "second": {"step": "sync step", "sync": True},
        "go": {"n": 1},
        "third": "after: async",
    }
    # The signal's run replayed the first two steps from their checkpoints instead of running them again.
    assert (await app.get(wf)).attempts >= 2
    for step in ("async step", "sync step", "after"):
        assert await Side.acount(wf, step) == 1, step
    recorded = {s.name: s for s in await app.steps(wf)}
    assert recorded["async step"].result == {"value": "async step: async"}
    assert recorded["sync step"].result == {"value": {"step": "sync step", "sync": True}}
    assert recorded["async step"].kind == "step" and recorded["async step"].attempts == 1
    info = await app.get(wf)
    assert info.status == "succeeded" and info.error is None and info.finished_at is not None


# ---------------------------------------------------------------------------------------- retries, failures
async def flaky(workflow_id: str, failures: int, kind: str) -> int:
    """Fails with ``EXCEPTIONS[kind]`` on its first ``failures`` runs (counted in SQL), then returns the run number."""
    runs = await Side.acount(workflow_id, "flaky")
    await Side.arecord(workflow_id, "flaky")
    if runs < failures:
        raise EXCEPTIONS[kind](f"run {runs + 1} failed")
    return runs + 1


@WORKFLOWS.workflow()
async def retrying(ctx: WorkflowContext, args: dict[str, Any]) -> int:
    policy = RetryPolicy(
        max_attempts=args["max_attempts"],
        initial_delay=0.01,
        max_delay=0.05,
        retry_on=tuple(EXCEPTIONS[name] for name in args.get("retry_on", [])),
    )
    return await ctx.step("flaky", flaky, ctx.workflow_id, args["failures"], args["kind"], retry=policy)


@pytest.mark.parametrize(
    ("kind", "retry_on"),
    [("transient", []), ("custom", ["custom"])],
    ids=["TransientError", "retry_on-custom-type"],
)
async def test_retryable_errors_are_retried_until_the_step_succeeds(
    app: DurableApp, kind: str, retry_on: list[str]
) -> None:
    async with running(app):
        args = {"max_attempts": 3, "failures": 2, "kind": kind, "retry_on": retry_on}
        handle = await app.start("retrying", args, workflow_id=new_id())
        assert await handle.result(20) == 3
    wf = handle.workflow_id
    assert await Side.acount(wf, "flaky") == 3
    [step] = await app.steps(wf)
    assert (step.name, step.attempts, step.error) == ("flaky", 3, None)


async def test_exhausted_retries_fail_the_workflow_with_the_error_visible(app: DurableApp) -> None:
    async with running(app):
        args = {"max_attempts": 3, "failures": 99, "kind": "transient"}
        handle = await app.start("retrying", args, workflow_id=new_id())
        with pytest.raises(WorkflowFailed) as failed:
            await handle.result(20)
    wf = handle.workflow_id
    assert await Side.acount(wf, "flaky") == 3  # max_attempts counts the first try
    info = await app.get(wf)
    assert info.status == "failed"
    assert info.error is not None
    assert info.error["type"] == "TransientError"
    assert info.error["message"] == "run 3 failed"
    assert info.error["step"] == "flaky"
    assert info.error["attempts"] == 3
    assert "TransientError" in info.error["traceback"]
    assert failed.value.error == info.error
    assert "TransientError: run 3 failed" in str(failed.value)
    [step] = await app.steps(wf)
    assert step.error is not None and step.error["type"] == "TransientError" and step.attempts == 3


@pytest.mark.parametrize(
    ("kind", "retry_on"),
    [("permanent", []), ("permanent", ["exception"]), ("key", ["custom"])],
    ids=["PermanentError", "PermanentError-even-if-retry_on-Exception", "type-not-in-retry_on"],
)
async def test_non_retryable_errors_fail_at_once(app: DurableApp, kind: str, retry_on: list[str]) -> None:
    async with running(app):
        args = {"max_attempts": 5, "failures": 99, "kind": kind, "retry_on": retry_on}
        handle = await app.start("retrying", args, workflow_id=new_id())
        with pytest.raises(WorkflowFailed):
            await handle.result(20)
    info = await app.get(handle.workflow_id)
    assert await Side.acount(handle.workflow_id, "flaky") == 1
    assert info.error is not None
    assert info.error["type"] == EXCEPTIONS[kind].__name__
    assert info.error["attempts"] == 1 and info.error["step"] == "flaky"


@WORKFLOWS.workflow()
async def handles_failure(ctx: WorkflowContext, args: dict[str, Any]) -> dict[str, Any]:
    wf = ctx.workflow_id
    try:
        await ctx.step("doomed", flaky, wf, 99, "permanent")
    except StepFailed as exc:
        caught = {"step": exc.step, "type": exc.error["type"]}
    await ctx.wait_for_signal("go")  # the next run replays the failure from its checkpoint
    after = await ctx.step("after", async_effect, wf, "after")
    return {"caught": caught, "after": after}


async def test_a_failed_step_can_be_handled_and_replays_raise_the_same_failure(app: DurableApp) -> None:
    async with running(app):
        handle = await app.start("handles_failure", workflow_id=new_id())
        await wait_status(app, handle.workflow_id, "waiting")
        await app.signal(handle.workflow_id, "go")
        result = await handle.result(20)
    assert result == {"caught": {"step": "doomed", "type": "PermanentError"}, "after": "after: async"}
    assert await Side.acount(handle.workflow_id, "flaky") == 1  # the replay raised it from the checkpoint


# ------------------------------------------------------------------------------------------------ determinism
@WORKFLOWS.workflow()
async def recorder(ctx: WorkflowContext, args: dict[str, Any]) -> dict[str, Any]:
    seen = [(await ctx.now()).isoformat(), await ctx.random(), await ctx.uuid()]
    await Side.arecord(ctx.workflow_id, "view", payload=seen)  # workflow code: runs on every replay
    first = await ctx.step("first view", echo, seen)
    await ctx.wait_for_signal("go")
    return {"first": first, "last": seen}


async def test_now_random_and_uuid_are_stable_across_replays(app: DurableApp) -> None:
    async with running(app):
        handle = await app.start("recorder", workflow_id=new_id())
        await wait_status(app, handle.workflow_id, "waiting")
        await asyncio.sleep(0.01)  # so that a fresh ctx.now() on the replay would differ
        await app.signal(handle.workflow_id, "go")
        result = await handle.result(20)
    assert result["first"] == result["last"]
    views = await Side.acount(handle.workflow_id, "view")
    assert views >= 2, "the workflow was never replayed"
    kinds = [s.kind for s in await app.steps(handle.workflow_id)]
    assert kinds[:3] == ["now", "random", "uuid"]


SHAPE = {"first step": "charge card"}


@WORKFLOWS.workflow()
async def shape_shifter(ctx: WorkflowContext, args: dict[str, Any]) -> str:
    name = SHAPE["first step"]
    await ctx.step(name, async_effect, ctx.workflow_id, name)
    await ctx.wait_for_signal("go")
    return "done"


async def test_a_replay_reaching_another_step_raises_non_determinism_naming_both(app: DurableApp) -> None:
    async with running(app):
        handle = await app.start("shape_shifter", workflow_id=new_id())
        await wait_status(app, handle.workflow_id, "waiting")
        SHAPE["first step"] = "refund card"  # "deploy a new version" of the workflow while it waits
        try:
            await app.signal(handle.workflow_id, "go")
            with pytest.raises(WorkflowFailed):
                await handle.result(20)
        finally:
            SHAPE["first step"] = "charge card"
    error = (await app.get(handle.workflow_id)).error
    assert error is not None and error["type"] == "NonDeterminismError"
    assert "'refund card'" in error["message"] and "'charge card'" in error["message"]
    assert await Side.acount(handle.workflow_id, "refund card") == 0
    assert await Side.acount(handle.workflow_id, "charge card") == 1


@WORKFLOWS.workflow()
async def twice(ctx: WorkflowContext, args: dict[str, Any]) -> None:
    await ctx.step("same", async_effect, ctx.workflow_id, "first")
    await ctx.step("same", async_effect, ctx.workflow_id, "second")


async def test_duplicate_step_names_fail_the_workflow(app: DurableApp) -> None:
    async with running(app):
        handle = await app.start("twice", workflow_id=new_id())
        with pytest.raises(WorkflowFailed):
            await handle.result(20)
    error = (await app.get(handle.workflow_id)).error
    assert error is not None and error["type"] == "DuplicateStepName"
    assert "'same'" in error["message"]
    assert await Side.acount(handle.workflow_id, "first") == 1
    assert await Side.acount(handle.workflow_id, "second") == 0
    assert [s.name for s in await app.steps(handle.workflow_id)] == ["same"]


# ---------------------------------------------------------------------------------------- non-JSON results
async def returns_a_set(workflow_id: str) -> set[int]:
    await Side.arecord(workflow_id, "set")
    return {1, 2}


@WORKFLOWS.workflow()
async def bad_step_result(ctx: WorkflowContext, args: dict[str, Any]) -> None:
    await ctx.step("make set", returns_a_set, ctx.workflow_id, retry=FAST_RETRY)


@WORKFLOWS.workflow()
async def bad_workflow_result(ctx: WorkflowContext, args: dict[str, Any]) -> object:
    await ctx.step("fine", async_effect, ctx.workflow_id, "fine")
    return object()


async def test_a_non_json_step_result_fails_the_workflow_clearly(app: DurableApp) -> None:
    async with running(app):
        handle = await app.start("bad_step_result", workflow_id=new_id())
        with pytest.raises(WorkflowFailed):
            await handle.result(20)
    error = (await app.get(handle.workflow_id)).error
    assert error is not None and error["type"] == "NotSerializable"
    assert "'make set'" in error["message"] and "JSON" in error["message"]
    assert error["step"] == "make set"
    assert await Side.acount(handle.workflow_id, "set") == 1  # not retried: it would fail the same way


async def test_a_non_json_workflow_result_fails_the_workflow_clearly(app: DurableApp) -> None:
    async with running(app):
        handle = await app.start("bad_workflow_result", workflow_id=new_id())
        with pytest.raises(WorkflowFailed):
            await handle.result(20)
    info = await app.get(handle.workflow_id)
    assert info.error is not None and info.error["type"] == "NotSerializable"
    assert "bad_workflow_result" in info.error["message"]
    assert info.result is None


async def int_keys() -> dict[int, str]:
    return {1: "one"}


@WORKFLOWS.workflow()
async def int_keyed(ctx: WorkflowContext, args: dict[str, Any]) -> str:
    value = await ctx.step("int keys", int_keys)
    await ctx.wait_for_signal("go")
    return value[1]  # would work on a first run only: the stored (and replayed) result has the key "1"


async def test_a_step_result_is_the_same_on_the_first_run_and_on_replay(app: DurableApp) -> None:
    async with running(app):
        handle = await app.start("int_keyed", workflow_id=new_id())
        await async_wait_until(lambda: _done(app, handle.workflow_id), timeout=20, what="the workflow to end")
        outcome = await handle.status()
    # JSON cannot hold an int key, so the step is refused rather than changing its result between runs
    assert outcome.status == "failed"
    assert outcome.error is not None and "object key 1 is not a string" in outcome.error["message"]


async def _done(app: DurableApp, workflow_id: str) -> bool:
    return (await app.get(workflow_id)).status in ("succeeded", "failed", "cancelled")


# ------------------------------------------------------------------------------------- transaction steps
async def insert_effect(conn: Any, workflow_id: str, step: str, fail: bool) -> str:
    """A ``ctx.transaction`` body: its row commits only with the step's checkpoint."""
    await conn.execute("INSERT INTO effects (workflow_id, step, phase) VALUES (%s, %s, 'tx')", (workflow_id, step))
    if fail:
        await conn.execute("SELECT 1 / 0")  # Postgres refuses: the insert above rolls back with it
    return (await (await conn.execute("SELECT current_user")).fetchone())[0]  # type: ignore[index,no-any-return]


async def become(conn: Any, role: str) -> str:
    await conn.execute(f"SET ROLE {role}")  # a session-level change the pool must not keep
    return (await (await conn.execute("SELECT current_user")).fetchone())[0]  # type: ignore[index,no-any-return]


@WORKFLOWS.workflow()
async def transactional(ctx: WorkflowContext, args: dict[str, Any]) -> dict[str, Any]:
    wf = ctx.workflow_id
    first = await ctx.transaction("insert", insert_effect, wf, "insert", False)
    go = await ctx.wait_for_signal("go")  # the signal's run replays the transaction step from its checkpoint
    role = await ctx.transaction("become", become, args["role"]) if args.get("role") else None
    after = await ctx.transaction("after", insert_effect, wf, "after", args.get("fail", False), retry=FAST_RETRY)
    return {"first": first, "go": go, "role": role, "after": after}


async def test_a_transaction_steps_writes_commit_once_with_its_checkpoint(app: DurableApp, db_url: str) -> None:
    async with running(app):
        handle = await app.start("transactional", {"role": "pg_monitor"}, workflow_id=new_id())
        wf = handle.workflow_id
        await wait_status(app, wf, "waiting")
        assert await Side.acount(wf, "insert", "tx") == 1
        await app.signal(wf, "go", 1)
        result = await handle.result(20)
    with psycopg.connect(db_url) as conn:
        me = conn.execute("SELECT current_user").fetchone()[0]  # type: ignore[index]
    # replayed, not run again; the role set by one step did not leak into the next one on the pooled connection
    assert result == {"first": me, "go": 1, "role": "pg_monitor", "after": me}
    assert await Side.acount(wf, "insert", "tx") == 1 and await Side.acount(wf, "after", "tx") == 1


async def test_a_failing_transaction_step_leaves_nothing_and_fails_with_postgres_message(app: DurableApp) -> None:
    async with running(app):
        handle = await app.start("transactional", {"fail": True}, workflow_id=new_id())
        await app.signal(handle.workflow_id, "go", 1)
        with pytest.raises(WorkflowFailed) as failed:
            await handle.result(20)
    assert "division by zero" in str(failed.value)
    assert await Side.acount(handle.workflow_id, "after", "tx") == 0  # every attempt rolled back
    assert await Side.acount(handle.workflow_id, "insert", "tx") == 1
