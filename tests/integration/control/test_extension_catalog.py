"""Extensions are checked against the catalog the instance's data plane reported, not against what the control
plane's host happens to have; org members can read a data plane's catalog; a data plane that reported none
(a conductor older than catalogs) gets extension names unchecked."""

from __future__ import annotations

import uuid
from typing import Any

from howdah.control.extensions import ExtensionCatalog, ExtensionInfo, declared_catalog
from howdah.providers.local import local_extension_catalog

from .conftest import Api
from .test_api import report, unique
from .test_capacity import instance_rows

BASE = "/api/v1/orgs/acme/instances"
# A small data plane: no pg_trgm, no vector (the control plane's own Postgres has both).
SMALL = declared_catalog(["pg_stat_statements", "plpgsql", "hstore"], source="a small image")


async def plane(api: Api, catalog: ExtensionCatalog | None) -> str:
    name = f"p-{uuid.uuid4().hex[:6]}"
    await api.control.register_data_plane(name, "for a test", extensions=catalog)
    return name


async def test_an_extension_the_data_plane_lacks_is_refused_though_the_control_plane_host_has_it(api: Api) -> None:
    assert "pg_trgm" in local_extension_catalog()  # the control plane's host has it
    small = await plane(api, SMALL)
    name = unique()
    refused = await api.call(
        "POST", BASE, json={"name": name, "data_plane": small, "extensions": [{"name": "pg_trgm"}]}
    )
    assert refused.status_code == 422, refused.text
    message = refused.json()["error"]["message"]
    assert f"extension 'pg_trgm' is not available on data plane '{small}'" in message
    assert "available: hstore, pg_stat_statements, plpgsql" in message
    assert await instance_rows(api, name) == 0

    # a stack default the data plane lacks: named with the stack, and it can be disabled
    vectordb = await api.call("POST", BASE, json={"name": name, "data_plane": small, "stack": "vectordb"})
    assert vectordb.status_code == 422
    assert "'vector' is not available (a default of the vectordb stack" in vectordb.json()["error"]["message"]

    created = await api.call("POST", BASE, json={"name": name, "data_plane": small, "extensions": [{"name": "hstore"}]})
    assert created.status_code == 202, created.text
    body = created.json()
    await report(api, body["id"], "Created", body["generation"], actual_spec=body["desired_spec"])
    patched = await api.call("PATCH", f"{BASE}/{body['id']}", json={"extensions": [{"name": "pg_trgm"}]})
    assert patched.status_code == 422 and small in patched.json()["error"]["message"]
    on_local = await api.call("POST", BASE, json={"name": unique(), "data_plane": "local",
                                                  "extensions": [{"name": "pg_trgm"}]})  # fmt: skip
    assert on_local.status_code == 202, on_local.text


async def test_the_data_planes_catalog_decides_the_preload_libraries(api: Api) -> None:
    # this data plane's build of pg_stat_statements needs a helper library loaded first
    odd = ExtensionCatalog(
        {
            "pg_stat_statements": ExtensionInfo("pg_stat_statements", preload=("helper", "pg_stat_statements")),
            "plpgsql": ExtensionInfo("plpgsql", schema="pg_catalog"),
        }
    )
    name = await plane(api, odd)
    created = await api.call("POST", BASE, json={"name": unique(), "data_plane": name})
    assert created.status_code == 202, created.text
    async with api.pool.connection() as conn:
        cur = await conn.execute("SELECT pending_event FROM control.instances WHERE id = %s", (created.json()["id"],))
        row = await cur.fetchone()
    assert row is not None
    assert row[0]["settings"]["shared_preload_libraries"] == "pg_stat_statements,helper"


async def test_a_data_plane_without_a_catalog_gets_extension_names_unchecked(api: Api) -> None:
    old = await plane(api, None)
    created = await api.call(
        "POST", BASE, json={"name": unique(), "data_plane": old, "extensions": [{"name": "timescaledb"}]}
    )
    assert created.status_code == 202, created.text
    event = created.json()
    async with api.pool.connection() as conn:
        cur = await conn.execute("SELECT pending_event FROM control.instances WHERE id = %s", (event["id"],))
        row = await cur.fetchone()
    assert row is not None
    assert "timescaledb" in row[0]["extensions"]
    # the libraries still come from the well-known facts
    assert row[0]["settings"]["shared_preload_libraries"] == "pg_stat_statements,timescaledb"


async def test_who_may_read_a_data_planes_extensions(api: Api) -> None:
    small = await plane(api, SMALL)
    url = f"/api/v1/orgs/acme/data-planes/{small}/extensions"
    for who in ("acme-viewer", "acme-member", "acme-admin", "platform"):
        seen = await api.call("GET", url, who=who)
        assert seen.status_code == 200, (who, seen.text)
        body: dict[str, Any] = seen.json()
        assert body["data_plane"] == small and body["reported"] is True and body["source"] == "a small image"
        assert [e["name"] for e in body["extensions"]] == ["hstore", "pg_stat_statements", "plpgsql"]
        assert ExtensionCatalog.from_json(body) == SMALL
    assert (await api.call("GET", url, who="other-admin")).status_code == 404  # another org's route: not found
    platform_elsewhere = await api.call("GET", f"/api/v1/orgs/other/data-planes/{small}/extensions", who="platform")
    assert platform_elsewhere.status_code == 200
    metrics, _ = await api.control.create_token("acme", "metrics")  # scrapes /metrics and nothing else
    assert (await api.client.get(url, headers={"Authorization": f"Bearer {metrics}"})).status_code == 403
    assert (await api.client.get(url)).status_code == 401
    missing = await api.call("GET", "/api/v1/orgs/acme/data-planes/mars/extensions")
    assert missing.status_code == 404 and "mars" in missing.json()["error"]["message"]

    unreported = await api.call("GET", f"/api/v1/orgs/acme/data-planes/{await plane(api, None)}/extensions")
    assert unreported.status_code == 200
    assert unreported.json()["reported"] is False and unreported.json()["extensions"] == []
    local = (await api.call("GET", "/api/v1/orgs/acme/data-planes/local/extensions")).json()
    statements = next(e for e in local["extensions"] if e["name"] == "pg_stat_statements")
    assert statements["preload"] == ["pg_stat_statements"] and statements["version"]


async def test_a_stored_extension_the_data_plane_lacks_can_still_be_stopped_deleted_and_fixed(api: Api) -> None:
    # accepted before its data plane reported a catalog (names unchecked), which then turns out to lack it
    name = await plane(api, None)
    created = await api.call("POST", BASE, json={"name": unique(), "data_plane": name,
                                                 "extensions": [{"name": "timescaledb"}]})  # fmt: skip
    assert created.status_code == 202, created.text
    body = created.json()
    await report(api, body["id"], "Created", body["generation"], actual_spec=body["desired_spec"])
    await api.control.register_data_plane(name, "for a test", extensions=SMALL)
    url = f"{BASE}/{body['id']}"
    stopped = await api.call("POST", f"{url}/stop")
    assert stopped.status_code == 202, stopped.text
    await report(api, body["id"], "Stopped", stopped.json()["generation"])
    still_there = await api.call("PATCH", url, json={"memory": "2Gi"})
    assert still_there.status_code == 422 and "timescaledb" in still_there.json()["error"]["message"]
    fixed = await api.call("PATCH", url, json={"extensions": [{"name": "timescaledb", "enabled": False}]})
    assert fixed.status_code == 202, fixed.text
    deleted = await api.call("DELETE", url)
    assert deleted.status_code == 202, deleted.text
