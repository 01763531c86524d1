"""The API benchmark's stand-in for a data plane: acknowledges every CRUD event at once, in its own process.

    HOWDAH_BENCH_DSN=postgresql://… python -m benchmarks._api_conductor QUEUE

It consumes ``QUEUE`` (the data plane's CRUD events) with Howdah's consumer and answers each with the state
event a conductor would send after doing the work (Create → Created, Update → Updated, …), carrying the spec as
the actual spec, so the reconciler brings the instance back to Up and the next PATCH can be accepted. Nothing is
provisioned. SIGTERM stops it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from typing import Any

from howdah.control.events import STATE_QUEUE
from howdah.queue import AsyncQueue, Message

REPLIES = {
    "Create": "Created", "Update": "Updated", "Restart": "Restarted", "Stop": "Stopped", "Start": "Started",
    "Delete": "Deleted",
}  # fmt: skip
CONNECTION = {"host": "127.0.0.1", "port": 5432, "user": "app", "password": "bench", "dbname": "app"}


def reply_to(event: dict[str, Any]) -> dict[str, Any]:
    reply: dict[str, Any] = {
        "instance_id": event["instance_id"], "event": REPLIES[event["kind"]], "generation": event["generation"],
        "data_plane": "local", "actual_spec": event["spec"], "status": {"benchmark": True},
    }  # fmt: skip
    if event["kind"] == "Create":
        reply["connection"] = CONNECTION
    return reply


async def run(dsn: str, queue_name: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with AsyncQueue(dsn, pool_size=4) as queue:

        async def acknowledge(message: Message) -> None:
            await queue.send(STATE_QUEUE, reply_to(message.message))

        await queue.work(queue_name, acknowledge, stop=stop, handle_signals=False, concurrency=4, poll_interval=0.5)


if __name__ == "__main__":
    asyncio.run(run(os.environ["HOWDAH_BENCH_DSN"], sys.argv[1]))
