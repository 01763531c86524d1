"""``DurableApp``: declare workflows and schedules, start, signal, cancel and inspect runs."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal, TypeVar, cast

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from howdah.backoff import Backoff
from howdah.durable._codec import check_json
from howdah.durable._context import WorkflowContext
from howdah.durable._errors import (
    DurableError,
    UnknownWorkflow,
    WorkflowCancelled,
    WorkflowConflict,
    WorkflowFailed,
)
from howdah.durable._lease import RunLease
from howdah.durable._schedule import Missed, Schedule
from howdah.durable._store import StepInfo, Store, WorkflowInfo
from howdah.queue import AsyncQueue, validate_queue_name
from howdah.queue._client import owned_async_pool

WorkflowFn = Callable[..., Awaitable[Any]]
F = TypeVar("F", bound=WorkflowFn)
KeyFn = Callable[[dict[str, Any]], Any]

DEFAULT_QUEUE = "howdah_workflows"


@dataclass(frozen=True)
class WorkflowType:
    name: str
    fn: WorkflowFn
    key: str | KeyFn | None
    on_conflict: Literal["reject", "queue"]

    def key_for(self, args: dict[str, Any]) -> str | None:
        if self.key is None:
            return None
        value = args.get(self.key) if isinstance(self.key, str) else self.key(args)
        return None if value is None else str(value)


class WorkflowHandle:
    """A started workflow: ``status()``, ``result(timeout)``, ``cancel()``."""

    def __init__(self, app: DurableApp, workflow_id: str, created: bool = True) -> None:
        self.app = app
        self.workflow_id = workflow_id
        self.created = created  # False when the id already existed (starting is idempotent)

    def __repr__(self) -> str:
        return f"WorkflowHandle({self.workflow_id!r})"

    async def status(self) -> WorkflowInfo:
        return await self.app.get(self.workflow_id)

    async def result(self, timeout: float | None = 60.0) -> Any:
        """Wait for the workflow to finish; its result, or :class:`WorkflowFailed` / :class:`WorkflowCancelled`
        / ``TimeoutError``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        pauses = Backoff(initial=0.002, factor=1.5, cap=0.25).delays()
        while True:
            info = await self.app.get(self.workflow_id)
            if info.status == "succeeded":
                return info.result
            if info.status == "failed":
                raise WorkflowFailed(self.workflow_id, info.error)
            if info.status == "cancelled":
                raise WorkflowCancelled(f"workflow {self.workflow_id!r} was cancelled")
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"workflow {self.workflow_id!r} is still {info.status} after {timeout}s")
            pause = next(pauses)
            await asyncio.sleep(pause if deadline is None else min(pause, max(0.0, deadline - time.monotonic())))

    async def cancel(self) -> int:
        return await self.app.cancel(self.workflow_id)


