"""Postgres restarts while two worker processes are in the middle of 40 workflows: the workers ride it out
(reconnect, replay from checkpoints) and every workflow finishes.

This restarts the session's embedded server, which breaks every open connection of the session; it lives in its
own module so no other test holds one, and the server is started again whatever happens.
"""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest

from ._helpers import Procs, rows, scalar, wait_until

pytestmark = pytest.mark.slow

COUNT = 40
STEPS = ["s1", "s2", "s3", "s4"]


def count_status(db_url: str, status: str) -> int:
    try:
        return int(scalar(db_url, "SELECT count(*) FROM howdah.workflows WHERE status = %s", (status,)))
    except psycopg.OperationalError:  # the server is still coming back
        return 0


def test_workers_recover_from_a_postgres_restart_and_finish_everything(
    pg_cluster: Any, procs: Procs, db_url: str
) -> None:
    server = pg_cluster.server
    if server is None:
        pytest.skip("HOWDAH_DATABASE_URL is set: this test restarts the embedded server, which we do not own here")
    for name in ("A", "B"):
        procs.start(name, concurrency=4, lease=3)
    wait_until(
        lambda: scalar(db_url, "SELECT queue_name FROM howdah.workflow_types WHERE name = 'pipeline'") == procs.queue,
        what="the workers to register",
    )
    ids = [f"restart-{n:02d}" for n in range(COUNT)]
    with psycopg.connect(db_url) as conn, conn.transaction():
        for wf in ids:
            conn.execute(
                "SELECT howdah.start_workflow('pipeline', %s::jsonb, workflow_id => %s)",
                (json.dumps({"steps": STEPS, "hold": 0.05}), wf),
            )
    wait_until(lambda: count_status(db_url, "succeeded") >= 5, timeout=30, what="the first workflows to finish")
    in_flight = COUNT - count_status(db_url, "succeeded")
    try:
        server.stop("fast")
        assert server.pid() is None
    finally:
        server.start()
    assert in_flight > 0, "everything finished before the restart: nothing was tested"

    try:
        wait_until(lambda: count_status(db_url, "succeeded") == COUNT, timeout=90, interval=0.2, what="all 40")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{procs.logs_text()}") from None
    assert procs.alive("A") and procs.alive("B"), procs.logs_text()
    procs.terminate_all()

    results = dict(rows(db_url, "SELECT id, result FROM howdah.workflows WHERE id = ANY(%s)", (ids,)))
    assert all(len(results[wf]) == len(STEPS) for wf in ids)
    # At least once across the restart (a step whose checkpoint met the outage runs again), never lost.
    ended = rows(
        db_url,
        "SELECT workflow_id, step, count(*) FROM effects WHERE phase = 'end' AND workflow_id = ANY(%s) "
        "GROUP BY workflow_id, step",
        (ids,),
    )
    assert len(ended) == COUNT * len(STEPS) and all(n >= 1 for _, _, n in ended)
    checkpoints = int(scalar(db_url, "SELECT count(*) FROM howdah.steps WHERE workflow_id = ANY(%s)", (ids,)))
    assert checkpoints == COUNT * len(STEPS)
