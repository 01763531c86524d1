"""The API benchmark's server process: Howdah's API and reconciler in one process, as ``howdah api`` runs them,
plus one floor route the benchmark compares against.

    HOWDAH_BENCH_DSN=postgresql://… python -m benchmarks._api_server

Binds 127.0.0.1 on a free port and prints ``{"port": N}`` on stdout once it serves; SIGTERM stops it. The floor,
``GET /bench/floor/instances/{id}``, is the least a FastAPI endpoint can do to answer the same question: one
``SELECT`` on the same pool, the row rendered to JSON by Postgres, no authentication and no models.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
from collections.abc import Iterator

import uvicorn
from fastapi import FastAPI, Request, Response
from psycopg_pool import AsyncConnectionPool

from howdah.control.api import create_app
from howdah.control.reconciler import Reconciler

FLOOR_PATH = "/bench/floor/instances/{instance_id}"
POOL_SIZE = 10


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling (it would re-raise SIGTERM on exit): SIGTERM sets ``stop``."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def add_floor(app: FastAPI) -> None:
    @app.get(FLOOR_PATH, include_in_schema=False)
    async def floor(instance_id: str, request: Request) -> Response:
        async with request.app.state.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT row_to_json(i)::text FROM control.instances i WHERE i.id::text = %s", (instance_id,)
            )
            row = await cur.fetchone()
        if row is None:
            return Response('{"error": {"code": "not_found"}}', status_code=404, media_type="application/json")
        return Response(row[0], media_type="application/json")


async def serve(dsn: str) -> None:
    app = create_app(dsn, pool_size=POOL_SIZE)
    add_floor(app)
    # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY on accepted sockets only then; without it, Nagle's algorithm
    # and the client's delayed ACKs add ~40 ms to responses written in two parts (headers, then body).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    server = _Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with AsyncConnectionPool(dsn, min_size=1, max_size=4, kwargs={"autocommit": True}, open=False) as pool:
        reconciler = asyncio.create_task(Reconciler(pool, dsn).run(stop), name="reconciler")
        api = asyncio.create_task(server.serve(sockets=[sock]), name="api")
        while not server.started and not api.done():
            await asyncio.sleep(0.02)
        if server.started:
            sys.stdout.write(json.dumps({"port": sock.getsockname()[1]}) + "\n")
            sys.stdout.flush()
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait([api, reconciler, stopped], return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        stop.set()
        server.should_exit = True
        results = await asyncio.gather(api, reconciler, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result


if __name__ == "__main__":
    asyncio.run(serve(os.environ["HOWDAH_BENCH_DSN"]))
