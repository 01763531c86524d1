"""df.start(…, database => 'other') (pg_durable's API reference, "df.start": "database — Target database on the
cluster"; its multi-database test): the instance lives where df.start was called, its SQL nodes run in the other
database, each exactly once."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from howdah.df._sql_step import RemoteSql, SqlNode, run_remote_sql
from howdah.durable import DurableApp

from ..durable._helpers import running
from .test_df import Conn, finish, one


@pytest.fixture
def other_db(pg_cluster: Any, template_db: str) -> Iterator[tuple[str, str]]:
    name = f"other_{uuid.uuid4().hex[:8]}"
    url = pg_cluster.create_database(name, template=template_db)
    yield name, url
    pg_cluster.drop_database(name)


async def test_sql_nodes_run_in_the_database_df_start_names(
    app: DurableApp, conn: Conn, other_db: tuple[str, str]
) -> None:
    name, url = other_db
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as there:
        await there.execute("CREATE TABLE public.t (x int)")
        graph = """'INSERT INTO public.t VALUES (41) RETURNING x' |=> 'r'
                   ~> ('SELECT $r.x + 1 AS y' & 'SELECT current_database() AS db')"""
        async with running(app):
            instance = await one(conn, f"SELECT df.start({graph}, database => %s)", (name,))
            status = await one(conn, "SELECT df.await_instance(%s, 20)", (instance,))
        assert status == "completed", await one(conn, "SELECT error FROM df.instances WHERE id = %s", (instance,))
        result = json.loads(await one(conn, "SELECT df.result(%s)", (instance,)))
        assert result == [{"rows": [{"y": 42}], "row_count": 1}, {"rows": [{"db": name}], "row_count": 1}]
        assert await one(there, "SELECT array_agg(x) FROM public.t") == [41]  # there, once
        assert await one(there, "SELECT count(*) FROM df.remote_steps") == 0  # forgotten once completed
        assert await one(there, "SELECT count(*) FROM df.instances") == 0  # the instance lives here
    assert await one(conn, "SELECT to_regclass('public.t') IS NULL")
    assert await one(conn, "SELECT database FROM df.instances WHERE id = %s", (instance,)) == name


async def test_a_replayed_step_in_another_database_does_not_run_again(
    db_url: str, conn: Conn, other_db: tuple[str, str]
) -> None:
    """The statement commits there with the record of its step: a replay (the worker killed after that commit,
    before its checkpoint here) gets the recorded result and runs nothing."""
    name, url = other_db
    instance = await one(conn, "SELECT df.start('SELECT 1', label => 'replay')")  # a node row to record into
    node_id = await one(conn, "SELECT id FROM df.nodes WHERE instance_id = %s", (instance,))
    role = await one(conn, "SELECT current_user")
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as there:
        await there.execute("CREATE TABLE public.t (x serial, at timestamptz DEFAULT clock_timestamp())")
        node = SqlNode(instance, node_id, role, None, "INSERT INTO public.t DEFAULT VALUES RETURNING x", {})
        call = RemoteSql(node, url, name, db_url, f"df:{instance}", "n1")
        first = await run_remote_sql(call)
        again = await run_remote_sql(call)
        assert first == again == {"rows": [{"x": 1}], "row_count": 1}
        assert await one(there, "SELECT count(*) FROM public.t") == 1


async def test_another_database_without_df_or_without_connect_is_refused(
    app: DurableApp, conn: Conn, empty_db: str, other_db: tuple[str, str]
) -> None:
    bare = psycopg.conninfo.conninfo_to_dict(empty_db)["dbname"]
    async with running(app):
        instance, status, _ = await finish(conn, f"'SELECT 1', database => '{bare}'")
    assert status == "failed"
    assert "df is not installed in database" in await one(
        conn, "SELECT error FROM df.instances WHERE id = %s", (instance,)
    )
    name, _ = other_db
    role = f"gina_{uuid.uuid4().hex[:6]}"
    await conn.execute(f"CREATE ROLE {role}")
    await conn.execute("SELECT df.grant_usage(%s)", (role,))
    await conn.execute(f'REVOKE CONNECT ON DATABASE "{name}" FROM PUBLIC')
    await conn.execute(f"SET ROLE {role}")
    try:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match=f"permission denied for database {name}"):
            await conn.execute("SELECT df.start('SELECT 1', database => %s)", (name,))
    finally:
        await conn.execute("RESET ROLE")
    with pytest.raises(psycopg.errors.InvalidCatalogName):
        await conn.execute("SELECT df.start('SELECT 1', database => 'no_such_database_here')")


async def test_the_other_databases_owner_cannot_steer_the_workers_own_statements(
    db_url: str, conn: Conn, other_db: tuple[str, str]
) -> None:
    """Hostile tenant: the other database's owner sets a search_path that puts an '=' of its own (always true)
    before pg_catalog's. The worker's lookup of a step's record must not match another step's record (which would
    skip the statement and hand back a forged result)."""
    name, url = other_db
    instance = await one(conn, "SELECT df.start('SELECT 1')")
    node_id = await one(conn, "SELECT id FROM df.nodes WHERE instance_id = %s", (instance,))
    role = await one(conn, "SELECT current_user")
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as there:
        await there.execute(
            "CREATE TABLE public.t (x int); CREATE SCHEMA evil; "
            "CREATE FUNCTION evil.yes(text, text) RETURNS boolean LANGUAGE sql AS 'SELECT true'; "
            "CREATE OPERATOR evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.yes); "
            f'ALTER DATABASE "{name}" SET search_path = evil, pg_catalog, public; '
            """INSERT INTO df.remote_steps VALUES ('df:other', 'n9', '{"rows": [{"x": 999}], "row_count": 1}')"""
        )
    node = SqlNode(instance, node_id, role, None, "INSERT INTO public.t VALUES (7) RETURNING x", {})
    result = await run_remote_sql(RemoteSql(node, url, name, db_url, f"df:{instance}", "n1"))
    assert result == {"rows": [{"x": 7}], "row_count": 1}
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as there:
        assert await one(there, "SELECT array_agg(x) FROM public.t") == [7]
