"""The conductor loop: takes CRUD events off its data plane's queue, hands each to a durable workflow, and
supervises every server of the instances that should be Up: a dead primary or read replica is restarted, and
what it observes (replicas' state and lag included) is reported with unsolicited state events.

It reads no control-plane table: what it needs to know of the instances (which to supervise, whether one still
waits for an answer) it asks through :class:`~howdah.control.service.ControlPlane`. Provider calls run in a
thread pool of its own, shut down when it stops; the event loop's default executor is left alone."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from howdah.conductor.workflows import PROVIDER_RETRY, build_app
from howdah.control.events import STATE_QUEUE, data_plane_queue
from howdah.control.failures import classify
from howdah.control.logs import append_logs, log_offsets
from howdah.control.sealing import Sealer
from howdah.control.service import ControlPlane
from howdah.durable import RetryPolicy, Worker
from howdah.errors import HowdahError
from howdah.providers import Provider, ProviderError
from howdah.queue import DETACH, AsyncQueue, Consumer, Message

log = logging.getLogger("howdah.conductor")

POISON_READS = 5  # a CRUD event read more often than this is archived and reported as Error
THREAD_PREFIX = "howdah-provider"
HEARTBEAT_INTERVAL = 5.0  # seconds between the conductor's heartbeats (registering is the first)
STATUS_INTERVAL = 5.0  # seconds between two looks at the instances that should be Up
LEASE = 30  # seconds a conductor holds an event's workflow: after a crash, another takes it over once they run out
LOG_BYTES_PER_TICK = 256 * 1024  # of each server's log, per status interval: a flood is shipped over several
_T = TypeVar("_T")


class Conductor:
    """One data plane's agent (``howdah conductor --data-plane NAME``)."""

    def __init__(
        self, dsn: str, data_plane: str, provider: Provider, *, status_interval: float = STATUS_INTERVAL,
        lease: int = LEASE, concurrency: int = 8, provider_retry: RetryPolicy = PROVIDER_RETRY,
        sealer: Sealer | None = None, heartbeat_interval: float = HEARTBEAT_INTERVAL,
    ) -> None:  # fmt: skip
        self.dsn = dsn
        self.heartbeat_interval = heartbeat_interval
        self.data_plane = data_plane
        self.provider = provider
        self.status_interval = status_interval
        self.concurrency = concurrency
        self.queue_name = data_plane_queue(data_plane)
        self.app, self._workflows = build_app(
            provider, data_plane, dsn, lease=lease, provider_retry=provider_retry, sealer=sealer
        )
        self._intake: Consumer | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._last_status: dict[str, dict[str, Any]] = {}
        self._log_offsets: dict[str, dict[str, int]] = {}  # instance → server → byte offset shipped up to

    async def run(self, stop: asyncio.Event) -> None:
        # Provider calls block, so they run in threads: a pool of the conductor's own, sized to the workflows run
        # at once (asyncio's default pool has min(32, cores + 4) threads, which capped concurrent creates at 6 on
        # 2 cores), and never the loop's default one, which the API and workers sharing the loop rely on.
        executor = ThreadPoolExecutor(max_workers=self.concurrency + 4, thread_name_prefix=THREAD_PREFIX)
        self._executor = self._workflows.executor = executor
        try:
            await self._run(stop)
        finally:
            self._executor = self._workflows.executor = None
            # off the loop: a provider call still running (a step that timed out) is waited for in a thread
            await asyncio.to_thread(executor.shutdown, wait=True, cancel_futures=True)

    async def _run(self, stop: asyncio.Event) -> None:
        async with AsyncConnectionPool(self.dsn, min_size=1, max_size=4, kwargs={"autocommit": True}, open=False,
                                       check=AsyncConnectionPool.check_connection,  # dead after a PG restart
                                       ) as pool, self.app:  # fmt: skip
            self.control = ControlPlane(pool)
            capacity = await self._provider(self.provider.capacity)
            catalog = await self._provider(self.provider.extension_catalog)
            features = [capability.value for capability in self.provider.capabilities]
            await self.control.register_data_plane(
                self.data_plane,
                f"{self.provider.name} provider",
                capacity,
                catalog,
                features,
                heartbeat=self.heartbeat_interval,
            )
            queue = AsyncQueue(pool)
            queue.conninfo = self.dsn
            self._pool = pool
            tasks = [
                asyncio.create_task(Worker(self.app, concurrency=self.concurrency).run(stop, handle_signals=False)),
                asyncio.create_task(self._watch(stop)),
                asyncio.create_task(self._heartbeat(stop)),
            ]
            self._intake = queue.consume(self.queue_name, vt=30, batch_size=10, max_reads=None, stop=stop)
            try:
                await self._intake.run(self.take, stop=stop, handle_signals=False)
            finally:
                stop.set()
                results = await asyncio.gather(*tasks, return_exceptions=True)
            for result in results:
                if isinstance(result, Exception):
                    raise result

    # ----------------------------------------------------------------------------------------- intake
    async def take(self, message: Message) -> object:
        """Start the event's workflow and remove the event from the queue in ONE transaction.

        Each event id runs once (the workflow id is idempotent). An event that arrives again after its workflow
        finished, while the control plane still waits for that generation (its answer was lost or refused), is
        run again under a new id: a re-sent event always gets an answer, never a silent no-op."""
        assert self._intake is not None
        event = message.message if isinstance(message.message, dict) else {}
        await self._intake.detach(message)
        if message.read_ct > POISON_READS or not {"event_id", "instance_id", "kind", "generation"} <= set(event):
            await self._poison(message, event)
            return DETACH
        async with self._pool.connection() as conn, conn.transaction():
            workflow_id = f"event-{event['event_id']}"
            handle = await self.app.start("instance_event", event, workflow_id=workflow_id, conn=conn)
            if not handle.created and await self._unanswered(workflow_id, event):
                log.warning("CRUD event %s came again after its workflow finished; running it again", workflow_id)
                await self.app.start("instance_event", event, workflow_id=f"{workflow_id}-{message.msg_id}", conn=conn)
            await AsyncQueue(conn).delete(self.queue_name, message.msg_id)
        return DETACH

    async def _unanswered(self, workflow_id: str, event: dict[str, Any]) -> bool:
        """Whether the workflow has finished although the instance still waits for this event's generation."""
        if not (await self.app.get(workflow_id)).done:
            return False
        return await self.control.awaits_answer(self.data_plane, str(event["instance_id"]), int(event["generation"]))

    async def _provider(self, fn: Callable[..., _T], *args: Any) -> _T:
        """A blocking provider call, in the conductor's thread pool."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def _poison(self, message: Message, event: dict[str, Any]) -> None:
        reason = (f"CRUD event read {message.read_ct} times without being handled" if message.read_ct > POISON_READS
                  else "malformed CRUD event")  # fmt: skip
        log.error("archiving CRUD event %s of %s: %s", message.msg_id, self.queue_name, reason)
        async with self._pool.connection() as conn, conn.transaction():
            queue = AsyncQueue(conn)
            await queue.archive(self.queue_name, message.msg_id)
            if "instance_id" in event:
                await queue.send(STATE_QUEUE, {"instance_id": event["instance_id"], "event": "Error",
                                               "generation": event.get("generation"), "data_plane": self.data_plane,
                                               "error": reason, "failure": "permanent"})  # fmt: skip

    async def _heartbeat(self, stop: asyncio.Event) -> None:
        """Tell the control plane, every ``heartbeat_interval``, that this data plane's conductor is alive (its
        /readyz counts a plane whose conductor went quiet for three intervals as gone)."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.heartbeat_interval)
            if stop.is_set():
                return
            try:
                await self.control.data_plane_heartbeat(self.data_plane, self.heartbeat_interval)
            except (psycopg.Error, PoolTimeout, HowdahError) as exc:
                log.warning("heartbeat of data plane %r failed: %s", self.data_plane, exc)

    # ------------------------------------------------------------------------------------------ drift
    async def _watch(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.check_drift()
            except (psycopg.Error, ProviderError) as exc:
                log.warning("status check failed: %s", exc)
            try:
                await self.ship_logs()
            except (psycopg.Error, PoolTimeout, ProviderError, OSError) as exc:
                log.warning("shipping instance logs failed: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.status_interval)

    async def ship_logs(self) -> int:
        """Send the control plane the server-log lines of this plane's instances written since the last time
        (resuming after a restart where the stored lines end); returns how many lines were stored."""
        shipped = 0
        held = await self._provider(self.provider.list_instances)
        for gone in set(self._log_offsets) - set(held):
            del self._log_offsets[gone]
        for iid in held:
            if iid not in self._log_offsets:
                self._log_offsets[iid] = await log_offsets(self.control, self.data_plane, iid)
            offsets = self._log_offsets[iid]
            lines = await self._provider(self.provider.log_lines, iid, offsets, LOG_BYTES_PER_TICK)
            if not lines:
                continue
            shipped += await append_logs(self.control, self.data_plane, iid, lines)
            for server, _, end in lines:
                offsets[server] = end
        return shipped

    async def check_drift(self) -> list[str]:
        """Observe every instance that should be Up (no work in flight), each of its servers.

        A dead primary is reported (Error, transient), restarted and reported again (Recovered), or, if it
        cannot be started, reported with the provider's message and classification. A dead read replica is
        restarted (``ensure_running`` starts every recorded server that is down) while the instance stays Up.
        A live instance whose observed status changed (size, version, pending restart, replicas' state and
        lag…) is reported as a status update. Returns the ids whose servers it restarted."""
        recovered = []
        for iid, generation in await self.control.supervised_instances(self.data_plane):
            status = await self._provider(self.provider.status, iid)
            if status.running:
                # a replica the provider reports as a server of its own that is down (the kubernetes provider's
                # pods have no "running": their operator supervises them)
                dead = [r["name"] for r in status.replicas if r.get("running") is False]
                if dead:
                    log.warning("instance %s: replica(s) %s not running; restarting them", iid, ", ".join(dead))
                    try:
                        status = await self._provider(self.provider.ensure_running, iid)
                        recovered.append(iid)
                    except ProviderError as exc:
                        log.error("could not restart the replicas of instance %s: %s", iid, exc)
                observed = status.as_dict()
                observed.pop("postmaster_start_time", None)
                if self._last_status.get(iid) != observed:
                    self._last_status[iid] = observed
                    # the generation read above: if a change was accepted meanwhile, this is only a status update
                    await self._state(iid, "Updated", generation=generation, status=status.as_dict())
                continue
            log.warning("instance %s is not running; restarting it", iid)
            self._last_status.pop(iid, None)
            await self._state(iid, "Error", generation=generation, failure="transient", status=status.as_dict(),
                              error="the Postgres server was not running; restarting it")  # fmt: skip
            try:
                after = await self._provider(self.provider.ensure_running, iid)
            except ProviderError as exc:
                log.error("could not restart instance %s: %s", iid, exc)
                now = await self._provider(self.provider.status, iid)
                await self._state(iid, "Error", generation=generation, failure=classify(type(exc).__name__),
                                  error=str(exc), status=now.as_dict())  # fmt: skip
                continue
            await self._state(iid, "Recovered", generation=generation, status=after.as_dict())
            recovered.append(iid)
        return recovered

    async def _state(self, instance_id: str, event: str, **fields: Any) -> None:
        async with self._pool.connection() as conn:
            await AsyncQueue(conn).send(
                STATE_QUEUE, {"instance_id": instance_id, "event": event, "data_plane": self.data_plane, **fields}
            )
