"""Point-in-time restores end to end: the API, a conductor with the local provider and the reconciler (in this
process), real instances. A restore to a time between two commits has exactly the first; a restore of a deleted
instance reaches its last archived commit; a target outside the window is a 422 stating it; the copy's passwords
are its own."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from howdah.conductor import Conductor
from howdah.control.api import create_app
from howdah.control.reconciler import Reconciler
from howdah.control.service import ControlPlane
from howdah.providers.local import LocalProvider
from tests.waiting import async_wait_until

pytestmark = pytest.mark.slow

ORG, OTHER, PLANE = "acme", "rival", "pitr"
BASE = f"/api/v1/orgs/{ORG}"


@dataclass
class Platform:
    client: httpx.AsyncClient
    control: ControlPlane
    tokens: dict[str, str]
    dataplane: Path

    async def call(self, method: str, path: str, who: str = "member", **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.tokens[who]}"}
        return await self.client.request(method, path, headers=headers, **kwargs)

    async def instance(self, instance_id: str) -> dict[str, Any]:
        body: dict[str, Any] = (await self.call("GET", f"{BASE}/instances/{instance_id}")).json()
        return body

    async def settled(self, instance_id: str, state: str = "Up") -> dict[str, Any]:
        async def reached() -> dict[str, Any] | None:
            body = await self.instance(instance_id)
            return body if body["state"] == state and not body["has_active_work"] else None

        found: dict[str, Any] = await async_wait_until(reached, timeout=180, what=f"{instance_id} {state}")
        return found


@pytest.fixture
async def platform(db_url: str) -> AsyncIterator[Platform]:
    tmp = Path(tempfile.mkdtemp(prefix="howdah-pitr-api-"))  # traversable by a server OS user, unlike tmp_path
    tmp.chmod(0o755)
    provider = LocalProvider(tmp / "dataplane", durable=False)
    app = create_app(db_url, pool_size=6)
    stop = asyncio.Event()
    async with app.router.lifespan_context(app):
        control: ControlPlane = app.state.control
        tokens = {role: (await control.create_token(ORG, role))[0] for role in ("member", "viewer")}
        tokens["rival"] = (await control.create_token(OTHER, "member"))[0]
        await control.register_data_plane(PLANE)
        tasks = [
            asyncio.create_task(Conductor(db_url, PLANE, provider, status_interval=0.5).run(stop)),
            # sweeps (scheduled backups are asked by them) every 0.2 s instead of 5 s
            asyncio.create_task(Reconciler(app.state.pool, db_url, sweep_interval=0.2).run(stop)),
        ]
        transport = httpx.ASGITransport(app=app)
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://howdah.test") as client:
                yield Platform(client, control, tokens, tmp / "dataplane")
        finally:
            stop.set()
            await asyncio.wait_for(asyncio.gather(*tasks), 60)
            for instance_id in provider.list_instances():
                await asyncio.to_thread(provider.delete, instance_id)
            shutil.rmtree(tmp, ignore_errors=True)


async def connect(connection: dict[str, Any], **overrides: Any) -> psycopg.AsyncConnection[tuple[Any, ...]]:
    wanted = {k: connection[k] for k in ("host", "port", "user", "password", "dbname")}
    return await psycopg.AsyncConnection.connect(**{**wanted, **overrides}, autocommit=True, connect_timeout=10)


async def rows(connection: dict[str, Any]) -> list[int]:
    async with await connect(connection) as conn:
        return [int(r[0]) for r in await (await conn.execute("SELECT n FROM t ORDER BY n")).fetchall()]


async def test_restore_to_a_time_and_after_a_delete_through_the_api(platform: Platform) -> None:
    created = await platform.call("POST", f"{BASE}/instances", json={"name": "shop", "data_plane": PLANE})
    assert created.status_code == 202, created.text
    source_id = created.json()["id"]
    source = (await platform.settled(source_id))["connection"]
    async with await connect(source) as conn:
        await conn.execute("CREATE TABLE t (n int)")
    no_backup = await platform.call("POST", f"{BASE}/restore", json={"name": "early", "source_instance_id": source_id})
    assert no_backup.status_code == 422 and "no base backup" in no_backup.json()["error"]["message"]

    backup = await platform.call("POST", f"{BASE}/instances/{source_id}/backups")
    assert backup.status_code == 202, backup.text

    async def completed() -> bool:
        listed = (await platform.call("GET", f"{BASE}/backups", params={"instance_id": source_id})).json()
        return bool(listed) and listed[0]["status"] == "completed"

    await async_wait_until(completed, timeout=120, what="the base backup")
    async with await connect(source) as conn:
        await conn.execute("INSERT INTO t VALUES (1)")
        await conn.execute("INSERT INTO t VALUES (2)")
        between = (await (await conn.execute("SELECT clock_timestamp()")).fetchone())[0]  # type: ignore[index]
        await conn.execute("INSERT INTO t VALUES (3)")
    password = (platform.dataplane / "instances" / source_id / "superuser.password").read_text().strip()
    async with await connect(source, user="postgres", password=password) as conn:
        await conn.execute("SELECT pg_switch_wal()")

    async def window() -> dict[str, Any] | None:
        status = (await platform.instance(source_id))["status"]
        span = status.get("recovery_window")
        return span if span and datetime.fromisoformat(span["latest"]) > between else None

    span = await async_wait_until(window, timeout=60, what="the window reaching the third commit")
    status = (await platform.instance(source_id))["status"]
    assert status["last_archived_wal"] and status["last_archive_error"] is None

    # outside the window: 422 stating it, and nothing created
    early = datetime.fromisoformat(span["earliest"]) - timedelta(minutes=5)
    refused = await platform.call(
        "POST",
        f"{BASE}/restore",
        json={"name": "early", "source_instance_id": source_id, "target_time": early.isoformat()},
    )
    assert refused.status_code == 422, refused.text
    message = refused.json()["error"]["message"]
    assert "outside the recoverable window" in message and span["earliest"] in message and span["latest"] in message
    late = datetime.fromisoformat(span["latest"]) + timedelta(days=1)
    body = {"name": "late", "source_instance_id": source_id, "target_time": late.isoformat()}
    assert (await platform.call("POST", f"{BASE}/restore", json=body)).status_code == 422
    listed = (await platform.call("GET", f"{BASE}/instances")).json()["items"]
    assert [i["name"] for i in listed] == ["shop"]

    at_time = await platform.call(
        "POST",
        f"{BASE}/restore",
        json={"name": "shop-at", "source_instance_id": source_id, "target_time": between.isoformat()},
    )
    assert at_time.status_code == 202, at_time.text
    restored = (await platform.settled(at_time.json()["id"]))["connection"]
    assert await rows(restored) == [1, 2]
    assert restored["password"] != source["password"]  # the copy's passwords are its own
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        await connect(restored, password=source["password"])

    deleted = await platform.call("DELETE", f"{BASE}/instances/{source_id}")
    assert deleted.status_code == 202
    await platform.settled(source_id, "Deleted")
    kept = (await platform.call("GET", f"{BASE}/backups", who="viewer", params={"instance_id": source_id})).json()
    assert [b["id"] for b in kept] == [backup.json()["id"]]  # backups outlive their instance
    latest = await platform.call("POST", f"{BASE}/restore", json={"name": "shop-last", "source_instance_id": source_id})
    assert latest.status_code == 202, latest.text
    assert await rows((await platform.settled(latest.json()["id"]))["connection"]) == [1, 2, 3]


async def test_restore_requests_are_checked_before_anything_happens(platform: Platform) -> None:
    created = await platform.call("POST", f"{BASE}/instances", json={"name": "guarded", "data_plane": PLANE})
    source_id = created.json()["id"]
    cases = [
        {"name": "x", "backup_id": "b", "source_instance_id": source_id},  # both sources
        {"name": "x"},  # neither
        {"name": "x", "backup_id": "b", "target_time": "2026-12-05T10:00:00Z"},  # a target with a backup
        {"name": "x", "source_instance_id": source_id, "target_lsn": "0/1; DROP TABLE t"},
        {"name": "x", "source_instance_id": source_id, "target_time": "2026-12-05T10:00:00"},  # no time zone
        {"name": "x", "source_instance_id": source_id, "target_time": "2026-12-05T10:00:00Z", "target_lsn": "0/1"},
        {"name": "Bad Name", "source_instance_id": source_id},
    ]
    for body in cases:
        answer = await platform.call("POST", f"{BASE}/restore", json=body)
        assert answer.status_code == 422, (body, answer.text)
        assert "error" in answer.json()
    # roles and orgs: a viewer may not restore; another org's member does not even see the source
    viewer = await platform.call(
        "POST", f"{BASE}/restore", who="viewer", json={"name": "x", "source_instance_id": source_id}
    )
    assert viewer.status_code == 403
    rival = await platform.call(
        "POST", f"/api/v1/orgs/{OTHER}/restore", who="rival", json={"name": "x", "source_instance_id": source_id}
    )
    assert rival.status_code == 404
    assert (
        await platform.call("GET", f"/api/v1/orgs/{OTHER}/backups", who="rival", params={"instance_id": source_id})
    ).json() == []
    assert (await platform.call("GET", f"{BASE}/backups", who="rival")).status_code in (403, 404)


async def test_a_base_backup_is_taken_when_its_schedule_ticks(platform: Platform, db_url: str) -> None:
    body = {"name": "ticking", "data_plane": PLANE, "backup": {"schedule": "*/5 * * * *", "retention_days": 3}}
    created = await platform.call("POST", f"{BASE}/instances", json=body)
    assert created.status_code == 202, created.text
    instance_id = created.json()["id"]
    quiet = await platform.call("POST", f"{BASE}/instances", json={"name": "quiet", "data_plane": PLANE,
                                                                   "backup": {"enabled": False}})  # fmt: skip
    await platform.settled(instance_id)
    await platform.settled(quiet.json()["id"])
    ours = {instance_id, quiet.json()["id"]}

    async def backups_of_ours() -> list[dict[str, Any]]:
        listed: list[dict[str, Any]] = (await platform.call("GET", f"{BASE}/backups")).json()
        return [b for b in listed if b["instance_id"] in ours]

    assert await backups_of_ours() == []  # no tick since they were created
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:  # as if made an hour ago
        await conn.execute(
            "UPDATE control.instances SET created_at = created_at - interval '1 hour' WHERE id::text = ANY(%s)",
            (sorted(ours),),
        )

    async def taken() -> list[dict[str, Any]] | None:
        listed = await backups_of_ours()
        return listed if listed and all(b["status"] == "completed" for b in listed) else None

    backups = await async_wait_until(taken, timeout=120, what="the scheduled base backup")
    assert [b["instance_id"] for b in backups] == [instance_id]  # one per tick; none where archiving is off
    window = await async_wait_until(
        lambda: _window_of(platform, instance_id), timeout=60, what="the window of the scheduled backup"
    )
    assert window["earliest"] <= window["latest"]


async def _window_of(platform: Platform, instance_id: str) -> dict[str, Any] | None:
    span: dict[str, Any] | None = (await platform.instance(instance_id))["status"].get("recovery_window")
    return span


async def test_a_deleted_backup_leaves_the_data_plane(platform: Platform) -> None:
    created = await platform.call("POST", f"{BASE}/instances", json={"name": "pruned", "data_plane": PLANE})
    assert created.status_code == 202, created.text
    source_id = created.json()["id"]
    await platform.settled(source_id)
    taken = []
    for _ in range(2):
        asked = await platform.call("POST", f"{BASE}/instances/{source_id}/backups")
        assert asked.status_code == 202, asked.text
        taken.append(asked.json()["id"])

        async def completed(backup_id: str = taken[-1]) -> bool:
            listed = (await platform.call("GET", f"{BASE}/backups", params={"instance_id": source_id})).json()
            return any(b["id"] == backup_id and b["status"] == "completed" for b in listed)

        await async_wait_until(completed, timeout=120, what="a base backup")
    folder = platform.dataplane / "backups" / source_id
    assert (folder / taken[1]).is_dir()

    deleted = await platform.call("DELETE", f"{BASE}/backups/{taken[1]}")
    assert deleted.status_code == 202, deleted.text
    await async_wait_until(lambda: not (folder / taken[1]).exists(), timeout=60, what="the backup's files removed")
    assert (folder / taken[0]).is_dir()
    listed = (await platform.call("GET", f"{BASE}/backups", params={"instance_id": source_id})).json()
    assert [b["id"] for b in listed] == [taken[0]]


async def test_verify_backup_restores_into_a_scratch_instance_and_records_the_outcome(platform: Platform) -> None:
    created = await platform.call("POST", f"{BASE}/instances", json={"name": "checked", "data_plane": PLANE})
    assert created.status_code == 202, created.text
    iid = created.json()["id"]
    await platform.settled(iid)
    url = f"{BASE}/instances/{iid}/verify-backup"
    nothing = await platform.call("POST", url)
    assert nothing.status_code == 409 and "no backup to verify" in nothing.json()["error"]["message"]
    backup = (await platform.call("POST", f"{BASE}/instances/{iid}/backups")).json()

    async def windowed() -> bool:
        return bool((await platform.instance(iid))["status"].get("recovery_window"))

    await async_wait_until(windowed, timeout=120, what="the instance's window")
    assert (await platform.instance(iid))["status"]["last_verified_restore"] is None
    assert (await platform.call("POST", url, who="viewer")).status_code == 403
    assert (
        await platform.call("POST", f"/api/v1/orgs/{OTHER}/instances/{iid}/verify-backup", who="rival")
    ).status_code == 404

    async def verified(since: str | None = None) -> dict[str, Any] | None:
        found = (await platform.instance(iid))["status"]["last_verified_restore"]
        return found if found and found["at"] != since else None

    asked = await platform.call("POST", url)
    assert asked.status_code == 202, asked.text
    outcome = await async_wait_until(verified, timeout=180, what="the verification's outcome")
    assert outcome["ok"] is True and outcome["error"] is None and outcome["seconds"] >= 0
    home = platform.dataplane
    assert not [p for p in (home / "instances").iterdir() if p.name.startswith("verify-")]  # the scratch is gone
    assert not [p for p in (home / "backups").iterdir() if p.name.startswith("verify-")]  # and archived nothing

    # a backup that no longer unpacks: the verification says so, and still leaves nothing behind
    packed = home / "backups" / iid / backup["id"] / "data" / "base.tar.gz"
    packed.write_bytes(packed.read_bytes()[:4096])
    assert (await platform.call("POST", url)).status_code == 202
    failed = await async_wait_until(lambda: verified(outcome["at"]), timeout=180, what="the second outcome")
    assert failed["ok"] is False and "cannot be unpacked" in failed["error"], failed
    assert not [p for p in (home / "instances").iterdir() if p.name.startswith("verify-")]
