"""The conductor runs provider calls in a thread pool of its own and leaves the event loop's default executor to
the API and workers that share the loop (under ``howdah up``)."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg

from howdah.conductor import Conductor
from howdah.conductor.runner import THREAD_PREFIX
from howdah.control.events import data_plane_queue
from howdah.providers.local import LocalProvider
from tests.waiting import async_wait_until


def provider_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith(THREAD_PREFIX)]


async def test_a_conductor_leaves_the_loops_default_executor_alone_and_stops_its_threads(
    db_url: str, tmp_path: Path
) -> None:
    loop = asyncio.get_running_loop()
    shared = ThreadPoolExecutor(max_workers=2, thread_name_prefix="shared-by-the-api")
    loop.set_default_executor(shared)
    tmp_path.chmod(0o755)
    agent = Conductor(db_url, "executor", LocalProvider(tmp_path / "dataplane"), status_interval=3600)
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))

    async def registered() -> bool:
        async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
            cur = await conn.execute(
                "SELECT count(*) FROM pgmq.list_queues() WHERE queue_name = %s", (data_plane_queue("executor"),)
            )
            return (await cur.fetchone()) == (1,)

    try:
        await async_wait_until(registered, what="the conductor to register its data plane")
        assert provider_threads(), "the provider's capacity was read in the conductor's own pool"
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)

    ran_in = await asyncio.to_thread(lambda: threading.current_thread().name)
    assert ran_in.startswith("shared-by-the-api")  # still the loop's default executor
    assert provider_threads() == []  # the conductor's pool is shut down with it
    shared.shutdown()
