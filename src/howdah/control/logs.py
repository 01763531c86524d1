"""Instances' Postgres logs in the control plane: what a data plane's conductor ships (only for its own
instances) and what an instance's org reads through the API (``GET …/instances/{id}/logs``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from howdah.control.queries import QUERIES as Q
from howdah.control.service import ControlPlane, _iso

#: The newest lines kept per instance; older ones are deleted as new ones are shipped.
KEEP_LINES = 5000
#: The most lines one read returns (the CLI pages with ``after``).
MAX_READ = 1000


async def log_offsets(control: ControlPlane, data_plane: str, instance_id: str) -> dict[str, int]:
    """Where each of the instance's server logs was shipped up to (server → byte offset); empty for an instance
    that is not ``data_plane``'s."""
    async with control.pool.connection() as conn:
        cur = await conn.execute(Q["log_offsets"], {"id": instance_id, "data_plane": data_plane})
        return {str(server): int(offset) for server, offset in await cur.fetchall()}


async def append_logs(
    control: ControlPlane, data_plane: str, instance_id: str, lines: Sequence[tuple[str, str, int]]
) -> int:
    """Store ``lines`` (server, line, end offset) of an instance of ``data_plane``, in order, keeping the newest
    :data:`KEEP_LINES`; returns how many were stored (none when the instance is another plane's or unknown)."""
    if not lines:
        return 0
    async with control.pool.connection() as conn, conn.transaction():
        cur = await conn.execute(Q["append_log_lines"], {
            "id": instance_id, "data_plane": data_plane, "servers": [server for server, _, _ in lines],
            "lines": [line for _, line, _ in lines], "ends": [end for _, _, end in lines],
        })  # fmt: skip
        stored = cur.rowcount
        if stored:
            await conn.execute(Q["trim_logs"], {"id": instance_id, "keep": KEEP_LINES})
    return stored


async def read_logs(
    control: ControlPlane, org_id: str, instance_id: str, after: int, since: datetime | None, limit: int
) -> dict[str, Any]:
    """An instance's log lines after ``after`` (a ``seq``) received since ``since``, oldest first, at most
    ``limit``; NotFound when the org has no such instance (another org's included)."""
    row = await control.get_instance(org_id, instance_id)
    async with control.pool.connection() as conn:
        cur = await conn.execute(
            Q["instance_logs"],
            {"id": str(row["id"]), "after": after, "since": since, "limit": min(limit, MAX_READ)},
        )
        found = await cur.fetchall()
    lines = [{"seq": seq, "at": _iso(at), "server": server, "line": line} for seq, at, server, line in found]
    return {"instance_id": str(row["id"]), "lines": lines, "next_after": lines[-1]["seq"] if lines else after}
