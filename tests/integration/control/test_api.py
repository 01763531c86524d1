"""The control-plane API against a real Postgres: auth, the state machine, one-transaction changes, races."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from howdah.control.events import STATE_QUEUE, data_plane_queue
from howdah.control.reconciler import Reconciler
from howdah.providers.base import Capability
from howdah.queue import AsyncQueue
from tests.waiting import async_wait_until

from .conftest import Api

BASE = "/api/v1/orgs/acme/instances"
DP_QUEUE = data_plane_queue("local")


def unique(prefix: str = "db") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def crud_events(api: Api, instance_id: str) -> list[dict[str, Any]]:
    async with api.pool.connection() as conn:
        messages = await AsyncQueue(conn).peek(DP_QUEUE, 0, 10_000)
    return [m.message for m in messages if m.message["instance_id"] == instance_id]


async def report(api: Api, instance_id: str, event: str, generation: int | None, **fields: Any) -> None:
    """Play the instance's data plane: put a state event on the queue and let the reconciler apply it."""
    async with api.pool.connection() as conn:
        cur = await conn.execute("SELECT data_plane FROM control.instances WHERE id::text = %s", (instance_id,))
        plane = await cur.fetchone()
    body = {"instance_id": instance_id, "event": event, "generation": generation,
            "data_plane": plane[0] if plane else "local", **fields}  # fmt: skip
    await deliver(api, body)


async def deliver(api: Api, body: dict[str, Any]) -> None:
    """Put a state event on the queue and let the reconciler apply it, as its consumer would."""
    async with api.pool.connection() as conn:
        queue = AsyncQueue(conn)
        msg_id = await queue.send(STATE_QUEUE, body)
        message = next(m for m in await queue.peek(STATE_QUEUE, msg_id - 1, 1) if m.msg_id == msg_id)
    await api.reconciler.apply(message)
    async with api.pool.connection() as conn:
        await AsyncQueue(conn).archive(STATE_QUEUE, msg_id)


async def create_up(api: Api, **spec: Any) -> dict[str, Any]:
    created = await api.call("POST", BASE, json={"name": unique(), **spec})
    assert created.status_code == 202, created.text
    body = created.json()
    await report(
        api, body["id"], "Created", body["generation"], actual_spec=body["desired_spec"],
        connection={"host": "127.0.0.1", "port": 5555, "user": "app", "password": "s3cret", "dbname": "app"},
    )  # fmt: skip
    return body


async def test_create_sends_one_event_in_the_same_transaction(api: Api) -> None:
    name = unique()
    response = await api.call("POST", BASE, json={"name": name, "stack": "oltp", "memory": "2Gi"})
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["state"] == "Submitted" and body["has_active_work"] is True and body["data_plane"] == "local"
    events = await crud_events(api, body["id"])
    assert len(events) == 1
    event = events[0]
    assert event["kind"] == "Create" and event["generation"] == body["generation"] == 1
    assert event["settings"]["shared_buffers"] == "512MB"
    assert "pg_stat_statements" in event["extensions"]
    again = await api.call("POST", BASE, json={"name": name})
    assert again.status_code == 409 and "already exists" in again.json()["error"]["message"]


async def test_lifecycle_through_the_state_machine(api: Api) -> None:
    body = await create_up(api)
    url = f"{BASE}/{body['id']}"
    up = (await api.call("GET", url)).json()
    assert up["state"] == "Up" and up["has_active_work"] is False
    assert up["connection"]["password"] == "s3cret"
    viewer = (await api.call("GET", url, who="acme-viewer")).json()
    assert "password" not in viewer["connection"] and viewer["connection"]["port"] == 5555

    # a user-context setting: reload only
    patched = await api.call("PATCH", url, json={"postgres_configs": {"work_mem": "64MB"}})
    assert patched.status_code == 202 and patched.json()["state"] == "Configuring", patched.text
    busy = await api.call("PATCH", url, json={"postgres_configs": {"work_mem": "32MB"}})
    assert busy.status_code == 409 and busy.headers["Retry-After"] == "5"
    assert "still working" in busy.json()["error"]["message"]
    await report(api, body["id"], "Updated", patched.json()["generation"], actual_spec=patched.json()["desired_spec"])
    assert (await api.call("GET", url)).json()["state"] == "Up"

    # a postmaster-context setting: restart
    restarting = await api.call("PATCH", url, json={"postgres_configs": {"work_mem": "64MB", "max_connections": "300"}})
    assert restarting.json()["state"] == "Restarting", restarting.text
    await report(api, body["id"], "Restarted", restarting.json()["generation"])
    stop = await api.call("POST", f"{url}/stop")
    assert stop.status_code == 202 and stop.json()["state"] == "Stopping"
    await report(api, body["id"], "Stopped", stop.json()["generation"])
    twice = await api.call("POST", f"{url}/stop")
    assert twice.status_code == 409 and "Stopped" in twice.json()["error"]["message"]
    start = await api.call("POST", f"{url}/start")
    assert start.json()["state"] == "Starting"
    await report(api, body["id"], "Started", start.json()["generation"])
    kinds = [e["kind"] for e in await crud_events(api, body["id"])]
    assert kinds == ["Create", "Update", "Update", "Stop", "Start"]

    deleting = await api.call("DELETE", url)
    assert deleting.status_code == 202 and deleting.json()["state"] == "Deleting"
    await report(api, body["id"], "Deleted", deleting.json()["generation"])
    gone = (await api.call("GET", url)).json()
    assert gone["state"] == "Deleted" and gone["connection"] is None
    # the name is free again once deleted
    assert (await api.call("POST", BASE, json={"name": body["name"]})).status_code == 202


