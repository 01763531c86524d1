"""Shared pieces of the durable-workflow benchmark: sizes, results, process plumbing and database-side timing.

Every measurement runs in a fresh process (``spawn``), so each system starts cold in the same way, DBOS's
process-wide singleton never meets Howdah's event loop, and worker processes are real OS processes. Times that
decide a figure are read from the database's own timestamps (when a workflow row was created and when it was
finished), so the way a client learns about completion does not blur throughput or per-step figures.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

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


# ----------------------------------------------------------------------------------------------- processes
def _trampoline(module: str, function: str, args: tuple[Any, ...]) -> Any:
    quiet_logging()
    return getattr(importlib.import_module(module), function)(*args)


def run_isolated(module: str, function: str, *args: Any) -> Any:
    """``module.function(*args)`` in a fresh spawned process; its return value (the module is imported only
    there, so a system whose package is missing fails that call alone)."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_trampoline, module, function, args).result()


def spawn_context() -> Any:
    return multiprocessing.get_context("spawn")


class _DropNotPartitioned(logging.Filter):
    """Howdah's consumer runs partition maintenance on its (unpartitioned) dispatch queue and logs a warning about
    it once per worker; that is noise here, everything else is shown."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "is not partitioned" not in record.getMessage()


def quiet_logging() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(processName)s %(name)s %(levelname)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(_DropNotPartitioned())


# ----------------------------------------------------------------------------------------------- CPU time
CpuSample = tuple[float | None, float | None]
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (state first), or None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()


def _cpu(fields: list[str], children: bool = False) -> float:
    ticks = int(fields[11]) + int(fields[12]) + (int(fields[13]) + int(fields[14]) if children else 0)
    return ticks / _TICKS


def _postmaster(url: str) -> int | None:
    """The pid of the Postgres server behind ``url`` when it runs on this machine (Linux), else None."""
    host = conninfo_to_dict(url).get("host") or ""
    if host not in ("", "localhost", "127.0.0.1", "::1") and not host.startswith("/"):
        return None
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
        fields = _stat(int(row[0])) if row else None  # while the backend still exists
    if fields is None:
        return None
    parent = int(fields[1])
    try:
        return parent if Path(f"/proc/{parent}/comm").read_text().strip().startswith("postgres") else None
    except OSError:
        return None


class CpuMeter:
    """CPU seconds used so far by client processes (this one and ``pids``) and by the local Postgres server
    (the postmaster, its live children, and the children it has reaped: exited backends)."""

    def __init__(self, url: str, pids: list[int] | None = None) -> None:
        self.pids = [os.getpid(), *(pids or [])]
        self.postmaster = _postmaster(url)

    def client(self) -> float | None:
        total = 0.0
        for pid in self.pids:
            fields = _stat(pid)
            if fields is None:
                return None
            total += _cpu(fields)
        return total

    def server(self) -> float | None:
        if self.postmaster is None:
            return None
        main = _stat(self.postmaster)
        if main is None:
            return None
        total = _cpu(main, children=True)
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                fields = _stat(int(entry.name))
                if fields is not None and int(fields[1]) == self.postmaster:
                    total += _cpu(fields)
        return total

    def sample(self) -> CpuSample:
        return self.client(), self.server()


def used(
    before: tuple[float | None, float | None], after: tuple[float | None, float | None]
) -> tuple[float | None, ...]:
    return tuple(None if a is None or b is None else a - b for a, b in zip(after, before, strict=True))


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


@contextlib.contextmanager
def stopping_processes(processes: list[Any], grace: float = 20.0) -> Iterator[None]:
    """At the end, ask ``processes`` to stop with SIGTERM (they finish in-flight work and exit) and reap them
    (killed if they do not exit within ``grace``)."""
    try:
        yield
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()
        deadline = time.monotonic() + grace
        for process in processes:
            process.join(max(0.1, deadline - time.monotonic()))
        for process in processes:
            if process.is_alive():
                process.kill()
                process.join(5)


def wait_ready(events: list[Any], processes: list[Any], timeout: float = 120.0) -> None:
    """Wait until every worker process set its ready event (fail early if one died)."""
    deadline = time.monotonic() + timeout
    for event in events:
        while not event.wait(0.2):
            dead = [p for p in processes if p.exitcode is not None]
            if dead:
                raise RuntimeError(f"worker process {dead[0].name} exited with {dead[0].exitcode} before it was ready")
            if time.monotonic() > deadline:
                raise TimeoutError("worker processes were not ready in time")


def wait_for_sigterm() -> None:
    """Block this (main) thread until SIGTERM or SIGINT arrives."""
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    while not stop.wait(0.5):
        pass


def sigterm_exits() -> None:
    """Turn SIGTERM into SystemExit in this process, so ``finally`` blocks (stopping servers) still run."""

    def leave(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, leave)
