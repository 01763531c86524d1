"""Starting workflows: idempotent ids, bad input (unknown names, non-JSON args) that writes nothing, and
``howdah.start_workflow`` from SQL inside the caller's transaction (the outbox pattern)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from howdah.durable import (
    DurableApp,
    DurableError,
    NotSerializable,
    UnknownWorkflow,
    WorkflowContext,
    WorkflowNotFound,
)

from ._helpers import Registry, Side, async_wait_until, counts, new_id, running

WORKFLOWS = Registry()


async def mark(workflow_id: str, step: str) -> str:
    await Side.arecord(workflow_id, step)
    return step


@WORKFLOWS.workflow(name="greet")
async def greet(ctx: WorkflowContext, args: dict[str, Any]) -> str:
    await ctx.step("say hello", mark, ctx.workflow_id, "hello")
    return f"hello {args.get('who', 'world')}"


async def not_declared(ctx: WorkflowContext, args: dict[str, Any]) -> None:
    return None


async def test_starting_twice_with_one_id_returns_the_same_workflow(app: DurableApp) -> None:
    wf = new_id()
    async with running(app):
        first = await app.start("greet", {"who": "ann"}, workflow_id=wf)
        second = await app.start(greet, {"who": "bob"}, workflow_id=wf)  # by function; other args are ignored
        assert (first.workflow_id, first.created) == (wf, True)
        assert (second.workflow_id, second.created) == (wf, False)
        assert await first.result(20) == "hello ann"
        third = await app.start("greet", {"who": "cy"}, workflow_id=wf)  # also once it has finished
        assert third.created is False
        assert await third.result(5) == "hello ann"
    assert await Side.acount(wf, "hello") == 1
    assert len([w for w in await app.list_workflows(limit=500) if w.id == wf]) == 1


async def test_a_start_without_an_id_gets_a_fresh_one(app: DurableApp) -> None:
    async with running(app):
        a = await app.start("greet")
        b = await app.start("greet")
        assert a.workflow_id != b.workflow_id and a.created and b.created
        assert await a.result(20) == await b.result(20) == "hello world"


async def test_unknown_workflow_names_are_named_errors_from_python(app: DurableApp, db_url: str) -> None:
    before = await counts(db_url, app.queue_name)
    with pytest.raises(UnknownWorkflow, match="nope"):
        await app.start("nope")
    with pytest.raises(UnknownWorkflow, match="not_declared"):
        await app.start(not_declared)
    assert await counts(db_url, app.queue_name) == before


async def test_unknown_workflow_names_raise_hw400_from_sql(app: DurableApp, db_url: str) -> None:
    await app.register()
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        with pytest.raises(psycopg.Error) as raised:
            await conn.execute("SELECT howdah.start_workflow('nope')")
    assert raised.value.sqlstate == "HW400"
    assert "nope" in str(raised.value)


@pytest.mark.parametrize(
    "args",
    [{"when": datetime(2030, 1, 1, tzinfo=UTC)}, {"ids": {1, 2}}, {"x": float("nan")}, {"obj": object()}],
    ids=["datetime", "set", "nan", "object"],
)
async def test_non_json_args_raise_not_serializable_and_write_nothing(
    app: DurableApp, db_url: str, args: dict[str, Any]
) -> None:
    await app.register()
    before = await counts(db_url, app.queue_name)
    wf = new_id()
    with pytest.raises(NotSerializable):
        await app.start("greet", args, workflow_id=wf)
    assert await counts(db_url, app.queue_name) == before
    with pytest.raises(WorkflowNotFound):
        await app.get(wf)


@pytest.mark.parametrize(
    ("args", "workflow_id"),
    [(["not", "a", "dict"], None), ({}, ""), ({}, "x" * 201)],
    ids=["args-not-an-object", "empty-id", "id-too-long"],
)
async def test_malformed_starts_are_rejected_before_anything_is_written(
    app: DurableApp, db_url: str, args: Any, workflow_id: str | None
) -> None:
    await app.register()
    before = await counts(db_url, app.queue_name)
    with pytest.raises(DurableError):
        await app.start("greet", args, workflow_id=workflow_id)
    assert await counts(db_url, app.queue_name) == before


async def test_a_sql_start_rolled_back_with_its_transaction_leaves_nothing(app: DurableApp, db_url: str) -> None:
    await app.register()  # what a worker does on start: SQL can start only registered types
    before = await counts(db_url, app.queue_name)
    wf = new_id("outbox")
    async with await psycopg.AsyncConnection.connect(db_url) as conn, conn.transaction(force_rollback=True):
        await conn.execute("CREATE TEMP TABLE request_rows (n int)")
        cursor = await conn.execute(
            "SELECT id, status, created FROM howdah.start_workflow('greet', %s::jsonb, workflow_id => %s)",
            ('{"who": "sql"}', wf),
        )
        assert await cursor.fetchone() == (wf, "pending", True)
    assert await counts(db_url, app.queue_name) == before
    with pytest.raises(WorkflowNotFound):
        await app.get(wf)


async def test_a_committed_sql_start_runs(app: DurableApp, db_url: str) -> None:
    await app.register()
    wf = new_id("outbox")
    async with await psycopg.AsyncConnection.connect(db_url) as conn, conn.transaction():
        await conn.execute("SELECT howdah.start_workflow('greet', %s::jsonb, workflow_id => %s)", ("{}", wf))
        # Not visible to others before the commit.
        with pytest.raises(WorkflowNotFound):
            await app.get(wf)
    async with running(app):
        assert await app.handle(wf).result(20) == "hello world"
    assert await Side.acount(wf, "hello") == 1


async def test_app_start_joins_the_callers_transaction(app: DurableApp, db_url: str) -> None:
    rolled_back, committed = new_id("tx"), new_id("tx")
    async with await psycopg.AsyncConnection.connect(db_url) as conn:
        async with conn.transaction(force_rollback=True):
            handle = await app.start("greet", {"who": "nobody"}, workflow_id=rolled_back, conn=conn)
            assert handle.created
        async with conn.transaction():
            await app.start("greet", {"who": "tx"}, workflow_id=committed, conn=conn)
    with pytest.raises(WorkflowNotFound):
        await app.get(rolled_back)
    async with running(app):
        assert await app.handle(committed).result(20) == "hello tx"
    assert await Side.acount(rolled_back) == 0


async def test_result_times_out_and_list_filters_by_status(app: DurableApp) -> None:
    handle = await app.start("greet", workflow_id=new_id("idle"))  # no worker runs it yet
    with pytest.raises(TimeoutError, match="pending"):
        await handle.result(0.2)
    assert handle.workflow_id in {w.id for w in await app.list_workflows("pending", limit=500)}
    async with running(app):
        await handle.result(20)
    assert handle.workflow_id in {w.id for w in await app.list_workflows("succeeded", limit=500)}
    assert handle.workflow_id not in {w.id for w in await app.list_workflows("pending", limit=500)}
    info = await handle.status()
    assert info.args == {} and info.attempts == 1 and info.started_at is not None


async def blocked_on_a_lock(db_url: str) -> bool:
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        cursor = await conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        row = await cursor.fetchone()
    return bool(row and row[0])


async def test_concurrent_starts_of_one_id_return_the_same_workflow(app: DurableApp, db_url: str) -> None:
    await app.register()
    wf = new_id("race")
    async with await psycopg.AsyncConnection.connect(db_url) as conn:
        async with conn.transaction():
            await app.start("greet", {"who": "first"}, workflow_id=wf, conn=conn)
            second = asyncio.create_task(app.start("greet", {"who": "second"}, workflow_id=wf))
            await async_wait_until(lambda: blocked_on_a_lock(db_url), what="the second start to wait for the first")
        handle = await asyncio.wait_for(second, 10)
    assert (handle.workflow_id, handle.created) == (wf, False)
    async with running(app):
        assert await handle.result(20) == "hello first"


async def test_handles_of_unknown_ids_raise_workflow_not_found(app: DurableApp) -> None:
    with pytest.raises(WorkflowNotFound):
        await app.handle(new_id("ghost")).status()
    with pytest.raises(WorkflowNotFound):
        await app.handle(new_id("ghost")).result(1)
    with pytest.raises(WorkflowNotFound):
        await app.cancel(new_id("ghost"))
    with pytest.raises(WorkflowNotFound):
        await app.retry(new_id("ghost"))
