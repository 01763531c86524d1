"""SIGKILL a worker process at four instants — in the middle of a step, between steps, while the workflow sleeps,
while it waits for a signal — and a second worker process completes the workflow from its last checkpoint:
every completed step ran exactly once, the interrupted one at least once.

Workers are ``worker_proc.py`` processes with a 2-second lease; steps write ``start``/``end`` rows to ``effects``
and block on ``gates`` rows the test inserts, so the test kills at a known instant.
"""

from __future__ import annotations

import os
import random
import signal
import time
from typing import Any

import psycopg
import pytest

from ._helpers import Procs, rows, scalar, start_pipeline, status, step_counts, wait_for, wait_until

pytestmark = pytest.mark.slow

STEPS = ["s1", "s2", "s3"]


def who_ran(db_url: str, wf: str, step: str) -> list[str]:
    return [r[0] for r in rows(db_url, "SELECT worker FROM effects WHERE workflow_id = %s AND step = %s "
                                       "AND phase = 'start' ORDER BY at", (wf, step))]  # fmt: skip


def finish_on(procs: Procs, db_url: str, wf: str) -> list[Any]:
    wait_for(procs, lambda: status(db_url, wf) in ("succeeded", "failed", "cancelled"), f"{wf} to finish")
    info = rows(db_url, "SELECT status, result, error FROM howdah.workflows WHERE id = %s", (wf,))[0]
    assert info[0] == "succeeded", f"{info}\n{procs.logs_text()}"
    return info[1]  # type: ignore[no-any-return]


def test_killed_in_the_middle_of_a_step(procs: Procs, db_url: str) -> None:
    procs.start("A")
    wf = start_pipeline(db_url, procs, {"steps": STEPS, "block": "s2"}, "crash")
    wait_for(procs, lambda: step_counts(db_url, wf, "start").get("s2") == 1, "A to be inside s2")
    procs.kill("A")
    procs.start("B")
    # Opened only after the kill: A never finished s2.
    scalar(db_url, "INSERT INTO gates (workflow_id, point) VALUES (%s, 's2') RETURNING 1", (wf,))
    result = finish_on(procs, db_url, wf)
    assert result == ["s1 by A", "s2 by B", "s3 by B"]
    assert step_counts(db_url, wf, "end") == {"s1": 1, "s2": 1, "s3": 1}
    assert step_counts(db_url, wf, "start") == {"s1": 1, "s2": 2, "s3": 1}
    assert who_ran(db_url, wf, "s2") == ["A", "B"]


def test_killed_inside_a_transaction_step_its_writes_happen_exactly_once(procs: Procs, db_url: str) -> None:
    """A ``ctx.transaction`` step's writes commit with its checkpoint: the attempt a SIGKILL interrupted leaves
    nothing behind, and the attempt that completes writes once."""
    procs.start("A")
    wf = start_pipeline(db_url, procs, {"steps": STEPS, "transactional": ["s2"], "block": "s2"}, "crash")
    wait_for(procs, lambda: step_counts(db_url, wf, "start").get("s2") == 1, "A to be inside s2")
    assert "s2" not in step_counts(db_url, wf, "tx")  # written, not committed
    procs.kill("A")
    procs.start("B")
    scalar(db_url, "INSERT INTO gates (workflow_id, point) VALUES (%s, 's2') RETURNING 1", (wf,))
    result = finish_on(procs, db_url, wf)
    assert result == ["s1 by A", "s2 by B in its transaction", "s3 by B"]
    assert step_counts(db_url, wf, "tx") == {"s2": 1}  # exactly once, though two attempts ran
    assert step_counts(db_url, wf, "start")["s2"] == 2