async def test_delete_supersedes_work_in_flight_and_stale_acks_are_ignored(api: Api) -> None:
    body = await create_up(api)
    url = f"{BASE}/{body['id']}"
    patched = (await api.call("PATCH", url, json={"replicas": 2})).json()
    deleting = await api.call("DELETE", url)
    assert deleting.status_code == 202 and deleting.json()["state"] == "Deleting"
    await report(api, body["id"], "Updated", patched["generation"])  # late ack of superseded work
    assert (await api.call("GET", url)).json()["state"] == "Deleting"


async def test_fifty_concurrent_patches_one_wins(api: Api) -> None:
    body = await create_up(api)
    url = f"{BASE}/{body['id']}"
    responses = await asyncio.gather(
        *(api.call("PATCH", url, json={"postgres_configs": {"work_mem": f"{i + 4}MB"}}) for i in range(50))
    )
    codes = sorted(r.status_code for r in responses)
    assert codes.count(202) == 1 and codes.count(409) == 49, codes
    assert [e["kind"] for e in await crud_events(api, body["id"])] == ["Create", "Update"]


async def test_tenancy_and_roles(api: Api) -> None:
    body = await create_up(api)
    url = f"{BASE}/{body['id']}"
    other = await api.call("GET", url, who="other-admin")
    assert other.status_code == 404  # never 403: that would leak that it exists
    assert (await api.call("GET", BASE, who="other-admin")).status_code == 404
    assert (await api.call("PATCH", url, who="other-admin", json={"replicas": 2})).status_code == 404
    viewer = await api.call("PATCH", url, who="acme-viewer", json={"replicas": 2})
    assert viewer.status_code == 403 and "member" in viewer.json()["error"]["message"]
    assert (
        await api.call("POST", "/api/v1/orgs/acme/tokens", who="acme-member", json={"role": "viewer"})
    ).status_code == 403
    issued = await api.call("POST", "/api/v1/orgs/acme/tokens", who="acme-admin", json={"role": "viewer"})
    assert issued.status_code == 201
    token = issued.json()["token"]
    listed = await api.client.get(BASE, headers={"Authorization": f"Bearer {token}"})
    assert listed.status_code == 200 and listed.json()["total"] >= 1
    async with api.pool.connection() as conn:
        stored = await conn.execute(
            "SELECT count(*) FROM control.tokens WHERE token_sha256 = %s OR prefix = %s", (token, token)
        )
        assert (await stored.fetchone()) == (0,)  # only the hash is kept
    assert (await api.client.get(BASE)).status_code == 401
    assert (await api.client.get(BASE, headers={"Authorization": "Bearer hwd_nope"})).status_code == 401


