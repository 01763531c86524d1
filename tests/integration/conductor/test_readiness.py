"""/readyz against the real API (uvicorn on a port), its reconciler and a conductor whose registration is held
back: it says ready only once a create issued at that moment is accepted, names what is missing before, and
turns not ready again when the conductor's heartbeat goes stale."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from howdah.conductor import Conductor
from howdah.control.server import serve_control_plane
from howdah.control.service import ControlPlane
from howdah.pg.processes import LOCALHOST, free_port
from howdah.providers import ProviderError
from howdah.providers.local import LocalProvider
from tests.conftest import PgCluster
from tests.waiting import async_wait_until

ORG = "acme"
BASE = f"/api/v1/orgs/{ORG}/instances"
GATE_TIMEOUT = 60.0  # a gate the test forgot to open fails the conductor instead of hanging it


class GatedProvider(LocalProvider):
    """The local provider, whose conductor cannot register until the test opens ``gate`` (its capacity is the
    first thing a conductor asks at start), and which makes no instance (a create fails at once)."""

    def __init__(self, home: Path, gate: threading.Event) -> None:
        super().__init__(home)
        self.gate = gate

    def capacity(self) -> Any:
        if not self.gate.wait(GATE_TIMEOUT):
            raise ProviderError("the test never let this conductor register")
        return super().capacity()

    def ensure_created(self, *args: Any, **kwargs: Any) -> Any:
        raise ProviderError("no instance is made in this test")


@asynccontextmanager
async def platform(db_url: str) -> AsyncIterator[tuple[httpx.AsyncClient, ControlPlane]]:
    """The API and its reconciler served on a free port, a client for it and the control plane."""
    stop, started = asyncio.Event(), asyncio.Event()
    port = free_port()
    server = asyncio.create_task(serve_control_plane(db_url, stop, port=port, started=started))
    try:
        await asyncio.wait_for(started.wait(), 30)
        async with (
            AsyncConnectionPool(db_url, min_size=1, max_size=2, kwargs={"autocommit": True}) as pool,
            httpx.AsyncClient(base_url=f"http://{LOCALHOST}:{port}", timeout=30) as client,
        ):
            yield client, ControlPlane(pool)
    finally:
        stop.set()
        await asyncio.wait_for(server, 60)


@asynccontextmanager
async def conductor(db_url: str, plane: str, home: Path, gate: threading.Event, **options: Any) -> AsyncIterator[None]:
    stop = asyncio.Event()
    running = asyncio.create_task(Conductor(db_url, plane, GatedProvider(home, gate), **options).run(stop))
    try:
        yield
    finally:
        stop.set()
        gate.set()
        await asyncio.wait_for(running, 60)


@pytest.fixture
def fresh_db(pg_cluster: PgCluster, template_db: str) -> Iterator[str]:
    """A migrated database of this test's own: a platform's first start, no data plane yet."""
    name = f"ready_{uuid.uuid4().hex[:10]}"
    yield pg_cluster.create_database(name, template=template_db)
    pg_cluster.drop_database(name)


async def ready(client: httpx.AsyncClient) -> bool:
    return (await client.get("/readyz")).status_code == 200


async def test_a_create_sent_the_moment_readyz_says_ready_is_accepted(fresh_db: str, tmp_path: Path) -> None:
    async with platform(fresh_db) as (client, control):
        token, _ = await control.create_token(ORG, "admin")
        auth = {"Authorization": f"Bearer {token}"}
        for attempt in range(5):
            plane, gate = f"slow-{attempt}", threading.Event()
            async with conductor(fresh_db, plane, tmp_path / plane, gate, status_interval=3600):
                held = await client.get("/readyz")
                assert held.status_code == 503
                assert int(held.headers["Retry-After"]) > 0
                assert held.json()["status"] == "not_ready"
                assert held.json()["checks"]["data_plane"]["ok"] is False
                assert (await client.get("/healthz")).status_code == 200  # alive all the same
                if attempt == 0:
                    assert held.json()["checks"]["data_plane"]["detail"] == (
                        "no data plane is registered: no conductor has started yet"
                    )
                else:  # the planes of earlier rounds are drained: none can take a create
                    assert f"data plane 'slow-{attempt - 1}' is draining" in held.json()["error"]["message"]

                gate.set()
                await async_wait_until(lambda: ready(client), timeout=60, what="/readyz to answer 200")
                created = await client.post(BASE, json={"name": f"db-{attempt}"}, headers=auth)
                assert created.status_code == 202, created.text
                assert created.json()["data_plane"] == plane
            await control.update_data_plane(plane, draining=True)  # the next round starts with no usable plane


async def test_readyz_is_503_again_once_the_conductors_heartbeat_is_stale(fresh_db: str, tmp_path: Path) -> None:
    gate = threading.Event()
    gate.set()
    async with platform(fresh_db) as (client, _), conductor(fresh_db, "beat", tmp_path, gate, heartbeat_interval=3600):
        await async_wait_until(lambda: ready(client), timeout=60, what="/readyz to answer 200")
        body = (await client.get("/readyz")).json()
        assert body["status"] == "ready"
        assert {name: check["ok"] for name, check in body["checks"].items()} == {
            "database": True, "reconciler": True, "data_plane": True,
        }  # fmt: skip
        # Three promised intervals (3 hours) and a bit passed since the conductor was last seen.
        async with await psycopg.AsyncConnection.connect(fresh_db, autocommit=True) as conn:
            await conn.execute(
                "UPDATE control.data_planes SET last_seen_at = last_seen_at - interval '3 hours 1 minute'"
                " WHERE name = 'beat'"
            )
        stale = await client.get("/readyz")
        assert stale.status_code == 503
        assert stale.headers["Retry-After"]
        assert stale.json()["checks"]["data_plane"]["detail"].startswith(
            "no data plane can take a create: the conductor of data plane 'beat' was last seen 10860s ago"
        )
        assert stale.json()["checks"]["reconciler"]["ok"] is True


async def test_the_conductor_heartbeats_through_the_control_plane(fresh_db: str, tmp_path: Path) -> None:
    gate = threading.Event()
    gate.set()
    async with await psycopg.AsyncConnection.connect(fresh_db, autocommit=True) as conn:

        async def seen() -> Any:
            cur = await conn.execute("SELECT last_seen_at, heartbeat_seconds FROM control.data_planes")
            return await cur.fetchone()

        async with conductor(fresh_db, "beat", tmp_path, gate, status_interval=3600, heartbeat_interval=0.05):
            registered, interval = await async_wait_until(seen, what="the plane's registration")
            assert interval == 0.05
            later = await async_wait_until(lambda: _after(seen, registered), what="a heartbeat after the registration")
            assert later > registered


async def _after(seen: Any, registered: Any) -> Any:
    row = await seen()
    return row[0] if row[0] > registered else None
