"""Shared fixtures: one Postgres per test session, one database per test module cloned from a template.

With ``HOWDAH_DATABASE_URL`` set, that server is used (its user must be allowed to CREATE DATABASE);
otherwise an embedded Postgres 18 is started in a temporary folder and removed afterwards.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from howdah.pg import EmbeddedPostgres, external_database_url
from howdah.schema import install_all

TEMPLATE = "howdah_test_template"


class PgCluster:
    """A Postgres server the tests may create databases in."""

    def __init__(self, admin_url: str, server: EmbeddedPostgres | None) -> None:
        self.admin_url = admin_url
        self.server = server

    def url(self, dbname: str) -> str:
        return make_conninfo(self.admin_url, dbname=dbname)

    def admin(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(self.admin_url, autocommit=True)

    def create_database(self, name: str, template: str | None = TEMPLATE) -> str:
        with self.admin() as conn:
            query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
            if template:
                query += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
            conn.execute(query)
        return self.url(name)

    def drop_database(self, name: str) -> None:
        with self.admin() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="session", autouse=True)
def bytecode_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Where the environment forbids bytecode next to the sources (``PYTHONDONTWRITEBYTECODE``), every Python
    process a test starts (the CLI, workers, ``howdah api``…) would compile Howdah again, about 0.1 s of each
    start: they keep their bytecode in a private folder of the test run instead (``PYTHONPYCACHEPREFIX``), and
    nothing is written into the checkout."""
    if not os.environ.get("PYTHONDONTWRITEBYTECODE"):
        yield
        return
    with pytest.MonkeyPatch.context() as env:  # both restored at the end of the run
        env.delenv("PYTHONDONTWRITEBYTECODE")
        env.setenv("PYTHONPYCACHEPREFIX", str(tmp_path_factory.mktemp("bytecode")))
        yield


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    url = external_database_url()
    if url:
        yield PgCluster(url, None)
        return
    home = Path(tempfile.mkdtemp(prefix="howdah-test-"))
    os.chmod(home, 0o755)
    server = EmbeddedPostgres(home, settings={"fsync": "off", "full_page_writes": "off"})
    server.start()
    try:
        yield PgCluster(server.url(), server)
    finally:
        server.stop(mode="immediate")
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def template_db(pg_cluster: PgCluster) -> str:
    pg_cluster.drop_database(TEMPLATE)
    url = pg_cluster.create_database(TEMPLATE, template="template0")
    with psycopg.connect(url, autocommit=True) as conn:
        install_all(conn)
    return TEMPLATE


@pytest.fixture(scope="module")
def db_url(pg_cluster: PgCluster, template_db: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, fully migrated database for this test module."""
    name = f"t_{request.module.__name__.rsplit('.', 1)[-1][:40]}_{uuid.uuid4().hex[:8]}"
    url = pg_cluster.create_database(name, template=template_db)
    yield url
    pg_cluster.drop_database(name)


@pytest.fixture
def empty_db(pg_cluster: PgCluster) -> Iterator[str]:
    """A database of its own with nothing installed (from ``template0``), dropped after the test."""
    name = f"empty_{uuid.uuid4().hex[:10]}"
    url = pg_cluster.create_database(name, template="template0")
    yield url
    pg_cluster.drop_database(name)


@pytest.fixture
def conn(db_url: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    with psycopg.connect(db_url, autocommit=True) as connection:
        yield connection


@pytest.fixture
def queue_name() -> str:
    """A unique queue name per test, so tests sharing a module database do not see each other's messages."""
    return f"q_{uuid.uuid4().hex[:12]}"
