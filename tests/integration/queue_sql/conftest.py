"""Fixtures of the SQL-level queue tests: an "oracle" database running PGMQ's own SQL, and small helpers.

The oracle is PGMQ 1.13's ``pgmq.sql`` as shipped in the official ``pgmq`` Python wheel, installed as plain SQL
(outside ``CREATE EXTENSION``) into an empty database. It is only used to compare answers; Howdah never loads it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from typing import Any

import psycopg
import pytest

from tests.conftest import PgCluster


def pgmq_sql() -> str:
    """PGMQ's install script from the wheel. It already guards extension-only statements (the schema creation
    and pg_extension_config_dump) with checks on pg_extension, so it runs as it is."""
    text = resources.files("pgmq.sql").joinpath("pgmq.sql").read_text(encoding="utf-8")
    assert "@extschema@" not in text, "PGMQ's SQL now needs patching to run outside CREATE EXTENSION"
    return text


@pytest.fixture(scope="module")
def oracle_url(pg_cluster: PgCluster) -> Iterator[str]:
    name = f"oracle_{uuid.uuid4().hex[:12]}"
    url = pg_cluster.create_database(name, template="template0")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(pgmq_sql().encode())
    yield url
    pg_cluster.drop_database(name)


@pytest.fixture
def oracle(oracle_url: str) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
    with psycopg.connect(oracle_url, autocommit=True) as connection:
        yield connection


@dataclass(frozen=True)
class Outcome:
    """What a statement did: its result (column names and types, rows) or its error (SQLSTATE)."""

    columns: tuple[tuple[str, int], ...] = ()
    rows: tuple[tuple[Any, ...], ...] = ()
    sqlstate: str | None = None
    message: str | None = None

    @property
    def failed(self) -> bool:
        return self.sqlstate is not None


def run(conn: psycopg.Connection[Any], query: str, params: Any = None) -> Outcome:
    """Runs one statement in autocommit mode and records what happened instead of raising."""
    try:
        cur = conn.execute(query, params)
    except psycopg.Error as exc:
        return Outcome(sqlstate=exc.sqlstate or "?", message=exc.diag.message_primary)
    if cur.description is None:
        return Outcome()
    columns = tuple((c.name, c.type_code) for c in cur.description)
    return Outcome(columns=columns, rows=tuple(tuple(r) for r in cur.fetchall()))


def sqlstate_of(conn: psycopg.Connection[Any], query: str, params: Any = None) -> str | None:
    return run(conn, query, params).sqlstate
