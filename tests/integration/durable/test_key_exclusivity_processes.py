"""Two worker processes, 200 workflows over 20 keys with ``on_conflict="queue"``: never two active workflows for
one key (checked from the intervals the workflows record from inside), each key's runs in start order, all
succeed and every step runs exactly once."""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from typing import Any

import psycopg
import pytest

from ._helpers import Procs, rows, scalar, wait_until

pytestmark = pytest.mark.slow

WORKFLOWS, KEYS = 200, 20


def listeners(db_url: str) -> int:
    return int(
        scalar(
            db_url,
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN %%'",
        )
    )


def test_two_workers_never_run_two_workflows_of_one_key_at_once(procs: Procs, db_url: str) -> None:
    for name in ("A", "B"):
        procs.start(name, concurrency=8)
    wait_until(lambda: listeners(db_url) >= 2, what="both workers to listen for work")
    ids = [f"kx-{n:03d}" for n in range(WORKFLOWS)]
    with psycopg.connect(db_url) as conn, conn.transaction():  # one commit: every key gets a queue at once
        for n, wf in enumerate(ids):
            conn.execute(
                "SELECT howdah.start_workflow('keyed', %s::jsonb, workflow_id => %s)",
                (json.dumps({"k": f"key-{n % KEYS}", "n": n}), wf),
            )

    def finished() -> bool:
        return scalar(db_url, "SELECT count(*) FROM howdah.workflows WHERE status IN "
                              "('succeeded', 'failed', 'cancelled') AND id LIKE 'kx-%%'") == WORKFLOWS  # fmt: skip

    try:
        wait_until(finished, timeout=90, interval=0.2, what="all 200 workflows to finish")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{procs.logs_text()}") from None
    procs.terminate_all()

    statuses = rows(db_url, "SELECT status, count(*) FROM howdah.workflows WHERE id LIKE 'kx-%%' GROUP BY status")
    assert statuses == [("succeeded", WORKFLOWS)]

    # Every step of every workflow ran exactly once.
    per_step = rows(
        db_url,
        "SELECT step, phase, count(*), count(DISTINCT workflow_id) FROM effects WHERE workflow_id LIKE 'kx-%%' "
        "GROUP BY step, phase ORDER BY step, phase",
    )
    assert per_step == [(step, phase, WORKFLOWS, WORKFLOWS) for step in ("enter", "leave", "work")
                        for phase in ("end", "start")]  # fmt: skip

    # Active interval of each workflow: from entering its first step to leaving its last one.
    runs: dict[str, list[tuple[Any, Any, int, str]]] = defaultdict(list)
    for wf, key, seq, entered, left in rows(
        db_url,
        "SELECT w.id, w.args ->> 'k', w.seq, e.at, l.at FROM howdah.workflows w "
        "JOIN effects e ON e.workflow_id = w.id AND e.step = 'enter' AND e.phase = 'start' "
        "JOIN effects l ON l.workflow_id = w.id AND l.step = 'leave' AND l.phase = 'end' "
        "WHERE w.id LIKE 'kx-%%'",
    ):
        runs[key].append((entered, left, seq, wf))
    assert len(runs) == KEYS and sum(len(r) for r in runs.values()) == WORKFLOWS
    for key, intervals in runs.items():
        intervals.sort()
        for before, after in itertools.pairwise(intervals):
            assert before[1] < after[0], f"key {key}: {after[3]} started before {before[3]} ended"
        assert [i[2] for i in intervals] == sorted(i[2] for i in intervals), f"key {key} ran out of start order"

    workers = {r[0] for r in rows(db_url, "SELECT DISTINCT worker FROM effects WHERE workflow_id LIKE 'kx-%%'")}
    assert workers == {"A", "B"}, f"only {workers} did any work"
