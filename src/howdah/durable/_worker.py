"""The worker: takes workflows off the dispatch queue, replays and advances them, fires schedules."""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from howdah.durable._app import DurableApp
from howdah.durable._codec import check_json, error_to_json
from howdah.durable._context import _CancelRequested, _Suspend
from howdah.durable._errors import DurableError, StepFailed
from howdah.durable._lease import DeadlineExceeded, RunLease
from howdah.durable._schedule import due_ticks, next_tick
from howdah.durable._store import DurableDatabaseError, LeaseLost, is_outage
from howdah.queue import DETACH, Consumer, Message, QueueDatabaseError

log = logging.getLogger("howdah.durable.worker")

_CANCELLED = {"type": "Cancelled", "message": "cancelled"}
OUTAGE_RETRY_DELAY = 1.0  # seconds before a run stopped by an outage is retried


class Worker:
    """Runs the workflows of ``app``: takes them off its dispatch queue, replays and advances them, fires its
    schedules and deletes finished workflows past ``app.retention``.

    Run as many workers as you like, in one process or many, on one machine or many: they share the work
    through the dispatch queue, each schedule tick starts exactly one run, and a workflow is advanced by one
    worker at a time (a worker that dies or stalls loses its workflows to another once ``app.lease`` runs out).

    ``concurrency``: how many workflows this worker advances at once. The worker reads a dispatch message only
    when it has a free slot to start it in, so a busy worker leaves waiting workflows to the other workers
    instead of holding a batch of them. Sync steps run on the worker's own threads, ``concurrency`` of them
    (async steps run on the event loop); the event loop's default executor is left alone.

    ``poll_interval``: seconds between reads of an idle dispatch queue when no notification arrives (new
    workflows normally wake the worker at once). ``schedule_interval``: seconds between looks for due schedule
    ticks. ``retention_interval``: seconds between passes deleting finished workflows older than
    ``app.retention``.

    :meth:`run` returns once stopped (``stop`` set, or SIGTERM/SIGINT): runs in progress get the consumer's
    shutdown timeout to finish, and a workflow that did not finish is handed back, to be replayed from its last
    checkpoint by a worker. Sync step threads still busy then (a step that ran past its timeout) finish on
    their own; their results are discarded.
    """

    def __init__(
        self,
        app: DurableApp,
        *,
        concurrency: int = 16,
        poll_interval: float = 1.0,
        schedule_interval: float = 1.0,
        retention_interval: float = 300.0,
    ) -> None:
        if concurrency < 1:
            raise DurableError("concurrency must be at least 1")
        self.app = app
        self.concurrency = concurrency
        self.poll_interval = poll_interval
        self.schedule_interval = schedule_interval
        self.retention_interval = retention_interval
        self._consumer: Consumer | None = None
        self._executor: ThreadPoolExecutor | None = None

    async def run(self, stop: asyncio.Event | None = None, *, handle_signals: bool = True) -> None:
        """Work until ``stop`` is set (or, with ``handle_signals``, until SIGTERM/SIGINT), then shut down."""
        app = self.app
        await app.register()
        if not await app.keep_connections(self.concurrency):
            log.warning("the worker's connections did not all open within 30 s; more open as runs need them")
        await self._sync_schedules()
        background = [asyncio.create_task(self._schedule_loop(), name="howdah-schedules")]
        if app.retention is not None:
            background.append(asyncio.create_task(self._retention_loop(), name="howdah-retention"))
        self._executor = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="howdah-step")
        try:
            await self._consume(stop, handle_signals)
        finally:
            for task in background:
                task.cancel()
            # a background loop that failed is logged, never hidden behind the shutdown
            for failed in await asyncio.gather(*background, return_exceptions=True):
                if isinstance(failed, Exception):
                    log.error("worker background task failed: %r", failed, exc_info=failed)
            # Without waiting: a step thread still busy (a timed-out sync step) ends on its own when it returns.
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    # ------------------------------------------------------------------------------ the queue consumer
    # The one place the worker meets the queue's consumer (with ``_detach`` below). A slot reads only when it is
    # free, one message at a time (batch_size=1, no read-ahead), so the worker never holds a message it cannot
    # start now.
    async def _consume(self, stop: asyncio.Event | None, handle_signals: bool) -> None:
        app = self.app
        consumer = self._consumer = app.queue.consume(
            app.queue_name, vt=app.lease, batch_size=1, read_ahead=0, max_reads=None, poll_interval=self.poll_interval,
            maintenance_interval=3600.0,
        )  # fmt: skip
        await consumer.run(self.execute, concurrency=self.concurrency, stop=stop, handle_signals=handle_signals)

    async def _detach(self, message: Message) -> None:
        if self._consumer is not None:
            await self._consumer.detach(message)

    # -------------------------------------------------------------------------------------- one run
    async def execute(self, message: Message) -> object:
        """Advance the workflow a dispatch message carries, as far as it can go now.

        A run stopped by an outage (connection lost, Postgres restarting) is not the workflow's failure: its
        message is made visible again after ``OUTAGE_RETRY_DELAY`` (or, if even that cannot be written, when
        its lease runs out), never after a handler-failure backoff that grows with every wake-up.
        """
        body = message.message if isinstance(message.message, dict) else {}
        wf_id = body.get("workflow_id")
        if not isinstance(wf_id, str):
            log.error("dropping malformed dispatch message %s: %r", message.msg_id, message.message)
            await self.app.queue.archive(self.app.queue_name, message.msg_id)
            return DETACH
        try:
            await self._run(message, wf_id)
        except LeaseLost as exc:
            await self._detach(message)
            log.warning("workflow %s: %s; leaving it to the run that owns it", wf_id, exc)
        except Exception as exc:
            if not is_outage(exc):
                raise  # a bug rather than the workflow's failure: the consumer releases it with a backoff
            # No detach here: it would wait for a heartbeat stuck on the same outage. A heartbeat that lands after
            # the release below can only push the retry back to the end of the lease.
            log.warning("workflow %s: run stopped, database unreachable (%s); retried once it answers", wf_id, exc)
            try:
                await self.app.store.release(
                    self.app.queue_name, message.msg_id, message.read_ct, OUTAGE_RETRY_DELAY, wait=OUTAGE_RETRY_DELAY
                )
            except Exception as again:
                log.warning("workflow %s: not released (%s); it reappears when its lease runs out", wf_id, again)
        return DETACH

    async def _run(self, message: Message, wf_id: str) -> None:
        app, store = self.app, self.app.store
        sent = time.monotonic()
        claim = await store.claim(wf_id, message.msg_id, message.read_ct)
        if claim.outcome == "lost":
            raise LeaseLost("its dispatch message was read again before this worker claimed it")
        if claim.outcome != "claimed":  # finished (or purged) meanwhile: the message is stale
            await app.queue.delete(app.queue_name, message.msg_id)
            return
        assert claim.name is not None and claim.args is not None and claim.steps is not None
        wf = app.workflows.get(claim.name)
        if wf is None:
            raise DurableError(f"this worker does not know workflow {claim.name!r}; another worker may")
        fence = claim.fence
        run = RunLease(
            store, wf_id, fence, app.lease, sent_at=sent, lease_left=claim.lease_left,
            deadline_left=claim.deadline_left,
        )  # fmt: skip
        if claim.cancel_requested:
            await store.finish(wf_id, fence, "cancelled", None, _CANCELLED)
            return
        if run.deadline_passed():
            await store.expire(wf_id, fence)
            return
        ctx = app.context(wf_id, wf, claim.args, claim.steps, run, executor=self._executor)
        try:
            try:
                result = await wf.fn(ctx, claim.args)
                check_json(result, f"the result of workflow {wf.name!r}")
            except (Exception, _Suspend, _CancelRequested, DeadlineExceeded):
                run.check()  # whatever the workflow code made of it, a stopped run ends as the run stopped
                raise
            run.check()
        except _Suspend as pause:
            await self._detach(message)  # from here on no heartbeat may move the parked message
            await store.suspend(
                wf_id, fence, pause.status, pause.wake_at, pause.reason, pause.signals, pause.children
            )  # fmt: skip
        except _CancelRequested:
            await store.finish(wf_id, fence, "cancelled", None, _CANCELLED)
        except DeadlineExceeded:
            await store.expire(wf_id, fence)
        except StepFailed as exc:
            await store.finish(wf_id, fence, "failed", None, {**exc.error, "step": exc.step})
        except Exception as exc:
            if isinstance(exc, LeaseLost | DurableDatabaseError | QueueDatabaseError | psycopg.Error):
                raise  # the run stopped without an outcome: see execute
            await store.finish(wf_id, fence, "failed", None, error_to_json(exc))  # the workflow's own code failed
        else:
            await store.finish(wf_id, fence, "succeeded", result, None)

    # ------------------------------------------------------------------------------------ schedules
    async def _sync_schedules(self) -> None:
        store = self.app.store
        for schedule in self.app.schedules.values():
            rows = await store.rows("SELECT clock_timestamp()")
            first = next_tick(schedule.cron, rows[0][0])
            await store.rows(
                "INSERT INTO howdah.schedules (name, cron, workflow_name, args, missed, next_run_at) "
                "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (name) DO UPDATE SET workflow_name = "
                "EXCLUDED.workflow_name, args = EXCLUDED.args, missed = EXCLUDED.missed, cron = EXCLUDED.cron, "
                "next_run_at = CASE WHEN howdah.schedules.cron = EXCLUDED.cron THEN howdah.schedules.next_run_at "
                "ELSE EXCLUDED.next_run_at END, updated_at = clock_timestamp()",
                (schedule.name, schedule.cron, schedule.workflow, Jsonb(schedule.args), schedule.missed, first),
            )

    async def fire_due_schedules(self) -> int:
        """Start the runs of every due schedule tick (exactly once per tick across workers); returns how many."""
        app = self.app
        started = 0
        assert app._pool is not None
        async with app._pool.connection() as conn, conn.transaction():
            cursor = await conn.execute(
                "SELECT name, cron, workflow_name, args, missed, next_run_at, clock_timestamp() "
                "FROM howdah.schedules WHERE next_run_at <= clock_timestamp() FOR UPDATE SKIP LOCKED"
            )
            for name, cron, workflow, args, missed, next_run_at, now in await cursor.fetchall():
                ticks, upcoming = due_ticks(cron, next_run_at, now, missed)
                wf = app.workflows.get(workflow)
                for tick in ticks:
                    key = wf.key_for(args) if wf is not None else None
                    try:
                        async with conn.transaction():  # a savepoint: one refused tick spoils nothing else
                            _, _, created = await app.store.start(
                                workflow, args, f"{name}@{tick.isoformat()}", key, conn=conn
                            )
                        started += int(created)
                    except DurableError as exc:
                        log.warning("schedule %s: tick %s not started: %s", name, tick.isoformat(), exc)
                await conn.execute(
                    "UPDATE howdah.schedules SET next_run_at = %s, last_run_at = %s, updated_at = clock_timestamp() "
                    "WHERE name = %s",
                    (upcoming, ticks[-1] if ticks else None, name),
                )
        return started

    async def _schedule_loop(self) -> None:
        if not self.app.schedules:
            return
        while True:
            try:
                await self.fire_due_schedules()
            except (DurableError, psycopg.Error) as exc:
                log.warning("firing schedules failed: %s", exc)
            await asyncio.sleep(self.schedule_interval)

    async def _retention_loop(self) -> None:
        assert self.app.retention is not None
        while True:
            try:
                purged = await self.app.purge_finished(self.app.retention)
                if purged:
                    log.info("deleted %d finished workflow(s) older than %s", purged, self.app.retention)
            except (DurableError, psycopg.Error) as exc:
                log.warning("retention pass failed: %s", exc)
            await asyncio.sleep(self.retention_interval)


def run_worker(app: DurableApp, **options: Any) -> None:
    """Run a worker in this thread until SIGTERM/SIGINT (what ``howdah worker`` does)."""

    async def main() -> None:
        async with app:
            await Worker(app, **options).run()

    asyncio.run(main())
