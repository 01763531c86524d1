"""df.instance_executions, df.instance_nodes, df.instance_info, df.list_instances and df.metrics with pg_durable
0.2.5's result shapes (columns, types and order as its extension declares them), what Howdah puts in each column,
and row-level security between two roles."""

from __future__ import annotations

import json
import uuid
from typing import Any

import psycopg
import pytest

from howdah.df._schema import COMPONENT as DF
from howdah.durable import DurableApp
from howdah.durable._schema import COMPONENT as DURABLE
from howdah.pg import migrations
from howdah.queue._schema import COMPONENT as QUEUE
from tests.waiting import async_wait_until

from ..durable._helpers import running
from .test_df import Conn, finish, one

NODE_COLUMNS = [
    ("node_id", "text"),
    ("node_type", "text"),
    ("query", "text"),
    ("result_name", "text"),
    ("left_node", "text"),
    ("right_node", "text"),
    ("status", "text"),
    ("result", "text"),
    ("status_details", "text"),
    ("inferred_status", "text"),
    ("inferred_status_from_ancestor_id", "text"),
    ("updated_at", "timestamp with time zone"),
]
EXECUTION_COLUMNS = [
    ("execution_id", "bigint"),
    ("status", "text"),
    ("event_count", "bigint"),
    ("duration_ms", "bigint"),
    ("output", "text"),
]

INFO_COLUMNS = [
    ("instance_id", "text"),
    ("label", "text"),
    ("function_name", "text"),
    ("function_version", "text"),
    ("current_execution_id", "bigint"),
    ("status", "text"),
    ("output", "text"),
]
LIST_COLUMNS = [
    ("instance_id", "text"),
    ("label", "text"),
    ("function_name", "text"),
    ("status", "text"),
    ("execution_count", "bigint"),
    ("output", "text"),
]
PAGE_COLUMNS = [
    ("created_at", "timestamp with time zone"),
    ("completed_at", "timestamp with time zone"),
    ("next_cursor", "text"),
]


async def signature(conn: Conn, function: str) -> tuple[list[tuple[str, str]], str, bool]:
    """(the result columns with their types, the arguments, STRICT) of one df function, from the catalog."""
    row = await (
        await conn.execute(
            "SELECT array_agg(n ORDER BY i), array_agg(format_type(t, NULL) ORDER BY i), "
            "       pg_get_function_arguments(p.oid), p.proisstrict "
            "  FROM pg_proc p, unnest(p.proallargtypes, p.proargmodes, p.proargnames) "
            "       WITH ORDINALITY AS a (t, m, n, i) "
            " WHERE p.oid = %s::regprocedure AND a.m = 't' GROUP BY p.oid",
            (function,),
        )
    ).fetchone()
    assert row is not None, function
    return list(zip(row[0], row[1], strict=True)), row[2], row[3]


async def rows(conn: Conn, query: str, params: Any = None) -> list[dict[str, Any]]:
    cursor = await conn.execute(query, params)
    names = [c.name for c in cursor.description or []]
    return [dict(zip(names, row, strict=True)) for row in await cursor.fetchall()]


# ------------------------------------------------------------------------------------------------ shapes
async def test_the_functions_have_pg_durable_0_2_5s_result_shapes(conn: Conn) -> None:
    """As pg_durable 0.2.5 declares them (its upgrade script sql/pg_durable--0.2.3--0.2.4.sql holds the
    generated DDL of both instance_nodes forms, src/monitoring.rs the others; 0.2.5 changed none of them)."""
    nodes, arguments, strict = await signature(conn, "df.instance_nodes(text)")
    assert (nodes, arguments, strict) == (NODE_COLUMNS, "instance_id_param text", True)
    compat, arguments, strict = await signature(conn, "df.instance_nodes(text, integer)")
    assert compat == [("execution_id", "bigint")] + [c for c in NODE_COLUMNS if c[0] not in {
        "status_details", "inferred_status", "inferred_status_from_ancestor_id"}]  # fmt: skip
    assert (arguments, strict) == ("instance_id_param text, _last_n_executions integer", True)
    info, arguments, _ = await signature(conn, "df.instance_info(text)")
    assert (info, arguments) == (INFO_COLUMNS, "instance_id text")
    listed, _, _ = await signature(conn, "df.list_instances(text, integer)")
    assert listed == LIST_COLUMNS
    paged, _, _ = await signature(conn, "df.list_instances(text, integer, text, text)")
    assert paged == [*LIST_COLUMNS, *PAGE_COLUMNS]
    executions, arguments, strict = await signature(conn, "df.instance_executions(text, integer)")
    assert (executions, arguments, strict) == (
        EXECUTION_COLUMNS,
        "instance_id text, limit_count integer DEFAULT 5",
        True,
    )


