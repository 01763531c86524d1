"""The control plane's app with the console mounted, tokens for two orgs and the platform admin, and browsers
(httpx clients keeping cookies) signed in as each."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field

import httpx
import pytest
from fastapi import FastAPI
from psycopg_pool import AsyncConnectionPool

from howdah.console import mount_console
from howdah.control.api import create_app
from howdah.control.service import ControlPlane
from howdah.providers.local import local_extension_catalog
from tests.integration.control.conftest import loop_must_not_block

SITE = "http://howdah.test"
WHO = ("acme-admin", "acme-member", "acme-viewer", "other-admin", "platform")


@dataclass
class Console:
    app: FastAPI
    control: ControlPlane
    pool: AsyncConnectionPool
    tokens: dict[str, str]
    token_ids: dict[str, str]
    stack: AsyncExitStack
    browsers: dict[str, httpx.AsyncClient] = field(default_factory=dict)

    def client(self) -> httpx.AsyncClient:
        """A browser with no session: cookies kept, redirects not followed, requests from this site."""
        transport = httpx.ASGITransport(app=self.app)
        return httpx.AsyncClient(transport=transport, base_url=SITE, headers={"Origin": SITE})

    async def browser(self, who: str) -> httpx.AsyncClient:
        """A browser signed in with ``who``'s token."""
        if who not in self.browsers:
            client = await self.stack.enter_async_context(self.client())
            signed = await client.post("/sign-in", data={"token": self.tokens[who]})
            assert signed.status_code == 303, signed.text
            self.browsers[who] = client
        return self.browsers[who]

    async def csrf(self, who: str, path: str = "/instances") -> str:
        """The CSRF token a page of ``who``'s session carries."""
        return csrf_of((await (await self.browser(who)).get(path)).text)


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([0-9a-f]+)"', html)
    assert found, "no CSRF token in the page"
    return found.group(1)


@pytest.fixture
async def console(db_url: str) -> AsyncIterator[Console]:
    app = create_app(db_url, pool_size=10)
    mount_console(app)
    async with loop_must_not_block(), app.router.lifespan_context(app), AsyncExitStack() as stack:
        control: ControlPlane = app.state.control
        tokens, token_ids = {}, {}
        for who in WHO:
            org, role = ("default", "platform") if who == "platform" else who.split("-")
            tokens[who], row = await control.create_token(org, role, f"{who} token")
            token_ids[who] = row["id"]
        await control.register_data_plane("local", "this machine", extensions=local_extension_catalog())
        yield Console(app, control, app.state.pool, tokens, token_ids, stack)
