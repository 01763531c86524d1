"""Run the control plane: the API (uvicorn) and the reconciler, until a stop event is set."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator

import uvicorn
from fastapi import FastAPI
from psycopg_pool import AsyncConnectionPool
from uvicorn.config import LOGGING_CONFIG

from howdah.control.api import create_app
from howdah.control.reconciler import Reconciler
from howdah.control.sealing import Sealer

__all__ = ["serve_control_plane"]


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the caller owns SIGINT/SIGTERM and sets ``should_exit``."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve_control_plane(
    dsn: str, stop: asyncio.Event, *, host: str = "127.0.0.1", port: int = 8080, started: asyncio.Event | None = None,
    metrics_open_loopback: bool | None = None, sealer: Sealer | None = None,
    extend: Callable[[FastAPI], None] | None = None, configure_logging: bool = True,
) -> None:  # fmt: skip
    """Serve the API on ``host:port`` and run the reconciler until ``stop`` is set; both stop gracefully.

    ``metrics_open_loopback``, ``sealer``: see :func:`howdah.control.api.create_app` (None: the default);
    ``extend`` adds what else the same port serves (the web console, from a layer above this one);
    ``configure_logging=False`` leaves logging as the caller set it (uvicorn's loggers then propagate to the root
    logger's handlers) instead of uvicorn's own handlers on stderr."""
    app = create_app(dsn, metrics_open_loopback=metrics_open_loopback, sealer=sealer)
    if extend is not None:
        extend(app)
    log_config = LOGGING_CONFIG if configure_logging else None
    server = _Server(
        uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on", log_config=log_config)
    )
    async with AsyncConnectionPool(
        dsn, min_size=1, max_size=4, kwargs={"autocommit": True}, open=False,
        check=AsyncConnectionPool.check_connection,  # a Postgres restart leaves dead connections behind
    ) as pool:  # fmt: skip
        reconciler = asyncio.create_task(Reconciler(pool, dsn).run(stop), name="howdah-reconciler")
        api = asyncio.create_task(server.serve(), name="howdah-api")
        if started is not None:
            while not server.started and not api.done():
                await asyncio.sleep(0.02)
            started.set()
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait([stopped, api, reconciler], return_when=asyncio.FIRST_COMPLETED)
        stop.set()
        server.should_exit = True
        stopped.cancel()
        results = await asyncio.gather(api, reconciler, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
            raise result