def test_killed_between_two_steps(procs: Procs, db_url: str) -> None:
    procs.start("A")
    wf = start_pipeline(db_url, procs, {"steps": STEPS, "pause_before": "s2"}, "crash")
    wait_for(procs, lambda: step_counts(db_url, wf, "pause").get("pause:s2") == 1, "A to pause after s1")
    assert [r[0] for r in rows(db_url, "SELECT name FROM howdah.steps WHERE workflow_id = %s", (wf,))] == ["s1"]
    procs.kill("A")
    scalar(db_url, "INSERT INTO gates (workflow_id, point) VALUES (%s, 'pause:s2') RETURNING 1", (wf,))
    procs.start("B")
    result = finish_on(procs, db_url, wf)
    assert result == ["s1 by A", "s2 by B", "s3 by B"]
    assert step_counts(db_url, wf, "start") == {"s1": 1, "s2": 1, "s3": 1}
    assert step_counts(db_url, wf, "end") == {"s1": 1, "s2": 1, "s3": 1}
    assert step_counts(db_url, wf, "pause") == {"pause:s2": 2}  # workflow code between steps is replayed


def test_killed_while_the_workflow_sleeps(procs: Procs, db_url: str) -> None:
    procs.start("A")
    wf = start_pipeline(db_url, procs, {"steps": STEPS, "sleep_before": "s2", "sleep": 3}, "crash")
    wait_for(procs, lambda: status(db_url, wf) == "sleeping", "the workflow to sleep")
    procs.kill("A")
    assert status(db_url, wf) == "sleeping"
    procs.start("B")
    result = finish_on(procs, db_url, wf)
    assert result == ["s1 by A", "s2 by B", "s3 by B"]
    assert step_counts(db_url, wf, "start") == {"s1": 1, "s2": 1, "s3": 1}
    assert step_counts(db_url, wf, "end") == {"s1": 1, "s2": 1, "s3": 1}


def test_killed_while_the_workflow_waits_for_a_signal(procs: Procs, db_url: str) -> None:
    procs.start("A")
    wf = start_pipeline(db_url, procs, {"steps": STEPS, "signal_before": "s2"}, "crash")
    wait_for(procs, lambda: status(db_url, wf) == "waiting", "the workflow to wait for its signal")
    procs.kill("A")
    # Sent while no worker is alive: the signal waits in the database for the next one.
    scalar(db_url, "SELECT howdah.send_signal(%s, 'go', %s::jsonb)", (wf, '{"approved": true}'))
    procs.start("B")
    result = finish_on(procs, db_url, wf)
    assert result == ["s1 by A", {"approved": True}, "s2 by B", "s3 by B"]
    assert step_counts(db_url, wf, "start") == {"s1": 1, "s2": 1, "s3": 1}
    assert step_counts(db_url, wf, "end") == {"s1": 1, "s2": 1, "s3": 1}


def test_a_step_longer_than_the_lease_keeps_its_worker(procs: Procs, db_url: str) -> None:
    """Heartbeats extend the lease while a step runs, so a live second worker never takes the workflow over."""
    procs.start("A", lease=2)
    procs.start("B", lease=2)
    wf = start_pipeline(db_url, procs, {"steps": STEPS, "block": "s2"}, "crash")
    wait_for(procs, lambda: step_counts(db_url, wf, "start").get("s2") == 1, "s2 to start")
    owner = who_ran(db_url, wf, "s2")[0]
    # Keep s2 running for more than two leases. Not a synchronisation sleep: the step's duration is the point.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        assert step_counts(db_url, wf, "start").get("s2") == 1, "another worker took over a live lease"
        time.sleep(0.2)
    scalar(db_url, "INSERT INTO gates (workflow_id, point) VALUES (%s, 's2') RETURNING 1", (wf,))
    finish_on(procs, db_url, wf)
    assert step_counts(db_url, wf, "start") == {"s1": 1, "s2": 1, "s3": 1}
    assert who_ran(db_url, wf, "s2") == [owner]
    attempts = scalar(db_url, "SELECT attempts FROM howdah.workflows WHERE id = %s", (wf,))
    assert attempts == 1, "the workflow was claimed twice"


