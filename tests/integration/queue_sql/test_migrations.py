"""The queue's migrations: a database migrated step by step (with queues created on the way) ends up with exactly
the schema of one migrated at once; upgrading twice applies nothing; PGMQ's own SQL is never overwritten."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from howdah.pg import SchemaConflict
from howdah.pg.migrations import upgrade
from howdah.queue import COMPONENT
from tests.conftest import PgCluster
from tests.integration.queue_sql.conftest import pgmq_sql

Conn = psycopg.Connection[Any]
VERSIONS = [m.version for m in COMPONENT.migrations()]

# Everything in schemas pgmq and howdah_meta that makes up the schema, as comparable text.
SNAPSHOT = """
WITH ns AS (SELECT oid, nspname FROM pg_namespace WHERE nspname IN ('pgmq', 'howdah_meta'))
SELECT 'function', ns.nspname || '.' || p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')',
       pg_get_functiondef(p.oid) || coalesce(obj_description(p.oid, 'pg_proc'), '')
  FROM pg_proc AS p JOIN ns ON ns.oid = p.pronamespace
UNION ALL
SELECT 'relation', ns.nspname || '.' || c.relname,
       c.relkind::text || ' ' || c.relpersistence::text || ' ' || coalesce(pg_get_expr(c.relpartbound, c.oid), '')
       || ' ' || coalesce(obj_description(c.oid, 'pg_class'), '')
  FROM pg_class AS c JOIN ns ON ns.oid = c.relnamespace
UNION ALL
SELECT 'column', ns.nspname || '.' || c.relname || '.' || a.attname,
       a.attnum || ' ' || format_type(a.atttypid, a.atttypmod) || ' ' || a.attnotnull || ' ' || a.attidentity::text
       || ' ' || a.attgenerated::text || ' ' || coalesce(pg_get_expr(d.adbin, d.adrelid), '')
  FROM pg_attribute AS a
  JOIN pg_class AS c ON c.oid = a.attrelid
  JOIN ns ON ns.oid = c.relnamespace
  LEFT JOIN pg_attrdef AS d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
 WHERE a.attnum > 0 AND NOT a.attisdropped
UNION ALL
SELECT 'index', ns.nspname || '.' || i.relname, pg_get_indexdef(i.oid)
  FROM pg_index AS x JOIN pg_class AS i ON i.oid = x.indexrelid JOIN ns ON ns.oid = i.relnamespace
UNION ALL
SELECT 'constraint', ns.nspname || '.' || c.relname || '.' || k.conname, pg_get_constraintdef(k.oid)
  FROM pg_constraint AS k JOIN pg_class AS c ON c.oid = k.conrelid JOIN ns ON ns.oid = c.relnamespace
UNION ALL
SELECT 'trigger', ns.nspname || '.' || c.relname || '.' || t.tgname, pg_get_triggerdef(t.oid)
  FROM pg_trigger AS t JOIN pg_class AS c ON c.oid = t.tgrelid JOIN ns ON ns.oid = c.relnamespace
 WHERE NOT t.tgisinternal
UNION ALL
SELECT 'type', ns.nspname || '.' || t.typname, t.typtype::text
  FROM pg_type AS t JOIN ns ON ns.oid = t.typnamespace
UNION ALL
SELECT 'privilege', ns.nspname || '.' || c.relname, coalesce(c.relacl::text, '')
  FROM pg_class AS c JOIN ns ON ns.oid = c.relnamespace
UNION ALL
SELECT 'default acl', ns.nspname, d.defaclacl::text
  FROM pg_default_acl AS d JOIN ns ON ns.oid = d.defaclnamespace
