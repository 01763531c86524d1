"""``DurableApp.start_many``: many workflows in one statement and one transaction. Handles come back in the order
of the args; workflow ids stay idempotency keys (an existing id, or one given twice, is not started again);
exclusivity keys are honoured, and a refused start, or bad input anywhere in the batch, writes nothing at all.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from howdah.durable import DurableApp, DurableError, NotSerializable, WorkflowConflict, WorkflowContext

from ._helpers import Registry, Side, counts, mark, new_id, rows, running

WORKFLOWS = Registry()


@WORKFLOWS.workflow(name="greet")
async def greet(ctx: WorkflowContext, args: dict[str, Any]) -> str:
    await ctx.step("say hello", mark, ctx.workflow_id, "hello")
    return f"hello {args.get('who', 'world')}"


@WORKFLOWS.workflow(name="charge", key="account")
async def charge(ctx: WorkflowContext, args: dict[str, Any]) -> str:
    return str(args["account"])


async def test_start_many_returns_handles_in_order_and_honours_ids(app: DurableApp, db_url: str) -> None:
    existing = (await app.start("greet", {"who": "before"}, workflow_id=new_id("old"))).workflow_id
    fresh = new_id("new")
    handles = await app.start_many(
        "greet",
        [{"who": "ann"}, {"who": "bob"}, {"who": "cy"}, {"who": "dee"}],
        workflow_ids=[fresh, None, existing, fresh],
    )
    ids = [h.workflow_id for h in handles]
    assert ids[0] == fresh and ids[2] == existing and ids[3] == fresh and ids[1] not in (fresh, existing)
    assert [h.created for h in handles] == [True, True, False, False]
    created = [fresh, ids[1]]
    assert rows(db_url, "SELECT count(DISTINCT xmin::text) FROM howdah.workflows WHERE id = ANY(%s)", (created,)) == [
        (1,)
    ]  # one transaction wrote them all
    async with running(app):
        results = [await h.result(20) for h in handles]
    assert results == ["hello ann", "hello bob", "hello before", "hello ann"]
    assert await Side.acount(fresh, "hello") == 1


async def test_a_refused_start_leaves_the_whole_batch_unwritten(app: DurableApp, db_url: str) -> None:
    await app.register()
    before = await counts(db_url, app.queue_name)
    with pytest.raises(WorkflowConflict, match="a-1"):
        await app.start_many("charge", [{"account": "a-2"}, {"account": "a-1"}, {"account": "a-1"}])
    assert await counts(db_url, app.queue_name) == before
    handles = await app.start_many("charge", [{"account": "a-1"}, {"account": "a-2"}])
    async with running(app):
        assert [await h.result(20) for h in handles] == ["a-1", "a-2"]


async def test_start_many_joins_the_callers_transaction(app: DurableApp, db_url: str) -> None:
    await app.register()
    before = await counts(db_url, app.queue_name)
    async with await psycopg.AsyncConnection.connect(db_url) as conn, conn.transaction(force_rollback=True):
        handles = await app.start_many("greet", [{}, {}], conn=conn)
        assert [h.created for h in handles] == [True, True]
    assert await counts(db_url, app.queue_name) == before


async def test_bad_input_anywhere_in_the_batch_writes_nothing(app: DurableApp, db_url: str) -> None:
    await app.register()
    before = await counts(db_url, app.queue_name)
    with pytest.raises(NotSerializable):
        await app.start_many("greet", [{"who": "fine"}, {"who": {1, 2}}])
    with pytest.raises(DurableError, match="workflow_ids"):
        await app.start_many("greet", [{}, {}], workflow_ids=[None])
    with pytest.raises(DurableError, match="workflow_id"):
        await app.start_many("greet", [{}], workflow_ids=["x" * 201])
    with pytest.raises(DurableError, match="timeout"):
        await app.start_many("greet", [{}], timeout=0)
    assert await app.start_many("greet", []) == []
    assert await counts(db_url, app.queue_name) == before
