"""The console in a real headless Chromium against a running platform: sign in, create an instance through the
form and watch it become Up without a reload, tokens, a viewer's read-only view, sign out; no JavaScript error."""

from __future__ import annotations

import re
import uuid

import pytest
from playwright.async_api import expect

from howdah.control.spec import InstanceSpec
from howdah.queue import AsyncQueue

from .conftest import Platform

pytestmark = pytest.mark.slow

UP_TIMEOUT_MS = 120_000  # initdb and a first start of a real Postgres on a shared machine


async def test_create_an_instance_and_watch_it_come_up_live(platform: Platform) -> None:
    page = await platform.page()
    await page.goto(platform.url + "/")
    await expect(page).to_have_url(re.compile(r"/sign-in"))
    await page.get_by_label("API token").fill(await platform.token("acme", "member"))
    await page.get_by_role("button", name="Sign in").click()
    await expect(page).to_have_url(re.compile(r"/instances$"))
    await expect(page.get_by_test_id("org")).to_have_text("acme")
    await expect(page.get_by_test_id("role")).to_have_text("member")
    await expect(page.get_by_role("link", name="Instances", exact=True)).to_be_visible()

    await page.get_by_role("link", name="Create instance").click()
    name = f"web-{uuid.uuid4().hex[:6]}"
    await page.get_by_label("Name").fill("Not_A_Label")
    await page.get_by_label("Memory").fill("lots")
    await page.get_by_role("button", name="Create").click()
    await expect(page.locator("#memory-error")).to_be_visible()  # the API's words, next to the field
    await expect(page.locator("#name-error")).to_be_visible()
    await page.get_by_label("Name").fill(name)
    await page.get_by_label("Memory").fill("256Mi")
    await page.get_by_label("Stack").select_option("standard")
    await page.get_by_role("button", name="Create").click()
    await expect(page).to_have_url(re.compile(r"/instances$"))

    await page.evaluate("window.notReloaded = true")  # gone if the page were loaded again
    state = page.locator(f'tr[data-instance="{name}"] [data-testid="state"]')
    await expect(state).to_have_text("Submitted")
    await expect(state).to_have_text("Up", timeout=UP_TIMEOUT_MS)
    assert await page.evaluate("window.notReloaded === true")

    await expect(page.get_by_role("img", name=re.compile(r"Instances by state: .*Up \d"))).to_be_visible()
    await page.set_viewport_size({"width": 390, "height": 844})  # a phone: nothing wider than the screen
    assert await page.evaluate("document.documentElement.scrollWidth") <= 390
    await page.set_viewport_size({"width": 1280, "height": 800})

    await page.get_by_role("link", name=name).click()
    await expect(page.get_by_test_id("state")).to_have_text("Up")
    password = page.get_by_test_id("password")
    await expect(password).to_be_hidden()
    await page.get_by_text("Show password").click()
    await expect(password).to_be_visible()

    await page.get_by_role("button", name="Sign out").click()
    await expect(page).to_have_url(re.compile(r"/sign-in$"))
    await page.goto(platform.url + "/instances")
    await expect(page).to_have_url(re.compile(r"/sign-in"))
    # Chromium reports the invalid form's 422 answer; nothing else may appear (no script error on any page).
    rejected = "Failed to load resource: the server responded with a status of 422 (Unprocessable Entity)"
    assert platform.errors == [f"{platform.url}/instances: {rejected}"]