UNION ALL
SELECT 'migration', component || ' ' || version, name || ' ' || checksum FROM howdah_meta.schema_migrations
ORDER BY 1, 2, 3
"""


def snapshot(conn: Conn) -> list[tuple[str, str, str]]:
    return [(a, b, c) for a, b, c in conn.execute(SNAPSHOT).fetchall()]


@pytest.fixture(scope="module")
def databases(pg_cluster: PgCluster) -> Iterator[Callable[[], Conn]]:
    """Makes empty databases (from template0) and drops them at the end of the module."""
    names: list[str] = []
    conns: list[Conn] = []

    def make() -> Conn:
        name = f"mig_{uuid.uuid4().hex[:12]}"
        names.append(name)
        conn = psycopg.connect(pg_cluster.create_database(name, template="template0"), autocommit=True)
        conns.append(conn)
        return conn

    yield make
    for conn in conns:
        conn.close()
    for name in names:
        pg_cluster.drop_database(name)


def _has(conn: Conn, function: str) -> bool:
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_proc WHERE pronamespace = 'pgmq'::regnamespace AND proname = %s)",
        (function,),
    ).fetchone()
    return bool(row and row[0])


def use_queues(conn: Conn) -> tuple[bool, bool]:
    """Creates queues (and messages) with whatever the schema offers so far; tells what it could do."""
    conn.execute("SELECT pgmq.create('plain_q')")
    conn.execute("SELECT pgmq.create_unlogged('Unlogged_Q')")
    conn.execute("SELECT pgmq.create('gone_q')")
    conn.execute("SELECT pgmq.drop_queue('gone_q')")
    sends = _has(conn, "send_batch")
    if sends:
        for queue in ("plain_q", "unlogged_q"):
            conn.execute("SELECT pgmq.send_batch(%s, %s::jsonb[])", (queue, [Jsonb({"i": i}) for i in range(3)]))
            conn.execute("SELECT pgmq.read(%s, 30, 1)", (queue,))
            conn.execute("SELECT pgmq.archive(%s, 2::bigint)", (queue,))
    partitioned = _has(conn, "create_partitioned")
    if partitioned:
        conn.execute("SELECT pgmq.create_partitioned('part_q', '10', '50', 2)")
        if sends:
            conn.execute("SELECT pgmq.send_batch('part_q', %s::jsonb[])", ([Jsonb({})] * 25,))
            conn.execute("SELECT pgmq.maintain_partitions()")
    return sends, partitioned


def test_migrated_step_by_step_equals_fresh(databases: Callable[[], Conn]) -> None:
    references: dict[tuple[bool, bool], list[tuple[str, str, str]]] = {}
    for k in VERSIONS[:-1]:
        conn = databases()
        assert [m.version for m in upgrade(conn, COMPONENT, target=k)] == [v for v in VERSIONS if v <= k]
        did = use_queues(conn)
        assert [m.version for m in upgrade(conn, COMPONENT)] == [v for v in VERSIONS if v > k]
        if did not in references:  # a database migrated at once that saw the same operations
            fresh = databases()
            upgrade(fresh, COMPONENT)
            _replay(fresh, *did)
            references[did] = snapshot(fresh)
        assert snapshot(conn) == references[did], f"migrating to {k:04d} first, then to the end, differs"
    kernel = [
        row
        for row in references[True, True]
        if row[1] == "pgmq._howdah_k_read(p_queue text, p_vt integer, p_qty integer, p_now timestamp with time zone)"
    ]
    assert "pgmq.q_plain_q" in kernel[0][2] and "pgmq.q_part_q" in kernel[0][2]  # the comparison covers kernels


def _replay(conn: Conn, sends: bool, partitioned: bool) -> None:
    conn.execute("SELECT pgmq.create('plain_q')")
    conn.execute("SELECT pgmq.create_unlogged('Unlogged_Q')")
    conn.execute("SELECT pgmq.create('gone_q')")
    conn.execute("SELECT pgmq.drop_queue('gone_q')")
    if sends:
        for queue in ("plain_q", "unlogged_q"):
            conn.execute("SELECT pgmq.send_batch(%s, %s::jsonb[])", (queue, [Jsonb({"i": i}) for i in range(3)]))
    if partitioned:
        conn.execute("SELECT pgmq.create_partitioned('part_q', '10', '50', 2)")
        if sends:
            conn.execute("SELECT pgmq.send_batch('part_q', %s::jsonb[])", ([Jsonb({})] * 25,))
            conn.execute("SELECT pgmq.maintain_partitions()")


def test_upgrade_twice_applies_nothing(databases: Callable[[], Conn]) -> None:
    conn = databases()
    assert [m.version for m in upgrade(conn, COMPONENT)] == VERSIONS
    before = snapshot(conn)
    assert upgrade(conn, COMPONENT) == []
    assert snapshot(conn) == before


def test_kernels_are_regenerated_only_when_queues_change(databases: Callable[[], Conn]) -> None:
    conn = databases()
    upgrade(conn, COMPONENT)
    conn.execute("SELECT pgmq.create('k1')")

    def kernel_versions() -> list[tuple[Any, ...]]:
        return conn.execute(
            "SELECT proname, xmin::text FROM pg_proc WHERE pronamespace = 'pgmq'::regnamespace "
            "AND proname LIKE '\\_howdah\\_k\\_%' ORDER BY 1"
        ).fetchall()

    first = kernel_versions()
    assert len(first) == 10
    conn.execute("SELECT pgmq.create('k1')")  # exists: nothing changes
    conn.execute("SELECT pgmq._howdah_compile()")
    assert kernel_versions() == first
    conn.execute("SELECT pgmq.create('k2')")
    assert all(a != b for a, b in zip(first, kernel_versions(), strict=True))


def test_queues_beyond_the_compiled_limit_use_the_fallback(databases: Callable[[], Conn]) -> None:
    conn = databases()
    upgrade(conn, COMPONENT)
    # Lowered from 128 in this throw-away database, so the test need not create 130 queues.
    conn.execute(
        "CREATE OR REPLACE FUNCTION pgmq._howdah_compiled_limit() RETURNS integer IMMUTABLE LANGUAGE sql AS 'SELECT 3'"
    )
    names = [f"many_{i:03d}" for i in range(5)]
    for name in names:
        conn.execute("SELECT pgmq.create(%s)", (name,))
    body = conn.execute("SELECT prosrc FROM pg_proc WHERE proname = '_howdah_k_send_one'").fetchone()
    assert body is not None and "'many_000'" in body[0] and f"'{names[-1]}'" not in body[0]
    for name in (names[0], names[-1]):
        assert conn.execute("SELECT * FROM pgmq.send(%s::text, '{}'::jsonb)", (name,)).fetchone() == (1,)
        assert conn.execute("SELECT msg_id FROM pgmq.read(%s, 30, 5)", (name,)).fetchall() == [(1,)]
        assert conn.execute("SELECT pgmq.archive(%s, 1::bigint)", (name,)).fetchone() == (True,)
    # Dropping a compiled queue promotes the next one into the kernels.
    conn.execute("SELECT pgmq.drop_queue(%s)", (names[0],))
    body = conn.execute("SELECT prosrc FROM pg_proc WHERE proname = '_howdah_k_send_one'").fetchone()
    assert body is not None and "'many_000'" not in body[0] and f"'{names[-2]}'" in body[0]


def test_refuses_a_database_with_pgmqs_own_sql(databases: Callable[[], Conn]) -> None:
    conn = databases()
    conn.execute(pgmq_sql().encode())
    conn.execute("SELECT pgmq.create('theirs')")
    before = snapshot_pgmq_only(conn)
    with pytest.raises(SchemaConflict, match="schema named pgmq that Howdah did not install"):
        upgrade(conn, COMPONENT)
    assert snapshot_pgmq_only(conn) == before
    assert conn.execute("SELECT to_regnamespace('howdah_meta')").fetchone() == (None,)


def snapshot_pgmq_only(conn: Conn) -> list[tuple[Any, ...]]:
    return (
        conn.execute(
            "SELECT p.proname, pg_get_functiondef(p.oid) FROM pg_proc AS p "
            "WHERE p.pronamespace = 'pgmq'::regnamespace ORDER BY 1, 2"
        ).fetchall()
        + conn.execute(
            "SELECT relname, relkind FROM pg_class WHERE relnamespace = 'pgmq'::regnamespace ORDER BY 1"
        ).fetchall()
    )


def test_a_role_that_does_not_own_the_schema_can_use_queues(databases: Callable[[], Conn]) -> None:
    conn = databases()
    upgrade(conn, COMPONENT)
    role = f"app_{uuid.uuid4().hex[:8]}"
    conn.execute(f"CREATE ROLE {role}")
    try:
        conn.execute(f"GRANT USAGE, CREATE ON SCHEMA pgmq TO {role}")
        conn.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA pgmq TO {role}")
        with conn.transaction(force_rollback=True):
            conn.execute(f"SET LOCAL ROLE {role}")
            conn.execute("SELECT pgmq.create('app_q')")
            assert conn.execute("SELECT * FROM pgmq.send('app_q', '{}'::jsonb)").fetchone() == (1,)
            assert conn.execute("SELECT msg_id FROM pgmq.read('app_q', 30, 1)").fetchone() == (1,)
            assert conn.execute("SELECT pgmq.drop_queue('app_q')").fetchone() == (True,)
    finally:
        conn.execute(f"DROP OWNED BY {role}")
        conn.execute(f"DROP ROLE {role}")
