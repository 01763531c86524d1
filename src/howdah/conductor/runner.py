"""The conductor loop: takes CRUD events off its data plane's queue, hands each to a durable workflow, and
reports drift (an instance that died behind its back) with unsolicited state events."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from howdah.conductor.workflows import build_app
from howdah.control.events import STATE_QUEUE, data_plane_queue
from howdah.control.service import ControlPlane
from howdah.durable import Worker
from howdah.providers import Provider, ProviderError
from howdah.queue import DETACH, AsyncQueue, Consumer, Message

log = logging.getLogger("howdah.conductor")

POISON_READS = 5  # a CRUD event read more often than this is archived and reported as Error


class Conductor:
    """One data plane's agent (``howdah conductor --data-plane NAME``)."""

    def __init__(
        self, dsn: str, data_plane: str, provider: Provider, *, status_interval: float = 5.0, lease: int = 30,
        concurrency: int = 8,
    ) -> None:  # fmt: skip
        self.dsn = dsn
        self.data_plane = data_plane
        self.provider = provider
        self.status_interval = status_interval
        self.concurrency = concurrency
        self.queue_name = data_plane_queue(data_plane)
        self.app = build_app(provider, data_plane, dsn, lease=lease)
        self._intake: Consumer | None = None
        self._last_status: dict[str, dict[str, Any]] = {}

    async def run(self, stop: asyncio.Event) -> None:
        # Provider calls run in threads (durable sync steps): asyncio's default pool has min(32, cores + 4)
        # threads, which capped concurrent creates at 6 on 2 cores; size it to the workflows run at once.
        asyncio.get_running_loop().set_default_executor(
            ThreadPoolExecutor(max_workers=self.concurrency + 4, thread_name_prefix="howdah-provider")
        )
        async with AsyncConnectionPool(self.dsn, min_size=1, max_size=4, kwargs={"autocommit": True},
                                       open=False) as pool, self.app:  # fmt: skip
            await ControlPlane(pool).register_data_plane(self.data_plane, f"{self.provider.name} provider")
            queue = AsyncQueue(pool)
            queue.conninfo = self.dsn
            self._pool = pool
            tasks = [
                asyncio.create_task(Worker(self.app, concurrency=self.concurrency).run(stop, handle_signals=False)),
                asyncio.create_task(self._watch(stop)),
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
        """Start the event's workflow and remove the event from the queue in ONE transaction."""
        assert self._intake is not None
        event = message.message if isinstance(message.message, dict) else {}
        await self._intake.detach(message)
        if message.read_ct > POISON_READS or not {"event_id", "instance_id", "kind", "generation"} <= set(event):
            await self._poison(message, event)
            return DETACH
        async with self._pool.connection() as conn, conn.transaction():
            await self.app.start("instance_event", event, workflow_id=f"event-{event['event_id']}", conn=conn)
            await AsyncQueue(conn).delete(self.queue_name, message.msg_id)
        return DETACH

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
                                               "error": reason})  # fmt: skip

    # ------------------------------------------------------------------------------------------ drift
    async def _watch(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.check_drift()
            except (psycopg.Error, ProviderError) as exc:
                log.warning("status check failed: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.status_interval)

    async def check_drift(self) -> list[str]:
        """Observe every instance that should be Up (no work in flight). A dead one is reported (Error),
        restarted and reported again (Recovered); a live one whose observed status changed (size, version,
        pending restart…) is reported as a status update. Returns the ids it recovered."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT id::text, generation FROM control.instances "
                "WHERE data_plane = %s AND state = 'Up' AND NOT has_active_work",
                (self.data_plane,),
            )
            expected = await cur.fetchall()
        recovered = []
        for iid, generation in expected:
            status = await asyncio.to_thread(self.provider.status, iid)
            if status.running:
                observed = status.as_dict()
                observed.pop("postmaster_start_time", None)
                if self._last_status.get(iid) != observed:
                    self._last_status[iid] = observed
                    # the generation read above: if a change was accepted meanwhile, this is only a status update
                    await self._state(iid, "Updated", generation=generation, status=status.as_dict())
                continue
            log.warning("instance %s is not running; restarting it", iid)
            self._last_status.pop(iid, None)
            await self._state(iid, "Error", generation=generation,
                              error="the Postgres server is not running (it was restarted)")  # fmt: skip
            try:
                after = await asyncio.to_thread(self.provider.ensure_running, iid)
            except ProviderError as exc:
                log.error("could not restart instance %s: %s", iid, exc)
                continue
            await self._state(iid, "Recovered", status=after.as_dict())
            recovered.append(iid)
        return recovered

    async def _state(self, instance_id: str, event: str, **fields: Any) -> None:
        async with self._pool.connection() as conn:
            await AsyncQueue(conn).send(
                STATE_QUEUE, {"instance_id": instance_id, "event": event, "data_plane": self.data_plane, **fields}
            )
