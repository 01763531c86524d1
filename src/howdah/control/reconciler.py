"""The reconciler: applies the data planes' state events and re-drives work that went quiet or failed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool
from pydantic import ValidationError

from howdah.control import fsm
from howdah.control.backups import request_backup, request_verification
from howdah.control.errors import Conflict, Invalid, NotFound
from howdah.control.events import STATE_QUEUE, StateEvent, retried_event
from howdah.control.failures import after_error, unanswered
from howdah.control.queries import QUERIES as Q
from howdah.control.readiness import RECONCILER
from howdah.control.recovery import backup_due, verification_due
from howdah.control.service import ControlPlane
from howdah.durable import RetryPolicy
from howdah.queue import AsyncQueue, Message

log = logging.getLogger("howdah.control.reconciler")

#: How an instance in a transient Error is re-driven: after 5 s, doubling, at most 6 runs in all (then it stays
#: in Error with the reason, like a permanent failure, until the user changes something).
# Re-sends of unacknowledged work (every ``ack_timeout``) before the instance goes to Error: 10 minutes at 60 s.
MAX_UNANSWERED_SENDS = 10
ERROR_RETRY = RetryPolicy(max_attempts=6, initial_delay=5.0, max_delay=300.0, jitter=False)


class Reconciler:
    """Consumes ``control_state_events`` and periodically sweeps instances.

    ``ack_timeout``: seconds after which work the data plane has not acknowledged is sent again (the
    conductor is idempotent). Instances in a transient Error are re-driven as ``error_retry`` says (a new
    event each time); a permanent Error waits for the user (see :mod:`howdah.control.failures`).
    """

    def __init__(
        self, pool: AsyncConnectionPool, dsn: str, *, ack_timeout: float = 60.0, sweep_interval: float = 5.0,
        error_retry: RetryPolicy = ERROR_RETRY, max_unanswered_sends: int = MAX_UNANSWERED_SENDS,
    ) -> None:  # fmt: skip
        self.pool = pool
        self.max_unanswered_sends = max_unanswered_sends
        self.dsn = dsn
        self.ack_timeout = ack_timeout
        self.sweep_interval = sweep_interval
        self.error_retry = error_retry

    async def run(self, stop: asyncio.Event) -> None:
        queue = AsyncQueue(self.pool)
        queue.conninfo = self.dsn
        await queue.create(STATE_QUEUE)
        sweeper = asyncio.create_task(self._sweep_loop(stop))
        try:
            await queue.work(
                STATE_QUEUE, self.apply, stop=stop, handle_signals=False, on_success="archive", max_reads=10,
                poll_interval=1.0, concurrency=1,  # a plane's events about one instance apply in the order sent
            )  # fmt: skip
        finally:
            sweeper.cancel()
            await asyncio.gather(sweeper, return_exceptions=True)

    # ------------------------------------------------------------------------------------ state events
    async def apply(self, message: Message) -> None:
        """Apply one state event; unknown instances, malformed events and events from a data plane about another
        plane's instance or backup are logged and archived (a plane speaks only for what it runs)."""
        try:
            event = StateEvent.model_validate(message.message)
        except ValidationError as exc:
            log.warning("archiving malformed state event %s: %s", message.msg_id, exc.errors()[:2])
            return
        if event.event in ("BackupCompleted", "BackupFailed"):
            await self._record_backup(event)
            return
        if event.event == "RestoreVerified":
            await self._record_verification(event)
            return
        async with self.pool.connection() as conn, conn.transaction():
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(Q["instance_for_update"], {"id": event.instance_id})
            row = await cur.fetchone()
            if row is None or row["state"] == fsm.State.Deleted:
                log.warning("archiving %s event for unknown or deleted instance %s", event.event, event.instance_id)
                return
            if event.data_plane != row["data_plane"]:
                log.warning(
                    "archiving %s event for instance %s from data plane %r: the instance runs on %r",
                    event.event, row["id"], event.data_plane, row["data_plane"],
                )  # fmt: skip
                return
            if event.generation is not None and event.generation < row["generation"]:
                # An acknowledgement of superseded work: keep what it observed, not its verdict.
                await conn.execute(Q["record_observed_status"], {"status": Jsonb(event.status), "id": row["id"]})
                return
            try:
                new_state = fsm.next_state(fsm.State(row["state"]), fsm.Event(event.event))
            except fsm.TransitionError as exc:
                log.warning("instance %s: ignoring %s: %s", row["id"], event.event, exc)
                return
            await self._record(conn, row, event, new_state)

    async def _record_backup(self, event: StateEvent) -> None:
        info = event.backup or {}
        done = event.event == "BackupCompleted"
        async with self.pool.connection() as conn:
            cur = await conn.execute(Q["settle_backup"], {
                "status": "completed" if done else "failed", "location": info.get("location"),
                "size_bytes": info.get("size_bytes"), "error": None if done else (event.error or "the backup failed"),
                "backup_id": str(info.get("backup_id")), "data_plane": event.data_plane,
            })  # fmt: skip
            if cur.rowcount == 0:
                log.warning("archiving %s from data plane %r for unknown, settled or another plane's backup %s",
                            event.event, event.data_plane, info.get("backup_id"))  # fmt: skip

    async def _record_verification(self, event: StateEvent) -> None:
        outcome = event.verification or {}
        kept = {"at": outcome.get("at"), "ok": bool(outcome.get("ok")), "seconds": outcome.get("seconds"),
                "error": outcome.get("error")}  # fmt: skip
        async with self.pool.connection() as conn:
            cur = await conn.execute(Q["record_verified_restore"], {
                "outcome": Jsonb(kept), "instance_id": event.instance_id, "data_plane": event.data_plane,
            })  # fmt: skip
            if cur.rowcount == 0:
                log.warning("archiving RestoreVerified from data plane %r for unknown or another plane's instance %s",
                            event.data_plane, event.instance_id)  # fmt: skip

    async def _record(
        self, conn: psycopg.AsyncConnection[Any], row: dict[str, Any], event: StateEvent, state: fsm.State
    ) -> None:
        failed = event.event == "Error"
        verdict = after_error(
            event.failure, row["error_attempts"], event.error or "the data plane reported an error", self.error_retry
        )
        await conn.execute(Q["record_state_event"], {
            "state": str(state), "has_active_work": state in fsm.ACTIVE_WORK_STATES,
            "actual_spec": Jsonb(event.actual_spec) if event.actual_spec is not None else None,
            "status": Jsonb(event.status), "deleted": state == fsm.State.Deleted,
            "connection": Jsonb(event.connection) if event.connection is not None else None,
            "failed": failed, "error": verdict.message, "error_attempts": verdict.attempts if failed else 0,
            "retry": failed and verdict.retry_in is not None, "retry_in": verdict.retry_in or 0.0, "id": row["id"],
        })  # fmt: skip

    async def _give_up(self, conn: psycopg.AsyncConnection[Any], row: dict[str, Any], message: str) -> bool:
        """Put an instance whose work went unanswered too long in Error (not retried: the user sends it again);
        False when its state has no way to Error."""
        try:
            state = fsm.next_state(fsm.State(row["state"]), fsm.Event.Error)
        except (fsm.TransitionError, ValueError):
            return False
        await conn.execute(Q["give_up_unanswered"], {
            "state": str(state), "has_active_work": state in fsm.ACTIVE_WORK_STATES, "error": message, "id": row["id"],
        })  # fmt: skip
        log.warning("instance %s: %s", row["id"], message)
        return True

    # ----------------------------------------------------------------------------------------- sweeps
    async def _sweep_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.heartbeat()
                await self.sweep()
                await self.scheduled_backups()
                await self.scheduled_verifications()
            except psycopg.Error as exc:
                log.warning("reconciler sweep failed: %s", exc)
            await self.sample_queue_depths()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.sweep_interval)

    async def heartbeat(self) -> None:
        """Record that the reconciler ticks (every ``sweep_interval``): /readyz reads it."""
        await ControlPlane(self.pool).component_heartbeat(RECONCILER, self.sweep_interval)

    async def sample_queue_depths(self) -> int:
        """Record every queue's depth once a minute for the last hour (the console's chart); a sweep in a minute
        already sampled reads no queue. Returns how many queues were sampled. A failure (say a queue dropped
        while it was read) costs the sample, never the sweep."""
        try:
            async with self.pool.connection() as conn:
                row = await (await conn.execute(Q["sample_queue_depths"])).fetchone()
        except psycopg.Error as exc:
            log.warning("queue depth not sampled: %s", exc)
            return 0
        return int(row[0]) if row else 0

    async def scheduled_backups(self, now: datetime | None = None) -> int:
        """Ask for the base backups whose schedule ticked since the last one (see :func:`backup_due`); returns
        how many. An instance that changed state meanwhile is skipped (its next sweep decides)."""
        at = now or datetime.now(UTC)
        return await self._ask_scheduled(
            Q["scheduled_backup_candidates"], "backup",
            lambda row: backup_due(row["schedule"], row["last_backup_at"] or row["created_at"], at),
            request_backup, (Conflict, NotFound),
        )  # fmt: skip

    async def scheduled_verifications(self, now: datetime | None = None) -> int:
        """Ask for the restore verifications whose ``backup.verify_schedule`` ticked since the last one, of Up
        instances with a recoverable window and no verification in flight (see :func:`verification_due`);
        returns how many. One that can no longer be asked (its state or data plane changed) is skipped."""
        at = now or datetime.now(UTC)
        return await self._ask_scheduled(
            Q["scheduled_verification_candidates"], "verify",
            lambda row: verification_due(row["schedule"], row["created_at"], _moment(row["last_verified_at"]),
                                         row["verify_requested_at"], at),
            request_verification, (Conflict, Invalid, NotFound),
        )  # fmt: skip

    async def _ask_scheduled(
        self,
        query: sql.SQL,
        what: str,
        due: Callable[[dict[str, Any]], bool],
        ask: Callable[[ControlPlane, str, str], Awaitable[Any]],
        skipped: tuple[type[Exception], ...],
    ) -> int:
        """Ask ``ask`` for each candidate row ``query`` reads whose schedule is ``due``; those refused with one of
        ``skipped`` are left to the next sweep. Returns how many were asked."""
        async with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(query)
            rows = await cur.fetchall()
        asked = 0
        for row in rows:
            try:
                if not due(row):
                    continue
            except (ValueError, KeyError) as exc:  # a schedule stored before it was checked
                log.warning("instance %s: %s schedule %r: %s", row["id"], what, row["schedule"], exc)
                continue
            try:
                await ask(ControlPlane(self.pool), row["org_id"], str(row["id"]))
            except skipped:
                continue
            asked += 1
        return asked

    async def sweep(self) -> tuple[int, int]:
        """Re-send unacknowledged work and re-drive instances whose error backoff ran out: (resent, retried).

        A re-drive is a new CRUD event (new event id, next generation): the data plane runs each event id once,
        so re-sending the failed event itself would leave the instance waiting for work that never runs."""
        resent = retried = 0
        async with self.pool.connection() as conn, conn.transaction():
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(Q["unanswered_work"], {"ack_timeout": self.ack_timeout})
            for row in await cur.fetchall():
                kind = str(row["pending_event"].get("kind", "change"))
                give_up = unanswered(
                    row["unanswered_sends"], self.max_unanswered_sends, kind, row["data_plane"], self.ack_timeout
                )
                if give_up is not None and await self._give_up(conn, row, give_up):
                    continue
                await AsyncQueue(conn).send(row["queue_name"], row["pending_event"], headers={"x-howdah-resent": True})
                await conn.execute(Q["mark_resent"], {"id": row["id"]})
                resent += 1
            await cur.execute(Q["errors_due_for_retry"])
            for row in await cur.fetchall():
                try:
                    state = fsm.next_state(fsm.State.Error, fsm.Event(row["pending_event"]["kind"]))
                    event = retried_event(row["pending_event"], row["generation"] + 1)
                except (fsm.TransitionError, ValueError, KeyError):
                    continue
                await AsyncQueue(conn).send(row["dp_queue"], event, headers={"x-howdah-retry": row["error_attempts"]})
                await conn.execute(Q["record_retry"], {"state": str(state), "event": Jsonb(event), "id": row["id"]})
                retried += 1
        return resent, retried


def _moment(text: str | None) -> datetime | None:
    """A verification outcome's time as its data plane reported it (None when absent or not an ISO time with a
    zone: then the instance's creation and its last request decide)."""
    try:
        moment = datetime.fromisoformat(text) if text else None
    except ValueError:
        return None
    return moment if moment is not None and moment.tzinfo is not None else None
