"""Error pages: a browser asking for a page that does not exist, or with a method a page does not take, gets an
HTML page saying what happened (with the navigation when signed in); JSON clients and the API's paths keep the
API's JSON errors."""

from __future__ import annotations

import uuid

from .conftest import Console

HTML = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}  # what a browser sends


async def test_an_unknown_console_path_is_an_html_not_found_page(console: Console) -> None:
    admin = await console.browser("acme-admin")
    answer = await admin.get("/no-such-page", headers=HTML)
    assert answer.status_code == 404 and answer.headers["content-type"].startswith("text/html")
    assert "Not found" in answer.text and "There is no page at /no-such-page" in answer.text
    assert ">Sign out</button>" in answer.text  # the navigation stays for a signed-in caller
    assert answer.headers["content-security-policy"].startswith("default-src 'self'")
    hostile = await admin.get("/<script>x()</script>", headers=HTML)
    assert hostile.status_code == 404 and "<script>x()" not in hostile.text and "&lt;script&gt;x()" in hostile.text
    async with console.client() as anonymous:  # signed out: the page, with a way to sign in
        signed_out = await anonymous.get("/instances/x/y/z", headers=HTML)
        assert signed_out.status_code == 404 and signed_out.headers["content-type"].startswith("text/html")
        assert ">Sign out</button>" not in signed_out.text and 'href="/sign-in"' in signed_out.text


async def test_a_method_a_page_does_not_take_is_an_html_page_for_a_browser(console: Console) -> None:
    admin = await console.browser("acme-admin")
    answer = await admin.get("/sign-out", headers=HTML)  # sign-out is a POST
    assert answer.status_code == 405 and answer.headers["content-type"].startswith("text/html")
    assert "Method not allowed" in answer.text and "GET" in answer.text and answer.headers["allow"] == "POST"


async def test_json_clients_and_the_api_keep_their_json_errors(console: Console) -> None:
    async with console.client() as client:
        for path, headers in (("/no-such-page", {"Accept": "application/json"}), ("/no-such-page", {}),
                              ("/api/v1/no-such-thing", HTML), ("/api/v1/stacks/x/y", HTML)):  # fmt: skip
            answer = await client.get(path, headers=headers)
            assert answer.status_code == 404, path
            assert answer.json() == {"error": {"code": "http_error", "message": "Not Found"}}, (path, headers)
        not_allowed = await client.delete("/api/v1/stacks", headers=HTML)
        assert not_allowed.status_code == 405
        assert not_allowed.json() == {"error": {"code": "http_error", "message": "Method Not Allowed"}}
        missing = await client.get(
            f"/api/v1/orgs/acme/instances/{uuid.uuid4()}",
            headers={**HTML, "Authorization": f"Bearer {console.tokens['acme-viewer']}"},
        )
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
        assert (await client.get("/healthz", headers=HTML)).json() == {"status": "ok"}


async def test_pages_of_what_the_caller_cannot_see_say_so(console: Console) -> None:
    theirs = await console.control.create_token("other", "viewer", "theirs")
    admin = await console.browser("acme-admin")
    csrf = await console.csrf("acme-admin")
    revoked = await admin.post(f"/tokens/{theirs[1]['id']}/revoke", data={"csrf_token": csrf}, headers=HTML)
    assert revoked.status_code == 404 and "Not found" in revoked.text
    assert "does not exist, or belongs to another org" in revoked.text
    member = await console.browser("acme-member")
    refused = await member.get("/tokens", headers=HTML)
    assert refused.status_code == 403 and "this needs the admin role; the token has member" in refused.text
    assert "Your token (role member in org acme) does not allow this" in refused.text
