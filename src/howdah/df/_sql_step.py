"""A SQL node's step: its statement run as the role that started the instance, its result recorded.

In the instance's own database the statement, the node's status and the step's checkpoint commit in one
transaction (:func:`run_sql`, a ``ctx.transaction``): exactly once. In another database (``df.start(…, database =>
…)``) the statement commits there together with a record of the step (``df.remote_steps``), and a replay finds the
record and does not run the statement again (:func:`run_remote_sql`): exactly once as well.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql

from howdah.df._bindings import BindingError, substitute, substitute_variables
from howdah.df._errors import NodeError, NodeFailed

Conn = psycopg.AsyncConnection[Any]


@dataclass(frozen=True)
class SqlNode:
    instance_id: str
    node_id: str
    role: str  # the role that started the instance: the statement runs as it
    label: str | None
    query: str  # as written, before {variables} and $bindings
    names: dict[str, Any]  # the results bound so far


async def read_variables(conn: Conn, role: str) -> dict[str, str | None]:
    """The {variables} ``role`` set with df.setvar (read in the instance's own database)."""
    cursor = await conn.execute(
        "SELECT v.name, v.value FROM df.vars v JOIN pg_catalog.pg_roles r ON r.oid = v.owner::oid WHERE r.rolname = %s",
        (role,),
    )
    return {str(name): value for name, value in await cursor.fetchall()}


def statement(node: SqlNode, variables: dict[str, str | None]) -> str:
    """The node's text with its {variables} and $bindings replaced; a binding that cannot be fails the node."""
    query = node.query
    if "{" in query:
        values = {**variables, "sys_instance_id": node.instance_id, "sys_label": node.label or ""}
        query = substitute_variables(query, values)
    try:
        return substitute(query, node.names)
    except BindingError as exc:
        raise NodeFailed(f"node {node.node_id} (SQL) failed: {exc}") from exc


async def execute(conn: Conn, node: SqlNode, query: str) -> dict[str, Any]:
    """``query`` as the node's role in ``conn``'s transaction (the caller goes back to the worker's role with
    :func:`then_as_worker`): the last statement's rows, ``{"rows": [...], "row_count": n}``."""
    await conn.execute(
        sql.SQL("SET LOCAL ROLE {}; SET LOCAL search_path TO DEFAULT; SET LOCAL df.in_workflow = 'true'").format(
            sql.Identifier(node.role)
        )
    )
    try:
        cursor = await conn.execute(query.encode())  # as written: no placeholders
    except psycopg.Error as exc:
        message = (exc.diag.message_primary if exc.diag else None) or str(exc)
        raise NodeError(f"node {node.node_id} (SQL) failed: {message}") from exc
    rows: list[dict[str, Any]] = []
    count = cursor.rowcount
    while True:  # the last statement's rows, when the node holds several
        if cursor.description is not None:
            names = [column.name for column in cursor.description]
            rows = [dict(zip(names, (json_value(v) for v in row), strict=True)) for row in await cursor.fetchall()]
            count = len(rows)
        if not cursor.nextset():
            break
    return {"rows": rows, "row_count": max(count, 0)}


async def then_as_worker(conn: Conn, query: str, params: tuple[Any, ...]) -> None:
    """Back to the worker's role, with a search_path of nothing the node's role could have put there, and
    ``query`` as it, in one round trip."""
    async with conn.pipeline():
        await conn.execute("RESET ROLE")
        await conn.execute(_PINNED)
        await conn.execute(query, params)


async def run_sql(conn: Conn, node: SqlNode) -> dict[str, Any]:
    """One SQL node in its instance's database, in the step's transaction: its variables read, the statement run
    as its role, and its result recorded in ``df.nodes``, all in that transaction."""
    variables = await read_variables(conn, node.role) if "{" in node.query else {}
    result = await execute(conn, node, statement(node, variables))
    await then_as_worker(conn, _RECORD, (psycopg.types.json.Jsonb(result), node.instance_id, node.node_id))
    return result


@dataclass(frozen=True)
class RemoteSql:
    """A SQL node to run in another database: ``conninfo`` reaches it as the worker, ``home`` the instance's own
    database; the workflow's id and the step's name name it for good."""

    node: SqlNode
    conninfo: str
    database: str
    home: str
    workflow_id: str
    step: str


async def run_remote_sql(call: RemoteSql) -> dict[str, Any]:
    """One SQL node in another database: its statement and the record of its step commit together there, and a
    step already recorded gives its recorded result without running the statement again. The role's variables
    are read, and the node's result recorded, in the instance's own database (one step: a join runs it inline)."""
    node = call.node
    async with await psycopg.AsyncConnection.connect(call.home, autocommit=True) as home:
        variables = await read_variables(home, node.role) if "{" in node.query else {}
        result = await _run_there(call, variables)
        await record(home, node.instance_id, node.node_id, result)
    return result


async def _run_there(call: RemoteSql, variables: dict[str, str | None]) -> dict[str, Any]:
    node = call.node
    try:
        conn = await psycopg.AsyncConnection.connect(call.conninfo)
    except psycopg.Error as exc:
        raise NodeError(f"node {node.node_id} (SQL) failed: cannot connect to database {call.database}: {exc}") from exc
    async with conn:
        await conn.execute(_PINNED)  # that database's owner may have set a search_path of its own
        try:
            cursor = await conn.execute(
                "SELECT result FROM df.remote_steps WHERE workflow_id = %s AND step = %s", (call.workflow_id, call.step)
            )
        except psycopg.errors.UndefinedTable:
            raise NodeFailed(
                f"node {node.node_id} (SQL) failed: df is not installed in database {call.database} "
                "(howdah df install there)"
            ) from None
        done = await cursor.fetchone()
        if done is not None:
            return dict(done[0])
        result = await execute(conn, node, statement(node, variables))
        await then_as_worker(
            conn,
            "INSERT INTO df.remote_steps (workflow_id, step, result) VALUES (%s, %s, %s)",
            (call.workflow_id, call.step, psycopg.types.json.Jsonb(result)),
        )
        await conn.commit()
        return result


async def forget_remote_steps(conninfo: str, workflow_id: str) -> None:
    """Delete the records of an instance's steps (and its branches': ``<workflow id>/…``) in another database once
    it has completed."""
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
        await conn.execute("SET search_path = pg_catalog, pg_temp")
        await conn.execute(
            "DELETE FROM df.remote_steps WHERE workflow_id = %s OR workflow_id LIKE %s",
            (workflow_id, workflow_id.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "/%"),
        )


def json_value(value: Any) -> Any:
    """A column value as a node result holds it (numeric, uuid and times as text; NaN and infinities as null)."""
    if value is None or isinstance(value, bool | int | str | dict | list):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, Decimal | UUID):
        return None if isinstance(value, Decimal) and not value.is_finite() else str(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        raise NodeFailed("Unsupported column type: bytea (cast it to text or encode it)")
    return str(value)


_PINNED = "SET LOCAL search_path = pg_catalog, pg_temp"
_RECORD = (
    "UPDATE df.nodes SET status = 'completed', result = %s, error = NULL, updated_at = clock_timestamp() "
    "WHERE instance_id = %s AND id = %s"
)


async def record(conn: Conn, instance_id: str, node_id: str, result: Any) -> None:
    """A node completed with ``result`` (in ``df.nodes``)."""
    await conn.execute(_RECORD, (psycopg.types.json.Jsonb(result), instance_id, node_id))


async def mark_failed(conn: psycopg.AsyncConnection[Any], instance_id: str, node_id: str | None, error: str) -> None:
    if node_id is not None:
        await conn.execute(
            "UPDATE df.nodes SET status = 'failed', error = %s, updated_at = clock_timestamp() "
            "WHERE instance_id = %s AND id = %s",
            (error, instance_id, node_id),
        )
