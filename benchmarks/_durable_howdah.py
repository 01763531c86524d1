"""Howdah's side of the durable benchmark (each function runs in its own spawned process).

Howdah runs workflows in ``Worker`` processes that consume its dispatch queue; ``DurableApp.start`` only
inserts the workflow row and its dispatch message. One worker: the starter and one ``Worker`` share a process
and a connection pool. N workers: N separate ``Worker`` processes, and the starting process runs none.
Steps are ``async def`` functions (Howdah runs sync steps in a thread; a trivial step needs none).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from benchmarks._durable_common import (
    BACKLOG_STEPS,
    Sequential,
    Sizes,
    Throughput,
    drain_round,
    durations,
    timed_rounds,
)
from benchmarks._processes import processes, quiet_logging, spawn_context
from howdah.durable import DurableApp, Worker

FINISHED = (
    "SELECT count(*) FILTER (WHERE status IN ('succeeded', 'failed', 'cancelled')), "
    "count(*) FILTER (WHERE status IN ('failed', 'cancelled')), extract(epoch FROM max(finished_at)) "
    "FROM howdah.workflows WHERE created_at >= to_timestamp(%s)"
)
SPAN = (
    "SELECT extract(epoch FROM min(started_at)), extract(epoch FROM max(finished_at)) "
    "FROM howdah.workflows WHERE created_at >= to_timestamp(%s)"
)
DURATIONS = "SELECT id, extract(epoch FROM finished_at - created_at) FROM howdah.workflows WHERE id = ANY(%s)"


async def _bump(value: int) -> int:
    return value + 1


def make_app(url: str, pool_size: int) -> DurableApp:
    """The app with the benchmark's workflows: ``three`` (3 steps), ``one`` (1 step), ``steps`` (args.n steps),
    ``five`` (5 steps, the backlog scenario's)."""
    app = DurableApp(url, pool_size=pool_size)

    @app.workflow("three")
    async def three(ctx: Any, args: dict[str, Any]) -> int:
        a = await ctx.step("a", _bump, args["x"])
        b = await ctx.step("b", _bump, a)
        return int(await ctx.step("c", _bump, b))

    @app.workflow("five")
    async def five(ctx: Any, args: dict[str, Any]) -> int:
        value = args["x"]
        for name in "abcde"[:BACKLOG_STEPS]:
            value = await ctx.step(name, _bump, value)
        return int(value)

    @app.workflow("one")
    async def one(ctx: Any, args: dict[str, Any]) -> int:
        return int(await ctx.step("a", _bump, args["x"]))

    @app.workflow("steps")
    async def steps(ctx: Any, args: dict[str, Any]) -> int:
        value = 0
        for i in range(args["n"]):
            value = await ctx.step(f"s{i}", _bump, value)
        return value

    return app


def _starter(app: DurableApp, starters: int) -> Any:
    """``start_many(count)``: ``count`` 3-step workflows started with ``starters`` start calls in flight."""
    gate = asyncio.Semaphore(starters)

    async def start(i: int) -> None:
        async with gate:
            await app.start("three", {"x": i})

    async def start_many(count: int) -> None:
        await asyncio.gather(*(start(i) for i in range(count)))

    return start_many


# ----------------------------------------------------------------------------------------------- throughput
def throughput(url: str, sizes: Sizes, workers: int) -> Throughput:
    """(a): ``sizes.rounds`` rounds of ``sizes.workflows`` 3-step workflows with ``workers`` worker processes."""
    if workers == 1:
        return asyncio.run(_throughput_in_process(url, sizes))
    with processes(_worker_process, [(url, sizes, None)] * workers, "howdah-worker") as procs:
        result = asyncio.run(_throughput_starter(url, sizes, workers, [p.pid for p in procs]))
    result.how = (
        f"1 starting process ({sizes.starters} concurrent DurableApp.start) + {workers} Worker processes "
        f"(concurrency={sizes.concurrency} each)"
    )
    return result


async def _throughput_in_process(url: str, sizes: Sizes) -> Throughput:
    app = make_app(url, sizes.pool_size)
    async with app:
        await app.register()
        stop = asyncio.Event()
        worker = asyncio.create_task(Worker(app, concurrency=sizes.concurrency).run(stop, handle_signals=False))
        await asyncio.sleep(0.5)  # let the worker's LISTEN connection come up
        try:
            result = await timed_rounds(url, FINISHED, sizes, sizes.warmup, _starter(app, sizes.starters))
        finally:
            stop.set()
            await worker
    result.how = (
        f"1 process: {sizes.starters} concurrent DurableApp.start + 1 Worker (concurrency={sizes.concurrency}), "
        f"one pool of {sizes.pool_size}"
    )
    return result


async def _throughput_starter(url: str, sizes: Sizes, workers: int, pids: list[int]) -> Throughput:
    app = make_app(url, sizes.pool_size)
    async with app:
        await app.register()
        await asyncio.sleep(1.0)  # the same settling time the DBOS workers get
        warmup = max(sizes.warmup, workers * sizes.concurrency)
        return await timed_rounds(url, FINISHED, sizes, warmup, _starter(app, sizes.starters), pids)


def _worker_process(url: str, sizes: Sizes, go: Any, ready: Any) -> None:
    """One ``Worker`` until SIGTERM (it stops the way ``howdah worker`` does); with ``go``, it starts working
    only once ``go`` is set."""
    quiet_logging()

    async def main() -> None:
        app = make_app(url, sizes.pool_size)
        async with app:
            await app.register()
            if go is not None:
                ready.set()
                await asyncio.to_thread(go.wait)
            worker = asyncio.create_task(Worker(app, concurrency=sizes.concurrency).run(handle_signals=True))
            await asyncio.sleep(0.5)
            ready.set()
            await worker

    asyncio.run(main())


# ----------------------------------------------------------------------------------------------- backlog
def backlog(url: str, sizes: Sizes, workers: int) -> Throughput:
    """(d): ``sizes.workflows`` 5-step workflows started first (``start_many``, 100 per call), then run by
    ``workers`` Worker processes, let go together once all are up."""
    since = time.time() - 1
    first = time.time()
    asyncio.run(_start_backlog(url, sizes))
    started = time.time() - first
    go = spawn_context().Event()
    with processes(_worker_process, [(url, sizes, go)] * workers, "howdah-worker"):
        go.set()
        result = Throughput(rounds=[drain_round(url, FINISHED, SPAN, since, sizes.workflows, started)])
    result.how = (
        f"workflows started first with DurableApp.start_many (100 per call), then {workers} Worker process(es) "
        f"(concurrency={sizes.concurrency} each)"
    )
    return result


async def _start_backlog(url: str, sizes: Sizes) -> None:
    app = make_app(url, sizes.pool_size)
    async with app:
        await app.register()
        for chunk in range(0, sizes.workflows, 100):
            await app.start_many("five", [{"x": i} for i in range(chunk, min(sizes.workflows, chunk + 100))])


# ----------------------------------------------------------------------------------------------- sequential
def sequential(url: str, sizes: Sizes) -> Sequential:
    """(b) and (c): one run at a time, with the worker in this process."""
    return asyncio.run(_sequential(url, sizes))


async def _sequential(url: str, sizes: Sizes) -> Sequential:
    app = make_app(url, sizes.pool_size)
    result = Sequential()
    async with app:
        await app.register()
        stop = asyncio.Event()
        worker = asyncio.create_task(Worker(app, concurrency=sizes.concurrency).run(stop, handle_signals=False))
        await asyncio.sleep(0.5)
        try:
            for i in range(max(3, sizes.warmup // 10)):
                await (await app.start("one", {"x": i})).result()
                await (await app.start("steps", {"n": 3})).result()
            zero, long = [], []
            for _ in range(sizes.repeats):
                handle = await app.start("steps", {"n": 0})
                await handle.result(timeout=300)
                zero.append(handle.workflow_id)
                handle = await app.start("steps", {"n": sizes.steps})
                await handle.result(timeout=300)
                long.append(handle.workflow_id)
            latency = []
            for i in range(sizes.latency_runs):
                begin = time.perf_counter()
                handle = await app.start("one", {"x": i})
                await handle.result(timeout=60)
                result.client.append(time.perf_counter() - begin)
                latency.append(handle.workflow_id)
        finally:
            stop.set()
            await worker
    await asyncio.to_thread(
        durations, url, DURATIONS, [(zero, result.zero), (long, result.long), (latency, result.server)]
    )
    return result
