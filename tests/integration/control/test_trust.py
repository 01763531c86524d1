"""Who may do what: the attacks on platform-wide resources, /metrics, the token cap and the token audit trail."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx

from howdah.control.api import create_app
from howdah.control.events import data_plane_queue
from howdah.queue import AsyncQueue

from .conftest import Api

PLANES = "/api/v1/data-planes"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def planes_in_db(api: Api) -> list[tuple[Any, ...]]:
    async with api.pool.connection() as conn:
        cur = await conn.execute("SELECT name, queue_name, description, draining FROM control.data_planes ORDER BY 1")
        return await cur.fetchall()


async def active_tokens(api: Api, org: str) -> int:
    async with api.pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM control.tokens WHERE org_id = %s AND revoked_at IS NULL", (org,))
        row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def test_a_new_orgs_admin_cannot_add_overwrite_or_remove_data_planes(api: Api) -> None:
    org = unique("newco")
    token, _ = await api.control.create_token(org, "admin")
    api.tokens["newco"] = token
    before = await planes_in_db(api)
    attacks = [
        ("POST", PLANES, {"name": "local", "description": "mine now"}),
        ("POST", PLANES, {"name": "evil"}),
        ("PATCH", f"{PLANES}/local", {"description": "mine now"}),
        ("PATCH", f"{PLANES}/local", {"draining": True}),
        ("DELETE", f"{PLANES}/local", None),
        ("GET", PLANES, None),
    ]
    for who in ("newco", "acme-admin", "acme-member", "acme-viewer", "other-admin"):
        for method, path, body in attacks:
            extra = {"json": body} if body is not None else {}
            response = await api.call(method, path, who=who, **extra)
            assert response.status_code == 403, (who, method, path, response.text)
            assert "platform" in response.json()["error"]["message"]
    assert await planes_in_db(api) == before
    # and every org's default placement still works
    created = await api.call("POST", "/api/v1/orgs/acme/instances", json={"name": unique("db")})
    assert created.status_code == 202 and created.json()["data_plane"] == "local", created.text


async def test_org_members_see_only_the_names_of_the_data_planes_they_may_use(api: Api) -> None:
    for who in ("acme-viewer", "acme-member", "acme-admin"):
        listed = await api.call("GET", "/api/v1/orgs/acme/data-planes", who=who)
        assert listed.status_code == 200 and listed.json() == [{"name": "local"}], listed.text
    assert (await api.call("GET", "/api/v1/orgs/acme/data-planes", who="other-admin")).status_code == 404
    details = await api.call("GET", PLANES, who="platform")
    assert details.status_code == 200
    local = next(p for p in details.json() if p["name"] == "local")
    assert local["queue_name"] == data_plane_queue("local") and local["draining"] is False


async def test_the_platform_admin_adds_drains_and_removes_data_planes(api: Api) -> None:
    name = unique("edge")
    added = await api.call("POST", PLANES, who="platform", json={"name": name, "description": "a second one"})
    assert added.status_code == 201, added.text
    again = await api.call("POST", PLANES, who="platform", json={"name": name})
    assert again.status_code == 409 and "already exists" in again.json()["error"]["message"]
    ambiguous = await api.call("POST", "/api/v1/orgs/acme/instances", json={"name": unique("db")})
    assert ambiguous.status_code == 422 and "several data planes" in ambiguous.text
    # draining: no new instances go there, so the default placement works again
    drained = await api.call("PATCH", f"{PLANES}/{name}", who="platform", json={"draining": True})
    assert drained.status_code == 200 and drained.json()["draining"] is True, drained.text
    placed = await api.call("POST", "/api/v1/orgs/acme/instances", json={"name": unique("db")})
    assert placed.status_code == 202 and placed.json()["data_plane"] == "local", placed.text
    refused = await api.call("POST", "/api/v1/orgs/acme/instances", json={"name": unique("db"), "data_plane": name})
    assert refused.status_code == 409 and "draining" in refused.json()["error"]["message"]
    assert [p["name"] for p in (await api.call("GET", "/api/v1/orgs/acme/data-planes")).json()] == ["local"]
    # an unused data plane can be removed, with its queue; one that instances live on cannot
    removed = await api.call("DELETE", f"{PLANES}/{name}", who="platform")
    assert removed.status_code == 204, removed.text
    assert name not in [row[0] for row in await planes_in_db(api)]
    async with api.pool.connection() as conn:
        assert data_plane_queue(name) not in [q.queue_name for q in await AsyncQueue(conn).list_queues()]
    busy = await api.call("DELETE", f"{PLANES}/local", who="platform")
    assert busy.status_code == 409 and "drain" in busy.json()["error"]["message"]
    assert (await api.call("DELETE", f"{PLANES}/{name}", who="platform")).status_code == 404


async def test_only_the_platform_admin_issues_platform_and_metrics_tokens(api: Api) -> None:
    before = await active_tokens(api, "acme")
    for role in ("platform", "metrics"):
        escalation = await api.call("POST", "/api/v1/orgs/acme/tokens", who="acme-admin", json={"role": role})
        assert escalation.status_code == 403, escalation.text
    assert await active_tokens(api, "acme") == before
    issued = await api.call("POST", "/api/v1/orgs/default/tokens", who="platform", json={"role": "metrics"})
    assert issued.status_code == 201 and issued.json()["role"] == "metrics"
    scraper = {"Authorization": f"Bearer {issued.json()['token']}"}
    # a metrics token scrapes and does nothing else
    assert (await api.client.get("/api/v1/orgs/default/instances", headers=scraper)).status_code == 403
    assert (await api.client.get("/metrics", headers=scraper)).status_code == 200
    # the platform admin bootstraps another org; an org admin cannot reach beyond its org
    org = unique("fresh")
    boot = await api.call("POST", f"/api/v1/orgs/{org}/tokens", who="platform", json={"role": "admin"})
    assert boot.status_code == 201 and boot.json()["org_id"] == org
    assert (
        await api.call("POST", f"/api/v1/orgs/{unique('fresh')}/tokens", who="acme-admin", json={"role": "admin"})
    ).status_code == 404


async def test_an_org_admin_cannot_revoke_the_platform_token(api: Api) -> None:
    made = await api.call("POST", "/api/v1/orgs/default/tokens", who="platform", json={"role": "admin"})
    assert made.status_code == 201
    api.tokens["default-admin"] = made.json()["token"]
    revoke = await api.call("DELETE", f"/api/v1/orgs/default/tokens/{api.token_ids['platform']}", who="default-admin")
    assert revoke.status_code == 403, revoke.text
    assert (await api.call("GET", PLANES, who="platform")).status_code == 200


async def test_metrics_need_a_metrics_or_platform_token(api: Api) -> None:
    assert (await api.client.get("/metrics")).status_code == 401
    for who in ("acme-viewer", "acme-member", "acme-admin", "other-admin"):
        response = await api.call("GET", "/metrics", who=who)
        assert response.status_code == 403, (who, response.text)
        assert "howdah_queue_depth" not in response.text
    allowed = await api.call("GET", "/metrics", who="platform")
    assert allowed.status_code == 200 and "howdah_queue_depth" in allowed.text


async def test_metrics_can_be_open_to_loopback_scrapers_only(db_url: str) -> None:
    app = create_app(db_url, pool_size=2, metrics_open_loopback=True)
    async with app.router.lifespan_context(app):
        for client_host, expected in (("127.0.0.1", 200), ("::1", 200), ("203.0.113.9", 401)):
            transport = httpx.ASGITransport(app=app, client=(client_host, 40000))
            async with httpx.AsyncClient(transport=transport, base_url="http://howdah.test") as client:
                assert (await client.get("/metrics")).status_code == expected, client_host


async def test_tokens_per_org_are_capped_even_under_concurrent_requests(db_url: str) -> None:
    app = create_app(db_url, pool_size=12, max_tokens_per_org=4)
    org = unique("capped")
    async with app.router.lifespan_context(app):
        admin, _ = await app.state.control.create_token(org, "admin")
        transport = httpx.ASGITransport(app=app)
        headers = {"Authorization": f"Bearer {admin}"}
        async with httpx.AsyncClient(transport=transport, base_url="http://howdah.test", headers=headers) as client:
            url = f"/api/v1/orgs/{org}/tokens"
            responses = await asyncio.gather(*(client.post(url, json={"role": "viewer"}) for _ in range(10)))
            codes = sorted(r.status_code for r in responses)
            assert codes == [201] * 3 + [409] * 7, codes
            refused = next(r for r in responses if r.status_code == 409)
            assert "4 active tokens" in refused.json()["error"]["message"]
            listed = (await client.get(url)).json()
            assert len(listed) == 4
            victim = next(t["id"] for t in listed if t["role"] == "viewer")
            assert (await client.delete(f"{url}/{victim}")).status_code == 204
            assert (await client.post(url, json={"role": "viewer"})).status_code == 201


async def test_token_changes_are_audited_and_the_org_admin_reads_them(api: Api) -> None:
    made = await api.call("POST", "/api/v1/orgs/acme/tokens", who="acme-admin", json={"role": "viewer", "name": "ci"})
    assert made.status_code == 201
    token_id = made.json()["id"]
    assert (await api.call("DELETE", f"/api/v1/orgs/acme/tokens/{token_id}", who="acme-admin")).status_code == 204
    audit = await api.call("GET", "/api/v1/orgs/acme/audit", who="acme-admin")
    assert audit.status_code == 200, audit.text
    entries = [e for e in audit.json() if e["token_id"] == token_id]
    assert [e["action"] for e in entries] == ["created", "revoked"]
    for entry in entries:
        assert entry["role"] == "viewer" and entry["name"] == "ci" and entry["at"]
        assert entry["actor_token_id"] == api.token_ids["acme-admin"] and entry["actor_role"] == "admin"
        assert entry["via"] == "api"
    # tokens made with direct database access (``howdah up``, ``howdah token create``) say so
    seeded = next(e for e in audit.json() if e["token_id"] == api.token_ids["acme-member"])
    assert seeded["via"] == "database" and seeded["actor_token_id"] is None
    assert (await api.call("GET", "/api/v1/orgs/acme/audit", who="acme-member")).status_code == 403
    assert (await api.call("GET", "/api/v1/orgs/acme/audit", who="other-admin")).status_code == 404
    # the record is written in the same transaction as the token: none without the other
    async with api.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM control.tokens t WHERE NOT EXISTS (SELECT FROM control.token_audit a "
            "WHERE a.token_id = t.id AND a.action = 'created')"
        )
        assert await cur.fetchone() == (0,)


async def test_the_platform_admin_meets_404_for_an_org_that_does_not_exist(api: Api) -> None:
    response = await api.call("POST", f"/api/v1/orgs/{unique('ghost')}/instances", who="platform", json={"name": "x"})
    assert response.status_code == 404 and "not found" in response.json()["error"]["message"]