async def test_tokens_and_a_viewers_read_only_console(platform: Platform) -> None:
    page = await platform.page()
    await page.goto(platform.url + "/sign-in")
    await page.get_by_label("API token").fill(await platform.token("acme", "admin"))
    await page.get_by_role("button", name="Sign in").click()
    await page.get_by_role("link", name="Tokens").click()
    await page.get_by_label("Token name").fill("read-only")
    await page.get_by_label("Role").select_option("viewer")
    await page.get_by_role("button", name="Create token").click()
    viewer_token = await page.get_by_test_id("new-token").input_value()
    assert viewer_token.startswith("hwd_")

    other = await platform.page()
    await other.goto(platform.url + "/sign-in")
    await other.get_by_label("API token").fill(viewer_token)
    await other.get_by_role("button", name="Sign in").click()
    await expect(other.get_by_test_id("role")).to_have_text("viewer")
    await expect(other.get_by_role("link", name="Create instance")).to_have_count(0)
    await expect(other.get_by_role("link", name="Tokens")).to_have_count(0)
    # a POST forged from the viewer's own browser (its cookie, no form token) is refused, and so is one with
    # the page's token: the server checks the role, whatever the page showed
    forged = await other.request.post(platform.url + "/instances", form={"name": "forged"},
                                      headers={"Origin": platform.url})  # fmt: skip
    assert forged.status == 403
    csrf = await other.locator('input[name="csrf_token"]').first.input_value()
    with_token = await other.request.post(platform.url + "/instances", form={"name": "forged", "csrf_token": csrf},
                                          headers={"Origin": platform.url})  # fmt: skip
    assert with_token.status == 403 and "needs the member role" in await with_token.text()

    await page.goto(platform.url + "/tokens")
    await page.get_by_role("button", name="Revoke token read-only").click()
    await expect(page.get_by_role("button", name="Revoke token read-only")).to_have_count(0)
    await other.reload()  # the revoked token's session is over
    await expect(other).to_have_url(re.compile(r"/sign-in"))
    await expect(other.get_by_role("alert")).to_contain_text("revoked")

    requested: list[str] = []  # /docs works offline: everything it loads comes from this server
    docs = await platform.page()
    docs.on("request", lambda request: requested.append(request.url))
    await docs.goto(platform.url + "/docs")
    await expect(docs.get_by_role("button", name=re.compile("Authorize"))).to_be_visible()
    await expect(docs.get_by_text("/api/v1/orgs/{org_id}/instances").first).to_be_visible()
    assert requested and all(url.startswith(platform.url) or url.startswith("data:") for url in requested), requested
    assert platform.errors == []


async def test_operate_an_instance_workflows_and_a_dead_letter_queue(platform: Platform) -> None:
    """The platform admin: a setting changed, a restart, a backup restored into a new instance, the conductor's
    workflow and its steps, a dead-lettered message replayed."""
    name = f"ops-{uuid.uuid4().hex[:6]}"
    token = await platform.token("default", "platform")  # creates the org
    created = await platform.control.create_instance("default", InstanceSpec(name=name, memory="256Mi"), None)
    page = await platform.page()
    await page.goto(platform.url + "/sign-in")
    await page.get_by_label("API token").fill(token)
    await page.get_by_role("button", name="Sign in").click()
    await page.goto(f"{platform.url}/instances/{created['id']}")
    state = page.get_by_test_id("state")
    await expect(state).to_have_text("Up", timeout=UP_TIMEOUT_MS)  # the page refreshes itself

    await page.get_by_label("Postgres settings").fill("work_mem = 8MB")
    await page.get_by_role("button", name="Apply").click()
    await expect(page.get_by_label("Postgres settings")).to_have_value("work_mem = 8MB")
    await expect(state).to_have_text("Up", timeout=UP_TIMEOUT_MS)
    await page.get_by_role("button", name="Restart").click()
    await expect(page.locator("#instance-live")).to_contain_text("Restart (generation")
    await expect(state).to_have_text("Up", timeout=UP_TIMEOUT_MS)

    await page.get_by_role("button", name="Back up").click()
    await expect(page.locator("#backups")).to_contain_text("completed", timeout=UP_TIMEOUT_MS)
    await page.reload()
    copy = f"{name}-copy"
    await page.get_by_label("New instance name").fill(copy)
    await page.get_by_role("button", name="Restore").click()
    await expect(page).to_have_url(re.compile(r"/instances$"))
    restored = page.locator(f'tr[data-instance="{copy}"] [data-testid="state"]')
    await expect(restored).to_have_text("Up", timeout=UP_TIMEOUT_MS)

    await page.get_by_role("link", name=name, exact=True).click()
    await page.locator('#instance-live a[href^="/workflows/event-"]').click()
    await expect(page.get_by_role("heading", name="instance_event")).to_be_visible()
    await expect(page.locator("table tbody tr").first).to_contain_text("step")  # the step timeline

    source, dlq = f"src_{uuid.uuid4().hex[:6]}", f"dlq_{uuid.uuid4().hex[:6]}"
    async with platform.control.pool.connection() as conn:
        queue = AsyncQueue(conn)
        await queue.create(source)
        await queue.create(dlq)
        msg_id = await queue.send(source, {"order": 7})
        await conn.execute("SELECT pgmq.howdah_dead_letter(%s, %s, %s, 'poison')", (source, [msg_id], dlq))
    await page.goto(f"{platform.url}/queues")
    await page.get_by_role("link", name=dlq).click()
    await page.get_by_role("button", name=re.compile(rf"Replay message \d+ to {source}")).click()
    await expect(page.get_by_role("button", name=re.compile("Replay message"))).to_have_count(0)
    async with platform.control.pool.connection() as conn:
        assert [m.message for m in await AsyncQueue(conn).peek(source, 0, 10)] == [{"order": 7}]
    assert platform.errors == []
