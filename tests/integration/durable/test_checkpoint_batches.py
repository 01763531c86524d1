"""A worker's claims, checkpoints and run ends that wait at the same moment share one statement and one
transaction, and an item refused there (a run that lost its workflow) fails alone: the others are recorded."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from psycopg import sql

from howdah.durable import DurableApp, DurableError, WorkflowContext
from howdah.durable._store import DurableDatabaseError, LeaseLost, error_for

from ._helpers import Registry, async_wait_until, new_id, rows

WORKFLOWS = Registry()


@WORKFLOWS.workflow()
async def idle(ctx: WorkflowContext, args: dict[str, Any]) -> None:
    return None


async def claimed(app: DurableApp, count: int) -> list[tuple[str, int]]:
    """``count`` workflows started and claimed by hand, as a worker would: (id, fencing token) each."""
    ids = [new_id("batch") for _ in range(count)]
    for wf in ids:
        await app.start("idle", workflow_id=wf)
    messages = await app.queue.read(app.queue_name, vt=30, qty=count)
    assert len(messages) == count
    runs = []
    for message in messages:
        wf_id = message.message["workflow_id"]
        claim = await app.store.claim(wf_id, message.msg_id, message.read_ct)
        assert claim.outcome == "claimed"
        runs.append((wf_id, claim.fence))
    return runs


async def lock_waiting(db_url: str) -> bool:
    """Whether a session of the test's database waits for a lock."""
    found = rows(
        db_url,
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
    )
    return bool(found[0][0])


async def while_one_waits(
    db_url: str, locked: str, calls: list[Awaitable[Any]], unseen: str, params: tuple[Any, ...]
) -> list[Any]:
    """Run ``calls`` together while workflow ``locked`` is locked elsewhere, so that their statement waits; check
    meanwhile that ``unseen`` (a count) sees nothing of theirs yet, i.e. that all of them commit together; then
    let them go and return their outcomes (exceptions included)."""
    async with await psycopg.AsyncConnection.connect(db_url) as blocker:
        await blocker.execute("SELECT 1 FROM howdah.workflows WHERE id = %s FOR UPDATE", (locked,))
        pending = asyncio.gather(*calls, return_exceptions=True)
        await async_wait_until(lambda: lock_waiting(db_url), what="the batch to wait for the locked workflow")
        assert rows(db_url, unseen, params) == [(0,)]
        await blocker.rollback()
        return await asyncio.wait_for(pending, timeout=30)


async def checkpoint(app: DurableApp, wf_id: str, fence: int) -> tuple[bool, float | None]:
    return await app.store.checkpoint(wf_id, fence, 0, "first", "step", {"value": wf_id}, None, 1, datetime.now(UTC))


async def test_waiting_checkpoints_commit_together_and_a_refused_one_fails_alone(app: DurableApp, db_url: str) -> None:
    runs = await claimed(app, 4)
    (lost_id, lost_fence), *kept = runs
    kept_ids = [wf for wf, _ in kept]
    outcomes = await while_one_waits(
        db_url,
        kept_ids[-1],
        [
            checkpoint(app, lost_id, lost_fence + 1),  # a stale fencing token: another run holds this workflow
            *(checkpoint(app, wf_id, fence) for wf_id, fence in kept),
        ],
        "SELECT count(*) FROM howdah.steps WHERE workflow_id = ANY(%s)",
        (kept_ids,),
    )
    assert isinstance(outcomes[0], LeaseLost), outcomes[0]
    for outcome in outcomes[1:]:
        assert not isinstance(outcome, BaseException), outcome
        cancel, lease_left = outcome
        assert cancel is False and lease_left is not None and 0 < lease_left <= 30
    recorded = rows(
        db_url, "SELECT workflow_id, result FROM howdah.steps WHERE workflow_id = ANY(%s)", ([wf for wf, _ in runs],)
    )
    assert sorted(recorded) == sorted((wf, {"value": wf}) for wf in kept_ids)