# ------------------------------------------------------------------------------------------------ executions
async def test_instance_executions_shows_the_one_execution_of_a_started_instance(app: DurableApp, conn: Conn) -> None:
    """pg_durable's e2e check (issue #168): a completed instance has at least one execution, with an id >= 1 and a
    status; limit_count below 1 is an error rather than an empty answer."""
    pending = await one(conn, "SELECT df.start('SELECT 1')")  # no worker yet: not started
    assert await rows(conn, "SELECT * FROM df.instance_executions(%s)", (pending,)) == []
    info = "SELECT function_name, function_version, current_execution_id, status FROM df.instance_info(%s)"
    assert await rows(conn, info, (pending,)) == [
        {"function_name": "df", "function_version": "1.0.0", "current_execution_id": 0, "status": "pending"}
    ]
    async with running(app):
        done, status, _ = await finish(conn, "'SELECT 42 AS answer' ~> 'SELECT 43 AS next'")
        failed, failed_status, _ = await finish(conn, "'SELECT 1' ~> 'SELECT 1 / 0'")
        assert await one(conn, "SELECT df.await_instance(%s, 20)", (pending,)) == "completed"
        waiting = await one(conn, "SELECT df.start(df.wait_for_signal('never'))")
        parked = "SELECT status = 'waiting' FROM howdah.workflows WHERE id = %s"
        await async_wait_until(lambda: one(conn, parked, (f"df:{waiting}",)), what="the instance waiting")
        running_rows = await rows(conn, "SELECT * FROM df.instance_executions(%s, 1)", (waiting,))
        await one(conn, "SELECT df.cancel(%s)", (waiting,))
    assert (status, failed_status) == ("completed", "failed")
    [execution] = await rows(conn, "SELECT * FROM df.instance_executions(%s)", (done,))
    assert execution["execution_id"] == 1 and execution["status"] == "Completed"
    [started] = await rows(conn, "SELECT current_execution_id, status, output FROM df.instance_info(%s)", (done,))
    assert (started["current_execution_id"], started["status"]) == (1, "completed")
    assert started["output"] == execution["output"]
    assert execution["event_count"] == 3  # two SQL nodes and their sequence ran
    assert execution["duration_ms"] >= 0
    assert json.loads(execution["output"]) == {"rows": [{"next": 43}], "row_count": 1}
    [failure] = await rows(conn, "SELECT * FROM df.instance_executions(%s, 1)", (failed,))
    assert (failure["status"], failure["output"], failure["event_count"]) == ("Failed", None, 2)
    assert [(r["status"], r["duration_ms"]) for r in running_rows] == [("Running", 0)]
    [cancelled] = await rows(conn, "SELECT status FROM df.instance_executions(%s)", (waiting,))
    assert cancelled == {"status": "Failed"}  # as pg_durable's engine records a cancelled execution
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="limit_count must be at least 1"):
        await conn.execute("SELECT * FROM df.instance_executions(%s, 0)", (done,))
    assert await rows(conn, "SELECT * FROM df.instance_executions('ffffffff')") == []


