"""Instances always recover and errors are honest: the control plane's reconciler and a conductor with the local
provider, in this process, against real Postgres servers (timings made short by configuration, not by sleeps).

- a corrected change converges however long the instance sat in Error, also across a restart of both sides;
- a permanent failure (a value Postgres rejects) is not retried until the spec changes;
- a transient failure is retried with backoff, and capped;
- a read replica killed with SIGKILL is restarted and reported.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from howdah.conductor import Conductor
from howdah.control.reconciler import Reconciler
from howdah.control.sealing import AesGcmSealer, open_connection
from howdah.control.service import ControlPlane
from howdah.control.spec import InstanceSpec
from howdah.durable import RetryPolicy
from howdah.pg.processes import postmaster_pid
from howdah.providers import TransientProviderError
from howdah.providers.local import LocalProvider
from tests.waiting import async_wait_until

pytestmark = pytest.mark.slow

ORG, PLANE = "acme", "rec"
PROVIDER_RETRY = RetryPolicy(max_attempts=2, initial_delay=0.01, max_delay=0.05, retry_on=(TransientProviderError,))
SEALER = AesGcmSealer(os.urandom(32))
ERROR_RETRY = RetryPolicy(max_attempts=3, initial_delay=0.2, max_delay=0.8, jitter=False)


class FlakyProvider(LocalProvider):
    """The local provider, with a transient failure injected into ``apply_settings`` while ``flaky`` is set."""

    flaky = False

    def apply_settings(self, instance_id: str, settings: dict[str, str], *, spec: InstanceSpec | None = None) -> bool:
        if self.flaky:
            raise TransientProviderError(f"instance {instance_id} is still starting (injected)")
        return super().apply_settings(instance_id, settings, spec=spec)


class Rig:
    """The reconciler and a conductor, each startable and stoppable (a restart of the platform)."""

    def __init__(self, db_url: str, pool: AsyncConnectionPool, provider: FlakyProvider) -> None:
        self.db_url, self.pool, self.provider = db_url, pool, provider
        self.control = ControlPlane(pool)
        self.reconciler = Reconciler(pool, db_url, ack_timeout=5.0, sweep_interval=0.1, error_retry=ERROR_RETRY)
        self._stop: asyncio.Event | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self._stop = asyncio.Event()
        conductor = Conductor(
            self.db_url, PLANE, self.provider, status_interval=0.3, provider_retry=PROVIDER_RETRY, sealer=SEALER
        )
        self.reconciler = Reconciler(
            self.pool, self.db_url, ack_timeout=5.0, sweep_interval=0.1, error_retry=ERROR_RETRY
        )
        self._tasks = [
            asyncio.create_task(conductor.run(self._stop)),
            asyncio.create_task(self.reconciler.run(self._stop)),
        ]
        await async_wait_until(self._plane_registered, what="the data plane to be registered")

    async def stop(self) -> None:
        assert self._stop is not None
        self._stop.set()
        await asyncio.wait_for(asyncio.gather(*self._tasks), 60)

    async def _plane_registered(self) -> bool:
        async with self.pool.connection() as conn:
            cur = await conn.execute("SELECT count(*) FROM control.data_planes WHERE name = %s", (PLANE,))
            return (await cur.fetchone()) == (1,)

    async def row(self, instance_id: str) -> dict[str, Any]:
        async with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute("SELECT * FROM control.instances WHERE id::text = %s", (instance_id,))
            row = await cur.fetchone()
        assert row is not None
        return row

    async def settled(self, instance_id: str, state: str, timeout: float = 60) -> dict[str, Any]:
        async def check() -> dict[str, Any] | None:
            row = await self.row(instance_id)
            return row if row["state"] == state and not row["has_active_work"] else None

        return await async_wait_until(check, timeout=timeout, what=f"instance {instance_id} to be {state}")  # type: ignore[no-any-return]

    async def workflow_runs(self, instance_id: str) -> int:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT count(*) FROM howdah.workflows WHERE name = 'instance_event' AND args->>'instance_id' = %s",
                (instance_id,),
            )
            row = await cur.fetchone()
        assert row is not None
        return int(row[0])

    async def create_up(self, **spec: Any) -> str:
        row = await self.control.create_instance(ORG, InstanceSpec(name=f"db-{uuid.uuid4().hex[:8]}", **spec), PLANE)
        instance_id = str(row["id"])
        await self.settled(instance_id, "Up", timeout=120)
        return instance_id

    async def patch(self, instance_id: str, configs: dict[str, str]) -> None:
        await self.control.change(ORG, instance_id, "Update", {"postgres_configs": configs})

    async def show(self, instance_id: str, setting: str) -> str:
        c = open_connection((await self.row(instance_id))["connection"], SEALER, instance_id)
        async with await psycopg.AsyncConnection.connect(
            host=c["host"], port=c["port"], user=c["user"], password=c["password"], dbname=c["dbname"],
            autocommit=True, connect_timeout=10,
        ) as conn:  # fmt: skip
            cur = await conn.execute(f"SHOW {setting}")
            row = await cur.fetchone()
        assert row is not None
        return str(row[0])


@pytest.fixture
async def rig(db_url: str) -> AsyncIterator[Rig]:
    home = Path(tempfile.mkdtemp(prefix="howdah-recovery-"))
    home.chmod(0o755)
    provider = FlakyProvider(home, durable=False)
    async with AsyncConnectionPool(db_url, min_size=1, max_size=6, kwargs={"autocommit": True}, open=False) as pool:
        rig = Rig(db_url, pool, provider)
        async with pool.connection() as conn:  # orgs come with their first token; none is needed here
            await conn.execute("INSERT INTO control.orgs (id, name) VALUES (%s, %s) ON CONFLICT DO NOTHING", (ORG, ORG))
        await rig.start()
        try:
            yield rig
        finally:
            await rig.stop()
            for instance_id in provider.list_instances():
                await asyncio.to_thread(provider.delete, instance_id)
            shutil.rmtree(home, ignore_errors=True)


async def test_transient_failure_is_retried_with_backoff_capped_and_a_corrected_patch_converges(rig: Rig) -> None:
    instance_id = await rig.create_up()
    runs_before = await rig.workflow_runs(instance_id)
    rig.provider.flaky = True
    await rig.patch(instance_id, {"work_mem": "8MB"})

    # every attempt fails: the reconciler re-drives it (a new run each time) until the cap, then gives up
    async def gave_up() -> dict[str, Any] | None:
        row = await rig.row(instance_id)
        done = row["state"] == "Error" and row["error_attempts"] >= ERROR_RETRY.max_attempts
        return row if done and row["next_retry_at"] is None and not row["has_active_work"] else None

    failed = await async_wait_until(gave_up, timeout=60, what="the retries to run out")
    assert failed["error_attempts"] == ERROR_RETRY.max_attempts
    assert "still starting (injected)" in failed["last_error"] and "gave up" in failed["last_error"]
    assert await rig.workflow_runs(instance_id) - runs_before == ERROR_RETRY.max_attempts
    for _ in range(3):  # later sweeps leave it alone: capped
        assert await rig.reconciler.sweep() == (0, 0)
    assert await rig.workflow_runs(instance_id) - runs_before == ERROR_RETRY.max_attempts

    # however long it sat in Error, a corrected change is accepted and converges
    rig.provider.flaky = False
    await rig.patch(instance_id, {"work_mem": "16MB"})
    await rig.settled(instance_id, "Up")
    assert await rig.show(instance_id, "work_mem") == "16MB"


async def test_transient_failure_that_clears_recovers_without_the_user(rig: Rig) -> None:
    instance_id = await rig.create_up()
    rig.provider.flaky = True
    await rig.patch(instance_id, {"work_mem": "12MB"})

    async def retried() -> bool:
        row = await rig.row(instance_id)
        return row["error_attempts"] >= 1 and row["state"] in ("Error", "Configuring")

    await async_wait_until(retried, timeout=60, what="the first transient failure")
    rig.provider.flaky = False
    await rig.settled(instance_id, "Up")  # re-driven by the reconciler, not by a new request
    assert await rig.show(instance_id, "work_mem") == "12MB"


async def test_permanent_failure_is_not_retried_until_the_spec_changes(rig: Rig) -> None:
    instance_id = await rig.create_up()
    await rig.patch(instance_id, {"timezone": "Mars/Olympus"})  # only a server can tell
    failed = await rig.settled(instance_id, "Error")
    assert 'invalid value for parameter "TimeZone"' in failed["last_error"]  # Postgres's own message
    assert failed["next_retry_at"] is None and failed["status"]["running"] is True
    runs = await rig.workflow_runs(instance_id)
    for _ in range(5):
        assert await rig.reconciler.sweep() == (0, 0)
    again = await rig.row(instance_id)
    assert again["state"] == "Error" and again["generation"] == failed["generation"]
    assert await rig.workflow_runs(instance_id) == runs

    await rig.patch(instance_id, {"work_mem": "24MB"})
    await rig.settled(instance_id, "Up")
    assert await rig.show(instance_id, "work_mem") == "24MB"


async def test_error_converges_across_a_restart_even_when_left_stuck_by_an_old_retry(rig: Rig) -> None:
    instance_id = await rig.create_up()
    await rig.patch(instance_id, {"timezone": "Mars/Olympus"})  # only a server can tell
    failed = await rig.settled(instance_id, "Error")
    await rig.stop()

    # What a retry that re-sent the finished event (same event id) left behind: Configuring, work in flight.
    stale = {**failed["pending_event"], "generation": failed["generation"] + 1}
    async with rig.pool.connection() as conn:
        await conn.execute(
            "UPDATE control.instances SET state = 'Configuring', has_active_work = true, generation = %s, "
            "pending_event = %s, work_sent_at = now() - interval '1 hour', next_retry_at = NULL WHERE id = %s",
            (stale["generation"], Jsonb(stale), failed["id"]),
        )
    await rig.start()
    answered = await rig.settled(instance_id, "Error")  # re-sent, run again, answered: no work stays in flight
    assert 'invalid value for parameter "TimeZone"' in answered["last_error"]

    await rig.stop()
    await rig.start()
    await rig.patch(instance_id, {"work_mem": "20MB"})
    await rig.settled(instance_id, "Up")
    assert await rig.show(instance_id, "work_mem") == "20MB"


async def test_a_replica_killed_with_sigkill_is_restarted_and_reported(rig: Rig) -> None:
    instance_id = await rig.create_up(replicas=2)
    replica_dir = rig.provider.home / "instances" / instance_id / "replica-1" / "pgdata"

    async def streaming() -> list[dict[str, Any]]:
        replicas = (await rig.row(instance_id))["status"].get("replicas", [])
        return [r for r in replicas if r["running"] and r["state"] == "streaming" and r["lag_bytes"] is not None]

    await async_wait_until(streaming, timeout=60, what="the replica to be reported streaming")
    killed = postmaster_pid(replica_dir)
    assert killed is not None
    os.kill(killed, signal.SIGKILL)

    async def restarted() -> bool:
        pid = postmaster_pid(replica_dir)
        return pid is not None and pid != killed

    await async_wait_until(restarted, timeout=60, what="the replica to be restarted")
    await async_wait_until(streaming, timeout=60, what="the restarted replica to be reported streaming")
    row = await rig.row(instance_id)
    assert row["state"] == "Up" and not row["has_active_work"]


@pytest.mark.skipif(
    Path("/proc/sys/vm/nr_hugepages").exists() and Path("/proc/sys/vm/nr_hugepages").read_text().strip() != "0",
    reason="this machine has huge pages: huge_pages=on would start",
)
async def test_a_server_that_fails_to_start_is_reported_not_running(rig: Rig) -> None:
    instance_id = await rig.create_up()
    await rig.patch(instance_id, {"huge_pages": "on"})  # a valid value; the restart fails without huge pages
    failed = await rig.settled(instance_id, "Error")
    assert "huge" in failed["last_error"].lower()
    assert failed["status"]["running"] is False and failed["next_retry_at"] is None

    await rig.patch(instance_id, {"huge_pages": "off"})
    up = await rig.settled(instance_id, "Up")
    assert up["status"]["running"] is True
    assert await rig.show(instance_id, "huge_pages") == "off"