async def test_bad_input_is_a_4xx_with_a_message(api: Api) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"name": "Bad_Name"}, "DNS label"),
        ({"name": unique(), "surprise": 1}, "surprise"),
        ({"name": unique(), "replicas": "many"}, "replicas"),
        ({"name": unique(), "ip_allow_list": ["10.0.0.300/8"]}, "ip_allow_list"),
        ({"name": unique(), "postgres_configs": {"port": "6543"}}, "port"),
        ({"name": unique(), "postgres_configs": {"temp_tablespaces": "fast"}}, "temp_tablespaces"),
        ({"name": unique(), "postgres_configs": {"min_wal_size": "64GB"}}, "min_wal_size"),
        ({"name": unique(), "postgres_configs": {"wrok_mem": "4MB"}}, "wrok_mem"),
        ({"name": unique(), "extensions": [{"name": "not_an_extension"}]}, "not_an_extension"),
        ({"name": unique(), "memory": "12 parsecs"}, "memory"),
        ({"name": unique(), "pg_version": 9}, "pg_version"),
        ({"name": unique(), "data_plane": "mars"}, "mars"),
    ]
    for payload, needle in cases:
        response = await api.call("POST", BASE, json=payload)
        assert response.status_code == 422, (payload, response.text)
        assert needle in response.json()["error"]["message"], (payload, response.text)
    huge = await api.call(
        "POST", BASE, json={"name": unique(), "postgres_configs": {f"x{i}": "y" * 100 for i in range(900)}}
    )
    assert huge.status_code == 413
    body = await create_up(api)
    empty = await api.call("PATCH", f"{BASE}/{body['id']}", json={})
    assert empty.status_code == 422 and "nothing to change" in empty.json()["error"]["message"]
    rename = await api.call("PATCH", f"{BASE}/{body['id']}", json={"name": "x"})
    assert rename.status_code == 422
    shrink = await api.call("PATCH", f"{BASE}/{body['id']}", json={"storage": "1Gi"})
    assert shrink.status_code == 422 and "storage can only grow" in shrink.json()["error"]["message"]
    missing = await api.call("GET", f"{BASE}/{uuid.uuid4()}")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert (await api.call("GET", f"{BASE}?limit=0")).status_code == 422


async def test_reconciler_resends_unacknowledged_work_and_retries_errors(api: Api) -> None:
    body = await create_up(api)
    url = f"{BASE}/{body['id']}"
    patched = (await api.call("PATCH", url, json={"postgres_configs": {"work_mem": "8MB"}})).json()
    async with api.pool.connection() as conn:
        await conn.execute(
            "UPDATE control.instances SET work_sent_at = now() - interval '1 hour' WHERE id = %s", (body["id"],)
        )
    resent, _ = await api.reconciler.sweep()
    assert resent >= 1
    events = await crud_events(api, body["id"])
    assert [e["kind"] for e in events] == ["Create", "Update", "Update"]
    assert events[1]["event_id"] == events[2]["event_id"]  # the same event again: the conductor is idempotent

    await report(api, body["id"], "Error", patched["generation"], error='invalid value for parameter "work_mem"')
    failed = (await api.call("GET", url)).json()
    assert failed["state"] == "Error" and "work_mem" in failed["last_error"] and not failed["has_active_work"]
    async with api.pool.connection() as conn:
        await conn.execute(
            "UPDATE control.instances SET next_retry_at = now() - interval '1 second' WHERE id = %s", (body["id"],)
        )
    _, retried = await api.reconciler.sweep()
    assert retried >= 1
    again = (await api.call("GET", url)).json()
    assert (
        again["state"] == "Configuring"
        and again["has_active_work"]
        and again["generation"] == patched["generation"] + 1
    )
    # a corrected PATCH is accepted once the data plane answers
    await report(api, body["id"], "Updated", again["generation"])
    fixed = await api.call("PATCH", url, json={"postgres_configs": {"work_mem": "16MB"}})
    assert fixed.status_code == 202


async def _archived(api: Api, ids: list[int]) -> list[int]:
    async with api.pool.connection() as conn:
        cur = await conn.execute(f"SELECT msg_id FROM pgmq.a_{STATE_QUEUE} WHERE msg_id = ANY(%s)", (ids,))
        return sorted(row[0] for row in await cur.fetchall())


async def test_events_for_unknown_instances_are_archived(api: Api, db_url: str) -> None:
    gone = (await api.call("DELETE", f"{BASE}/{(await create_up(api))['id']}")).json()
    await report(api, gone["id"], "Deleted", gone["generation"])
    async with api.pool.connection() as conn:
        cur = await conn.execute("SELECT * FROM control.instances ORDER BY id")
        before = await cur.fetchall()
        ids = await AsyncQueue(conn).send_batch(
            STATE_QUEUE,
            [
                {"instance_id": str(uuid.uuid4()), "event": "Created"},  # unknown
                {"nonsense": 1},  # malformed
                {"instance_id": gone["id"], "event": "Created", "generation": gone["generation"]},  # deleted
            ],
        )
    # The reconciler as it runs (its sweeps would only re-send work older than an hour, of which there is none).
    reconciler = Reconciler(api.pool, db_url, ack_timeout=3600, sweep_interval=3600)
    stop = asyncio.Event()
    running = asyncio.create_task(reconciler.run(stop))
    try:

        async def all_archived() -> bool:
            return await _archived(api, ids) == sorted(ids)

        await async_wait_until(all_archived, what="the three events in the state queue's archive")
    finally:
        stop.set()
        await asyncio.wait_for(running, 30)
    async with api.pool.connection() as conn:
        waiting = await AsyncQueue(conn).peek(STATE_QUEUE, min(ids) - 1, 100)
        cur = await conn.execute("SELECT * FROM control.instances ORDER BY id")
        after = await cur.fetchall()
    assert not {m.msg_id for m in waiting} & set(ids)  # none is left to be read again
    assert after == before  # and none changed anything


