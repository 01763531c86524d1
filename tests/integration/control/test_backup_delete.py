"""DELETE /api/v1/orgs/{org}/backups/{id}: who may, what is refused (and why), and the event its data plane gets."""

from __future__ import annotations

from typing import Any

from .conftest import Api
from .test_api import BASE, create_up, crud_events, deliver

BACKUPS = "/api/v1/orgs/acme/backups"


async def completed_backup(api: Api, instance_id: str) -> str:
    asked = await api.call("POST", f"{BASE}/{instance_id}/backups", json={})
    assert asked.status_code == 202, asked.text
    backup_id = str(asked.json()["id"])
    done = {"backup_id": backup_id, "location": f"/backups/{backup_id}", "size_bytes": 1}
    await deliver(api, {"instance_id": instance_id, "event": "BackupCompleted", "data_plane": "local", "backup": done})
    return backup_id


async def listed(api: Api, instance_id: str) -> list[dict[str, Any]]:
    response = await api.call("GET", BACKUPS, params={"instance_id": instance_id})
    assert response.status_code == 200, response.text
    return list(response.json())


async def test_deleting_backups_keeps_the_window_retention_promises(api: Api) -> None:
    body = await create_up(api)
    iid = body["id"]
    first = await completed_backup(api, iid)
    second = await completed_backup(api, iid)

    # only members of the org: a viewer is refused, another org does not see it
    viewer = await api.call("DELETE", f"{BACKUPS}/{second}", who="acme-viewer")
    assert viewer.status_code == 403, viewer.text
    for url in (f"{BACKUPS}/{second}", f"/api/v1/orgs/other/backups/{second}"):
        assert (await api.call("DELETE", url, who="other-admin")).status_code == 404
    assert len(await listed(api, iid)) == 2

    # the oldest backup starts the window: deleting it would lose the points before the second
    oldest = await api.call("DELETE", f"{BACKUPS}/{first}", who="acme-member")
    assert oldest.status_code == 409, oldest.text
    assert "window would then start at" in oldest.json()["error"]["message"]

    # the newer one may go: its record at once, its files through a DeleteBackup event to its data plane
    gone = await api.call("DELETE", f"{BACKUPS}/{second}", who="acme-member")
    assert gone.status_code == 202, gone.text
    assert gone.json()["id"] == second and gone.json()["status"] == "completed"
    assert [b["id"] for b in await listed(api, iid)] == [first]
    events = [e for e in await crud_events(api, iid) if e["kind"] == "DeleteBackup"]
    assert [e["backup_id"] for e in events] == [second]
    assert (await api.call("DELETE", f"{BACKUPS}/{second}")).status_code == 404

    # the last one inside the retention period stays
    last = await api.call("DELETE", f"{BACKUPS}/{first}")
    assert last.status_code == 409 and "only base backup of the last 7 days" in last.json()["error"]["message"]

    # one being taken cannot be deleted; a failed one can, at once (no files: no event)
    pending = (await api.call("POST", f"{BASE}/{iid}/backups", json={})).json()["id"]
    busy = await api.call("DELETE", f"{BACKUPS}/{pending}")
    assert busy.status_code == 409 and "still being taken" in busy.json()["error"]["message"]
    await deliver(api, {"instance_id": iid, "event": "BackupFailed", "data_plane": "local", "error": "disk full",
                        "backup": {"backup_id": pending}})  # fmt: skip
    assert (await api.call("DELETE", f"{BACKUPS}/{pending}")).status_code == 202
    assert [b["id"] for b in await listed(api, iid)] == [first]
    assert len([e for e in await crud_events(api, iid) if e["kind"] == "DeleteBackup"]) == 1
    assert (await api.call("DELETE", f"{BACKUPS}/not-a-backup")).status_code == 404
    # a data plane whose provider cannot delete backups (Kubernetes: the plugin's retention does) is refused first
    await api.control.register_data_plane("local", "this machine", features=["backup", "restore", "pitr"])
    unable = await api.call("DELETE", f"{BACKUPS}/{first}")
    assert unable.status_code == 422 and "does not delete backups" in unable.json()["error"]["message"]
