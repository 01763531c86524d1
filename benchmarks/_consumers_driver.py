"""The contenders of the consumer benchmark, as each one's users run them; every function here runs in its own
spawned process (set up by :mod:`benchmarks.consumers`).

- ``howdah``: producers call ``Queue.send`` / ``send_batch``; consumers run ``AsyncQueue.work(queue, handler)``
  with the options in :data:`HOWDAH_WORK` (today: its defaults).
- ``pgmq``: the official ``pgmq`` Python client (``PGMQueue``, its defaults: a psycopg pool whose calls each run
  in their own transaction) on PGMQ's own SQL; consumers loop ``read_batch(vt=30, batch_size=10)`` → handle →
  ``delete_batch``, sleeping 100 ms when the queue is empty — the loop a pgmq user writes by hand.
- ``pgqueuer``: producers call ``SyncQueries.enqueue``; consumers run a ``QueueManager`` with ``pgq run``'s
  defaults (batch size 10, dequeue timeout 30 s, no concurrency cap) on pgqueuer's own schema.

Every message carries its id and the time its producer sent it; a consumer notes, per message, when its handler
started, and writes those notes to a file when it stops. A shared counter per consumer tells the benchmark how
far the run has got.
"""

from __future__ import annotations

import asyncio
import json
import signal
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg

from benchmarks._processes import quiet_logging
from benchmarks._queue_setup import PAYLOAD, pgmq_sql

HOWDAH, PGMQ, PGQUEUER = "howdah", "pgmq", "pgqueuer"
LABELS = {HOWDAH: "Howdah", PGMQ: "pgmq loop", PGQUEUER: "pgqueuer"}
QUEUE = "bench"  # the queue's name (pgqueuer: the entrypoint's)

# Howdah's consumer options, in one place: AsyncQueue.work(QUEUE, handler, **HOWDAH_WORK). Empty = its defaults.
HOWDAH_WORK: dict[str, Any] = {}
PGMQ_VT, PGMQ_BATCH, PGMQ_IDLE = 30, 10, 0.1  # the hand-written loop: read_batch(vt, batch_size), sleep when empty
PGQ_BATCH, PGQ_DEQUEUE_TIMEOUT = 10, 30.0  # `pgq run`'s defaults

Note = tuple[int, float, float]  # message id, sent at, handler started at (epoch seconds)


def message(ident: int, sent: float) -> dict[str, Any]:
    return {**PAYLOAD, "id": ident, "sent": sent}


# ----------------------------------------------------------------------------------------------- setup
def install(system: str, url: str) -> None:
    """The system's schema and its queue, in the fresh database at ``url``."""
    with psycopg.connect(url, autocommit=True) as conn:
        if system == HOWDAH:
            from howdah.schema import install_all

            install_all(conn)
            conn.execute("SELECT pgmq.create(%s)", (QUEUE,))
        elif system == PGMQ:
            with conn.transaction():
                conn.execute(pgmq_sql()[0].encode())
            conn.execute("SELECT pgmq.create(%s)", (QUEUE,))
    if system == PGQUEUER:
        asyncio.run(_pgqueuer_install(url))


async def _pgqueuer_install(url: str) -> None:
    from pgqueuer.db import PsycopgDriver
    from pgqueuer.queries import Queries

    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await Queries(PsycopgDriver(conn)).install()


