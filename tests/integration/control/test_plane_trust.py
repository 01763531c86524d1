"""A data plane speaks only for its own instances: a conductor of another plane that reports on them (by mistake,
or compromised) changes nothing, and a state event that does not say which plane sent it is refused."""

from __future__ import annotations

import uuid
from typing import Any

from .conftest import Api
from .test_api import deliver

BASE = "/api/v1/orgs/acme/instances"


async def row_of(api: Api, instance_id: str) -> dict[str, Any]:
    async with api.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT state, has_active_work, generation, actual_spec, status, connection, last_error "
            "FROM control.instances WHERE id = %s",
            (instance_id,),
        )
        row = await cur.fetchone()
    assert row is not None
    names = ("state", "has_active_work", "generation", "actual_spec", "status", "connection", "last_error")
    return dict(zip(names, row, strict=True))


async def backup_status(api: Api, backup_id: str) -> str:
    async with api.pool.connection() as conn:
        cur = await conn.execute("SELECT status FROM control.backups WHERE id = %s", (backup_id,))
        row = await cur.fetchone()
    assert row is not None
    return str(row[0])


async def test_another_planes_conductor_cannot_answer_for_an_instance(api: Api) -> None:
    await api.control.register_data_plane("plane-b", "another data plane")
    created = await api.call("POST", BASE, json={"name": f"db-{uuid.uuid4().hex[:8]}", "data_plane": "local"})
    assert created.status_code == 202, created.text
    body = created.json()
    iid, generation = body["id"], body["generation"]
    before = await row_of(api, iid)
    forged = {"instance_id": iid, "generation": generation, "data_plane": "plane-b",
              "actual_spec": body["desired_spec"],
              "connection": {"host": "evil.example", "port": 5432, "user": "app", "password": "x", "dbname": "app"},
              "status": {"forged": True}}  # fmt: skip
    for event in ("Created", "Error", "Deleted"):
        await deliver(api, {**forged, "event": event, "error": "forged"})
        assert await row_of(api, iid) == before, event
    await deliver(api, {k: v for k, v in forged.items() if k != "data_plane"} | {"event": "Created"})
    assert await row_of(api, iid) == before  # a state event that does not name its plane is refused too

    # the instance's own plane is heard, and after that the other plane still is not
    await deliver(api, {**forged, "data_plane": "local", "event": "Created", "status": {"size_bytes": 1},
                        "connection": {"host": "127.0.0.1", "port": 5555, "user": "app", "password": "pw",
                                       "dbname": "app"}})  # fmt: skip
    up = await row_of(api, iid)
    assert up["state"] == "Up" and up["connection"]["host"] == "127.0.0.1"
    for event in ("Deleted", "Error", "Updated"):
        await deliver(api, {**forged, "event": event, "generation": up["generation"]})
        assert await row_of(api, iid) == up, event

    backup = await api.call("POST", f"{BASE}/{iid}/backups", json={})
    assert backup.status_code in (201, 202), backup.text
    backup_id = backup.json()["id"]
    await deliver(api, {"instance_id": iid, "event": "BackupCompleted", "data_plane": "plane-b",
                        "backup": {"backup_id": backup_id, "location": "/evil", "size_bytes": 1}})  # fmt: skip
    assert await backup_status(api, backup_id) == "pending"
    await deliver(api, {"instance_id": iid, "event": "BackupCompleted", "data_plane": "local",
                        "backup": {"backup_id": backup_id, "location": "/backups/1", "size_bytes": 1}})  # fmt: skip
    assert await backup_status(api, backup_id) == "completed"


async def test_only_the_instances_plane_reports_its_verified_restore(api: Api) -> None:
    await api.control.register_data_plane("plane-b", "another data plane")
    created = await api.call("POST", BASE, json={"name": f"db-{uuid.uuid4().hex[:8]}", "data_plane": "local"})
    iid = created.json()["id"]
    outcome = {"at": "2026-12-06T20:00:00+00:00", "ok": True, "seconds": 4.2, "error": None}
    await deliver(api, {"instance_id": iid, "event": "RestoreVerified", "data_plane": "plane-b",
                        "verification": outcome})  # fmt: skip
    assert (await api.call("GET", f"{BASE}/{iid}")).json()["status"]["last_verified_restore"] is None
    await deliver(api, {"instance_id": iid, "event": "RestoreVerified", "data_plane": "local",
                        "verification": {**outcome, "password": "not kept"}})  # fmt: skip
    assert (await api.call("GET", f"{BASE}/{iid}", who="acme-viewer")).json()["status"][
        "last_verified_restore"
    ] == outcome