async def test_health_and_metrics(api: Api) -> None:
    assert (await api.client.get("/healthz")).json() == {"status": "ok"}
    # the fixture's data plane was registered without a conductor's heartbeat, and no reconciler ticks here
    async with api.pool.connection() as conn:
        await conn.execute("DELETE FROM control.heartbeats")  # what reconcilers of earlier tests recorded
    waiting = await api.client.get("/readyz")
    assert waiting.status_code == 503 and waiting.headers["Retry-After"]
    assert waiting.json()["checks"]["reconciler"] == {"ok": False, "detail": "no reconciler has ticked yet"}
    assert "data plane 'local' has no conductor registered yet" in waiting.json()["checks"]["data_plane"]["detail"]
    await api.reconciler.heartbeat()
    await api.control.data_plane_heartbeat("local", 60)
    ready = await api.client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["status"] == "ready"
    await create_up(api)
    assert (await api.client.get("/metrics")).status_code == 401  # every org's queues: not for anyone
    metrics = await api.call("GET", "/metrics", who="platform")
    assert metrics.status_code == 200
    assert 'howdah_instances{state="Up"}' in metrics.text
    assert "howdah_http_requests_total" in metrics.text
    stacks = await api.call("GET", "/api/v1/stacks")
    assert {s["name"] for s in stacks.json()} >= {"standard", "oltp", "olap", "vectordb", "messagequeue"}
    assert (await api.call("GET", "/api/v1/stacks/nope")).status_code == 404
    planes = await api.call("GET", "/api/v1/data-planes", who="platform")
    assert [p["name"] for p in planes.json()] == ["local"]
    assert (await api.call("GET", "/api/v1/data-planes", who="acme-admin")).status_code == 403


async def test_work_no_data_plane_answers_ends_in_error_after_the_resend_cap(api: Api) -> None:
    body = await create_up(api)
    url = f"{BASE}/{body['id']}"
    assert (await api.call("PATCH", url, json={"postgres_configs": {"work_mem": "8MB"}})).status_code == 202

    async def sweep_after_the_ack_timeout() -> dict[str, Any]:
        async with api.pool.connection() as conn:
            await conn.execute(
                "UPDATE control.instances SET work_sent_at = now() - interval '1 hour' WHERE id = %s", (body["id"],)
            )
        await api.reconciler.sweep()
        return dict((await api.call("GET", url)).json())

    for _ in range(api.reconciler.max_unanswered_sends):  # the conductor is down: nothing ever answers
        waiting = await sweep_after_the_ack_timeout()
        assert waiting["state"] == "Configuring" and waiting["has_active_work"]
    sent = len(await crud_events(api, body["id"]))
    failed = await sweep_after_the_ack_timeout()
    assert failed["state"] == "Error" and not failed["has_active_work"]
    assert "did not answer" in failed["last_error"] and failed["data_plane"] in failed["last_error"]
    await sweep_after_the_ack_timeout()
    assert len(await crud_events(api, body["id"])) == sent  # given up: nothing more is sent
    # the user sends it again once the data plane is back, and the count starts over
    again = await api.call("PATCH", url, json={"postgres_configs": {"work_mem": "16MB"}})
    assert again.status_code == 202
    assert (await sweep_after_the_ack_timeout())["state"] == "Configuring"


async def test_scheduled_backups_are_not_asked_of_a_data_plane_that_schedules_them(api: Api) -> None:
    body = await create_up(api, backup={"schedule": "*/5 * * * *"})
    async with api.pool.connection() as conn:  # as if made an hour ago: a tick has come since
        await conn.execute(
            "UPDATE control.instances SET created_at = created_at - interval '1 hour' WHERE id::text = %s",
            (body["id"],),
        )
    schedules_itself = [Capability.BACKUP.value, Capability.SCHEDULED_BACKUPS.value]
    await api.control.register_data_plane("local", "this machine", features=schedules_itself)
    await api.reconciler.scheduled_backups()  # (other tests' instances may be due: only this one is looked at)
    assert (await api.call("GET", "/api/v1/orgs/acme/backups", params={"instance_id": body["id"]})).json() == []
    await api.control.register_data_plane("local", "this machine", features=[Capability.BACKUP.value])
    await api.reconciler.scheduled_backups()
    asked = (await api.call("GET", "/api/v1/orgs/acme/backups", params={"instance_id": body["id"]})).json()
    assert [b["status"] for b in asked] == ["pending"]
