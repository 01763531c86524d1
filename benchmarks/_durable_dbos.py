"""DBOS's side of the durable benchmark (each function runs in its own spawned process).

DBOS (the ``dbos`` package, DBOS Transact) runs a workflow in the process that starts it: ``DBOS.start_workflow``
records the workflow and runs it on the process's thread pool. Its documented way to spread workflows over
several processes is a queue: every launched process that listens to the queue dequeues from it, and
``worker_concurrency`` bounds how many each runs at once. So: one worker = one process calling
``DBOS.start_workflow``; N workers = one starting process that enqueues (it listens to no queue) and N processes
listening to the queue. DBOS is configured in code with a Postgres URL (its system database, the only database
it needs since 3.0): no config file, no DBOS Cloud, no Conductor. Steps are plain sync functions, its default and
faster style here (async workflows on the event loop measured slower in this setup).
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from dbos import DBOS, DBOSConfig

from benchmarks._durable_common import (
    BACKLOG_STEPS,
    Sequential,
    Sizes,
    Throughput,
    drain_round,
    durations,
    timed_rounds,
)
from benchmarks._processes import processes, quiet_logging, spawn_context, wait_for_sigterm

APP = "howdah_bench"
QUEUE = "bench"
FINISHED = (
    "SELECT count(*) FILTER (WHERE status IN ('SUCCESS', 'ERROR', 'CANCELLED', 'MAX_RECOVERY_ATTEMPTS_EXCEEDED')), "
    "count(*) FILTER (WHERE status IN ('ERROR', 'CANCELLED', 'MAX_RECOVERY_ATTEMPTS_EXCEEDED')), "
    "max(completed_at) / 1000.0 FROM dbos.workflow_status WHERE created_at >= (%s * 1000)::bigint"
)
SPAN = (
    "SELECT min(started_at_epoch_ms) / 1000.0, max(completed_at) / 1000.0 FROM dbos.workflow_status "
    "WHERE created_at >= (%s * 1000)::bigint"
)
DURATIONS = (
    "SELECT workflow_uuid, (completed_at - created_at) / 1000.0 FROM dbos.workflow_status WHERE workflow_uuid = ANY(%s)"
)


@DBOS.step()
def bump(value: int) -> int:
    return value + 1


@DBOS.workflow(name="three")
def three(x: int) -> int:
    return bump(bump(bump(x)))


@DBOS.workflow(name="five")
def five(x: int) -> int:
    for _ in range(BACKLOG_STEPS):
        x = bump(x)
    return x


@DBOS.workflow(name="one")
def one(x: int) -> int:
    return bump(x)


@DBOS.workflow(name="steps")
def steps(n: int) -> int:
    value = 0
    for _ in range(n):
        value = bump(value)
    return value


def sqlalchemy_url(url: str) -> str:
    """A ``postgresql://`` URL (what DBOS takes) for a libpq URL or ``key=value`` connection string."""
    from psycopg.conninfo import conninfo_to_dict
    from sqlalchemy.engine import URL

    parts = {key: str(value) for key, value in conninfo_to_dict(url).items() if value is not None}
    port = parts.get("port")
    return URL.create(
        "postgresql",
        username=parts.get("user"),
        password=parts.get("password"),
        host=parts.get("host"),
        port=int(port) if port else None,
        database=parts.get("dbname"),
    ).render_as_string(hide_password=False)


def launch(url: str, sizes: Sizes, executor_id: str, listen: list[str] | None = None, go: Any = None) -> None:
    """Configure DBOS and launch it (with ``go``: once ``go`` is set; launching starts dequeuing)."""
    config: DBOSConfig = {
        "name": APP,
        "system_database_url": sqlalchemy_url(url),
        "sys_db_pool_size": sizes.pool_size,
        "executor_id": executor_id,
        "log_level": "WARNING",
    }
    DBOS(config=config)
    if listen is not None:
        DBOS.listen_queues(listen)
    if go is not None:
        go.wait()
    DBOS.launch()


def _rounds(url: str, sizes: Sizes, warmup: int, start: Any, pids: list[int] | None = None) -> Throughput:
    """The shared timed rounds, each start call ``start(i)`` made from ``sizes.starters`` threads."""

    def start_many(count: int) -> None:
        with ThreadPoolExecutor(sizes.starters) as pool:
            for _ in pool.map(start, range(count)):
                pass

    async def run() -> Throughput:
        return await timed_rounds(url, FINISHED, sizes, warmup, lambda n: asyncio.to_thread(start_many, n), pids)

    return asyncio.run(run())