async def test_each_role_sees_only_its_own_executions_and_nodes(app: DurableApp, conn: Conn) -> None:
    """Row-level security, as for df.status: another role's instance has no executions, no nodes and no info (an
    empty answer, as in pg_durable, not an error that would tell it exists)."""
    alice, bob = f"alice_{uuid.uuid4().hex[:6]}", f"bob_{uuid.uuid4().hex[:6]}"
    for role in (alice, bob):
        await conn.execute(f"CREATE ROLE {role}")
        await conn.execute("SELECT df.grant_usage(%s)", (role,))
    async with running(app):
        await conn.execute(f"SET ROLE {alice}")
        mine, status, _ = await finish(conn, "'SELECT 1 AS a' ~> 'SELECT 2 AS b'")
        assert status == "completed"
        assert len(await rows(conn, "SELECT * FROM df.instance_executions(%s)", (mine,))) == 1
        assert len(await rows(conn, "SELECT * FROM df.instance_nodes(%s)", (mine,))) == 3
        assert len(await rows(conn, "SELECT * FROM df.instance_nodes(%s, 5)", (mine,))) == 3
        await conn.execute(f"SET ROLE {bob}")
        assert await rows(conn, "SELECT * FROM df.instance_executions(%s)", (mine,)) == []
        assert await rows(conn, "SELECT * FROM df.instance_nodes(%s)", (mine,)) == []
        assert await rows(conn, "SELECT * FROM df.instance_nodes(%s, 5)", (mine,)) == []
        assert await rows(conn, "SELECT * FROM df.instance_info(%s)", (mine,)) == []
        theirs, _, _ = await finish(conn, "'SELECT 3'")
        await conn.execute(f"SET ROLE {alice}")
        assert await rows(conn, "SELECT * FROM df.instance_executions(%s)", (theirs,)) == []
        await conn.execute("RESET ROLE")


# ------------------------------------------------------------------------------------------------ nodes
async def test_instance_nodes_links_children_and_shows_settings_results_and_details(
    app: DurableApp, conn: Conn
) -> None:
    """left_node / right_node hold child ids, query a node's settings as JSON (SQL text for SQL nodes), result the
    node's JSON (an error object for a failed node), status_details the execution stamp once the node ran."""
    async with running(app):
        instance, status, _ = await finish(
            conn, "('SELECT 1 AS a' |=> 'a') ~> df.sleep(0) ~> df.if('SELECT true', 'SELECT 2', 'SELECT 3')"
        )
        failed, failed_status, _ = await finish(conn, "'SELECT 1 / 0 AS boom'")
    assert (status, failed_status) == ("completed", "failed")
    nodes = {n["node_id"]: n for n in await rows(conn, "SELECT * FROM df.instance_nodes(%s)", (instance,))}
    by_query = {n["query"]: n for n in nodes.values() if n["node_type"] == "SQL"}
    root = await one(conn, "SELECT root_node FROM df.instances WHERE id = %s", (instance,))
    outer = nodes[root]  # (a ~> sleep) ~> if
    assert outer["node_type"] == "THEN" and outer["query"] is None
    inner, decision = nodes[outer["left_node"]], nodes[outer["right_node"]]
    assert (inner["node_type"], decision["node_type"]) == ("THEN", "IF")
    assert nodes[inner["left_node"]] == by_query["SELECT 1 AS a"]
    sleep = nodes[inner["right_node"]]
    assert sleep["node_type"] == "SLEEP" and json.loads(sleep["query"]) == {"seconds": 0}
    condition = by_query["SELECT true"]
    assert json.loads(decision["query"]) == {"condition_node": condition["node_id"]}
    assert (decision["left_node"], decision["right_node"]) == (
        by_query["SELECT 2"]["node_id"],
        by_query["SELECT 3"]["node_id"],
    )
    first = by_query["SELECT 1 AS a"]
    assert first["result_name"] == "a" and json.loads(first["result"]) == {"rows": [{"a": 1}], "row_count": 1}
    assert json.loads(first["status_details"]) == {"execution_id": f"{instance}::1"}
    assert by_query["SELECT 3"]["status"] == "pending" and by_query["SELECT 3"]["status_details"] is None
    [boom] = await rows(conn, "SELECT * FROM df.instance_nodes(%s)", (failed,))
    assert boom["status"] == "failed" and "division by zero" in json.loads(boom["result"])["error"]
    compat = await rows(conn, "SELECT * FROM df.instance_nodes(%s, 1) ORDER BY node_id", (instance,))
    assert [c["execution_id"] for c in compat] == [1] * len(nodes)
    assert [c["node_id"] for c in compat] == sorted(nodes)


