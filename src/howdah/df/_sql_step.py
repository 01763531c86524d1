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


async def run_sql(conn: psycopg.AsyncConnection[Any], node: SqlNode) -> dict[str, Any]:
    """One SQL node, as its role, in the step's transaction (its variables read, and its result recorded in
    ``df.nodes``, in that transaction too)."""
    instance_id, node_id = node.instance_id, node.node_id
    query = node.query
    if "{" in query:  # {variables}: the role's, read in this transaction
        cursor = await conn.execute(
            "SELECT v.name, v.value FROM df.vars v JOIN pg_catalog.pg_roles r ON r.oid = v.owner::oid "
            "WHERE r.rolname = %s",
            (node.role,),
        )
        values = {str(name): value for name, value in await cursor.fetchall()}
        values |= {"sys_instance_id": instance_id, "sys_label": node.label or ""}
        query = substitute_variables(query, values)
    try:
        query = substitute(query, node.names)
    except BindingError as exc:
        raise NodeFailed(f"node {node_id} (SQL) failed: {exc}") from exc
    await conn.execute(
        sql.SQL("SET LOCAL ROLE {}; SET LOCAL search_path TO DEFAULT; SET LOCAL df.in_workflow = 'true'").format(
            sql.Identifier(node.role)
        )
    )
    try:
        cursor = await conn.execute(query.encode())  # as written: no placeholders
    except psycopg.Error as exc:
        message = (exc.diag.message_primary if exc.diag else None) or str(exc)
        raise NodeError(f"node {node_id} (SQL) failed: {message}") from exc
    rows: list[dict[str, Any]] = []
    count = cursor.rowcount
    while True:  # the last statement's rows, when the node holds several
        if cursor.description is not None:
            names = [column.name for column in cursor.description]
            rows = [dict(zip(names, (json_value(v) for v in row), strict=True)) for row in await cursor.fetchall()]
            count = len(rows)
        if not cursor.nextset():
            break
    result = {"rows": rows, "row_count": max(count, 0)}
    async with conn.pipeline():  # one round trip: back to the worker's role, which records the node
        await conn.execute("RESET ROLE")
        await record(conn, instance_id, node_id, result)
    return result


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


async def record(conn: psycopg.AsyncConnection[Any], instance_id: str, node_id: str, result: Any) -> None:
    await conn.execute(
        "UPDATE df.nodes SET status = 'completed', result = %s, error = NULL, updated_at = clock_timestamp() "
        "WHERE instance_id = %s AND id = %s",
        (psycopg.types.json.Jsonb(result), instance_id, node_id),
    )


async def mark_failed(conn: psycopg.AsyncConnection[Any], instance_id: str, node_id: str | None, error: str) -> None:
    if node_id is not None:
        await conn.execute(
            "UPDATE df.nodes SET status = 'failed', error = %s, updated_at = clock_timestamp() "
            "WHERE instance_id = %s AND id = %s",
            (error, instance_id, node_id),
        )