def churn(system: str, url: str, count: int, chunk: int = 1000) -> None:
    """Pass ``count`` messages through the queue, ``chunk`` at a time: sent with the system's own batch call, then
    settled (pgmq schemas: read + delete; pgqueuer: its rows deleted, as its completion does, though its log table
    does not grow here). What that leaves behind (dead rows, grown indexes, advanced sequences) is what the run
    that follows meets."""
    if system == PGQUEUER:
        from pgqueuer.db import SyncPsycopgDriver
        from pgqueuer.queries import SyncQueries

        with psycopg.connect(url, autocommit=True) as conn:
            queries = SyncQueries(SyncPsycopgDriver(conn))
            payloads: list[bytes | None] = [json.dumps(message(0, 0.0)).encode()] * chunk
            for _ in range(count // chunk):
                ids = queries.enqueue([QUEUE] * chunk, payloads, [0] * chunk)
                conn.execute("DELETE FROM pgqueuer WHERE id = ANY(%s)", (list(ids),))
        return
    bodies = [json.dumps(message(0, 0.0))] * chunk
    with psycopg.connect(url, autocommit=True) as conn:
        for _ in range(count // chunk):
            conn.execute("SELECT pgmq.send_batch(%s, %b::jsonb[])", (QUEUE, bodies))
            conn.execute(
                "SELECT pgmq.delete(%s, ARRAY(SELECT msg_id FROM pgmq.read(%s, 30, %s)))", (QUEUE, QUEUE, chunk)
            )


# ----------------------------------------------------------------------------------------------- producers
def producer(system: str, url: str, first_id: int, count: int, batch: int, go: Any, ready: Any) -> None:
    """Send ``count`` messages (one at a time when ``batch`` is 1, else ``batch`` per call) once ``go`` is set."""
    quiet_logging()
    send = _sender(system, url)
    ready.set()
    go.wait()
    for start in range(first_id, first_id + count, batch):
        ids = range(start, min(start + batch, first_id + count))
        send([message(i, time.time()) for i in ids])


def _sender(system: str, url: str) -> Any:
    """A function sending a list of messages: one ``send`` per message for a list of one, else a batch."""
    if system == HOWDAH:
        from howdah.queue import Queue

        queue = Queue(url)
        return lambda msgs: queue.send(QUEUE, msgs[0]) if len(msgs) == 1 else queue.send_batch(QUEUE, msgs)
    if system == PGMQ:
        from pgmq import PGMQueue

        client = PGMQueue(conn_string=url, init_extension=False)
        return lambda msgs: client.send(QUEUE, msgs[0]) if len(msgs) == 1 else client.send_batch(QUEUE, msgs)
    from pgqueuer.db import SyncPsycopgDriver
    from pgqueuer.queries import SyncQueries

    queries = SyncQueries(SyncPsycopgDriver(psycopg.connect(url, autocommit=True)))

    def enqueue(msgs: list[dict[str, Any]]) -> None:
        payloads: list[bytes | None] = [json.dumps(m).encode() for m in msgs]
        if len(msgs) == 1:
            queries.enqueue(QUEUE, payloads[0])
        else:
            queries.enqueue([QUEUE] * len(msgs), payloads, [0] * len(msgs))

    return enqueue


# ----------------------------------------------------------------------------------------------- consumers
class Notes:
    """What one consumer handled: a note per message, and a counter the benchmark reads while it runs."""

    def __init__(self, counter: Any, handler_ms: float) -> None:
        self.counter = counter
        self.pause = handler_ms / 1000
        self.notes: list[Note] = []

    def note(self, body: dict[str, Any]) -> None:
        self.notes.append((int(body["id"]), float(body["sent"]), time.time()))
        self.counter.value += 1

    def write(self, path: Path) -> None:
        part = path.with_suffix(".part")
        part.write_text(json.dumps(list(self.notes)), encoding="utf-8")
        part.rename(path)  # the benchmark sees the whole file or none


def consumer(system: str, url: str, handler_ms: float, out: str, counter: Any, dump: Any, ready: Any) -> None:
    """Handle messages until SIGTERM; write the notes to ``out`` once ``dump`` is set (the benchmark then stops
    this process, and need not wait for a slow shutdown)."""
    quiet_logging()
    notes = Notes(counter, handler_ms)

    def write_when_asked() -> None:
        dump.wait()
        notes.write(Path(out))

    threading.Thread(target=write_when_asked, daemon=True).start()
    if system == PGMQ:
        _pgmq_loop(url, notes, ready)
    else:
        asyncio.run((_howdah if system == HOWDAH else _pgqueuer)(url, notes, ready))


async def _howdah(url: str, notes: Notes, ready: Any) -> None:
    from howdah.queue import AsyncQueue, Message

    async def handler(msg: Message) -> None:
        notes.note(msg.message)
        if notes.pause:
            await asyncio.sleep(notes.pause)

    stop = _stop_on_sigterm()
    async with AsyncQueue(url) as queue:
        ready.set()
        await queue.work(QUEUE, handler, stop=stop, handle_signals=False, **HOWDAH_WORK)


async def _pgqueuer(url: str, notes: Notes, ready: Any) -> None:
    from pgqueuer.db import PsycopgDriver
    from pgqueuer.models import Job
    from pgqueuer.qm import QueueManager
    from pgqueuer.queries import Queries

    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        manager = QueueManager(Queries(PsycopgDriver(conn)))

        @manager.entrypoint(QUEUE)
        async def handle(job: Job) -> None:
            notes.note(json.loads(job.payload or b"{}"))
            if notes.pause:
                await asyncio.sleep(notes.pause)

        manager.shutdown = _stop_on_sigterm()
        ready.set()
        await manager.run(dequeue_timeout=timedelta(seconds=PGQ_DEQUEUE_TIMEOUT), batch_size=PGQ_BATCH)


def _pgmq_loop(url: str, notes: Notes, ready: Any) -> None:
    from pgmq import PGMQueue

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    client = PGMQueue(conn_string=url, init_extension=False)
    ready.set()
    while not stop.is_set():
        messages = client.read_batch(QUEUE, vt=PGMQ_VT, batch_size=PGMQ_BATCH)
        if not messages:
            stop.wait(PGMQ_IDLE)
            continue
        for msg in messages:
            notes.note(msg.message)
            if notes.pause:
                time.sleep(notes.pause)
        client.delete_batch(QUEUE, [msg.msg_id for msg in messages])
    client.close()


def _stop_on_sigterm() -> asyncio.Event:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    return stop
