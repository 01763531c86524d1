"""Every database call of the durable layer: one round trip each, errors translated once, here."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql
from psycopg.abc import Params
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from howdah.backoff import Backoff
from howdah.durable._batch import Batcher
from howdah.durable._codec import check_json
from howdah.durable._errors import (
    DurableError,
    UnknownWorkflow,
    WorkflowConflict,
    WorkflowFinished,
    WorkflowNotFound,
)
from howdah.errors import DatabaseError
from howdah.pg.queries import load_queries

QUERIES = load_queries("howdah.durable")
TERMINAL = frozenset({"succeeded", "failed", "cancelled"})


class LeaseLost(DurableError):
    """This run no longer holds its workflow (another worker claimed it, or recorded a step first): it stops."""


class DurableDatabaseError(DurableError, DatabaseError):
    """Postgres failed a durable-layer call for a reason other than bad input."""


# SQLSTATEs of an outage rather than of the statement: connection exceptions (class 08), the server shutting down,
# crashing or starting (57P01-57P03), no connection slot (53300). Errors without a SQLSTATE are client-side
# connection failures (closed socket, pool timeout).
_OUTAGE_STATES = frozenset({"57P01", "57P02", "57P03", "53300"})


def is_outage(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or an error it was raised from) says the database is unreachable or restarting: the run
    must stop, and be retried promptly once the database answers; it is not the workflow's failure."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, psycopg.OperationalError):
            state = exc.sqlstate
            if state is None or state.startswith("08") or state in _OUTAGE_STATES:
                return True
        exc, seen = exc.__cause__, seen + 1
    return False


def translate(exc: psycopg.Error) -> DurableError:
    message = (exc.diag.message_primary if exc.diag else None) or str(exc).strip()
    return error_for(exc.sqlstate or "", message, exc.diag.message_detail if exc.diag else None)


# The caller's input, not the database: the SQLSTATEs of these classes (a batch item's error has no class).
_INPUT_STATES = frozenset(
    cls.sqlstate for cls in (pg_errors.InvalidParameterValue, pg_errors.NullValueNotAllowed, pg_errors.CheckViolation)
)
# Deadlock and serialization failure: worth trying again (a statement, a batch item alone, a transaction step).
RETRIED_ERRORS = (pg_errors.DeadlockDetected, pg_errors.SerializationFailure)
_RETRIED_STATES = frozenset(cls.sqlstate for cls in RETRIED_ERRORS)


def error_for(code: str, message: str, detail: str | None = None) -> DurableError:
    """The exception of a failed call, from its SQLSTATE, message and detail."""
    if code == "HW400":
        return UnknownWorkflow(message)
    if code == "HW404":
        return WorkflowNotFound(message)
    if code == "HW409":
        active = detail.removeprefix("active workflow: ") if detail else None
        return WorkflowConflict(message, active_id=active)
    if code == "HW410":
        return WorkflowFinished(message)
    if code == "HW423":
        return LeaseLost(message)
    if code in _INPUT_STATES:
        return DurableError(message)
    return DurableDatabaseError(message)


@dataclass(frozen=True)
class Claim:
    outcome: str  # "claimed"; "lost" (read again by another worker since); "stale" (finished, or not its message)
    name: str | None = None
    args: dict[str, Any] | None = None
    cancel_requested: bool = False
    fence: int = 0  # the run's fencing token: workflows.attempts after this claim
    steps: list[list[Any]] | None = None  # [index, name, kind, result, error]
    lease_left: float | None = None  # seconds before another worker may read the dispatch message
    deadline_left: float | None = None  # seconds before the workflow's deadline (None: no deadline)


@dataclass(frozen=True)
class WorkflowInfo:
    id: str
    name: str
    args: dict[str, Any]
    status: str
    result: Any
    error: dict[str, Any] | None
    attempts: int
    key: str | None
    parent_id: str | None
    created_at: datetime
    started_at: datetime | None
    updated_at: datetime
    finished_at: datetime | None
    wake_at: datetime | None
    waiting_for: str | None

    @property
    def done(self) -> bool:
        return self.status in TERMINAL


@dataclass(frozen=True)
class StepInfo:
    index: int
    name: str
    kind: str
    result: Any
    error: dict[str, Any] | None
    attempts: int
    started_at: datetime
    finished_at: datetime


_WORKFLOW_COLUMNS = (
    "id, name, args, status, result, error, attempts, key, parent_id, created_at, started_at, updated_at, "
    "finished_at, wake_at, waiting_for"
)


def _claim(row: tuple[Any, ...]) -> Claim:
    outcome, name, args, cancel, fence, steps, lease_left, deadline_left = row
    return Claim(outcome, name, args, bool(cancel), int(fence or 0), steps, lease_left, deadline_left)


def _nothing(row: tuple[Any, ...]) -> None:
    return None


def _json(value: Any) -> Jsonb | None:
    return None if value is None else Jsonb(value)


_CHECKPOINT = "SELECT cancel_requested, lease_left FROM howdah._checkpoint(%s, %s, %s, %s, %s, %s, %s, %s, %s)"
_CHECKPOINTS = (
    "SELECT cancel_requested, lease_left, error_state, error_message FROM howdah._checkpoints("
    "%s::text[], %s::integer[], %s::integer[], %s::text[], %s::text[], %s::jsonb[], %s::jsonb[], %s::integer[], "
    "%s::timestamptz[])"
)
_CLAIM_COLUMNS = "outcome, name, args, cancel_requested, attempts, steps, lease_left, deadline_left"
_CLAIM = f"SELECT {_CLAIM_COLUMNS} FROM howdah._claim(%s, %s, %s)"
_CLAIMS = (
    f"SELECT {_CLAIM_COLUMNS}, error_state, error_message FROM howdah._claims(%s::text[], %s::bigint[], %s::integer[])"
)
_END_RUN = "SELECT howdah._end_run(%s, %s, %s, %s, %s)"
_END_RUNS = (
    "SELECT error_state, error_message FROM howdah._end_runs("
    "%s::text[], %s::integer[], %s::text[], %s::jsonb[], %s::jsonb[])"
)
CheckpointItem = tuple[str, int, int, str, str, Jsonb, Jsonb | None, int, datetime]
CheckpointAnswer = tuple[bool, float | None]
EndItem = tuple[str, int, str, Jsonb | None, Jsonb | None]
A = TypeVar("A")


class Store:
    """The durable layer's SQL, over an async pool of autocommit connections."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool
        # Checkpoints of different runs that wait at the same moment share one statement and one commit.
        self._checkpoints: Batcher[CheckpointItem, CheckpointAnswer] = Batcher(
            lambda items: self._batch(_CHECKPOINT, _CHECKPOINTS, items, lambda row: (bool(row[0]), row[1]))
        )
        self._claims: Batcher[tuple[str, int, int], Claim] = Batcher(
            lambda items: self._batch(_CLAIM, _CLAIMS, items, _claim)
        )
        self._ends: Batcher[EndItem, None] = Batcher(lambda items: self._batch(_END_RUN, _END_RUNS, items, _nothing))

    async def rows(
        self,
        query: str | sql.SQL,
        params: Params = (),
        conn: psycopg.AsyncConnection[Any] | None = None,
        wait: float | None = None,
    ) -> list[tuple[Any, ...]]:
        """Run ``query`` on ``conn`` or a pooled connection (waiting at most ``wait`` seconds for one; default:
        the pool's timeout)."""
        for attempt in range(5):
            try:
                if conn is not None:
                    cursor = await conn.execute(query, params)
                    return await cursor.fetchall() if cursor.description else []
                async with self.pool.connection(timeout=wait) as pooled:
                    cursor = await pooled.execute(query, params)
                    return await cursor.fetchall() if cursor.description else []
            except RETRIED_ERRORS as exc:
                if conn is not None or attempt == 4:
                    raise translate(exc) from exc
                await asyncio.sleep(Backoff(initial=0.01, cap=0.08).delay(attempt + 1))
            except psycopg.Error as exc:
                raise translate(exc) from exc
        raise AssertionError("unreachable")

    # ---------------------------------------------------------------------------------------- app side
    async def register(self, name: str, queue: str, key_field: str | None, on_conflict: str) -> None:
        await self.rows(
            "INSERT INTO howdah.workflow_types (name, queue_name, key_field, on_conflict) VALUES (%s, %s, %s, %s) "
            "ON CONFLICT (name) DO UPDATE SET queue_name = EXCLUDED.queue_name, key_field = EXCLUDED.key_field, "
            "on_conflict = EXCLUDED.on_conflict, registered_at = clock_timestamp()",
            (name, queue, key_field, on_conflict),
        )

    async def start(
        self,
        name: str,
        args: dict[str, Any],
        workflow_id: str | None,
        key: str | None,
        parent_id: str | None = None,
        conn: psycopg.AsyncConnection[Any] | None = None,
        timeout: float | None = None,
    ) -> tuple[str, str, bool]:
        rows = await self.rows(
            "SELECT id, status, created FROM howdah.start_workflow(%s, %s, %s, %s, %s, make_interval(secs => %s))",
            (name, Jsonb(args), workflow_id, key, parent_id, timeout),
            conn,
        )
        wf_id, status, created = rows[0]
        return str(wf_id), str(status), bool(created)

    async def start_many(
        self,
        name: str,
        starts: list[tuple[dict[str, Any], str | None, str | None]],
        conn: psycopg.AsyncConnection[Any] | None = None,
        timeout: float | None = None,
    ) -> list[tuple[str, str, bool]]:
        """Start one workflow per ``(args, workflow_id, key)`` in one statement; ``(id, status, created)`` each,
        in order."""
        params = {
            "name": name,
            "args": [Jsonb(args) for args, _, _ in starts],
            "ids": [workflow_id for _, workflow_id, _ in starts],
            "keys": [key for _, _, key in starts],
            "timeout": timeout,
        }
        rows = await self.rows(QUERIES["start_many"], params, conn)
        return [(str(wf_id), str(status), bool(created)) for wf_id, status, created in rows]

    async def get(self, workflow_id: str) -> WorkflowInfo:
        rows = await self.rows(f"SELECT {_WORKFLOW_COLUMNS} FROM howdah.workflows WHERE id = %s", (workflow_id,))
        if not rows:
            raise WorkflowNotFound(f"workflow {workflow_id!r} does not exist")
        return WorkflowInfo(*rows[0])

    async def ids_starting_with(self, prefix: str, limit: int) -> list[str]:
        rows = await self.rows(
            "SELECT id FROM howdah.workflows WHERE starts_with(id, %s) ORDER BY id LIMIT %s", (prefix, limit)
        )
        return [str(row[0]) for row in rows]

    async def list_workflows(self, status: str | None = None, limit: int = 50) -> list[WorkflowInfo]:
        rows = await self.rows(
            f"SELECT {_WORKFLOW_COLUMNS} FROM howdah.workflows WHERE (%s::text IS NULL OR status = %s) "
            "ORDER BY seq DESC LIMIT %s",
            (status, status, limit),
        )
        return [WorkflowInfo(*row) for row in rows]

    async def steps(self, workflow_id: str) -> list[StepInfo]:
        rows = await self.rows(
            "SELECT step_index, name, kind, result, error, attempts, started_at, finished_at FROM howdah.steps "
            "WHERE workflow_id = %s ORDER BY step_index",
            (workflow_id,),
        )
        return [StepInfo(*row) for row in rows]

    async def signal(self, workflow_id: str, name: str, payload: Any) -> int:
        rows = await self.rows("SELECT howdah.send_signal(%s, %s, %s)", (workflow_id, name, _json(payload)))
        return int(rows[0][0])

    async def cancel(self, workflow_id: str) -> int:
        rows = await self.rows("SELECT howdah.cancel_workflow(%s)", (workflow_id,))
        return int(rows[0][0])

    async def retry(self, workflow_id: str) -> str:
        """Start a failed or cancelled workflow again from its last successful checkpoint."""
        rows = await self.rows("SELECT howdah.retry_workflow(%s)", (workflow_id,))
        return str(rows[0][0])

    async def purge(self, older_than_seconds: float, batch: int = 1000) -> int:
        rows = await self.rows(
            "SELECT howdah.purge_finished(make_interval(secs => %s), %s)", (older_than_seconds, batch)
        )
        return int(rows[0][0])

    # ------------------------------------------------------------------------------------- worker side
    # Every write of a run carries its fencing token (``fence``); a later claim makes them fail with LeaseLost.
    async def claim(self, workflow_id: str, msg_id: int, read_ct: int) -> Claim:
        """Claim the workflow of a dispatch message just read (with the claims of the other messages read at the
        same moment: one statement, one commit)."""
        return await self._claims.submit((workflow_id, msg_id, read_ct))

    async def hold(self, workflow_id: str, fence: int, lease: int, wait: float | None = None) -> tuple[float, bool]:
        """Confirm and extend the run's lease; (seconds left, cancellation requested). LeaseLost when lost;
        a database error (PoolTimeout after ``wait`` seconds without a connection) when it cannot tell."""
        rows = await self.rows(
            "SELECT lease_left, cancel_requested FROM howdah._hold(%s, %s, %s)", (workflow_id, fence, lease), wait=wait
        )
        return float(rows[0][0]), bool(rows[0][1])

    async def checkpoint_within(
        self,
        body: Callable[[psycopg.AsyncConnection[Any]], Awaitable[Any]],
        what: str,
        workflow_id: str,
        fence: int,
        index: int,
        name: str,
        attempts: int,
        started_at: datetime,
    ) -> tuple[Any, bool, float | None]:
        """Run ``body(conn)`` and record its JSON result as the step, in ONE transaction: the step's writes commit
        exactly when its checkpoint does (a lost lease, a crash or a failure rolls both back). Returns (value,
        cancellation requested, seconds left on the lease). Errors of ``body`` are raised as they are; the
        connection's role and settings are reset before it goes back to the pool."""
        async with self.pool.connection() as conn:
            try:
                async with conn.transaction():
                    value = check_json(await body(conn), what)
                    try:
                        # The checkpoint runs as the app's own role with a path the step cannot have shadowed
                        # (one round trip for the three statements).
                        result = Jsonb({"value": value})
                        async with conn.pipeline():
                            await conn.execute("RESET ROLE")
                            await conn.execute("SET LOCAL search_path = pg_catalog, pg_temp")
                            cursor = await conn.execute(
                                _CHECKPOINT,
                                (workflow_id, fence, index, name, "step", result, None, attempts, started_at),
                            )
                        row = await cursor.fetchone()
                    except psycopg.Error as exc:  # the checkpoint refused (lease lost) or failed: all rolls back
                        raise translate(exc) from exc
            finally:
                if not conn.closed and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
                    await conn.execute("RESET ROLE; RESET SESSION AUTHORIZATION; RESET ALL")
        assert row is not None
        return value, bool(row[0]), row[1]

    async def checkpoint(
        self,
        workflow_id: str,
        fence: int,
        index: int,
        name: str,
        kind: str,
        result: Any,
        error: dict[str, Any] | None,
        attempts: int,
        started_at: datetime,
    ) -> tuple[bool, float | None]:
        """Record a step; (cancellation requested, seconds left on the lease or None when it is lost). Committed
        when this returns, together with the checkpoints of other runs that waited at the same moment."""
        return await self._checkpoints.submit(
            (workflow_id, fence, index, name, kind, Jsonb(result), _json(error), attempts, started_at)
        )

    async def _batch(
        self, one: str, many: str, items: Sequence[tuple[Any, ...]], answer: Callable[[tuple[Any, ...]], A]
    ) -> list[A | BaseException]:
        """Run ``one`` for a lone item, else ``many`` once for all the items (one array per column; a row per item,
        in order: the answer's columns, then the item's SQLSTATE and message when it failed). An item that
        deadlocked or failed to serialize is tried again alone."""
        if len(items) == 1:
            try:
                rows = await self.rows(one, items[0])
            except DurableError as exc:
                return [exc]
            return [answer(rows[0])]
        rows = await self.rows(many, [list(column) for column in zip(*items, strict=True)])
        answers: list[A | BaseException] = []
        for item, row in zip(items, rows, strict=True):
            state, message = row[-2], row[-1]
            if state is None:
                answers.append(answer(row[:-2]))
            elif state in _RETRIED_STATES:
                answers.extend(await self._batch(one, many, [item], answer))
            else:
                answers.append(error_for(state, message))
        return answers

    async def take_signal(
        self, workflow_id: str, fence: int, index: int, step_name: str, signal: str, started_at: datetime
    ) -> tuple[bool, Any]:
        rows = await self.rows(
            "SELECT taken, payload FROM howdah._take_signal(%s, %s, %s, %s, %s, %s)",
            (workflow_id, fence, index, step_name, signal, started_at),
        )
        return bool(rows[0][0]), rows[0][1]

    async def suspend(
        self,
        workflow_id: str,
        fence: int,
        status: str,
        wake_at: datetime | None,
        reason: str,
        signals: list[str] | None = None,
        children: list[str] | None = None,
    ) -> None:
        await self.rows(
            "SELECT howdah._suspend(%s, %s, %s, %s, %s, %s, %s)",
            (workflow_id, fence, status, wake_at, reason, signals or None, children or None),
        )

    async def finish(
        self, workflow_id: str, fence: int, status: str, result: Any, error: dict[str, Any] | None
    ) -> None:
        """End the run's workflow (committed when this returns, with the ends of other runs that waited at the
        same moment)."""
        await self._ends.submit(
            (workflow_id, fence, status, None if status != "succeeded" else Jsonb(result), _json(error))
        )

    async def expire(self, workflow_id: str, fence: int) -> None:
        """The workflow is past its deadline: cancel it and its children."""
        await self.rows("SELECT howdah._expire(%s, %s)", (workflow_id, fence))

    async def release(self, queue: str, msg_id: int, read_ct: int, delay: float, wait: float | None = None) -> bool:
        """Make a dispatch message visible after ``delay`` seconds, unless another worker has read it since."""
        rows = await self.rows("SELECT howdah._release(%s, %s, %s, %s)", (queue, msg_id, read_ct, delay), wait=wait)
        return bool(rows[0][0])

    async def children_status(self, ids: list[str]) -> dict[str, WorkflowInfo]:
        rows = await self.rows(f"SELECT {_WORKFLOW_COLUMNS} FROM howdah.workflows WHERE id = ANY(%s)", (ids,))
        return {row[0]: WorkflowInfo(*row) for row in rows}
