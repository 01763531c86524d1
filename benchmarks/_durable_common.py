"""Shared pieces of the durable-workflow benchmark: sizes, results, the timed rounds and database-side timing.

Every measurement runs in a fresh process (``spawn``), so each system starts cold in the same way, DBOS's
process-wide singleton never meets Howdah's event loop, and worker processes are real OS processes. Times that
decide a figure are read from the database's own timestamps (when a workflow row was created and when it was
finished), so the way a client learns about completion does not blur throughput or per-step figures.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import psycopg

from benchmarks._processes import CpuMeter, used

HOWDAH, DBOS = "howdah", "dbos"
LABELS = {HOWDAH: "Howdah", DBOS: "DBOS"}


@dataclass(frozen=True)
class Sizes:
    workflows: int  # workflows per throughput round
    rounds: int  # throughput rounds per configuration (the median is reported)
    workers: int  # worker processes of the multi-worker configuration
    concurrency: int  # workflows in flight per worker process
    starters: int  # concurrent start calls in the starting process
    steps: int  # steps of the long workflow of the per-step overhead figure
    repeats: int  # runs of each of the 0-step and the long workflow
    latency_runs: int  # sequential 1-step runs for the latency percentiles
    warmup: int  # untimed workflows run first in every process
    pool_size: int  # connections per process (DBOS's default system-database pool is 20)
    dbos_poll: float  # DBOS queue polling interval (seconds) in the multi-worker configuration


@dataclass
class Round:
    """One throughput round: ``seconds`` from the first start call to the last workflow's finish (database clock,
    which is this machine's clock); ``started`` from the first start call to the last start call's return."""

    workflows: int
    seconds: float
    started: float
    client_cpu: float | None = None  # CPU seconds of the system's processes (starter and workers) in the round
    server_cpu: float | None = None  # CPU seconds of the Postgres server in the round (None if not local)

    @property
    def per_second(self) -> float:
        return self.workflows / self.seconds if self.seconds > 0 else float("nan")


@dataclass
class Throughput:
    rounds: list[Round] = field(default_factory=list)
    workflows_total: int = 0  # including the warm-up, for per-workflow server counters
    waiter_queries: int = 0  # the completion poller's own transactions (subtracted from the commit count)
    how: str = ""


@dataclass
class Sequential:
    """Durations in seconds. ``zero``/``long``: server-side created → finished of the 0-step and the long
    workflow; ``client``: start call → result in hand; ``server``: the same runs, created → finished."""

    zero: list[float] = field(default_factory=list)
    long: list[float] = field(default_factory=list)
    client: list[float] = field(default_factory=list)
    server: list[float] = field(default_factory=list)


# ----------------------------------------------------------------------------------------------- waiting
class Completion:
    """Polls one database until ``expected`` workflows created since ``since`` have finished.

    ``query`` takes ``(since,)`` and returns ``(finished, failed, last_finish_epoch)``.
    """

    def __init__(self, url: str, query: str, interval: float = 0.01) -> None:
        self.url = url
        self.query = query
        self.interval = interval
        self.queries = 0

    def wait(self, since: float, expected: int, timeout: float) -> float:
        """The epoch of the last finish once all ``expected`` are done; raises on failures or timeout."""
        deadline = time.monotonic() + timeout
        with psycopg.connect(self.url, autocommit=True) as conn:
            while True:
                row = conn.execute(self.query, (since,), prepare=True).fetchone()
                self.queries += 1
                assert row is not None
                finished, failed, last = int(row[0] or 0), int(row[1] or 0), row[2]
                if failed:
                    raise RuntimeError(f"{failed} workflow(s) did not succeed; see the database at {self.url!r}")
                if finished >= expected and last is not None:
                    return float(last)
                if time.monotonic() > deadline:
                    raise TimeoutError(f"only {finished} of {expected} workflows finished within {timeout:.0f}s")
                time.sleep(self.interval)


def wait_timeout(workflows: int) -> float:
    return max(120.0, workflows / 5)


async def timed_rounds(
    url: str,
    finished: str,
    sizes: Sizes,
    warmup: int,
    start_many: Callable[[int], Awaitable[None]],
    pids: list[int] | None = None,
) -> Throughput:
    """An untimed warm-up of ``warmup`` workflows, then ``sizes.rounds`` rounds of ``sizes.workflows``, each
    started by ``start_many(count)`` and timed from the first start call to the last finish (``finished``: the
    system's :class:`Completion` query)."""  # fmt: skip
    result = Throughput()
    completion = Completion(url, finished)
    meter = CpuMeter(url, pids)
    since = time.time() - 1
    await start_many(warmup)
    await asyncio.to_thread(completion.wait, since, warmup, wait_timeout(warmup))
    for _ in range(sizes.rounds):
        await asyncio.sleep(0.2)
        cpu = meter.sample()
        first = time.time()
        await start_many(sizes.workflows)
        started = time.time() - first
        last = await asyncio.to_thread(completion.wait, first, sizes.workflows, wait_timeout(sizes.workflows))
        result.rounds.append(Round(sizes.workflows, last - first, started, *used(cpu, meter.sample())))
    result.workflows_total = warmup + sizes.rounds * sizes.workflows
    result.waiter_queries = completion.queries
    return result


def durations(url: str, query: str, groups: list[tuple[list[str], list[float]]]) -> None:
    """Each group's workflow ids → their created → finished durations (``query`` takes the array of ids)."""
    with psycopg.connect(url, autocommit=True) as conn:
        for ids, into in groups:
            found: dict[str, float] = dict(conn.execute(query, (ids,)).fetchall())
            into.extend(float(found[i]) for i in ids)


# ----------------------------------------------------------------------------------------------- backlog
BACKLOG_STEPS = 5  # the backlog scenario's workflows: five trivial steps


def drain_round(url: str, finished: str, span: str, since: float, workflows: int, started: float) -> Round:
    """One backlog round once ``workflows`` were started (after ``since``, taking ``started`` seconds) and the
    workers let go: wait until all finished, then time first execution start → last finish (database clock),
    so that how long a system's worker processes take to come up is not counted."""
    Completion(url, finished).wait(since, workflows, wait_timeout(workflows))
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(span, (since,)).fetchone()
    assert row is not None and row[0] is not None and row[1] is not None
    return Round(workflows, float(row[1]) - float(row[0]), started)
