"""Table 4: does a queue stay fast after a lot of traffic? A partitioned Howdah queue against a plain one.

For each kind of queue: measure a fixed mixed workload (send 100 + read 100 + delete 100) on the fresh queue;
push N messages through it in batches of 1,000 (send, read, delete), calling ``pgmq.maintain_partitions``
every 100,000 messages as a consumer would; then measure the workload on the churned queue and on a brand-new
twin (same kind, same settings) in alternation, so that a slow spell of a shared machine hits both alike.
The ratio is the median of the paired runs. The plain queue relies on autovacuum to clean up behind the
deletes; the partitioned one drops old partitions.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any

import psycopg

from benchmarks._harness import ResultTable, fmt_bytes, fmt_rate, fmt_ratio, progress, run_for, step
from benchmarks._queue_setup import BODY, HOWDAH, Contenders, FunctionApi

WORKLOAD_BATCH = 100
CHURN_BATCH = 1000


@dataclass(frozen=True)
class ChurnSizes:
    churn: int  # messages pushed through each queue between the two measurements
    workload_seconds: float  # one workload run; the churned queue and its twin alternate `pairs` times
    pairs: int = 5
    partition_interval: int = 100_000
    retention_interval: int = 200_000
    maintain_every: int = 100_000


@dataclass
class ChurnResult:
    label: str
    before: float  # the workload on this queue before the churn
    twin: float  # ... on a fresh twin, measured in alternation with `after`
    after: float  # ... on this queue after the churn
    paired_ratio: float
    churn_rate: float
    maintenance_calls: int
    maintenance_seconds: float
    size_fresh: int | None
    size_after: int | None
    partitions_after: int | None


def _cycle(api: FunctionApi) -> int:
    api.send_batch([BODY] * WORKLOAD_BATCH)
    rows = api.read(WORKLOAD_BATCH)
    api.delete_batch([row[0] for row in rows])
    return len(rows)


def _workload(api: FunctionApi, seconds: float) -> float:
    return run_for(seconds, lambda: _cycle(api)).per_second


def _create(conn: psycopg.Connection[Any], queue: str, partitioned: bool, sizes: ChurnSizes) -> FunctionApi:
    api = FunctionApi(conn, queue)
    if partitioned:
        conn.execute(
            "SELECT pgmq.create_partitioned(%s::text, %s::text, %s::text)",
            (queue, str(sizes.partition_interval), str(sizes.retention_interval)),
        )
    else:
        api.create()
    return api


def _maintain(conn: psycopg.Connection[Any], queue: str) -> float:
    start = time.perf_counter()
    conn.execute("SELECT count(*) FROM pgmq.maintain_partitions(%s::text)", (queue,)).fetchall()
    return time.perf_counter() - start


def _size(conn: psycopg.Connection[Any], queue: str) -> tuple[int | None, int | None]:
    """Bytes on disk of the queue table (all partitions, indexes, TOAST) and how many partitions it has."""
    table = f"pgmq.q_{queue}"
    row = conn.execute(
        "SELECT coalesce((SELECT sum(pg_total_relation_size(relid)) FROM pg_partition_tree(%s::regclass)), "
        "pg_total_relation_size(%s::regclass)), "
        "(SELECT count(*) FROM pg_partition_tree(%s::regclass) WHERE isleaf AND level > 0)",
        (table, table, table),
    ).fetchone()
    return (int(row[0]), int(row[1])) if row and row[0] is not None else (None, None)


def _one(url: str, label: str, queue: str, partitioned: bool, sizes: ChurnSizes) -> ChurnResult:
    with psycopg.connect(url, autocommit=True) as conn:
        api = _create(conn, queue, partitioned, sizes)
        with step(f"Table 4: {label}, fresh workload"):
            _workload(api, 0.5)  # warm-up
            before = statistics.median(_workload(api, sizes.workload_seconds) for _ in range(3))
        size_fresh, _ = _size(conn, queue)

        batch = [BODY] * CHURN_BATCH
        calls, maint_seconds, pushed, next_maintenance = 0, 0.0, 0, sizes.maintain_every
        with step(f"Table 4: {label}, pushing {sizes.churn:,} messages through"):
            start = time.perf_counter()
            while pushed < sizes.churn:
                api.send_batch(batch)
                rows = api.read(CHURN_BATCH)
                api.delete_batch([row[0] for row in rows])
                pushed += len(rows)
                if partitioned and pushed >= next_maintenance:
                    maint_seconds += _maintain(conn, queue)
                    calls += 1
                    next_maintenance += sizes.maintain_every
            churn_seconds = time.perf_counter() - start - maint_seconds
            if partitioned:
                maint_seconds += _maintain(conn, queue)
                calls += 1
        size_after, partitions = _size(conn, queue)

        twin = _create(conn, queue + "_twin", partitioned, sizes)
        with step(f"Table 4: {label}, churned queue and fresh twin in alternation"):
            _workload(twin, 0.5)  # warm-up
            _workload(api, 0.5)
            pairs = [(_workload(api, sizes.workload_seconds), _workload(twin, sizes.workload_seconds))]
            for i in range(1, sizes.pairs):
                first, second = (api, twin) if i % 2 == 0 else (twin, api)
                a, b = _workload(first, sizes.workload_seconds), _workload(second, sizes.workload_seconds)
                pairs.append((a, b) if first is api else (b, a))
    after = statistics.median(p[0] for p in pairs)
    fresh_twin = statistics.median(p[1] for p in pairs)
    paired = statistics.median(p[0] / p[1] for p in pairs if p[1] > 0)
    progress.print(f"[dim]{label}: before {before:,.0f}/s, after {after:,.0f}/s, fresh twin {fresh_twin:,.0f}/s[/]")
    return ChurnResult(
        label,
        before,
        fresh_twin,
        after,
        paired,
        pushed / churn_seconds if churn_seconds > 0 else 0.0,
        calls,
        maint_seconds,
        size_fresh,
        size_after,
        partitions if partitioned else None,
    )


def run(contenders: Contenders, sizes: ChurnSizes) -> ResultTable | None:
    if not contenders.have(HOWDAH):
        return None
    url = contenders.urls[HOWDAH]
    results: list[ChurnResult | tuple[str, str]] = []
    variants = [
        (
            f"partitioned (interval {sizes.partition_interval:,}, retention {sizes.retention_interval:,})",
            "churn_part",
            True,
        ),
        ("not partitioned (autovacuum)", "churn_plain", False),
    ]
    for label, queue, partitioned in variants:
        try:
            results.append(_one(url, label, queue, partitioned, sizes))
        except psycopg.Error as exc:
            results.append((label, f"{type(exc).__name__}: {exc}".strip()))
    table = ResultTable(
        f"Table 4 — Howdah queue before and after {sizes.churn:,} messages of churn "
        "(send 100 + read 100 + delete 100, messages/s)",
        [
            "queue",
            "before churn",
            "after churn",
            "fresh twin",
            "after/fresh twin (target ≥ 0.90x)",
            "churn rate",
            "maintain_partitions",
            "table size fresh → after",
        ],
        settings=f"{sizes.churn:,} messages of churn in batches of {CHURN_BATCH:,}, workload batches of "
        f"{WORKLOAD_BATCH}, {sizes.pairs} paired runs of {sizes.workload_seconds:g} s; one connection, autocommit",
    )
    for result in results:
        if isinstance(result, tuple):
            table.add_row(result[0], "error", "error", "error", "n/a", "n/a", "n/a", "n/a")
            table.notes.append(f"{result[0]} failed: {result[1]}")
            continue
        maintenance = "—"
        if result.maintenance_calls:
            maintenance = f"{result.maintenance_calls} call(s), {result.maintenance_seconds:.2f} s in all"
        size = f"{fmt_bytes(result.size_fresh)} → {fmt_bytes(result.size_after)}"
        if result.partitions_after is not None:
            size += f" ({result.partitions_after} partitions)"
        table.add_row(
            result.label,
            fmt_rate(result.before),
            fmt_rate(result.after),
            fmt_rate(result.twin),
            fmt_ratio(result.paired_ratio),
            fmt_rate(result.churn_rate),
            maintenance,
            size,
        )
    table.notes.append(
        f"Churn: batches of {CHURN_BATCH:,} sent, read and deleted on one connection; maintenance every "
        f"{sizes.maintain_every:,} messages on the partitioned queue (its time is not in the churn rate). "
        f"After the churn the queue and a new twin ran the workload {sizes.pairs} times each in alternation "
        f"({sizes.workload_seconds:.1f} s a run); the ratio is the median of the paired ratios. 'Before churn' is "
        "the median of three runs on the fresh queue, measured earlier (not paired)."
    )
    return table
