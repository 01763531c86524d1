"""An API client per test against the module's database, with tokens for two orgs, the platform admin's (org
``default``, like the one ``howdah up`` creates) and one data plane."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool

from howdah.control.api import create_app
from howdah.control.reconciler import Reconciler
from howdah.control.service import ControlPlane
from howdah.providers.local import local_extension_catalog


@dataclass
class Api:
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


@pytest.fixture
async def api(db_url: str) -> AsyncIterator[Api]:
    app = create_app(db_url, pool_size=20)
    async with app.router.lifespan_context(app):
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
            yield Api(client, control, Reconciler(pool, db_url, ack_timeout=60), pool, tokens, token_ids)
