"""A seconds-level schedule (croniter's sixth field) with three worker processes over several ticks: exactly one
run per tick — each tick's workflow (``every_tick@<tick iso>``) exists once, no tick between the first and the last
is missing (``catch_up``), and each run's step ran once."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta

import pytest

from ._helpers import Procs, rows, scalar, wait_until

pytestmark = pytest.mark.slow

CRON = "* * * * * */2"  # every 2 seconds
TICKS = 5


def test_three_workers_start_exactly_one_run_per_tick(procs: Procs, db_url: str) -> None:
    for name in ("A", "B", "C"):
        procs.start(name, schedule=CRON, concurrency=4)

    def succeeded() -> int:
        return int(
            scalar(db_url, "SELECT count(*) FROM howdah.workflows WHERE name = 'every_tick' AND status = 'succeeded'")
        )

    try:
        wait_until(lambda: succeeded() >= TICKS, timeout=40, interval=0.2, what=f"{TICKS} scheduled runs")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{procs.logs_text()}") from None
    procs.terminate_all()

    runs = rows(db_url, "SELECT id, status FROM howdah.workflows WHERE name = 'every_tick'")
    ticks = sorted(datetime.fromisoformat(wf.split("@", 1)[1]) for wf, _ in runs)
    assert all(wf.startswith("every_tick@") for wf, _ in runs)
    assert len(set(ticks)) == len(ticks), "a tick was started twice"
    assert all(later - earlier == timedelta(seconds=2) for earlier, later in itertools.pairwise(ticks)), (
        f"ticks are not consecutive: {[t.isoformat() for t in ticks]}"
    )
    assert all(t.second % 2 == 0 and t.microsecond == 0 for t in ticks)

    per_run = dict(
        rows(
            db_url,
            "SELECT workflow_id, count(*) FROM effects WHERE step = 'tick' AND phase = 'start' GROUP BY workflow_id",
        )
    )
    for wf, status in runs:
        if status == "succeeded":
            assert per_run.get(wf) == 1, f"{wf} ran its step {per_run.get(wf)} times"
        else:  # started by the schedule just before the workers stopped
            assert status == "pending" and per_run.get(wf, 0) <= 1
    next_run = scalar(db_url, "SELECT next_run_at FROM howdah.schedules WHERE name = 'every_tick'")
    assert next_run == ticks[-1] + timedelta(seconds=2)
