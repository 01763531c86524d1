"""Fencing: a run that has lost its workflow starts no step attempt, and step code sees the fencing token.

The process tests freeze a worker (SIGSTOP) past its 2-second lease while a second worker takes the workflow
over and completes it; after SIGCONT the frozen worker must start no further step attempt, so no step body
starts after its own checkpoint (``effects.at`` against ``howdah.steps.finished_at``, one server clock).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from psycopg import sql

from howdah.durable import DurableApp, RetryPolicy, TransientError, WorkflowContext

from ._helpers import (
    Procs,
    Registry,
    rows,
    running,
    scalar,
    start_pipeline,
    status,
    step_counts,
    wait_for,
)

WORKFLOWS = Registry()


def starts_by(db_url: str, wf: str, step: str, worker: str) -> int:
    return int(
        scalar(
            db_url,
            "SELECT count(*) FROM effects WHERE workflow_id = %s AND step = %s AND phase = 'start' AND worker = %s",
            (wf, step, worker),
        )
    )


def late_starts(db_url: str, wf: str) -> list[tuple[Any, ...]]:
    """Step bodies that started after that step's checkpoint was written."""
    return rows(
        db_url,
        "SELECT e.step, e.worker FROM effects e JOIN howdah.steps s ON s.workflow_id = e.workflow_id "
        "AND s.name = e.step WHERE e.workflow_id = %s AND e.phase = 'start' AND e.at > s.finished_at",
        (wf,),
    )


def gate(db_url: str, wf: str, point: str) -> None:
    scalar(db_url, "INSERT INTO gates (workflow_id, point) VALUES (%s, %s) RETURNING 1", (wf, point))


@contextmanager
def frozen(pid: int) -> Iterator[None]:
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def wait_run_abandoned(procs: Procs, worker: str, wf: str) -> None:
    """The resumed worker noticed that its run lost the workflow (it logs this when its run stops)."""
    wait_for(
        procs,
        lambda: any(
            wf in line and "leaving it to the run that owns it" in line for line in procs.log(worker).splitlines()
        ),
        f"worker {worker} to abandon its run of {wf}",
    )


@pytest.mark.slow
def test_a_worker_frozen_between_steps_starts_no_step_after_it_resumes(procs: Procs, db_url: str) -> None:
    stale = procs.start("A", lease=2)
    wf = start_pipeline(db_url, procs, {"steps": ["s1", "s2", "s3"], "pause_before": "s2"}, "fence")
    wait_for(procs, lambda: step_counts(db_url, wf, "pause").get("pause:s2") == 1, "A to pause after s1")
    with frozen(stale.pid):
        gate(db_url, wf, "pause:s2")  # A would go on to s2 now, but it is frozen
        procs.start("B", lease=2)
        wait_for(procs, lambda: status(db_url, wf) == "succeeded", "B to take over and finish")
    wait_run_abandoned(procs, "A", wf)
    assert step_counts(db_url, wf, "start") == {"s1": 1, "s2": 1, "s3": 1}, procs.logs_text()
    assert starts_by(db_url, wf, "s2", "A") == 0
    assert late_starts(db_url, wf) == []
    assert procs.alive("A") and procs.alive("B"), procs.logs_text()
    procs.terminate_all()


@pytest.mark.slow
def test_a_step_retrying_through_a_lost_lease_stops_retrying(procs: Procs, db_url: str) -> None:
    stale = procs.start("A", lease=2)
    wf = start_pipeline(db_url, procs, {"steps": ["s1", "s2", "s3"], "flaky": "s2"}, "fence")
    wait_for(procs, lambda: starts_by(db_url, wf, "s2", "A") >= 2, "A to be retrying s2")
    with frozen(stale.pid):
        procs.start("B", lease=2)
        wait_for(procs, lambda: starts_by(db_url, wf, "s2", "B") >= 1, "B to take s2 over")
        before = starts_by(db_url, wf, "s2", "A")  # A's last attempt (if one was in flight) has long committed
        gate(db_url, wf, "ok:s2")
        wait_for(procs, lambda: status(db_url, wf) == "succeeded", "B to finish")
    wait_run_abandoned(procs, "A", wf)
    assert starts_by(db_url, wf, "s2", "A") == before, "the stale run started another attempt"
    assert step_counts(db_url, wf, "start")["s3"] == 1
    assert late_starts(db_url, wf) == []
    procs.terminate_all()


