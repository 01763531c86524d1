"""The harness's process plumbing: fresh processes for each contender, stopping them, their CPU time, and the
server's transaction counters.

Benchmarks that run a system in several OS processes (the durable workers, the queue producers and consumers)
start them here, the same way for every contender: ``spawn`` (a fresh interpreter, nothing inherited), a
readiness event per process, SIGTERM to stop (each finishes its in-flight work), SIGKILL after a grace period.
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
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict


# ----------------------------------------------------------------------------------------------- processes
def spawn_context() -> Any:
    return multiprocessing.get_context("spawn")


def forkserver_context(preload: Sequence[str]) -> Any:
    """Processes forked from a clean server process that imported ``preload`` once: nothing of this process is
    inherited (as with spawn), and starting one costs milliseconds instead of a fresh interpreter's imports."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(list(preload))
    return ctx


def _trampoline(module: str, function: str, args: tuple[Any, ...]) -> Any:
    quiet_logging()
    return getattr(importlib.import_module(module), function)(*args)


def run_isolated(module: str, function: str, *args: Any) -> Any:
    """``module.function(*args)`` in a fresh spawned process; its return value (the module is imported only
    there, so a system whose package is missing fails that call alone)."""
    with ProcessPoolExecutor(1, mp_context=spawn_context()) as pool:
        return pool.submit(_trampoline, module, function, args).result()


class _DropNotPartitioned(logging.Filter):
    """Howdah's consumer runs partition maintenance on unpartitioned queues and logs a warning about it once
    per consumer; that is noise here, everything else is shown."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "is not partitioned" not in record.getMessage()


def quiet_logging() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(processName)s %(name)s %(levelname)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(_DropNotPartitioned())


@contextlib.contextmanager
def processes(
    target: Callable[..., None],
    args: Sequence[tuple[Any, ...]],
    name: str,
    grace: float = 20.0,
    ctx: Any = None,
) -> Iterator[list[Any]]:
    """One process per entry of ``args`` (spawned, unless ``ctx`` says otherwise), each ``target(*args[i],
    ready)``: yields them once every one has set its ``ready`` event, and stops them at the end (SIGTERM, then
    SIGKILL after ``grace``)."""
    ctx = ctx or spawn_context()
    ready = [ctx.Event() for _ in args]
    procs = [
        ctx.Process(target=target, args=(*a, ready[i]), name=f"{name}-{i}", daemon=False) for i, a in enumerate(args)
    ]
    for process in procs:
        process.start()
    with stopping_processes(procs, grace):
        wait_ready(ready, procs)
        yield procs


@contextlib.contextmanager
def stopping_processes(procs: list[Any], grace: float = 20.0) -> Iterator[None]:
    """At the end, ask ``procs`` to stop with SIGTERM (they finish in-flight work and exit) and reap them
    (killed if they do not exit within ``grace``)."""
    try:
        yield
    finally:
        for process in procs:
            if process.is_alive():
                process.terminate()
        deadline = time.monotonic() + grace
        for process in procs:
            process.join(max(0.1, deadline - time.monotonic()))
        for process in procs:
            if process.is_alive():
                process.kill()
                process.join(5)


def wait_ready(events: list[Any], procs: list[Any], timeout: float = 120.0) -> None:
    """Wait until every process set its ready event (fail early if one died)."""
    deadline = time.monotonic() + timeout
    for event in events:
        while not event.wait(0.2):
            dead = [p for p in procs if p.exitcode is not None]
            if dead:
                raise RuntimeError(f"process {dead[0].name} exited with {dead[0].exitcode} before it was ready")
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
    host = str(conninfo_to_dict(url).get("host") or "")
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


def used(before: CpuSample, after: CpuSample) -> tuple[float | None, ...]:
    return tuple(None if a is None or b is None else a - b for a, b in zip(after, before, strict=True))


# ----------------------------------------------------------------------------------------------- server counters
@dataclass(frozen=True)
class Counters:
    """Cumulative server counters: transactions committed in one database, WAL fsyncs and WAL bytes (all
    databases; nothing else runs meanwhile). ``None`` where the server does not offer the view (pg_stat_io's WAL
    rows are PG 18+). Read them once the processes that did the work have exited: a backend reports its
    counts when it ends (or at most a second after a transaction)."""

    commits: int | None
    fsyncs: int | None
    wal_bytes: int | None

    @staticmethod
    def read(admin_url: str, dbname: str, settle: float = 0.5) -> Counters:
        def one(conn: psycopg.Connection[Any], query: str, params: tuple[Any, ...] = ()) -> int | None:
            try:
                row = conn.execute(query, params).fetchone()
            except psycopg.Error:
                return None
            return None if row is None or row[0] is None else int(row[0])

        time.sleep(settle)  # backends that just exited have flushed their statistics by now
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute("SELECT pg_stat_clear_snapshot()")
            return Counters(
                one(conn, "SELECT xact_commit FROM pg_stat_database WHERE datname = %s", (dbname,)),
                one(conn, "SELECT sum(fsyncs) FROM pg_stat_io WHERE object = 'wal'"),
                one(conn, "SELECT wal_bytes FROM pg_stat_wal"),
            )


def delta(after: int | None, before: int | None) -> int | None:
    return None if after is None or before is None else after - before
