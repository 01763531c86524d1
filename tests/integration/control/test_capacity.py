"""Resources are checked against the data plane's capacity before a change is accepted: an instance that asks for
more than its whole data plane has is a 422 naming the field, the request and the capacity, and nothing is
written or sent; a data plane whose capacity is unknown accepts as before; a stored spec can always be stopped
and fixed."""

from __future__ import annotations

import uuid
from typing import Any

from psycopg.types.json import Jsonb

from howdah.control.capacity import Capacity
from howdah.control.events import data_plane_queue
from howdah.queue import AsyncQueue

from .conftest import Api
from .test_api import report

BASE = "/api/v1/orgs/acme/instances"
GI = 2**30
SMALL = Capacity(cpu=4, memory_bytes=16 * GI, storage_bytes=100 * GI)


def unique() -> str:
    return f"db-{uuid.uuid4().hex[:8]}"


async def small_plane(api: Api) -> str:
    name = f"small-{uuid.uuid4().hex[:6]}"
    await api.control.register_data_plane(name, "a 16Gi host", SMALL)
    return name


async def instance_rows(api: Api, name: str) -> int:
    async with api.pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM control.instances WHERE name = %s", (name,))
        row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def events(api: Api, plane: str) -> list[dict[str, Any]]:
    async with api.pool.connection() as conn:
        return [m.message for m in await AsyncQueue(conn).peek(data_plane_queue(plane), 0, 10_000)]


async def up_on(api: Api, plane: str, **spec: Any) -> dict[str, Any]:
    created = await api.call("POST", BASE, json={"name": unique(), "data_plane": plane, **spec})
    assert created.status_code == 202, created.text
    body = created.json()
    await report(api, body["id"], "Created", body["generation"], actual_spec=body["desired_spec"])
    return body


async def test_a_create_beyond_the_data_planes_memory_is_refused_naming_memory_and_the_capacity(api: Api) -> None:
    plane = await small_plane(api)
    name = unique()
    refused = await api.call("POST", BASE, json={"name": name, "memory": "1000Gi", "data_plane": plane})
    assert refused.status_code == 422, refused.text
    message = refused.json()["error"]["message"]
    assert message.startswith("memory: ") and "1000Gi" in message and "16Gi" in message and plane in message
    assert await instance_rows(api, name) == 0 and await events(api, plane) == []

    replicated = await api.call("POST", BASE, json={"name": name, "memory": "8Gi", "replicas": 3, "data_plane": plane})
    assert replicated.status_code == 422 and "3 replicas of 8Gi each = 24Gi" in replicated.json()["error"]["message"]
    cpu = await api.call("POST", BASE, json={"name": name, "cpu": 8, "data_plane": plane})
    assert cpu.status_code == 422 and cpu.json()["error"]["message"].startswith("cpu: 8")

    fits = await api.call("POST", BASE, json={"name": name, "memory": "8Gi", "replicas": 2, "data_plane": plane})
    assert fits.status_code == 202, fits.text


async def test_a_patch_raising_memory_above_the_capacity_is_refused_and_changes_nothing(api: Api) -> None:
    plane = await small_plane(api)
    body = await up_on(api, plane, memory="8Gi")
    url = f"{BASE}/{body['id']}"
    refused = await api.call("PATCH", url, json={"memory": "32Gi"})
    assert refused.status_code == 422, refused.text
    message = refused.json()["error"]["message"]
    assert message.startswith("memory: ") and "32Gi" in message and "16Gi" in message
    more_replicas = await api.call("PATCH", url, json={"replicas": 3})
    assert more_replicas.status_code == 422 and "3 replicas" in more_replicas.json()["error"]["message"]
    after = (await api.call("GET", url)).json()
    assert after["state"] == "Up" and after["generation"] == body["generation"]
    assert after["desired_spec"]["memory"] == "8Gi" and after["desired_spec"]["replicas"] == 1
    assert [e["kind"] for e in await events(api, plane)] == ["Create"]

    grown = await api.call("PATCH", url, json={"memory": "16Gi"})
    assert grown.status_code == 202, grown.text


