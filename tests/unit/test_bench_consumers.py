"""The consumer benchmark's arithmetic: message counts per case, and what a run's notes add up to."""

from __future__ import annotations

import math

from benchmarks.consumers import BATCH, FULL, ID_STRIDE, QUICK, Case, _measure, cases


def test_message_counts_are_whole_batches_per_producer() -> None:
    for sizes in (FULL, QUICK):
        for case in cases(sizes, [1, 4, 16], quick=False):
            n = sizes.messages(case)
            assert n > 0
            assert n % (sizes.producers * case.batch) == 0


def test_a_slow_handler_gets_as_many_messages_as_its_consumers_handle_in_the_busy_time() -> None:
    assert FULL.messages(Case(1, 1, 5)) == 600  # 1 consumer x 200/s x 3 s
    assert FULL.messages(Case(BATCH, 4, 5)) == 2400
    assert FULL.messages(Case(1, 16, 5)) == FULL.single  # capped by the case's own size
    assert FULL.messages(Case(BATCH, 4, 0)) == FULL.batched


def test_every_run_has_a_churn_case_and_quick_runs_fewer_cases() -> None:
    full, quick = cases(FULL, [1, 4, 16], quick=False), cases(QUICK, [1, 4], quick=True)
    assert [c.churn for c in full if c.churn] == [FULL.churn]
    assert [c.churn for c in quick if c.churn] == [QUICK.churn]
    assert len(quick) < len(full)
    assert len({c.key for c in full}) == len(full)


def test_a_run_counts_duplicates_missing_ids_and_first_handling_latency() -> None:
    second = ID_STRIDE  # producer 1's first id
    notes = [
        [0, 10.0, 10.002],
        [1, 10.1, 10.103],
        [second, 10.0, 10.004],
        [1, 10.1, 40.0],  # delivered again after its visibility timeout: a duplicate, not a new latency
    ]
    run = _measure(notes, n=6, producers=2, per=3, commits=12)
    assert run.duplicates == 1
    assert run.missing == 3  # ids 2, second + 1 and second + 2 never arrived
    assert sorted(round(x, 3) for x in run.latencies) == [0.002, 0.003, 0.004]
    assert math.isclose(run.seconds, 0.103)  # first send → last first handling
    assert math.isclose(run.rate, 6 / 0.103)


def test_a_run_where_nothing_arrived_reports_every_id_missing() -> None:
    run = _measure([], n=4, producers=2, per=2, commits=None)
    assert run.missing == 4
    assert math.isnan(run.rate)
