"""A conductor reports its data plane's extension catalog when it registers: the local provider's is read from the
control files of the Postgres binaries it runs, with the libraries each extension needs preloaded."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path
from typing import Any

import psycopg

from howdah.conductor import Conductor
from howdah.control.extensions import ExtensionCatalog
from howdah.providers.local import LocalProvider
from tests.waiting import async_wait_until

PLANE = "catalogued"


async def _catalog(conn: psycopg.AsyncConnection[Any]) -> Any:
    cur = await conn.execute("SELECT extension_catalog FROM control.data_planes WHERE name = %s", (PLANE,))
    row = await cur.fetchone()
    return row[0] if row else None


async def test_a_local_conductor_registers_the_extensions_of_its_binaries(db_url: str) -> None:
    home = Path(tempfile.mkdtemp(prefix="howdah-conductor-"))
    conductor = Conductor(db_url, PLANE, LocalProvider(home / "not-yet-made"), status_interval=3600)
    stop = asyncio.Event()
    task = asyncio.create_task(conductor.run(stop))
    try:
        async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
            stored = await async_wait_until(lambda: _catalog(conn), what="the data plane's extension catalog")
        catalog = ExtensionCatalog.from_json(stored)
        statements, trgm, plpgsql = catalog.get("pg_stat_statements"), catalog.get("pg_trgm"), catalog.get("plpgsql")
        assert statements is not None and statements.preload == ("pg_stat_statements",) and statements.version
        assert trgm is not None and trgm.preload == () and not trgm.fixed_schema
        assert plpgsql is not None and plpgsql.schema == "pg_catalog"
        assert "pg_cron" not in catalog  # the embedded binaries do not ship it
        assert catalog.setting_contexts["pg_stat_statements.max"] == "postmaster"
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)
        shutil.rmtree(home, ignore_errors=True)
