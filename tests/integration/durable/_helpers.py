"""Helpers of the durable-workflow tests: bounded waits, side effects and gates in tables, in-process workers,
and worker processes (no fixtures here; see ``conftest.py``).

Side effects go to the module database's ``effects`` table (one row per execution of a step body, so a step that
ran twice shows up twice) and a test releases a blocked step or workflow by inserting its row into ``gates``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import psycopg

from howdah.durable import DurableApp, RetryPolicy, Worker
from tests.waiting import async_wait_until as async_wait_until
from tests.waiting import wait_until as wait_until

T = TypeVar("T")

WORKER_SCRIPT = Path(__file__).with_name("worker_proc.py")
FAST_RETRY = RetryPolicy(max_attempts=3, initial_delay=0.01, max_delay=0.05)

TABLES = """
CREATE TABLE IF NOT EXISTS effects (
    workflow_id text        NOT NULL,
    step        text        NOT NULL,
    phase       text        NOT NULL DEFAULT 'run',
    worker      text        NOT NULL DEFAULT 'test',
    payload     jsonb,
    at          timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE TABLE IF NOT EXISTS gates (workflow_id text NOT NULL, point text NOT NULL);
"""


def new_id(prefix: str = "wf") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


# ---------------------------------------------------------------------------------- effects and gates (SQL)
class Side:
    """Side effects and gates of in-process workflows; ``dsn`` is set per test module by ``conftest.py``."""

    dsn: str = ""

    # Sync variants (for sync steps, which run in a worker thread, and for test code).
    @classmethod
    def record(cls, workflow_id: str, step: str, phase: str = "run", payload: Any = None) -> None:
        with psycopg.connect(cls.dsn, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO effects (workflow_id, step, phase, payload) VALUES (%s, %s, %s, %s)",
                (workflow_id, step, phase, None if payload is None else json.dumps(payload)),
            )

    @classmethod
    def count(cls, workflow_id: str, step: str | None = None, phase: str | None = None) -> int:
        with psycopg.connect(cls.dsn, autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*) FROM effects WHERE workflow_id = %s AND (%s::text IS NULL OR step = %s) "
                "AND (%s::text IS NULL OR phase = %s)",
                (workflow_id, step, step, phase, phase),
            ).fetchone()
        return int(row[0]) if row else 0

    @classmethod
    def open_gate(cls, workflow_id: str, point: str) -> None:
        with psycopg.connect(cls.dsn, autocommit=True) as conn:
            conn.execute("INSERT INTO gates (workflow_id, point) VALUES (%s, %s)", (workflow_id, point))

    # Async variants (for async steps and workflow code).
    @classmethod
    async def arecord(cls, workflow_id: str, step: str, phase: str = "run", payload: Any = None) -> None:
        async with await psycopg.AsyncConnection.connect(cls.dsn, autocommit=True) as conn:
            await conn.execute(
                "INSERT INTO effects (workflow_id, step, phase, payload) VALUES (%s, %s, %s, %s)",
                (workflow_id, step, phase, None if payload is None else json.dumps(payload)),
            )

    @classmethod
    async def acount(cls, workflow_id: str, step: str | None = None, phase: str | None = None) -> int:
        return await asyncio.to_thread(cls.count, workflow_id, step, phase)

    @classmethod
    async def wait_gate(cls, workflow_id: str, point: str, timeout: float = 30.0) -> None:
        async with await psycopg.AsyncConnection.connect(cls.dsn, autocommit=True) as conn:
            deadline = time.monotonic() + timeout
            while True:
                cursor = await conn.execute(
                    "SELECT 1 FROM gates WHERE workflow_id = %s AND point = %s", (workflow_id, point)
                )
                if await cursor.fetchone():
                    return
                if time.monotonic() > deadline:
                    raise TimeoutError(f"gate {point!r} of {workflow_id!r} never opened")
                await asyncio.sleep(0.02)


# ------------------------------------------------------------------------------------- in-process workflows
@dataclass
class Registry:
    """Workflows of one test module, declared on each test's fresh :class:`DurableApp` by the ``app`` fixture."""

    entries: list[tuple[Callable[..., Any], dict[str, Any]]] = field(default_factory=list)

    def workflow(self, **options: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def add(fn: Callable[..., Any]) -> Callable[..., Any]:
            self.entries.append((fn, options))
            return fn

        return add

    def install(self, app: DurableApp) -> None:
        for fn, options in self.entries:
            app.workflow(**options)(fn)


@contextlib.asynccontextmanager
async def running(app: DurableApp, *, concurrency: int = 8, count: int = 1) -> AsyncIterator[list[Worker]]:
    """Run ``count`` workers for ``app`` in this event loop while the block runs; stop them afterwards."""
    stop = asyncio.Event()
    workers = [Worker(app, concurrency=concurrency, poll_interval=0.1, schedule_interval=0.2) for _ in range(count)]
    tasks = [asyncio.create_task(w.run(stop, handle_signals=False)) for w in workers]
    try:
        await asyncio.sleep(0)
        yield workers
    finally:
        stop.set()
        _, pending = await asyncio.wait(tasks, timeout=5)
        for task in pending:  # a handler still blocked (e.g. in a gate): do not wait for its shutdown timeout
            task.cancel()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        failures = [o for o in outcomes if isinstance(o, BaseException) and not isinstance(o, asyncio.CancelledError)]
        assert not failures, f"a worker died: {failures!r}"


# --------------------------------------------------------------------------------------- worker processes
class Procs:
    """Worker processes (``worker_proc.py``) started by a test; leftovers are killed (by pid) at teardown."""

    def __init__(self, db_url: str, queue: str, logs: Path) -> None:
        self.db_url, self.queue, self.logs = db_url, queue, logs
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, worker: str, **config: Any) -> subprocess.Popen[bytes]:
        config = {"dsn": self.db_url, "queue": self.queue, "worker": worker, **config}
        log = open(self.logs / f"{worker}.log", "wb")  # noqa: SIM115 - closed once the child has it
        proc = subprocess.Popen(
            [sys.executable, str(WORKER_SCRIPT), json.dumps(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=os.environ.copy(),
        )
        log.close()
        self.procs[worker] = proc
        return proc

    def log(self, worker: str) -> str:
        path = self.logs / f"{worker}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def logs_text(self) -> str:
        return "\n".join(f"--- {name}:\n{self.log(name)[-4000:]}" for name in self.procs)

    def alive(self, worker: str) -> bool:
        return self.procs[worker].poll() is None

    def kill(self, worker: str) -> None:
        """SIGKILL: no cleanup of any kind runs in the worker."""
        proc = self.procs[worker]
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def terminate_all(self, timeout: float = 30) -> None:
        """SIGTERM every worker still running; each must exit 0."""
        running_ = [name for name, proc in self.procs.items() if proc.poll() is None]
        for name in running_:
            self.procs[name].send_signal(signal.SIGTERM)
        for name in running_:
            try:
                code = self.procs[name].wait(timeout)
            except subprocess.TimeoutExpired:
                raise AssertionError(f"worker {name} ignored SIGTERM for {timeout}s:\n{self.log(name)}") from None
            assert code == 0, f"worker {name} exited with {code}:\n{self.log(name)}"

    def kill_leftovers(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


def scalar(dsn: str, query: str, params: Any = None) -> Any:
    """One value from a fresh connection (so it works across a Postgres restart)."""
    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
        row = conn.execute(query, params).fetchone()
    return None if row is None else row[0]


def rows(dsn: str, query: str, params: Any = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
        return conn.execute(query, params).fetchall()


async def counts(db_url: str, queue: str) -> tuple[int, int]:
    """(workflows, messages on the dispatch queue ``queue``)."""
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        workflows = await (await conn.execute("SELECT count(*) FROM howdah.workflows")).fetchone()
        messages = await (await conn.execute("SELECT queue_length FROM pgmq.metrics(%s)", (queue,))).fetchone()
    assert workflows is not None and messages is not None
    return int(workflows[0]), int(messages[0])


def status(dsn: str, workflow_id: str) -> str | None:
    value = scalar(dsn, "SELECT status FROM howdah.workflows WHERE id = %s", (workflow_id,))
    return None if value is None else str(value)


def step_counts(dsn: str, workflow_id: str, phase: str) -> dict[str, int]:
    """How many times each step body reached ``phase`` for one workflow."""
    return {
        str(step): int(n)
        for step, n in rows(
            dsn,
            "SELECT step, count(*) FROM effects WHERE workflow_id = %s AND phase = %s GROUP BY step",
            (workflow_id, phase),
        )
    }


async def mark(workflow_id: str, step: str) -> str:
    """A step that records that it ran."""
    await Side.arecord(workflow_id, step)
    return step


async def gated(workflow_id: str, step: str) -> str:
    """Runs until the test opens the gate ``step`` of this workflow."""
    await Side.arecord(workflow_id, step, "start")
    await Side.wait_gate(workflow_id, step)
    await Side.arecord(workflow_id, step, "end")
    return step


def start_pipeline(db_url: str, procs: Procs, args: dict[str, Any], prefix: str = "wf") -> str:
    """Start the worker processes' ``pipeline`` (``args["steps"]``…) from SQL once a worker has registered it
    for this test's queue."""
    wait_until(
        lambda: scalar(db_url, "SELECT queue_name FROM howdah.workflow_types WHERE name = 'pipeline'") == procs.queue,
        what="a worker to register the workflow types",
    )
    wf = new_id(prefix)
    scalar(
        db_url,
        "SELECT id FROM howdah.start_workflow('pipeline', %s::jsonb, workflow_id => %s)",
        (json.dumps(args), wf),
    )
    return wf


def wait_for(procs: Procs, predicate: Any, what: str, timeout: float = 30) -> None:
    """:func:`wait_until`, with the worker processes' logs in the failure."""
    try:
        wait_until(predicate, timeout=timeout, what=what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{procs.logs_text()}") from None
