"""Signing in and out, the session cookie's flags, CSRF and origin checks, and roles: each attack is a request."""

from __future__ import annotations

import uuid

import httpx

from .conftest import SITE, Console, csrf_of


def _instance_count(name: str) -> str:
    return f"SELECT count(*) FROM control.instances WHERE name = '{name}'"


async def _count(console: Console, name: str) -> int:
    async with console.pool.connection() as conn:
        row = await (await conn.execute(_instance_count(name))).fetchone()
    assert row is not None
    return int(row[0])


async def test_the_sign_in_page_asks_for_an_api_token(console: Console) -> None:
    async with console.client() as client:
        page = await client.get("/sign-in")
        assert page.status_code == 200
        assert '<label for="token">API token</label>' in page.text and ">Sign in</button>" in page.text
        assert page.headers["content-security-policy"].startswith("default-src 'self'")
        home = await client.get("/")  # no session: the sign-in page
        assert home.status_code == 303 and home.headers["location"].startswith("/sign-in")


async def test_sign_in_sets_a_strict_http_only_cookie_and_shows_org_and_role(console: Console) -> None:
    token = console.tokens["acme-member"]
    async with console.client() as client:
        signed = await client.post("/sign-in", data={"token": token})
        assert signed.status_code == 303 and signed.headers["location"] == "/instances"
        assert token not in signed.headers["location"]
        cookie = signed.headers["set-cookie"]
        attributes = {part.strip().lower() for part in cookie.split(";")[1:]}
        assert cookie.startswith(f"howdah_session={token};")
        assert {"httponly", "samesite=strict", "path=/"} <= attributes
        assert "secure" not in attributes  # plain http here; set over https (see the next test)
        page = await client.get("/instances")
        assert page.status_code == 200
        assert '<strong data-testid="org">acme</strong>' in page.text
        assert '<strong data-testid="role">member</strong>' in page.text
        for link in ("Instances",):
            assert f">{link}</a>" in page.text
        assert ">Tokens</a>" not in page.text and ">Workflows</a>" not in page.text  # not a member's
        assert token not in page.text  # the token never goes into a page


async def test_the_cookie_is_secure_over_https(console: Console) -> None:
    transport = httpx.ASGITransport(app=console.app)
    async with httpx.AsyncClient(transport=transport, base_url="https://howdah.test",
                                 headers={"Origin": "https://howdah.test"}) as client:  # fmt: skip
        signed = await client.post("/sign-in", data={"token": console.tokens["acme-viewer"]})
        assert signed.status_code == 303
        assert "secure" in {p.strip().lower() for p in signed.headers["set-cookie"].split(";")}


async def test_a_wrong_or_revoked_token_gets_a_clear_message(console: Console) -> None:
    async with console.client() as client:
        wrong = await client.post("/sign-in", data={"token": "hwd_not-a-token"})
        assert wrong.status_code == 401 and "This token is not valid, or has been revoked." in wrong.text
        assert "set-cookie" not in wrong.headers
        empty = await client.post("/sign-in", data={"token": ""})
        assert empty.status_code == 401 and "Enter an API token." in empty.text
    token, row = await console.control.create_token("acme", "member", "soon revoked")
    async with console.client() as client:
        assert (await client.post("/sign-in", data={"token": token})).status_code == 303
        assert (await client.get("/instances")).status_code == 200
        await console.control.revoke_token("acme", row["id"])
        after = await client.get("/instances")  # the session ends with its token
        assert after.status_code == 303 and after.headers["location"] == "/sign-in?reason=revoked"
        shown = await client.get(after.headers["location"])
        assert "invalid or has been revoked" in shown.text
        again = await client.post("/sign-in", data={"token": token})
        assert again.status_code == 401 and "has been revoked" in again.text


async def test_sign_in_from_another_site_is_refused(console: Console) -> None:
    async with console.client() as client:
        forged = await client.post(
            "/sign-in", data={"token": console.tokens["acme-admin"]}, headers={"Origin": "https://evil.example"}
        )
        assert forged.status_code == 403 and "set-cookie" not in forged.headers


async def test_sign_out_needs_the_csrf_token_and_clears_the_cookie(console: Console) -> None:
    async with console.client() as client:
        await client.post("/sign-in", data={"token": console.tokens["acme-viewer"]})
        csrf = csrf_of((await client.get("/instances")).text)
        refused = await client.post("/sign-out", data={})
        assert refused.status_code == 403 and "CSRF" in refused.text
        assert (await client.get("/instances")).status_code == 200  # still signed in
        out = await client.post("/sign-out", data={"csrf_token": csrf})
        assert out.status_code == 303 and out.headers["location"] == "/sign-in"
        assert out.headers["set-cookie"].startswith('howdah_session="";') and "Max-Age=0" in out.headers["set-cookie"]
        assert (await client.get("/instances")).status_code == 303


async def test_state_changes_without_the_csrf_token_or_from_another_origin_are_refused(console: Console) -> None:
    browser = await console.browser("acme-member")
    csrf = await console.csrf("acme-member")
    name = f"db-{uuid.uuid4().hex[:8]}"
    form = {"name": name, "stack": "standard", "cpu": "1", "memory": "1Gi", "storage": "10Gi"}
    missing = await browser.post("/instances", data=form)
    assert missing.status_code == 403 and "CSRF token is missing or wrong" in missing.text
    wrong = await browser.post("/instances", data={**form, "csrf_token": "0" * 64})
    assert wrong.status_code == 403
    other_session = await console.csrf("acme-admin")  # a token of another session does not fit this one
    assert (await browser.post("/instances", data={**form, "csrf_token": other_session})).status_code == 403
    evil = await browser.post(
        "/instances", data={**form, "csrf_token": csrf}, headers={"Origin": "https://evil.example"}
    )
    assert evil.status_code == 403 and "another site" in evil.text
    no_origin = await browser.post(
        "/instances", data={**form, "csrf_token": csrf}, headers={"Origin": "", "Referer": ""}
    )
    assert no_origin.status_code == 403
    by_referer = await browser.post(
        "/instances", data={**form, "csrf_token": csrf}, headers={"Origin": "", "Referer": f"{SITE}/instances/new"}
    )
    assert by_referer.status_code == 303  # a browser that sends no Origin still sends the page it came from
    assert await _count(console, name) == 1


async def test_a_viewer_sees_no_write_buttons_and_a_forged_post_is_refused(console: Console) -> None:
    viewer = await console.browser("acme-viewer")
    page = await viewer.get("/instances")
    assert page.status_code == 200 and "Create instance" not in page.text
    assert (await viewer.get("/instances/new")).status_code == 403
    assert (await viewer.get("/tokens")).status_code == 403
    name = f"db-{uuid.uuid4().hex[:8]}"
    forged = await viewer.post("/instances", data={"name": name, "csrf_token": csrf_of(page.text)})
    assert forged.status_code == 403 and "needs the member role" in forged.text
    token_name = f"mine-{uuid.uuid4().hex[:8]}"
    token = await viewer.post("/tokens", data={"name": token_name, "role": "admin", "csrf_token": csrf_of(page.text)})
    assert token.status_code == 403
    assert await _count(console, name) == 0
    assert token_name not in [row["name"] for row in await console.control.list_tokens("acme")]


async def test_a_member_cannot_reach_tokens_or_platform_pages(console: Console) -> None:
    member = await console.browser("acme-member")
    for path in ("/tokens", "/workflows", "/queues"):
        refused = await member.get(path)
        assert refused.status_code == 403, path
        assert "Not allowed" in refused.text and refused.headers["content-type"].startswith("text/html")