async def test_a_duplicate_step_in_a_batch_is_refused_and_the_first_record_kept(app: DurableApp, db_url: str) -> None:
    """The same step twice at once (a replay racing the run it replaced): exactly one record, one refusal."""
    [(wf_id, fence)] = await claimed(app, 1)
    outcomes = await asyncio.gather(
        checkpoint(app, wf_id, fence), checkpoint(app, wf_id, fence), return_exceptions=True
    )
    assert sum(isinstance(o, LeaseLost) for o in outcomes) == 1, outcomes
    assert rows(db_url, "SELECT count(*) FROM howdah.steps WHERE workflow_id = %s", (wf_id,)) == [(1,)]


@pytest.mark.parametrize("count", [1, 2, 70])
async def test_every_waiting_checkpoint_is_answered(app: DurableApp, db_url: str, count: int) -> None:
    """One alone, two, and more than one batch holds (64): each answered, each recorded once."""
    runs = await claimed(app, count)
    outcomes = await asyncio.gather(*(checkpoint(app, wf_id, fence) for wf_id, fence in runs))
    assert len(outcomes) == count and all(lease_left is not None for _, lease_left in outcomes)
    recorded = rows(db_url, "SELECT count(*) FROM howdah.steps WHERE workflow_id = ANY(%s)", ([wf for wf, _ in runs],))
    assert recorded == [(count,)]


async def test_runs_that_end_at_the_same_moment_end_together_and_a_refused_one_fails_alone(
    app: DurableApp, db_url: str
) -> None:
    runs = await claimed(app, 5)
    (lost_id, lost_fence), *kept = runs
    kept_ids = [wf for wf, _ in kept]
    outcomes = await while_one_waits(
        db_url,
        kept_ids[-1],
        [
            app.store.finish(lost_id, lost_fence + 1, "succeeded", "late", None),
            *(app.store.finish(wf_id, fence, "succeeded", wf_id, None) for wf_id, fence in kept),
        ],
        "SELECT count(*) FROM howdah.workflows WHERE id = ANY(%s) AND status = 'succeeded'",
        (kept_ids,),
    )
    assert isinstance(outcomes[0], LeaseLost), outcomes[0]
    assert outcomes[1:] == [None] * len(kept)
    ended = rows(db_url, "SELECT id, status, result FROM howdah.workflows WHERE id = ANY(%s)", ([w for w, _ in runs],))
    assert sorted(ended) == sorted([(lost_id, "running", None), *((wf, "succeeded", wf) for wf in kept_ids)])
    queue = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier("pgmq", f"q_{app.queue_name}"))
    with psycopg.connect(db_url, autocommit=True) as conn:
        assert conn.execute(queue).fetchall() == [(1,)]  # the lost run's message is left to the run holding it


async def test_claims_of_messages_read_at_once_commit_together_each_with_its_own_outcome(
    app: DurableApp, db_url: str
) -> None:
    ids = [new_id("claim") for _ in range(4)]
    for wf in ids:
        await app.start("idle", workflow_id=wf)
    messages = await app.queue.read(app.queue_name, vt=30, qty=4)
    by_id = {m.message["workflow_id"]: m for m in messages}
    claims = await while_one_waits(
        db_url,
        ids[-1],
        [
            app.store.claim(ids[0], by_id[ids[0]].msg_id, by_id[ids[0]].read_ct + 1),  # read again since: lost
            *(app.store.claim(wf, by_id[wf].msg_id, by_id[wf].read_ct) for wf in ids[1:]),
        ],
        "SELECT count(*) FROM howdah.workflows WHERE id = ANY(%s) AND status = 'running'",
        (ids,),
    )
    assert [c.outcome for c in claims] == ["lost", "claimed", "claimed", "claimed"]
    assert all(c.name == "idle" and c.fence == 1 and c.steps == [] for c in claims[1:])


async def test_errors_keep_their_kind_when_read_from_a_sqlstate(app: DurableApp) -> None:
    """The caller's bad input (null_value_not_allowed, raised by howdah.start_workflow for a NULL name) is a plain
    DurableError, not a database failure; the batch path names errors from their SQLSTATE, the same way."""
    with pytest.raises(DurableError, match="workflow name must not be NULL") as caught:
        await app.store.rows("SELECT * FROM howdah.start_workflow(NULL, '{}'::jsonb)")
    assert not isinstance(caught.value, DurableDatabaseError)
    assert type(error_for("22004", "x")) is DurableError
    assert type(error_for("23502", "x")) is DurableDatabaseError  # a not-null column violated: not input checking
