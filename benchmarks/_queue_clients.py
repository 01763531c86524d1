"""Table 3: the Python clients head to head on one schema — Howdah's ``Queue``/``AsyncQueue`` against the
official ``pgmq`` clients (``PGMQueue`` on psycopg, and its asyncpg-based async client when installed).

Each client has its own queue and runs the same loops each round: single sends, single reads, single deletes,
then sends, reads and deletes of 100 at a time; each loop runs for every client before the next loop starts,
in an order rotated per loop. Rates are messages per second.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

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
class HowdahSync:
    def __init__(self, url: str, queue: str) -> None:
        self.client = Queue(url, pool_size=POOL_SIZE)
        self.queue = queue

    def send(self, message: Any) -> int:
        return self.client.send(self.queue, message)

    def send_batch(self, messages: list[Any]) -> list[int]:
        return self.client.send_batch(self.queue, messages)

    def read(self, qty: int) -> list[int]:
        return [m.msg_id for m in self.client.read(self.queue, vt=VT, qty=qty)]

    def delete(self, msg_id: int) -> bool:
        return self.client.delete(self.queue, msg_id)

    def delete_batch(self, msg_ids: list[int]) -> list[int]:
        return self.client.delete_batch(self.queue, msg_ids)

    def close(self) -> None:
        self.client.close()


class PgmqSync:
    def __init__(self, url: str, queue: str) -> None:
        from pgmq import PGMQueue

        host, port, database, username, password = _pgmq_connection(url)
        self.client = PGMQueue(
            host=host,
            port=port,
            database=database,
            username=username,
            password=password,
            init_extension=False,
            pool_size=POOL_SIZE,
        )
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


class HowdahAsync:
    def __init__(self, url: str, queue: str) -> None:
        self.client = AsyncQueue(url, pool_size=POOL_SIZE)
        self.queue = queue

    async def open(self) -> None:
        await self.client.open()

    async def send(self, message: Any) -> int:
        return await self.client.send(self.queue, message)

    async def send_batch(self, messages: list[Any]) -> list[int]:
        return await self.client.send_batch(self.queue, messages)

    async def read(self, qty: int) -> list[int]:
        return [m.msg_id for m in await self.client.read(self.queue, vt=VT, qty=qty)]

    async def delete(self, msg_id: int) -> bool:
        return await self.client.delete(self.queue, msg_id)

    async def delete_batch(self, msg_ids: list[int]) -> list[int]:
        return await self.client.delete_batch(self.queue, msg_ids)

    async def close(self) -> None:
        await self.client.close()


class PgmqAsync:
    def __init__(self, url: str, queue: str) -> None:
        from pgmq import AsyncPGMQueue

        if AsyncPGMQueue is None:
            raise RuntimeError("pgmq's async client needs asyncpg (pip install 'pgmq[async]')")
        host, port, database, username, password = _pgmq_connection(url)
        self.client = AsyncPGMQueue(
            host=host,
            port=port,
            database=database,
            username=username,
            password=password,
            init_extension=False,
            pool_size=POOL_SIZE,
        )
        self.queue = queue

    async def open(self) -> None:
        await self.client.init()

    async def send(self, message: Any) -> int:
        return int(await self.client.send(self.queue, message))

    async def send_batch(self, messages: list[Any]) -> list[int]:
        return await self.client.send_batch(self.queue, messages)

    async def read(self, qty: int) -> list[int]:
        got = await self.client.read(self.queue, vt=VT, qty=qty)
        items = got if isinstance(got, list) else [got] if got is not None else []
        return [m.msg_id for m in items]

    async def delete(self, msg_id: int) -> bool:
        return bool(await self.client.delete(self.queue, msg_id))

    async def delete_batch(self, msg_ids: list[int]) -> list[int]:
        return await self.client.delete_batch(self.queue, msg_ids)

    async def close(self) -> None:
        await self.client.close()


def _pgmq_connection(url: str) -> tuple[str, str, str, str, str]:
    """Host, port, database, user and password — the separate fields the pgmq clients take — from a URL."""
    info = conninfo_to_dict(url)
    return (
        str(info.get("host", "localhost")),
        str(info.get("port", "5432")),
        str(info.get("dbname", "postgres")),
        str(info.get("user", "postgres")),
        str(info.get("password", "")),
    )


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
def run(contenders: Contenders, sizes: ClientSizes) -> ResultTable:
    schema = HOWDAH if contenders.have(HOWDAH) else PGMQ
    url = contenders.urls[schema]
    factories: dict[str, Any] = {H_SYNC: HowdahSync, P_SYNC: PgmqSync, H_ASYNC: HowdahAsync, P_ASYNC: PgmqAsync}
    with psycopg.connect(url, autocommit=True) as conn:
        for name in factories:
            conn.execute("SELECT pgmq.create(%s::text)", (_queue(name),))
    loop = asyncio.new_event_loop()
    clients: dict[str, Any] = {}
    failed: dict[str, str] = {}
    samples = Samples()
    try:
        for name, factory in factories.items():
            try:
                clients[name] = factory(url, _queue(name))
                if name in (H_ASYNC, P_ASYNC):
                    loop.run_until_complete(clients[name].open())
            except Exception as exc:
                failed[name] = f"{type(exc).__name__}: {exc}"

        def plans(round_sizes: ClientSizes) -> dict[str, list[Phase]]:
            return {
                name: _async_plan(client, round_sizes, loop)
                if name in (H_ASYNC, P_ASYNC)
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
            if name in (H_ASYNC, P_ASYNC):
                loop.run_until_complete(client.close())
            else:
                client.close()
        loop.close()
    return _table(schema, sizes, samples, failed)


def _queue(client: str) -> str:
    return "c_" + client.replace("-", "_")


def _table(schema: str, sizes: ClientSizes, samples: Samples, failed: dict[str, str]) -> ResultTable:
    table = ResultTable(
        f"Table 3 — Python clients on {LABELS[schema]}'s schema (messages/s, median of rounds)",
        [
            "operation",
            "Howdah Queue",
            "pgmq PGMQueue",
            "sync ratio (target ≥ 1.5x)",
            "Howdah AsyncQueue",
            "pgmq async (asyncpg)",
            "async ratio (target ≥ 1.5x)",
        ],
    )

    def cell(name: str, op: str) -> str:
        return "error" if name in failed else fmt_rate(samples.median(name, op))

    for op, label in OPERATIONS:
        table.add_row(
            label,
            cell(H_SYNC, op),
            cell(P_SYNC, op),
            fmt_ratio(samples.paired_ratio(H_SYNC, P_SYNC, op)),
            cell(H_ASYNC, op),
            cell(P_ASYNC, op),
            fmt_ratio(samples.paired_ratio(H_ASYNC, P_ASYNC, op)),
        )
    table.notes.append(
        f"{sizes.rounds} round(s); each phase runs for every client before the next starts, in a rotated order; "
        "ratios are medians of per-round ratios; "
        f"{sizes.single:,} single and {sizes.batched:,} batched messages per client; "
        f"every client has its own pool of up to {POOL_SIZE} connections and its own queue; the message is a "
        "Python dict each client serialises itself."
    )
    if schema != HOWDAH:
        table.notes.append("Howdah's schema is not installed, so every client ran on PGMQ's own SQL instead.")
    for name, error in failed.items():
        table.notes.append(f"{name} failed: {error}")
    return table
