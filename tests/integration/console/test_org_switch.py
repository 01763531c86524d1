"""The platform admin chooses which org the console shows; no org role can, by form or by cookie."""

from __future__ import annotations

import re
import uuid

from howdah.control.spec import InstanceSpec

from .conftest import Console, csrf_of


async def _instance(console: Console, org: str) -> dict[str, str]:
    row = await console.control.create_instance(org, InstanceSpec(name=f"db-{uuid.uuid4().hex[:8]}"), None)
    return {"id": str(row["id"]), "name": row["name"]}


async def test_the_platform_admin_views_another_org(console: Console) -> None:
    theirs = await _instance(console, "acme")
    platform = await console.browser("platform")
    orgs = await platform.get("/orgs")
    assert orgs.status_code == 200
    assert re.findall(r'<button type="submit" name="org" value="([a-z0-9-]+)"', orgs.text) == ["acme", "other"]
    assert "<td>default</td>" in orgs.text and "shown now" in orgs.text  # the token's own org, shown now
    assert 'href="/orgs">Switch org</a>' in (await platform.get("/instances")).text
    switched = await platform.post("/orgs", data={"csrf_token": csrf_of(orgs.text), "org": "acme"})
    assert switched.status_code == 303 and switched.headers["location"] == "/instances"
    cookie = switched.headers["set-cookie"].lower()
    assert "howdah_org=acme" in cookie and "httponly" in cookie and "samesite=strict" in cookie
    listed = await platform.get("/instances")
    assert theirs["name"] in listed.text and '<strong data-testid="org">acme</strong>' in listed.text
    assert "viewing as the platform admin" in listed.text
    assert (await platform.get(f"/instances/{theirs['id']}")).status_code == 200
    tokens = await platform.get("/tokens")
    assert "acme-viewer token" in tokens.text and "other-admin token" not in tokens.text
    back = await platform.post("/orgs", data={"csrf_token": csrf_of(orgs.text), "org": "default"})
    assert back.status_code == 303 and 'howdah_org=""' in back.headers["set-cookie"]
    assert theirs["name"] not in (await platform.get("/instances")).text


async def test_switching_checks_the_org_and_the_csrf_token(console: Console) -> None:
    platform = await console.browser("platform")
    csrf = await console.csrf("platform")
    unknown = await platform.post("/orgs", data={"csrf_token": csrf, "org": "no-such-org"})
    assert unknown.status_code == 404 and "no-such-org" in unknown.text and "set-cookie" not in unknown.headers
    malformed = await platform.post("/orgs", data={"csrf_token": csrf, "org": "<script>"})
    assert malformed.status_code == 404 and "<script>" not in malformed.text
    forged = await platform.post("/orgs", data={"csrf_token": "0" * 64, "org": "acme"})
    assert forged.status_code == 403 and "set-cookie" not in forged.headers


async def test_no_org_role_can_switch_by_form_or_by_cookie(console: Console) -> None:
    theirs = await _instance(console, "other")
    for who in ("acme-admin", "acme-member", "acme-viewer"):
        browser = await console.browser(who)
        assert (await browser.get("/orgs")).status_code == 403, who
        refused = await browser.post("/orgs", data={"csrf_token": await console.csrf(who), "org": "other"})
        assert refused.status_code == 403 and "set-cookie" not in refused.headers, who
        browser.cookies.set("howdah_org", "other", domain="howdah.test")  # a cookie set by hand
        listed = await browser.get("/instances")
        assert theirs["name"] not in listed.text and '<strong data-testid="org">acme</strong>' in listed.text, who
        assert (await browser.get(f"/instances/{theirs['id']}")).status_code == 404, who
        restart = await browser.post(f"/instances/{theirs['id']}/restart", data={"csrf_token": await console.csrf(who)})
        assert restart.status_code == (403 if who == "acme-viewer" else 404), who  # a viewer restarts nothing
        browser.cookies.delete("howdah_org", domain="howdah.test")
    row = await console.control.get_instance("other", theirs["id"])
    assert row["state"] == "Submitted"


async def test_signing_out_forgets_the_org_chosen(console: Console) -> None:
    platform = await console.browser("platform")
    csrf = await console.csrf("platform")
    assert (await platform.post("/orgs", data={"csrf_token": csrf, "org": "acme"})).status_code == 303
    out = await platform.post("/sign-out", data={"csrf_token": csrf})
    assert out.status_code == 303
    assert {c.split("=")[0] for c in out.headers.get_list("set-cookie")} == {"howdah_session", "howdah_org"}
    assert "howdah_org" not in platform.cookies