# ----------------------------------------------------------------------------------------------- throughput
def throughput(url: str, sizes: Sizes, workers: int) -> Throughput:
    """(a): ``sizes.rounds`` rounds of ``sizes.workflows`` 3-step workflows with ``workers`` worker processes."""
    if workers == 1:
        launch(url, sizes, "bench-1")
        try:
            result = _rounds(url, sizes, sizes.warmup, lambda i: DBOS.start_workflow(three, i))
        finally:
            DBOS.destroy()
        result.how = (
            f"1 process: {sizes.starters} threads calling DBOS.start_workflow (runs in-process on DBOS's "
            f"thread pool), system-database pool of {sizes.pool_size}"
        )
        return result

    launch(url, sizes, "bench-starter", listen=[])  # runs the migrations before the workers arrive
    try:
        queue = DBOS.register_queue(
            QUEUE,
            worker_concurrency=sizes.concurrency,
            polling_interval_sec=sizes.dbos_poll,
            on_conflict="always_update",
        )
        with processes(_worker_process, [(url, sizes, i, None) for i in range(workers)], "dbos-worker") as procs:
            time.sleep(1.0)  # the queue manager starts each queue's dequeue thread within a second of launch
            warmup = max(sizes.warmup, workers * sizes.concurrency)
            pids = [p.pid for p in procs]
            result = _rounds(url, sizes, warmup, lambda i: queue.enqueue(three, i), pids)
    finally:
        DBOS.destroy()
    result.how = (
        f"1 starting process ({sizes.starters} threads calling Queue.enqueue; it listens to no queue) + {workers} "
        f"processes listening to the queue (worker_concurrency={sizes.concurrency}, "
        f"polling_interval_sec={sizes.dbos_poll:g})"
    )
    return result


def _worker_process(url: str, sizes: Sizes, index: int, go: Any, ready: Any) -> None:
    """A DBOS process that dequeues from the queue until SIGTERM (with ``go``: configured at once, launched once
    ``go`` is set)."""
    quiet_logging()
    if go is None:
        launch(url, sizes, f"bench-worker-{index}")
        ready.set()
    else:
        ready.set()
        launch(url, sizes, f"bench-worker-{index}", go=go)
    wait_for_sigterm()
    DBOS.destroy()


# ----------------------------------------------------------------------------------------------- backlog
def backlog(url: str, sizes: Sizes, workers: int) -> Throughput:
    """(d): ``sizes.workflows`` 5-step workflows enqueued first (``sizes.starters`` threads), then run by
    ``workers`` processes listening to the queue, launched together."""
    since = time.time() - 1
    first = time.time()
    launch(url, sizes, "bench-starter", listen=[])
    try:
        queue = DBOS.register_queue(
            QUEUE, worker_concurrency=sizes.concurrency, polling_interval_sec=sizes.dbos_poll,
            on_conflict="always_update",
        )  # fmt: skip
        with ThreadPoolExecutor(sizes.starters) as pool:
            for _ in pool.map(lambda i: queue.enqueue(five, i), range(sizes.workflows)):
                pass
    finally:
        DBOS.destroy()
    started = time.time() - first
    go = spawn_context().Event()
    with processes(_worker_process, [(url, sizes, i, go) for i in range(workers)], "dbos-worker"):
        go.set()
        result = Throughput(rounds=[drain_round(url, FINISHED, SPAN, since, sizes.workflows, started)])
    result.how = (
        f"workflows enqueued first ({sizes.starters} threads calling Queue.enqueue), then {workers} process(es) "
        f"listening to the queue (worker_concurrency={sizes.concurrency}, polling_interval_sec={sizes.dbos_poll:g})"
    )
    return result


# ----------------------------------------------------------------------------------------------- sequential
def sequential(url: str, sizes: Sizes) -> Sequential:
    """(b) and (c): one run at a time, started with ``DBOS.start_workflow`` and awaited with ``get_result``."""
    result = Sequential()
    launch(url, sizes, "bench-seq")
    try:
        for i in range(max(3, sizes.warmup // 10)):
            DBOS.start_workflow(one, i).get_result()
            DBOS.start_workflow(steps, 3).get_result()
        zero, long = [], []
        for _ in range(sizes.repeats):
            handle = DBOS.start_workflow(steps, 0)
            handle.get_result()
            zero.append(handle.get_workflow_id())
            handle = DBOS.start_workflow(steps, sizes.steps)
            handle.get_result()
            long.append(handle.get_workflow_id())
        latency = []
        for i in range(sizes.latency_runs):
            begin = time.perf_counter()
            handle = DBOS.start_workflow(one, i)
            handle.get_result()
            result.client.append(time.perf_counter() - begin)
            latency.append(handle.get_workflow_id())
    finally:
        DBOS.destroy()
    durations(url, DURATIONS, [(zero, result.zero), (long, result.long), (latency, result.server)])
    return result
