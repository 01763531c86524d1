"""Table 3: the Python clients head to head on one schema — Howdah's ``Queue``/``AsyncQueue`` against the
official ``pgmq`` clients (``PGMQueue`` on psycopg, and its asyncpg-based async client when installed), each in
both transaction modes (autocommit, and a transaction per call), since they differ in which one users get.

Each client has its own queue and runs the same loops each round: single sends, single reads, single deletes,
then sends, reads and deletes of 100 at a time; each loop runs for every client before the next loop starts,
in an order rotated per loop. Rates are messages per second.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from benchmarks._harness import Phase, ResultTable, Samples, fmt_rate, fmt_ratio, run_interleaved, step
from benchmarks._queue_setup import HOWDAH, LABELS, PAYLOAD, PGMQ, VT, Contenders
from howdah.queue import AsyncQueue, Queue

BATCH = 100
OPERATIONS = [
    ("send", "send 1"),
    ("read", "read 1"),
    ("delete", "delete 1"),
    ("send_batch", "send_batch 100 (per message)"),
    ("read_batch", "read 100 (per message)"),
    ("delete_batch", "delete_batch 100 (per message)"),
]
H_SYNC, H_ASYNC, P_SYNC, P_ASYNC = "howdah-sync", "howdah-async", "pgmq-sync", "pgmq-async"
POOL_SIZE = 2


@dataclass(frozen=True)
class ClientSizes:
    rounds: int
    single: int
    batched: int


# ------------------------------------------------------------------------------------------------ adapters
# Each client in two transaction modes: AUTOCOMMIT (every call is its own implicit transaction, one round trip)
# and TRANSACTION (every call runs inside BEGIN … COMMIT on a pooled connection: psycopg's pool commits what a
# non-autocommit connection did when it is given back). Out of the box, Howdah's clients and pgmq's asyncpg client
# autocommit, and pgmq's PGMQueue runs each call in a transaction.
AUTOCOMMIT, TRANSACTION = "autocommit", "transaction per call"
DEFAULTS = {H_SYNC: AUTOCOMMIT, H_ASYNC: AUTOCOMMIT, P_SYNC: TRANSACTION, P_ASYNC: AUTOCOMMIT}


class HowdahSync:
    def __init__(self, url: str, queue: str, mode: str) -> None:
        self.queue = queue
        self.client = Queue(url, pool_size=POOL_SIZE) if mode == AUTOCOMMIT else None
        self.pool = ConnectionPool(url, min_size=1, max_size=POOL_SIZE) if mode == TRANSACTION else None

    @contextlib.contextmanager
    def _q(self) -> Iterator[Queue]:
        if self.pool is None:
            assert self.client is not None
            yield self.client
            return
        with self.pool.connection() as conn:
            yield Queue(conn)

    def send(self, message: Any) -> int:
        with self._q() as q:
            return q.send(self.queue, message)

    def send_batch(self, messages: list[Any]) -> list[int]:
        with self._q() as q:
            return q.send_batch(self.queue, messages)

    def read(self, qty: int) -> list[int]:
        with self._q() as q:
            return [m.msg_id for m in q.read(self.queue, vt=VT, qty=qty)]

    def delete(self, msg_id: int) -> bool:
        with self._q() as q:
            return q.delete(self.queue, msg_id)

    def delete_batch(self, msg_ids: list[int]) -> list[int]:
        with self._q() as q:
            return q.delete_batch(self.queue, msg_ids)

    def close(self) -> None:
        for closable in (self.client, self.pool):
            if closable is not None:
                closable.close()


class PgmqSync:
    def __init__(self, url: str, queue: str, mode: str) -> None:
        from pgmq import PGMQueue

        # PGMQueue's own pool (its default) does not autocommit; for AUTOCOMMIT it gets one that does.
        autocommit = {"autocommit": True}
        self.pool = (
            ConnectionPool(url, min_size=1, max_size=POOL_SIZE, kwargs=autocommit) if mode == AUTOCOMMIT else None
        )
        self.client = PGMQueue(conn_string=url, init_extension=False, pool_size=POOL_SIZE, pool=self.pool)
        self.queue = queue

    def send(self, message: Any) -> int:
        return int(self.client.send(self.queue, message))

    def send_batch(self, messages: list[Any]) -> list[int]:
        return self.client.send_batch(self.queue, messages)

    def read(self, qty: int) -> list[int]:
        got = self.client.read(self.queue, vt=VT, qty=qty)
        items = got if isinstance(got, list) else [got] if got is not None else []
        return [m.msg_id for m in items]

    def delete(self, msg_id: int) -> bool:
        return bool(self.client.delete(self.queue, msg_id))

    def delete_batch(self, msg_ids: list[int]) -> list[int]:
        return self.client.delete_batch(self.queue, msg_ids)

    def close(self) -> None:
        self.client.close()
        if self.pool is not None:
            self.pool.close()


class HowdahAsync:
    def __init__(self, url: str, queue: str, mode: str) -> None:
        self.client = AsyncQueue(url, pool_size=POOL_SIZE) if mode == AUTOCOMMIT else None
        self.pool = (
            AsyncConnectionPool(url, min_size=1, max_size=POOL_SIZE, open=False) if mode == TRANSACTION else None
        )
        self.queue = queue

    async def open(self) -> None:
        if self.client is not None:
            await self.client.open()
        if self.pool is not None:
            await self.pool.open()

    @contextlib.asynccontextmanager
    async def _q(self) -> AsyncIterator[AsyncQueue]:
        if self.pool is None:
            assert self.client is not None
            yield self.client
            return
        async with self.pool.connection() as conn:
            yield AsyncQueue(conn)

    async def send(self, message: Any) -> int:
        async with self._q() as q:
            return await q.send(self.queue, message)

    async def send_batch(self, messages: list[Any]) -> list[int]:
        async with self._q() as q:
            return await q.send_batch(self.queue, messages)

    async def read(self, qty: int) -> list[int]:
        async with self._q() as q:
            return [m.msg_id for m in await q.read(self.queue, vt=VT, qty=qty)]

    async def delete(self, msg_id: int) -> bool:
        async with self._q() as q:
            return await q.delete(self.queue, msg_id)

    async def delete_batch(self, msg_ids: list[int]) -> list[int]:
        async with self._q() as q:
            return await q.delete_batch(self.queue, msg_ids)

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()
        if self.pool is not None:
            await self.pool.close()


class PgmqAsync:
    def __init__(self, url: str, queue: str, mode: str) -> None:
        from pgmq import AsyncPGMQueue

        if AsyncPGMQueue is None:
            raise RuntimeError("pgmq's async client needs asyncpg (pip install 'pgmq[async]')")
        self.client = AsyncPGMQueue(conn_string=url, init_extension=False, pool_size=POOL_SIZE)
        self.queue = queue
        self.mode = mode

    async def open(self) -> None:
        await self.client.init()

    async def _call(self, method: Any, *args: Any) -> Any:
        """asyncpg autocommits each statement; TRANSACTION wraps the call in one of its transactions."""
        if self.mode == AUTOCOMMIT:
            return await method(self.queue, *args)
        pool = self.client.pool
        assert pool is not None, "open() first"
        async with pool.acquire() as conn, conn.transaction():
            return await method(self.queue, *args, conn=conn)

    async def send(self, message: Any) -> int:
        return int(await self._call(self.client.send, message))

    async def send_batch(self, messages: list[Any]) -> list[int]:
        return list(await self._call(self.client.send_batch, messages))

    async def read(self, qty: int) -> list[int]:
        got = await self._call(self.client.read, VT, qty)
        items = got if isinstance(got, list) else [got] if got is not None else []
        return [m.msg_id for m in items]

    async def delete(self, msg_id: int) -> bool:
        return bool(await self._call(self.client.delete, msg_id))

    async def delete_batch(self, msg_ids: list[int]) -> list[int]:
        return list(await self._call(self.client.delete_batch, msg_ids))

    async def close(self) -> None:
        await self.client.close()


# -------------------------------------------------------------------------------------------------- loops
def _sync_plan(client: HowdahSync | PgmqSync, sizes: ClientSizes) -> list[Phase]:
    n1, n2 = sizes.single, sizes.batched // BATCH * BATCH
    batch = [PAYLOAD] * BATCH
    got: list[int] = []
    chunks: list[list[int]] = []
    return [
        Phase("send", n1, lambda: [client.send(PAYLOAD) for _ in range(n1)]),
        Phase("read", n1, lambda: _collect(got, (client.read(1) for _ in range(n1)))),
        Phase("delete", n1, lambda: [client.delete(msg_id) for msg_id in got]),
        Phase("send_batch", n2, lambda: [client.send_batch(batch) for _ in range(n2 // BATCH)]),
        Phase("read_batch", n2, lambda: chunks.extend(client.read(BATCH) for _ in range(n2 // BATCH))),
        Phase("delete_batch", n2, lambda: [client.delete_batch(chunk) for chunk in chunks]),
        Phase(None, 0, lambda: _check(len(got), n1, sum(map(len, chunks)), n2)),
    ]


def _async_plan(client: HowdahAsync | PgmqAsync, sizes: ClientSizes, loop: asyncio.AbstractEventLoop) -> list[Phase]:
    n1, n2 = sizes.single, sizes.batched // BATCH * BATCH
    batch = [PAYLOAD] * BATCH
    got: list[int] = []
    chunks: list[list[int]] = []

    async def sends() -> None:
        for _ in range(n1):
            await client.send(PAYLOAD)

    async def reads() -> None:
        for _ in range(n1):
            got.extend(await client.read(1))

    async def deletes() -> None:
        for msg_id in got:
            await client.delete(msg_id)

    async def batch_sends() -> None:
        for _ in range(n2 // BATCH):
            await client.send_batch(batch)

    async def batch_reads() -> None:
        for _ in range(n2 // BATCH):
            chunks.append(await client.read(BATCH))

    async def batch_deletes() -> None:
        for chunk in chunks:
            await client.delete_batch(chunk)

    def on_loop(work: Callable[[], Awaitable[None]]) -> Callable[[], None]:
        return lambda: loop.run_until_complete(work())

    return [
        Phase("send", n1, on_loop(sends)),
        Phase("read", n1, on_loop(reads)),
        Phase("delete", n1, on_loop(deletes)),
        Phase("send_batch", n2, on_loop(batch_sends)),
        Phase("read_batch", n2, on_loop(batch_reads)),
        Phase("delete_batch", n2, on_loop(batch_deletes)),
        Phase(None, 0, lambda: _check(len(got), n1, sum(map(len, chunks)), n2)),
    ]


def _collect(into: list[int], reads: Iterable[list[int]]) -> None:
    for ids in reads:
        into.extend(ids)


def _check(single: int, want_single: int, batched: int, want_batched: int) -> None:
    if single != want_single or batched != want_batched:
        raise RuntimeError(f"read {single}/{want_single} single and {batched}/{want_batched} batched messages")


# -------------------------------------------------------------------------------------------------- table
ASYNC = (H_ASYNC, P_ASYNC)
FACTORIES: dict[str, Any] = {H_SYNC: HowdahSync, P_SYNC: PgmqSync, H_ASYNC: HowdahAsync, P_ASYNC: PgmqAsync}
MODES = (AUTOCOMMIT, TRANSACTION)


def _name(client: str, mode: str) -> str:
    return f"{client}/{mode}"


def run(contenders: Contenders, sizes: ClientSizes) -> ResultTable:
    schema = HOWDAH if contenders.have(HOWDAH) else PGMQ
    url = contenders.urls[schema]
    names = {_name(client, mode): (client, mode) for mode in MODES for client in FACTORIES}
    with psycopg.connect(url, autocommit=True) as conn:
        for name in names:
            conn.execute("SELECT pgmq.create(%s::text)", (_queue(name),))
    loop = asyncio.new_event_loop()
    clients: dict[str, Any] = {}
    failed: dict[str, str] = {}
    samples = Samples()
    try:
        for name, (client, mode) in names.items():
            try:
                clients[name] = FACTORIES[client](url, _queue(name), mode)
                if client in ASYNC:
                    loop.run_until_complete(clients[name].open())
            except Exception as exc:
                failed[name] = f"{type(exc).__name__}: {exc}"

        def plans(round_sizes: ClientSizes) -> dict[str, list[Phase]]:
            return {
                name: _async_plan(client, round_sizes, loop)
                if names[name][0] in ASYNC
                else _sync_plan(client, round_sizes)
                for name, client in clients.items()
            }

        with step("Table 3: Python clients, warm-up"):
            run_interleaved(plans(ClientSizes(1, 100, 1000)), Samples(), failed=failed)
        for rnd in range(sizes.rounds):
            with step(f"Table 3: Python clients, round {rnd + 1}/{sizes.rounds}"):
                run_interleaved(plans(sizes), samples, shift=rnd, failed=failed)
    finally:
        for name, client in clients.items():
            if names[name][0] in ASYNC:
                loop.run_until_complete(client.close())
            else:
                client.close()
        loop.close()
    return _table(schema, sizes, samples, failed)


def _queue(name: str) -> str:
    return "c_" + name.replace("-", "_").replace("/", "_").replace(" ", "_")


def _table(schema: str, sizes: ClientSizes, samples: Samples, failed: dict[str, str]) -> ResultTable:
    table = ResultTable(
        f"Table 3 — Python clients on {LABELS[schema]}'s schema, in the same transaction mode (messages/s, median "
        "of rounds)",
        [
            "operation",
            "transactions",
            "Howdah Queue",
            "pgmq PGMQueue",
            "sync ratio (target ≥ 1.5x)",
            "Howdah AsyncQueue",
            "pgmq async (asyncpg)",
            "async ratio (target ≥ 1.5x)",
        ],
        settings=f"{sizes.rounds} round(s), {sizes.single:,} single and {sizes.batched:,} batched messages per "
        f"client, batches of {BATCH}, pools of {POOL_SIZE}; both transaction modes for every client",
    )

    def cell(name: str, op: str) -> str:
        mark = " (default)" if DEFAULTS[name.split("/")[0]] == name.split("/")[1] else ""
        return "error" if name in failed else fmt_rate(samples.median(name, op)) + mark

    for op, label in OPERATIONS:
        for mode in MODES:
            hs, ps, ha, pa = (_name(c, mode) for c in (H_SYNC, P_SYNC, H_ASYNC, P_ASYNC))
            table.add_row(
                label,
                mode,
                cell(hs, op),
                cell(ps, op),
                fmt_ratio(samples.paired_ratio(hs, ps, op)),
                cell(ha, op),
                cell(pa, op),
                fmt_ratio(samples.paired_ratio(ha, pa, op)),
            )
    table.notes.append(
        "Ratios compare the two clients in the same transaction mode. Out of the box (marked 'default'), Howdah's "
        "Queue and AsyncQueue and pgmq's asyncpg client autocommit, while pgmq's PGMQueue runs every call in a "
        "transaction (BEGIN, the call, COMMIT): what a user gets from the sync clients is Howdah's autocommit row "
        "against PGMQueue's 'transaction per call' row."
    )
    table.notes.append(
        f"{sizes.rounds} round(s); each phase runs for every client before the next starts, in a rotated order; "
        "ratios are medians of per-round ratios; every client has its own pool and its own queue; the message is "
        "a Python dict each client serialises itself."
    )
    if schema != HOWDAH:
        table.notes.append("Howdah's schema is not installed, so every client ran on PGMQ's own SQL instead.")
    errors = {error for error in failed.values()}
    for error in sorted(errors):
        table.notes.append(f"{', '.join(n for n, e in failed.items() if e == error)} failed: {error}")
    return table
