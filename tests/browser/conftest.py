"""A running platform for browser tests: the control plane (API, console, reconciler) on a real port, a conductor
with the local provider (real Postgres instances), and a headless Chromium driven by Playwright.

Playwright cannot download its own browser here: the system's Chromium is used (``./dev test`` installs
Debian's ``chromium`` when it is missing). Without one, these tests are skipped and say why.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.async_api import Browser, ConsoleMessage, Error, Page, async_playwright
from psycopg_pool import AsyncConnectionPool

from howdah.conductor import Conductor
from howdah.console import mount_console
from howdah.control.sealing import ENV_KEY
from howdah.control.server import serve_control_plane
from howdah.control.service import ControlPlane
from howdah.pg.processes import free_port
from howdah.providers.local import LocalProvider

ENV_CHROMIUM = "HOWDAH_CHROMIUM"  # a Chromium or Chrome executable (default: chromium on PATH)
PLANE = "local"


def chromium_path() -> str | None:
    configured = os.environ.get(ENV_CHROMIUM)
    if configured:
        return configured if os.access(configured, os.X_OK) else None
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


@dataclass
class Platform:
    url: str
    control: ControlPlane
    browser: Browser
    errors: list[str] = field(default_factory=list)

    async def page(self) -> Page:
        """A fresh browser context (no cookies) whose console errors and page errors are collected."""
        context = await self.browser.new_context(viewport={"width": 1280, "height": 800})
        context.set_default_timeout(15_000)
        page = await context.new_page()

        def on_console(message: ConsoleMessage) -> None:
            if message.type == "error":
                self.errors.append(f"{page.url}: {message.text}")

        page.on("console", on_console)
        page.on("pageerror", lambda exc: self.errors.append(f"{page.url}: {exc}"))
        return page

    async def token(self, org: str, role: str) -> str:
        return (await self.control.create_token(org, role, f"browser {role}"))[0]


@pytest.fixture
async def platform(db_url: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Platform]:
    executable = chromium_path()
    if executable is None:
        pytest.skip(f"no Chromium found (install Debian's chromium, or set {ENV_CHROMIUM})")
    tmp = Path(tempfile.mkdtemp(prefix="howdah-browser-"))  # traversable by a server OS user, unlike tmp_path
    tmp.chmod(0o755)
    monkeypatch.setenv("HOWDAH_HOME", str(tmp / "home"))
    monkeypatch.delenv(ENV_KEY, raising=False)
    provider = LocalProvider(tmp / "dataplane", durable=False)
    port = free_port()
    stop, started = asyncio.Event(), asyncio.Event()
    tasks = [
        asyncio.create_task(serve_control_plane(db_url, stop, port=port, started=started, extend=mount_console)),
        asyncio.create_task(Conductor(db_url, PLANE, provider, status_interval=3600).run(stop)),
    ]
    try:
        await asyncio.wait_for(started.wait(), 30)
        async with (
            AsyncConnectionPool(db_url, min_size=1, max_size=2, kwargs={"autocommit": True}, open=False) as pool,
            async_playwright() as playwright,
        ):
            control = ControlPlane(pool)
            await control.register_data_plane(PLANE)  # the conductor registers it too: no race with the form
            browser = await playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
            try:
                yield Platform(f"http://127.0.0.1:{port}", control, browser)
            finally:
                with contextlib.suppress(Error):
                    await browser.close()
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 60)
        for instance_id in provider.list_instances():
            await asyncio.to_thread(provider.delete, instance_id)
        shutil.rmtree(tmp, ignore_errors=True)
