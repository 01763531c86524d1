"""Screenshots of the web console's main pages, for the README: ``python scripts/console_screenshots.py [DIR]``.

Starts a private platform in a temporary folder (embedded Postgres, the control plane with the console, a
conductor with the local provider), signs a headless Chromium in as the platform admin, creates an instance
and a token, waits for the instance to be Up, and saves one PNG per page (1280 by 800) in DIR (default
``docs/console``). Everything it started is stopped and removed afterwards. Chromium: the system's ``chromium``
(``./dev test`` installs it as root), or ``HOWDAH_CHROMIUM``.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

import psycopg
from playwright.async_api import Page, async_playwright, expect
from psycopg_pool import AsyncConnectionPool

from howdah.conductor import Conductor
from howdah.console import mount_console
from howdah.control.server import serve_control_plane
from howdah.control.service import ControlPlane
from howdah.pg import EmbeddedPostgres
from howdah.pg.processes import free_port
from howdah.providers.local import LocalProvider
from howdah.queue import AsyncQueue
from howdah.schema import install_all

SIZE = {"width": 1280, "height": 800}
UP_TIMEOUT_MS = 180_000


def chromium() -> str:
    found = os.environ.get("HOWDAH_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        raise SystemExit("no Chromium: install Debian's chromium or set HOWDAH_CHROMIUM")
    return found


async def shoot(page: Page, out: Path, name: str) -> None:
    await page.screenshot(path=str(out / f"{name}.png"), full_page=False)
    print(f"saved {out / name}.png")


async def capture(url: str, token: str, out: Path) -> None:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        page = await (await browser.new_context(viewport=SIZE)).new_page()
        page.set_default_timeout(20_000)
        await page.goto(url + "/sign-in")
        await shoot(page, out, "sign-in")
        await page.get_by_label("API token").fill(token)
        await page.get_by_role("button", name="Sign in").click()
        await page.get_by_role("link", name="Create instance").click()
        await page.get_by_label("Name").fill("shop")
        await page.get_by_label("Memory").fill("256Mi")
        await page.get_by_label("Extensions").fill("pg_trgm")
        await shoot(page, out, "create-instance")
        await page.get_by_role("button", name="Create").click()
        await expect(page.locator('tr[data-instance="shop"] [data-testid="state"]')).to_have_text(
            "Up", timeout=UP_TIMEOUT_MS
        )
        await shoot(page, out, "instances")
        await page.get_by_role("link", name="shop").click()
        await shoot(page, out, "instance")
        await page.get_by_role("link", name=re.compile(r"^event-")).first.click()
        await shoot(page, out, "workflow")
        await page.goto(url + "/tokens")
        await page.get_by_label("Token name").fill("ci")
        await page.get_by_role("button", name="Create token").click()
        await shoot(page, out, "tokens")
        await page.goto(url + "/queues")
        await shoot(page, out, "queues")
        await browser.close()


async def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="howdah-screenshots-"))
    tmp.chmod(0o755)
    os.environ["HOWDAH_HOME"] = str(tmp / "home")
    server = EmbeddedPostgres(tmp / "pg")
    server.start()
    provider = LocalProvider(tmp / "dataplane", durable=False)
    stop, started = asyncio.Event(), asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    try:
        dsn = server.url()
        with psycopg.connect(dsn, autocommit=True) as conn:
            install_all(conn)
        port = free_port()
        tasks.append(asyncio.create_task(serve_control_plane(dsn, stop, port=port, started=started,
                                                             extend=mount_console)))  # fmt: skip
        tasks.append(asyncio.create_task(Conductor(dsn, "local", provider, status_interval=3600).run(stop)))
        await asyncio.wait_for(started.wait(), 60)
        async with AsyncConnectionPool(dsn, min_size=1, max_size=2, kwargs={"autocommit": True}, open=False) as pool:
            control = ControlPlane(pool)
            await control.register_data_plane("local", "this machine")
            token, _ = await control.create_token("default", "platform", "screenshots")
            async with pool.connection() as conn:
                for name in ("orders", "orders_dlq"):
                    await AsyncQueue(conn).create(name)
                await AsyncQueue(conn).send("orders", {"order": 1042, "total": "18.50"})
                poisoned = await AsyncQueue(conn).send("orders", {"order": 1043, "total": "not a number"})
                await conn.execute("SELECT pgmq.howdah_dead_letter('orders', %s, 'orders_dlq', 'read 6 times')",
                                   ([poisoned],))  # fmt: skip
        await capture(f"http://127.0.0.1:{port}", token, out)
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        for instance_id in provider.list_instances():
            await asyncio.to_thread(provider.delete, instance_id)
        server.stop(mode="immediate")
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/console")))
