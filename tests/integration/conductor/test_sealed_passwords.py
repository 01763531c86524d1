"""Instance passwords never sit in the control database in plaintext: a real instance created through the API,
a conductor with the local provider and the reconciler (in this process), then every table searched for it."""

from __future__ import annotations

import asyncio
import shutil
import stat
import tempfile
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from psycopg import sql
from psycopg.types.json import Jsonb

from howdah.conductor import Conductor
from howdah.control.api import create_app
from howdah.control.reconciler import Reconciler
from howdah.control.sealing import ENV_KEY, KEY_FILE
from howdah.control.service import ControlPlane
from howdah.control.spec import InstanceSpec
from howdah.providers.local import LocalProvider
from tests.waiting import async_wait_until

pytestmark = pytest.mark.slow

ORG, PLANE = "acme", "sealed"
BASE = f"/api/v1/orgs/{ORG}/instances"


@dataclass
class Platform:
    client: httpx.AsyncClient
    control: ControlPlane
    tokens: dict[str, str]
    howdah_home: Path

    async def get(self, instance_id: str, who: str) -> httpx.Response:
        return await self.client.get(f"{BASE}/{instance_id}", headers={"Authorization": f"Bearer {self.tokens[who]}"})


@pytest.fixture
async def platform(db_url: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Platform]:
    tmp = Path(tempfile.mkdtemp(prefix="howdah-sealed-"))  # traversable by a server OS user, unlike tmp_path
    tmp.chmod(0o755)
    monkeypatch.setenv("HOWDAH_HOME", str(tmp / "home"))  # the default key file: like `howdah up`, one home
    monkeypatch.delenv(ENV_KEY, raising=False)
    provider = LocalProvider(tmp / "dataplane", durable=False)
    app = create_app(db_url, pool_size=6)
    stop = asyncio.Event()
    async with app.router.lifespan_context(app):
        control: ControlPlane = app.state.control
        tokens = {role: (await control.create_token(ORG, role))[0] for role in ("member", "viewer")}
        await control.register_data_plane(PLANE)  # the conductor registers it too: no race with the first POST
        tasks = [
            asyncio.create_task(Conductor(db_url, PLANE, provider, status_interval=3600).run(stop)),
            asyncio.create_task(Reconciler(app.state.pool, db_url).run(stop)),
        ]
        transport = httpx.ASGITransport(app=app)
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://howdah.test") as client:
                yield Platform(client, control, tokens, tmp / "home")
        finally:
            stop.set()
            await asyncio.wait_for(asyncio.gather(*tasks), 60)
            for instance_id in provider.list_instances():
                await asyncio.to_thread(provider.delete, instance_id)
            shutil.rmtree(tmp, ignore_errors=True)


async def _tables_containing(db_url: str, needle: str) -> list[str]:
    """Every table of the control database (queues, their archives, workflow steps, instances …) whose rows,
    read as text, contain ``needle``."""
    found = []
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT schemaname, tablename FROM pg_catalog.pg_tables "
            "WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"
        )
        for schema, table in await cur.fetchall():
            query = sql.SQL("SELECT count(*) FROM {}.{} t WHERE strpos(t::text, %s) > 0").format(
                sql.Identifier(schema), sql.Identifier(table)
            )
            hits = await (await conn.execute(query, (needle,))).fetchone()
            if hits and hits[0]:
                found.append(f"{schema}.{table}")
    return found


async def test_a_created_instance_leaves_its_password_nowhere_in_plaintext(platform: Platform, db_url: str) -> None:
    created = await platform.client.post(
        BASE, json={"name": "vault", "data_plane": PLANE},
        headers={"Authorization": f"Bearer {platform.tokens['member']}"},
    )  # fmt: skip
    assert created.status_code == 202, created.text
    instance_id = created.json()["id"]

    async def up() -> dict[str, Any] | None:
        body: dict[str, Any] = (await platform.get(instance_id, "member")).json()
        return body if body["state"] == "Up" and not body["has_active_work"] else None

    member = await async_wait_until(up, timeout=120, what="the instance to be Up")
    connection = member["connection"]
    password = connection["password"]
    async with await psycopg.AsyncConnection.connect(
        host=connection["host"], port=connection["port"], user=connection["user"], password=password,
        dbname=connection["dbname"], autocommit=True, connect_timeout=10,
    ) as conn:  # fmt: skip
        assert await (await conn.execute("SELECT current_user")).fetchone() == ("app",)
    viewer = (await platform.get(instance_id, "viewer")).json()["connection"]
    assert viewer["port"] == connection["port"]
    assert "password" not in viewer and "password_sealed" not in viewer

    assert await _tables_containing(db_url, password) == []  # steps, q_*/a_* messages, instances: none
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        cur = await conn.execute("SELECT connection FROM control.instances WHERE id::text = %s", (instance_id,))
        stored = (await cur.fetchone())[0]  # type: ignore[index]
    assert stored["password_sealed"].startswith("v1:") and "password" not in stored
    assert stat.S_IMODE((platform.howdah_home / KEY_FILE).stat().st_mode) == 0o600

    # The sealed password copied onto another instance does not open there: no password, a message, no 500.
    await platform.control.register_data_plane("idle")
    other = await platform.control.create_instance(ORG, InstanceSpec(name=f"db-{uuid.uuid4().hex[:8]}"), "idle")
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        await conn.execute("UPDATE control.instances SET connection = %s WHERE id = %s", (Jsonb(stored), other["id"]))
    moved = await platform.get(str(other["id"]), "member")
    assert moved.status_code == 200, moved.text
    assert "password" not in moved.json()["connection"]
    assert "does not open" in moved.json()["connection"]["password_error"]