async def test_inferred_status_marks_the_nodes_that_will_not_run(app: DurableApp, conn: Conn) -> None:
    """pg_durable's derived statuses: the untaken arm of an IF is 'skipped' (decided by the IF), so is the right
    side of a sequence whose left side failed (decided by the sequence); what ran keeps its stored status."""
    async with running(app):
        chosen, status, _ = await finish(conn, "df.if('SELECT false', 'SELECT ''then''', 'SELECT ''else''')")
        broken, broken_status, _ = await finish(conn, "'SELECT 1 / 0' ~> ('SELECT ''after''' ~> 'SELECT 2')")
        waiting = await one(
            conn, "SELECT df.start(df.if('SELECT true', 'SELECT 1' ~> df.wait_for_signal('go'), 'SELECT ''no'''))"
        )
        parked = "SELECT status = 'waiting' FROM howdah.workflows WHERE id = %s"
        await async_wait_until(lambda: one(conn, parked, (f"df:{waiting}",)), what="the taken branch waiting")
        while_running = await rows(
            conn, "SELECT query, status, inferred_status FROM df.instance_nodes(%s) ORDER BY query", (waiting,)
        )
        await one(conn, "SELECT df.cancel(%s)", (waiting,))
    assert (status, broken_status) == ("completed", "failed")
    nodes = await rows(conn, "SELECT * FROM df.instance_nodes(%s)", (chosen,))
    decision = next(n["node_id"] for n in nodes if n["node_type"] == "IF")
    states = {n["query"]: (n["status"], n["inferred_status"], n["inferred_status_from_ancestor_id"]) for n in nodes}
    assert states["SELECT 'then'"] == ("pending", "skipped", decision)
    assert states["SELECT 'else'"] == ("completed", "completed", None)
    assert states["SELECT false"] == ("completed", "completed", None)
    nodes = await rows(conn, "SELECT * FROM df.instance_nodes(%s)", (broken,))
    sequence = await one(conn, "SELECT root_node FROM df.instances WHERE id = %s", (broken,))
    states = {n["query"]: (n["status"], n["inferred_status"], n["inferred_status_from_ancestor_id"]) for n in nodes}
    assert states["SELECT 1 / 0"] == ("failed", "failed", None)
    assert states["SELECT 'after'"] == ("pending", "skipped", sequence)
    assert states["SELECT 2"] == ("pending", "skipped", sequence)
    no = next(r for r in while_running if r["query"] == "SELECT 'no'")
    assert (no["status"], no["inferred_status"]) == ("pending", "skipped")  # decided while the instance runs


def test_upgrading_df_metrics_keeps_who_may_call_it(empty_db: str) -> None:
    """Migration 0014 replaces df.metrics() (two more columns, so it is dropped and created again, which drops its
    grants): a role given it before the upgrade (df.grant_usage with with_grant) still has it after, PUBLIC not."""
    admin = f"admin_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(empty_db, autocommit=True) as sync:
        migrations.upgrade(sync, QUEUE)
        migrations.upgrade(sync, DURABLE)
        migrations.upgrade(sync, DF, target=13)
        sync.execute(f"CREATE ROLE {admin}")
        sync.execute("SELECT df.grant_usage(%s, with_grant => true)", (admin,))
        assert [m.version for m in migrations.upgrade(sync, DF, target=14)] == [14]
        may = "SELECT has_function_privilege(%s, 'df.metrics()', 'EXECUTE')"
        assert sync.execute(may, (admin,)).fetchone() == (True,)
        assert sync.execute(may, ("public",)).fetchone() == (False,)
        assert len(sync.execute("SELECT * FROM df.metrics()").fetchone() or ()) == 6
