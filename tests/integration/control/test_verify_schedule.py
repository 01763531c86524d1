"""Scheduled restore verifications (the spec's backup.verify_schedule): checked like the backup schedule, and
asked for by the reconciler's sweep once per tick, never while one is in flight."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from psycopg.types.json import Jsonb

from howdah.providers.base import Capability

from .conftest import Api
from .test_api import BASE, create_up, crud_events, deliver, unique

LOCAL_FEATURES = [Capability.BACKUP.value, Capability.RESTORE.value, Capability.PITR.value]


async def verifications_asked(api: Api, instance_id: str) -> int:
    return len([e for e in await crud_events(api, instance_id) if e["kind"] == "VerifyBackup"])


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


async def test_a_due_verification_is_asked_once_per_tick_and_not_while_one_runs(api: Api) -> None:
    await api.control.register_data_plane("local", "this machine", features=LOCAL_FEATURES)
    body = await create_up(api, backup={"verify_schedule": "*/5 * * * *"})
    iid = body["id"]
    assert body["desired_spec"]["backup"]["verify_schedule"] == "*/5 * * * *"
    async with api.pool.connection() as conn:  # as if made an hour ago: ticks have come since
        await conn.execute(
            "UPDATE control.instances SET created_at = created_at - interval '1 hour' WHERE id::text = %s", (iid,)
        )
    now = datetime.now(UTC)
    await api.reconciler.scheduled_verifications(now)  # (other tests' instances may be due: only ours is counted)
    assert await verifications_asked(api, iid) == 0  # no recoverable window reported yet: nothing to verify
    window = {"earliest": "2026-12-01T00:00:00+00:00", "latest": "2026-12-01T01:00:00+00:00"}
    async with api.pool.connection() as conn:  # as its data plane reports once a base backup completed
        await conn.execute(
            "UPDATE control.instances SET status = coalesce(status, '{}') || %s WHERE id::text = %s",
            (Jsonb({"recovery_window": window}), iid),
        )
    await api.reconciler.scheduled_verifications(now)
    await api.reconciler.scheduled_verifications(now)  # the same tick: not asked again
    assert await verifications_asked(api, iid) == 1
    await api.reconciler.scheduled_verifications(now + timedelta(minutes=10))  # ticks while it runs
    assert await verifications_asked(api, iid) == 1

    reported = now + timedelta(minutes=11)
    outcome = {"at": reported.isoformat(), "ok": True, "seconds": 42.0, "error": None}
    await deliver(api, {"instance_id": iid, "event": "RestoreVerified", "data_plane": "local",
                        "verification": outcome})  # fmt: skip
    assert (await api.call("GET", f"{BASE}/{iid}")).json()["status"]["last_verified_restore"] == outcome
    await api.reconciler.scheduled_verifications(reported)  # that tick was verified
    assert await verifications_asked(api, iid) == 1
    await api.reconciler.scheduled_verifications(reported + timedelta(minutes=5))  # the next tick
    assert await verifications_asked(api, iid) == 2

    # an instance that is not Up is not asked
    later = {**outcome, "at": (reported + timedelta(minutes=6)).isoformat()}
    await deliver(api, {"instance_id": iid, "event": "RestoreVerified", "data_plane": "local",
                        "verification": later})  # fmt: skip
    stopped = await api.call("POST", f"{BASE}/{iid}/stop")
    assert stopped.status_code == 202, stopped.text
    await api.reconciler.scheduled_verifications(reported + timedelta(days=1))
    assert await verifications_asked(api, iid) == 2
