"""Fixtures of the df tests: a DurableApp running df's workflows (start a worker with ``running(app)``), and a
connection with df's operators on its search_path, as pg_durable's users have them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest

from howdah.df import install
from howdah.durable import DurableApp


@pytest.fixture
async def app(db_url: str) -> AsyncIterator[DurableApp]:
    durable = DurableApp(db_url, lease=5, retention=None, pool_size=8)
    install(durable)
    async with durable:
        yield durable


@pytest.fixture
async def conn(db_url: str) -> AsyncIterator[psycopg.AsyncConnection[tuple[Any, ...]]]:
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as c:
        await c.execute("SET search_path = df, public")  # the operators live in df, as pg_durable's do
        yield c