def test_a_stalled_worker_loses_its_lease_and_its_late_work_is_not_recorded(procs: Procs, db_url: str) -> None:
    """SIGSTOP a worker in a step until its lease runs out; another takes over; once both finish the step body,
    one checkpoint wins and the other run stops (LeaseLost): the steps after it still run exactly once."""
    stalled = procs.start("A", lease=2)
    wf = start_pipeline(db_url, procs, {"steps": STEPS, "block": "s2"}, "crash")
    wait_for(procs, lambda: step_counts(db_url, wf, "start").get("s2") == 1, "A to be inside s2")
    os.kill(stalled.pid, signal.SIGSTOP)
    try:
        procs.start("B", lease=2)
        wait_for(procs, lambda: step_counts(db_url, wf, "start").get("s2") == 2, "B to take s2 over")
    finally:
        os.kill(stalled.pid, signal.SIGCONT)
    scalar(db_url, "INSERT INTO gates (workflow_id, point) VALUES (%s, 's2') RETURNING 1", (wf,))
    finish_on(procs, db_url, wf)
    # Both bodies of s2 may end; only one is recorded, and what follows ran once.
    wait_for(procs, lambda: step_counts(db_url, wf, "end").get("s2") == 2, "the stalled s2 body to end too")
    assert step_counts(db_url, wf, "start") == {"s1": 1, "s2": 2, "s3": 1}
    assert [r[0] for r in rows(db_url, "SELECT name FROM howdah.steps WHERE workflow_id = %s ORDER BY step_index",
                               (wf,))] == ["s1", "s2", "s3"]  # fmt: skip
    assert procs.alive("A") and procs.alive("B"), procs.logs_text()
    procs.terminate_all()


def test_sql_nodes_of_df_graphs_happen_exactly_once_whatever_instant_workers_are_killed_at(
    procs: Procs, db_url: str
) -> None:
    """Graphs of inserting SQL nodes, their workers SIGKILLed at random instants three times: every node's insert
    is there exactly once in the end (each SQL node's statement commits with its checkpoint)."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS public.df_hits (instance text, node int)")
    node = "'INSERT INTO public.df_hits VALUES (''{{sys_instance_id}}'', {n}); SELECT pg_sleep(0.05)'"
    graph = node.format(n=1)
    for n in range(2, 6):
        graph = f"df.seq({graph}, {node.format(n=n)})"
    procs.start("A", df=True, concurrency=4)
    wait_until(
        lambda: scalar(db_url, "SELECT queue_name FROM howdah.workflow_types WHERE name = 'df'") == procs.queue,
        what="the worker to take the df workflows",
    )
    ids = [r[0] for r in rows(db_url, f"SELECT df.start({graph}) FROM generate_series(1, 30)")]
    chaos = random.Random(7)
    for name in ("A", "B", "C"):
        if name != "A":
            procs.start(name, df=True, concurrency=4)
        time.sleep(chaos.uniform(0.2, 1.2))  # the kill lands wherever the work is then, not a synchronisation
        procs.kill(name)
    procs.start("D", df=True, concurrency=4)
    done = "SELECT count(*) FROM df.instances WHERE id = ANY(%s) AND status = 'completed'"
    wait_for(procs, lambda: scalar(db_url, done, (ids,)) == len(ids), "every graph to complete", timeout=120)
    counts = rows(db_url, "SELECT node, count(*) FROM public.df_hits WHERE instance = ANY(%s) GROUP BY node "
                          "ORDER BY node", (ids,))  # fmt: skip
    assert counts == [(n, len(ids)) for n in range(1, 6)]
    duplicates = rows(db_url, "SELECT instance, node FROM public.df_hits GROUP BY 1, 2 HAVING count(*) > 1")
    assert duplicates == []
    # the kills landed inside graphs: some were taken over from a killed worker mid-way
    resumed = "SELECT count(*) FROM howdah.workflows WHERE id = ANY(%s) AND attempts > 1"
    assert scalar(db_url, resumed, ([f"df:{i}" for i in ids],)) > 0
