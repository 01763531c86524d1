"""An API client per test against the module's database, with tokens for two orgs, the platform admin's (org
``default``, like the one ``howdah up`` creates) and one data plane.

The event loop must never block while the API runs: every test using :func:`open_api` (the ``api`` fixture
included) runs the loop in asyncio's debug mode, and any single step of it longer than
:data:`SLOW_STEP_SECONDS` fails the test, naming the step.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from psycopg_pool import AsyncConnectionPool

from howdah.control.api import create_app
from howdah.control.reconciler import Reconciler
from howdah.control.service import ControlPlane
from howdah.providers.local import local_extension_catalog

#: The longest one step of the event loop (a callback, or a task running from one ``await`` to the next) may
#: take. With debug mode on, on 2 cores, the slowest steps of these tests measured about 15 ms for a request
#: and 90 ms for a test starting fifty requests at once when the machine was otherwise idle; with a dozen
#: processes competing for the 2 cores, waiting for a CPU stretched steps to 0.26 s. 0.5 s stays clear of
#: that, while a call that blocks (a subprocess, a file synced to disk, a sleep, a connection attempt) under
#: such load easily takes longer. A blocking call of a few milliseconds hides below any bound a shared
#: machine allows, so test_event_loop.py makes the one it guards against slow on purpose.
SLOW_STEP_SECONDS = 0.5


class _SlowSteps(logging.Handler):
    """Collects debug mode's ``Executing <Handle …> took N seconds`` warnings of the ``asyncio`` logger."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.steps: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("Executing "):
            self.steps.append(message)


@asynccontextmanager
async def loop_must_not_block(limit: float = SLOW_STEP_SECONDS) -> AsyncIterator[None]:
    """Fail the test if any step of the running loop takes longer than ``limit`` seconds inside the block."""
    loop = asyncio.get_running_loop()
    logger = logging.getLogger("asyncio")
    caught = _SlowSteps()
    debug, duration, level = loop.get_debug(), loop.slow_callback_duration, logger.level
    loop.set_debug(True)
    loop.slow_callback_duration = limit
    logger.addHandler(caught)
    if not logger.isEnabledFor(logging.WARNING):
        logger.setLevel(logging.WARNING)
    gc.freeze()  # a full collection over everything imported pauses the loop for ~0.1 s: no code's doing
    try:
        yield
    finally:
        gc.unfreeze()
        logger.removeHandler(caught)
        logger.setLevel(level)
        loop.set_debug(debug)
        loop.slow_callback_duration = duration
    if caught.steps:
        shown = "\n".join(step[:1500] for step in caught.steps[:5])
        pytest.fail(f"the event loop was blocked for more than {limit} s, {len(caught.steps)} time(s):\n{shown}")


@dataclass
class Api:
    app: FastAPI
    client: httpx.AsyncClient
    control: ControlPlane
    reconciler: Reconciler
    pool: AsyncConnectionPool
    tokens: dict[str, str]  # "acme-admin", "acme-member", "acme-viewer", "other-admin", "platform"
    token_ids: dict[str, str]  # the same keys: each token's id

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    async def call(self, method: str, path: str, who: str = "acme-member", **kwargs: Any) -> httpx.Response:
        return await self.client.request(method, path, headers=self.auth(who), **kwargs)


@asynccontextmanager
async def open_api(db_url: str, **options: Any) -> AsyncIterator[Api]:
    """The API (``create_app(db_url, **options)``) started, with its tokens and data plane, on a loop that must
    not block."""
    app = create_app(db_url, **{"pool_size": 20, **options})
    async with loop_must_not_block(), app.router.lifespan_context(app):
        pool: AsyncConnectionPool = app.state.pool
        control: ControlPlane = app.state.control
        tokens, token_ids = {}, {}
        for org, role in (("acme", "admin"), ("acme", "member"), ("acme", "viewer"), ("other", "admin")):
            tokens[f"{org}-{role}"], row = await control.create_token(org, role)
            token_ids[f"{org}-{role}"] = row["id"]
        tokens["platform"], row = await control.create_token("default", "platform", "like howdah up's")
        token_ids["platform"] = row["id"]
        await control.register_data_plane("local", "this machine", extensions=local_extension_catalog())
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://howdah.test") as client:
            yield Api(app, client, control, Reconciler(pool, db_url, ack_timeout=60), pool, tokens, token_ids)


@pytest.fixture
async def api(db_url: str) -> AsyncIterator[Api]:
    async with open_api(db_url) as api:
        yield api
