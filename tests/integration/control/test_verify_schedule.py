"""Scheduled restore verifications (the spec's backup.verify_schedule): checked like the backup schedule, and
asked for by the reconciler's sweep once per tick, never while one is in flight."""

from __future__ import annotations

from howdah.providers.base import Capability

from .conftest import Api
from .test_api import BASE, create_up, unique

LOCAL_FEATURES = [Capability.BACKUP.value, Capability.RESTORE.value, Capability.PITR.value]


async def test_a_bad_verify_schedule_is_refused_naming_the_field(api: Api) -> None:
    await api.control.register_data_plane("local", "this machine", features=LOCAL_FEATURES)
    for backup, says in (
        ({"verify_schedule": "61 * * * *"}, "verify_schedule"),
        ({"verify_schedule": "0 3 * * 1#2"}, "verify_schedule"),
        ({"verify_schedule": "0 3 * * *", "enabled": False}, "verify_schedule needs enabled: true"),
    ):
        refused = await api.call("POST", BASE, json={"name": unique(), "backup": backup})
        assert refused.status_code == 422 and says in refused.json()["error"]["message"], refused.text
    body = await create_up(api)
    patched = await api.call("PATCH", f"{BASE}/{body['id']}", json={"backup": {"verify_schedule": "every day"}})
    assert patched.status_code == 422 and "verify_schedule" in patched.json()["error"]["message"], patched.text
    # a data plane whose provider archives no WAL cannot verify backups: refused as on-demand verification is
    await api.control.register_data_plane("local", "this machine", features=[Capability.BACKUP.value])
    unable = await api.call("POST", BASE, json={"name": unique(), "backup": {"verify_schedule": "0 4 * * 0"}})
    assert unable.status_code == 422, unable.text
    assert "cannot provide backup.verify_schedule" in unable.json()["error"]["message"]
    await api.control.register_data_plane("local", "this machine", features=LOCAL_FEATURES)
