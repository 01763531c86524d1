"""A conductor registers its data plane with the capacity its provider reports, and the control plane then refuses
an instance bigger than the data plane (a memory request beyond this host's memory used to take it down)."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from howdah.conductor import Conductor
from howdah.control.errors import Invalid
from howdah.control.service import ControlPlane
from howdah.control.spec import MAX_MEMORY, InstanceSpec
from howdah.providers.local import LocalProvider
from tests.waiting import async_wait_until

PLANE = "reg"


async def _capacity(conn: psycopg.AsyncConnection[Any]) -> tuple[Any, ...] | None:
    cur = await conn.execute(
        "SELECT cpu, memory_bytes, storage_bytes FROM control.data_planes WHERE name = %s", (PLANE,)
    )
    return await cur.fetchone()


async def test_a_local_conductor_records_the_hosts_memory_cpu_and_disk(db_url: str) -> None:
    home = Path(tempfile.mkdtemp(prefix="howdah-conductor-"))
    disk = shutil.disk_usage(home)
    conductor = Conductor(db_url, PLANE, LocalProvider(home / "not-yet-made"), status_interval=3600)
    stop = asyncio.Event()
    task = asyncio.create_task(conductor.run(stop))
    try:
        async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
            cpu, memory, storage = await async_wait_until(lambda: _capacity(conn), what="the data plane's record")
        assert cpu == Decimal(os.cpu_count() or 0) and cpu > 0
        assert memory == os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        assert storage == disk.used + disk.free
        async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
            cur = await conn.execute("SELECT features FROM control.data_planes WHERE name = %s", (PLANE,))
            assert await cur.fetchone() == (
                ["backup", "delete_backup", "pitr", "replicas", "restore"],
            )  # no pooler, no allow list

        if memory >= MAX_MEMORY:
            pytest.skip("this host has more memory than an instance may ask for")
        async with AsyncConnectionPool(db_url, min_size=1, max_size=1, kwargs={"autocommit": True}) as pool:
            with pytest.raises(Invalid) as refused:
                await ControlPlane(pool).create_instance("acme", InstanceSpec(name="huge", memory="1024Gi"), PLANE)
        assert str(refused.value).startswith("memory: 1024Gi is more than")
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)
        shutil.rmtree(home, ignore_errors=True)