async def test_a_stored_spec_beyond_the_capacity_can_still_be_stopped_configured_and_fixed(api: Api) -> None:
    plane = await small_plane(api)
    body = await up_on(api, plane, memory="8Gi")
    url = f"{BASE}/{body['id']}"
    async with api.pool.connection() as conn:  # as accepted before the check existed
        await conn.execute(
            "UPDATE control.instances SET desired_spec = %s WHERE id = %s",
            (Jsonb({**body["desired_spec"], "memory": "1000Gi"}), body["id"]),
        )
    configured = await api.call("PATCH", url, json={"postgres_configs": {"work_mem": "8MB"}})
    assert configured.status_code == 202, configured.text
    await report(api, body["id"], "Updated", configured.json()["generation"])
    still_too_big = await api.call("PATCH", url, json={"memory": "500Gi"})
    assert still_too_big.status_code == 422 and "500Gi" in still_too_big.json()["error"]["message"]
    stopped = await api.call("POST", f"{url}/stop")
    assert stopped.status_code == 202, stopped.text
    await report(api, body["id"], "Stopped", stopped.json()["generation"])
    fixed = await api.call("PATCH", url, json={"memory": "8Gi"})
    assert fixed.status_code == 202, fixed.text
    assert fixed.json()["desired_spec"]["memory"] == "8Gi"


async def test_a_data_plane_of_unknown_capacity_accepts_as_before(api: Api) -> None:
    created = await api.call(
        "POST", BASE, json={"name": unique(), "memory": "1000Gi", "cpu": 64, "replicas": 5, "data_plane": "local"}
    )
    assert created.status_code == 202, created.text


async def test_a_conductors_later_report_replaces_the_capacity(api: Api) -> None:
    plane = await small_plane(api)
    payload = {"memory": "32Gi", "data_plane": plane}
    assert (await api.call("POST", BASE, json={"name": unique(), **payload})).status_code == 422
    await api.control.register_data_plane(plane, "a bigger host", Capacity(cpu=8, memory_bytes=64 * GI))
    assert (await api.call("POST", BASE, json={"name": unique(), **payload})).status_code == 202
    await api.control.register_data_plane(plane, "capacity unknown")
    assert (await api.call("POST", BASE, json={"name": unique(), **payload, "memory": "1000Gi"})).status_code == 202


async def test_a_feature_the_data_plane_does_not_offer_is_refused_before_anything_is_written(api: Api) -> None:
    """The local provider runs no connection pooler and cannot restrict client addresses: a data plane that reports
    so refuses such specs with a 422 naming the feature, instead of accepting them and ignoring the field."""
    plane = f"plain-{uuid.uuid4().hex[:6]}"
    await api.control.register_data_plane(plane, "no pooler", features=["backup", "restore", "replicas"])
    name = unique()
    pooled = await api.call(
        "POST", BASE, json={"name": name, "data_plane": plane, "connection_pooler": {"enabled": True}}
    )
    assert pooled.status_code == 422, pooled.text
    assert f"data plane {plane!r} cannot provide connection_pooler" in pooled.json()["error"]["message"]
    allowed = await api.call("POST", BASE, json={"name": name, "data_plane": plane, "ip_allow_list": ["10.0.0.0/8"]})
    assert allowed.status_code == 422 and "ip_allow_list" in allowed.json()["error"]["message"]
    assert await instance_rows(api, name) == 0 and await events(api, plane) == []
    body = await up_on(api, plane)
    patched = await api.call("PATCH", f"{BASE}/{body['id']}", json={"connection_pooler": {"enabled": True}})
    assert patched.status_code == 422, patched.text

    await api.control.register_data_plane(plane, "now with one", features=["connection_pooler", "ip_allow_list"])
    assert (
        await api.call("POST", BASE, json={"name": name, "data_plane": plane, "ip_allow_list": ["10.0.0.0/8"]})
    ).status_code == 202
