"""Table 2: send → consume latency, Howdah's LISTEN/NOTIFY consumer against PGMQ-style ``read_with_poll``.

A producer sends one message at a time at a steady, modest rate, each carrying the moment it was sent; a
consumer in the same process notes when it got each message. Latency = receipt - send start, so it includes
the send's own round trip.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import psycopg

from benchmarks._harness import ResultTable, fmt_ms, percentile, step
from benchmarks._queue_setup import HOWDAH, PGMQ, VT, Contenders
from howdah.queue import AsyncQueue

Record = Callable[[Any], None]


@dataclass(frozen=True)
class LatencySizes:
    messages: int
    interval: float  # seconds between two sends
    poll_interval_ms: int = 100  # read_with_poll's default
    batch: int = 10  # the consumer's batch size (Howdah consume()'s default)


async def _produce(url: str, queue: str, sizes: LatencySizes) -> None:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        start = time.perf_counter()
        for i in range(sizes.messages):
            sent = time.perf_counter()
            body = json.dumps({"seq": i, "sent": sent})
            await conn.execute("SELECT * FROM pgmq.send(%s::text, %s::jsonb)", (queue, body), prepare=True)
            await asyncio.sleep(max(0.0, start + (i + 1) * sizes.interval - time.perf_counter()))


async def _consume_howdah(url: str, queue: str, sizes: LatencySizes, record: Record, ready: asyncio.Event) -> None:
    aqueue = AsyncQueue(url, pool_size=4)
    async with aqueue, aqueue.consume(queue, batch_size=sizes.batch, max_reads=None) as messages:
        await asyncio.sleep(0.3)  # let the LISTEN connection start before the first send
        ready.set()
        async for message in messages:
            record(message.message)


async def _consume_polling(url: str, queue: str, sizes: LatencySizes, record: Record, ready: asyncio.Event) -> None:
    read = "SELECT msg_id, message FROM pgmq.read_with_poll(%s::text, %s::integer, %s::integer, 5, %s::integer)"
    delete = "SELECT * FROM pgmq.delete(%s::text, %s::bigint[])"
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        ready.set()
        while True:
            cursor = await conn.execute(read, (queue, VT, sizes.batch, sizes.poll_interval_ms), prepare=True)
            rows = await cursor.fetchall()
            for _, body in rows:
                record(body)
            if rows:
                await conn.execute(delete, (queue, [row[0] for row in rows]), prepare=True)


async def _measure(
    url: str,
    queue: str,
    sizes: LatencySizes,
    consumer: Callable[[str, str, LatencySizes, Record, asyncio.Event], Coroutine[Any, Any, None]],
) -> list[float]:
    latencies: dict[int, float] = {}
    done = asyncio.Event()

    def record(body: Any) -> None:
        latencies.setdefault(int(body["seq"]), time.perf_counter() - float(body["sent"]))
        if len(latencies) >= sizes.messages:
            done.set()

    ready = asyncio.Event()
    task = asyncio.create_task(consumer(url, queue, sizes, record, ready))
    try:
        await asyncio.wait_for(ready.wait(), 30)
        await _produce(url, queue, sizes)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), 10)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return list(latencies.values())


async def _create(url: str, queue: str) -> None:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("SELECT pgmq.create(%s::text)", (queue,))


async def _run(contenders: Contenders, sizes: LatencySizes) -> list[tuple[str, list[float] | str]]:
    variants: list[tuple[str, str, Any]] = []
    if contenders.have(HOWDAH):
        variants.append(("Howdah AsyncQueue.consume() — LISTEN/NOTIFY", HOWDAH, _consume_howdah))
        variants.append((f"read_with_poll loop ({sizes.poll_interval_ms} ms) on Howdah", HOWDAH, _consume_polling))
    variants.append((f"read_with_poll loop ({sizes.poll_interval_ms} ms) on PGMQ 1.13 SQL", PGMQ, _consume_polling))
    results: list[tuple[str, list[float] | str]] = []
    for i, (label, contender, consumer) in enumerate(variants):
        queue = f"lat_{i}"
        url = contenders.urls[contender]
        with step(f"Table 2: {label}"):
            try:
                await _create(url, queue)
                results.append((label, await _measure(url, queue, sizes, consumer)))
            except Exception as exc:
                results.append((label, f"{type(exc).__name__}: {exc}"))
    return results


def run(contenders: Contenders, sizes: LatencySizes) -> ResultTable:
    results = asyncio.run(_run(contenders, sizes))
    table = ResultTable(
        "Table 2 — send → consume latency (ms)",
        ["consumer", "p50", "p99", "max", "received", "target"],
        settings=f"one round, {sizes.messages} messages one every {sizes.interval * 1000:.0f} ms, consumer batch "
        f"{sizes.batch}; producer and consumers autocommit",
    )
    for label, outcome in results:
        target = "p50 < 5 ms" if "consume()" in label else ""
        if isinstance(outcome, str):
            table.add_row(label, "error", "error", "error", "0", target)
            table.notes.append(f"{label} failed: {outcome}")
            continue
        table.add_row(
            label,
            fmt_ms(percentile(outcome, 50)),
            fmt_ms(percentile(outcome, 99)),
            fmt_ms(max(outcome, default=None)),
            f"{len(outcome)}/{sizes.messages}",
            target,
        )
    table.notes.append(
        f"{sizes.messages} messages sent one at a time every {sizes.interval * 1000:.0f} ms; consumers read up to "
        f"{sizes.batch} at a time and delete what they read. Latency = receipt - start of the send call."
    )
    return table