@contextmanager
def unreachable(pg_cluster: Any, db_url: str) -> Iterator[None]:
    """No connection to the test database, new or old, until the block ends (as during a long outage)."""
    dbname = str(scalar(db_url, "SELECT current_database()"))
    with pg_cluster.admin() as admin:
        admin.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(sql.Identifier(dbname)))
        try:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (dbname,))
            yield
        finally:
            admin.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(sql.Identifier(dbname)))


@pytest.mark.slow
def test_a_step_retrying_through_a_database_outage_stops_its_run(pg_cluster: Any, procs: Procs, db_url: str) -> None:
    """The outage outlasts what the run knows of its lease: it cannot tell whether it still holds the workflow,
    so it stops instead of starting more attempts; once the database is back the workflow is run again."""
    procs.start("A", lease=2)
    wf = start_pipeline(db_url, procs, {"steps": ["s1", "s2", "s3"], "flaky": "s2"}, "fence")
    wait_for(procs, lambda: starts_by(db_url, wf, "s2", "A") >= 2, "A to be retrying s2")
    with unreachable(pg_cluster, db_url):
        wait_for(
            procs,
            lambda: any(wf in line and "database unreachable" in line for line in procs.log("A").splitlines()),
            "A's run to stop",
        )
    gate(db_url, wf, "ok:s2")
    wait_for(procs, lambda: status(db_url, wf) == "succeeded", "the workflow to finish once the database is back")
    assert step_counts(db_url, wf, "start")["s3"] == 1
    assert late_starts(db_url, wf) == []
    assert procs.alive("A"), procs.logs_text()
    procs.terminate_all()


# ------------------------------------------------------------------------------------------- in-process
QUICK = RetryPolicy(max_attempts=5, initial_delay=0.01, max_delay=0.02)


@WORKFLOWS.workflow()
async def tokens(ctx: WorkflowContext, args: dict[str, Any]) -> list[int]:
    seen = []
    for i in range(3):
        seen.append(await ctx.step(f"token {i}", lambda: ctx.fencing_token))
        await ctx.sleep(0.01)  # the next step runs in a new run: a new claim
    return seen


async def test_the_fencing_token_increases_with_every_claim(app: DurableApp) -> None:
    async with running(app):
        handle = await app.start(tokens, {})
        seen = await handle.result(timeout=20)
    claims = (await app.get(handle.workflow_id)).attempts
    assert seen == sorted(set(seen)) and len(seen) == 3
    assert seen[-1] < claims


@WORKFLOWS.workflow()
async def counts_attempts(ctx: WorkflowContext, args: dict[str, Any]) -> dict[str, Any]:
    def flaky() -> dict[str, int]:
        if ctx.attempt < 3:
            raise TransientError(f"attempt {ctx.attempt}")
        return {"attempt": ctx.attempt, "token": ctx.fencing_token}

    outcome = await ctx.step("flaky", flaky, retry=QUICK)
    return {**outcome, "outside": ctx.attempt}


async def test_step_code_sees_its_attempt_number_and_the_token(app: DurableApp) -> None:
    async with running(app):
        handle = await app.start(counts_attempts, {})
        outcome = await handle.result(timeout=20)
    assert outcome == {"attempt": 3, "token": 1, "outside": 0}
    steps = await app.steps(handle.workflow_id)
    assert [s.attempts for s in steps] == [3]
