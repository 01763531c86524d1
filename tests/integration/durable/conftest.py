"""Fixtures of the durable-workflow tests: the side-effect tables, a fresh app per test, worker processes."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest

from howdah.durable import DurableApp

from ._helpers import TABLES, Procs, Registry, Side


@pytest.fixture(scope="module", autouse=True)
def side_tables(db_url: str) -> str:
    """``effects`` and ``gates`` in the module's database; in-process steps reach them through ``Side``."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(TABLES)
    Side.dsn = db_url
    return db_url


@pytest.fixture
def queue_name() -> str:
    return f"wf_{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def app(db_url: str, queue_name: str, request: pytest.FixtureRequest) -> AsyncIterator[DurableApp]:
    """An open app on its own dispatch queue, with the test module's ``WORKFLOWS`` declared."""
    durable = DurableApp(db_url, queue=queue_name, lease=5, retention=None, pool_size=8)
    registry: Registry | None = getattr(request.module, "WORKFLOWS", None)
    if registry is not None:
        registry.install(durable)
    async with durable:
        yield durable


@pytest.fixture
def procs(db_url: str, queue_name: str, tmp_path: Path) -> Iterator[Procs]:
    workers = Procs(db_url, queue_name, tmp_path)
    try:
        yield workers
    finally:
        workers.kill_leftovers()