class DurableApp:
    """A set of workflows and schedules sharing one database and one dispatch queue.

    ``dsn``: the Postgres URL (default: ``howdah.pg.database_url()``). ``lease``: seconds a worker holds a
    workflow without a heartbeat before another may take it over. ``retention``: finished workflows older than
    this are deleted by the workers (``None`` keeps them).
    """

    def __init__(
        self,
        dsn: str | None = None,
        *,
        queue: str = DEFAULT_QUEUE,
        lease: int = 30,
        retention: timedelta | None = timedelta(days=7),
        pool_size: int = 10,
    ) -> None:
        self.queue_name = validate_queue_name(queue)
        if lease < 1:
            raise DurableError("lease must be at least 1 second")
        self.lease = lease
        self.retention = retention
        self._dsn = dsn
        self._pool_size = pool_size
        self.workflows: dict[str, WorkflowType] = {}
        self.schedules: dict[str, Schedule] = {}
        self._pool: AsyncConnectionPool | None = None
        self._queue: AsyncQueue | None = None
        self._store: Store | None = None
        self._registered = False
        self._lock = asyncio.Lock()

    # ------------------------------------------------------------------------------------- declaring
    def workflow(
        self,
        name: str | None = None,
        *,
        key: str | KeyFn | None = None,
        on_conflict: Literal["reject", "queue"] = "reject",
    ) -> Callable[[F], F]:
        """Declare ``async def fn(ctx, args)`` as a workflow.

        ``key``: an args field name (also used by SQL starts) or a function of the args; at most one workflow
        per key is active — a second start is rejected (:class:`WorkflowConflict`) or queued behind it.
        """
        if on_conflict not in ("reject", "queue"):
            raise DurableError(f"on_conflict must be 'reject' or 'queue', not {on_conflict!r}")

        def decorate(fn: F) -> F:
            if not inspect.iscoroutinefunction(cast(Any, fn)):
                raise DurableError(f"workflow {fn.__name__!r} must be an async function (its steps may be sync)")
            wf_name = name or fn.__name__
            if wf_name in self.workflows:
                raise DurableError(f"a workflow named {wf_name!r} is already declared")
            self.workflows[wf_name] = WorkflowType(wf_name, fn, key, on_conflict)
            return fn

        return decorate

    def schedule(
        self, cron: str, *, name: str | None = None, args: dict[str, Any] | None = None, missed: Missed = "skip"
    ) -> Callable[[F], F]:
        """Declare a workflow started on a cron schedule: exactly one run per tick, however many workers.

        ``missed``: after downtime, ``"skip"`` runs only the latest missed tick, ``"catch_up"`` runs each.
        """

        def decorate(fn: F) -> F:
            wf_name = name or fn.__name__
            schedule = Schedule(wf_name, cron, wf_name, check_json(args or {}, "schedule args"), missed)
            self.workflow(wf_name)(fn)  # declared only once the schedule is known to be valid
            self.schedules[wf_name] = schedule
            return fn

        return decorate

    # ------------------------------------------------------------------------------------ connection
    @property
    def store(self) -> Store:
        if self._store is None:
            raise DurableError("the app is not open: use `async with app:` or `await app.open()`")
        return self._store

    @property
    def queue(self) -> AsyncQueue:
        if self._queue is None:
            raise DurableError("the app is not open: use `async with app:` or `await app.open()`")
        return self._queue

    @property
    def dsn(self) -> str:
        """The Postgres URL. Without one given, ``$HOWDAH_DATABASE_URL`` or the embedded server's, which this
        starts when it is not running; it blocks meanwhile (``open()`` does this in a thread instead)."""
        if self._dsn is None:
            self._dsn = _default_url()
        return self._dsn

    async def open(self) -> None:
        """Connect (``async with app`` does this). Without a URL the embedded server is found, and started if
        need be, in a thread: the event loop keeps running meanwhile."""
        async with self._lock:
            if self._pool is not None:
                return
            if self._dsn is None:
                self._dsn = await asyncio.to_thread(_default_url)
            dsn = self._dsn
            pool = owned_async_pool(dsn, self._pool_size)  # dead idle connections are replaced before use
            await pool.open(wait=True, timeout=30)
            self._pool = pool
            self._queue = AsyncQueue(pool)
            self._queue.conninfo = dsn
            self._store = Store(pool)
            await self._queue.create(self.queue_name)

    async def keep_connections(self, count: int, timeout: float = 30.0) -> bool:
        """Keep at least ``count`` connections of the pool open (at most its size), and wait up to ``timeout``
        seconds for them; returns whether they all came up (the pool still grows on demand if not). A worker does
        this before it reads work: its runs then never wait for connections being set up one by one, and the
        database does not set up sessions while it is busiest."""
        pool = self._pool
        if pool is None:
            raise DurableError("the app is not open: use `async with app:`")
        count = min(count, pool.max_size)
        if pool.min_size < count:
            await pool.resize(min_size=count, max_size=pool.max_size)  # opens the missing ones in parallel
        deadline = time.monotonic() + timeout
        try:
            async with contextlib.AsyncExitStack() as held:  # holding them all at once: each is open and usable
                for _ in range(count):
                    await held.enter_async_context(pool.connection(timeout=max(0.0, deadline - time.monotonic())))
        except PoolTimeout:
            return False
        return True

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
        self._pool = self._queue = self._store = None
        self._registered = False

    async def __aenter__(self) -> DurableApp:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def register(self) -> None:
        """Record this app's workflow types (so SQL can start them) and schedules in the database."""
        if self._registered:
            return
        await self.open()
        for wf in self.workflows.values():
            key_field = wf.key if isinstance(wf.key, str) else None
            await self.store.register(wf.name, self.queue_name, key_field, wf.on_conflict)
        self._registered = True

    # -------------------------------------------------------------------------------------- running
    async def start(
        self,
        workflow: str | WorkflowFn,
        args: dict[str, Any] | None = None,
        *,
        workflow_id: str | None = None,
        conn: psycopg.AsyncConnection[Any] | None = None,
        timeout: float | timedelta | None = None,
    ) -> WorkflowHandle:
        """Start a workflow (by name or function); the id is the idempotency key. With ``conn``, the start
        joins that connection's transaction and is rolled back with it. ``timeout`` (seconds or a timedelta):
        the workflow's deadline, counted from now; past it the workflow and its children are cancelled (status
        ``cancelled``, error type ``DeadlineExceeded``), a running step of it cut short."""
        wf = self._type(workflow)
        args = _checked_start(wf, args, workflow_id)
        seconds = _seconds(timeout)
        await self.register()
        key = wf.key_for(args)
        try:
            wf_id, _, created = await self.store.start(wf.name, args, workflow_id, key, conn=conn, timeout=seconds)
        except WorkflowConflict as exc:
            exc.key = key
            raise
        return WorkflowHandle(self, wf_id, created)

    async def start_many(
        self,
        workflow: str | WorkflowFn,
        args: Sequence[dict[str, Any] | None],
        *,
        workflow_ids: Sequence[str | None] | None = None,
        conn: psycopg.AsyncConnection[Any] | None = None,
        timeout: float | timedelta | None = None,
    ) -> list[WorkflowHandle]:
        """Start one workflow per item of ``args``, all in one statement (one round trip, one transaction);
        the handles come back in the order of ``args``.

        ``workflow_ids`` (as long as ``args``; ``None`` items get a fresh id) are idempotency keys as in
        :meth:`start`: an id that exists already, or appears twice in the batch, is not started again (its
        handle has ``created=False``). Exclusivity keys are honoured as by :meth:`start`, so a batch may queue
        runs behind each other; a start refused by its key (:class:`WorkflowConflict`), or any bad item, starts
        nothing of the batch. ``conn`` and ``timeout`` are as for :meth:`start` (``timeout`` applies to each).
        """
        wf = self._type(workflow)
        ids: Sequence[str | None] = [None] * len(args) if workflow_ids is None else workflow_ids
        if len(ids) != len(args):
            raise DurableError(f"workflow_ids has {len(ids)} items for {len(args)} args; give one per args item")
        checked = [_checked_start(wf, item, wf_id) for item, wf_id in zip(args, ids, strict=True)]
        seconds = _seconds(timeout)
        if not checked:
            return []
        await self.register()
        starts = [(item, wf_id, wf.key_for(item)) for item, wf_id in zip(checked, ids, strict=True)]
        started = await self.store.start_many(wf.name, starts, conn=conn, timeout=seconds)
        return [WorkflowHandle(self, wf_id, created) for wf_id, _, created in started]

    def _type(self, workflow: str | WorkflowFn) -> WorkflowType:
        name = workflow if isinstance(workflow, str) else next(
            (n for n, w in self.workflows.items() if w.fn is workflow), getattr(workflow, "__name__", "?")
        )  # fmt: skip
        try:
            return self.workflows[name]
        except KeyError:
            raise UnknownWorkflow(f"unknown workflow {name!r}; declared: {sorted(self.workflows)}") from None

    def handle(self, workflow_id: str) -> WorkflowHandle:
        return WorkflowHandle(self, workflow_id, created=False)

    async def signal(self, workflow_id: str, name: str, payload: Any = None) -> int:
        """Send signal ``name`` to a workflow (wakes it if it waits for that name)."""
        await self.open()
        return await self.store.signal(workflow_id, name, check_json(payload, "the signal payload"))

    async def cancel(self, workflow_id: str) -> int:
        """Cancel a workflow and its children (running ones stop at their next step boundary)."""
        await self.open()
        return await self.store.cancel(workflow_id)

    async def retry(self, workflow_id: str) -> WorkflowHandle:
        """Run a failed or cancelled workflow again from its last successful step."""
        await self.open()
        await self.store.retry(workflow_id)
        return self.handle(workflow_id)

    async def get(self, workflow_id: str) -> WorkflowInfo:
        await self.open()
        return await self.store.get(workflow_id)

    async def steps(self, workflow_id: str) -> list[StepInfo]:
        await self.open()
        return await self.store.steps(workflow_id)

    async def ids_starting_with(self, prefix: str, limit: int = 10) -> list[str]:
        """Up to ``limit`` workflow ids that start with ``prefix``, in order (a scan: for looking one up by hand)."""
        await self.open()
        return await self.store.ids_starting_with(prefix, limit)

    async def list_workflows(self, status: str | None = None, limit: int = 50) -> list[WorkflowInfo]:
        await self.open()
        return await self.store.list_workflows(status, limit)

    async def purge_finished(self, older_than: timedelta, batch: int = 1000) -> int:
        """Delete finished workflows older than ``older_than``, in batches; returns how many."""
        await self.open()
        total = 0
        while (done := await self.store.purge(older_than.total_seconds(), batch)) > 0:
            total += done
        return total

    def context(
        self, workflow_id: str, wf: WorkflowType, args: dict[str, Any], steps: list[list[Any]], run: RunLease,
        executor: Executor | None = None,
    ) -> WorkflowContext:  # fmt: skip
        """The ``ctx`` of one run; its sync steps run on ``executor`` (the worker's step threads)."""

        async def start_child(name: str, child_args: dict[str, Any], child_id: str, parent: str) -> str:
            child = self._type(name)
            wf_id, _, _ = await self.store.start(name, child_args, child_id, child.key_for(child_args), parent)
            return wf_id

        return WorkflowContext(self.store, workflow_id, wf.name, args, steps, start_child, run=run, executor=executor)


def _checked_start(wf: WorkflowType, args: dict[str, Any] | None, workflow_id: str | None) -> dict[str, Any]:
    """The args of one start (``{}`` for None), once they and the id are known to be acceptable."""
    args = {} if args is None else args
    if not isinstance(args, dict):
        raise DurableError("workflow args must be a dict (a JSON object)")
    check_json(args, f"the args of workflow {wf.name!r}")
    if workflow_id is not None and (not isinstance(workflow_id, str) or not 1 <= len(workflow_id) <= 200):
        raise DurableError("workflow_id must be a string of 1 to 200 characters")
    return args


def _seconds(timeout: float | timedelta | None) -> float | None:
    """A workflow timeout in seconds (None: no deadline); refused unless positive."""
    seconds = timeout.total_seconds() if isinstance(timeout, timedelta) else timeout
    if seconds is not None and (isinstance(seconds, bool) or not seconds > 0):
        raise DurableError("a workflow timeout must be a positive number of seconds")
    return seconds


def _default_url() -> str:
    """``$HOWDAH_DATABASE_URL``, else the embedded server's URL, starting the server (blocking) if needed."""
    from howdah import pg  # the embedded server's machinery, only for apps that rely on it

    return pg.database_url()
