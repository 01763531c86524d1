"""Backups and restores as the control plane handles them: base backups taken on request, their listing (which
outlives the instance), restores of one backup, and restores to a point in time of an instance's window.

A restore always creates a new instance (new passwords, the source's spec under the new name) through the same
path as any create, with the Create event naming where its data comes from.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from pydantic import ValidationError

from howdah.control import fsm
from howdah.control.errors import Conflict, Invalid, NotFound
from howdah.control.queries import QUERIES as Q
from howdah.control.recovery import Window, deletion_refused, outside, parse_lsn
from howdah.control.service import ControlPlane, _checked_change, _iso, validation_message
from howdah.control.spec import FEATURE_PITR, InstanceSpec

PITR = FEATURE_PITR  # the data-plane feature (its provider's capability) a point-in-time restore needs
DELETE_BACKUP = "delete_backup"  # the data-plane feature deleting a base backup needs


def _backup_view(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": str(row["id"]), "instance_id": str(row["instance_id"]), "status": row["status"],
        "size_bytes": row["size_bytes"], "error": row["error"], "created_at": _iso(row["created_at"]),
        "completed_at": _iso(row["completed_at"]),
    }  # fmt: skip


async def request_backup(control: ControlPlane, org_id: str, instance_id: str) -> dict[str, Any]:
    """Record a pending backup and send the Backup event, in one transaction (the instance must be Up)."""
    async with control.pool.connection() as conn, conn.transaction():
        row = await control._locked(conn, org_id, instance_id)
        if row["state"] != fsm.State.Up:
            raise Conflict(f"instance {row['name']!r} is {row['state']}: backups are taken of instances that are Up")
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(Q["insert_backup"], {
            "org_id": org_id, "instance_id": row["id"], "data_plane": row["data_plane"],
            "spec": Jsonb(row["desired_spec"]),
        })  # fmt: skip
        backup = await cur.fetchone()
        assert backup is not None
        spec = InstanceSpec.model_validate(row["desired_spec"])
        await control._send(conn, row, row["dp_queue"], "Backup", spec, {}, [], track=False,
                            backup_id=str(backup["id"]))  # fmt: skip
    return _backup_view(backup)


async def list_backups(control: ControlPlane, org_id: str, instance_id: str | None = None) -> list[dict[str, Any]]:
    """The org's backups (of one instance, also after it was deleted), oldest first."""
    async with control.pool.connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(Q["backups_of_org"], {"org_id": org_id, "instance_id": instance_id})
        return [_backup_view(row) for row in await cur.fetchall()]


async def delete_backup(
    control: ControlPlane, org_id: str, backup_id: str, now: datetime | None = None
) -> dict[str, Any]:
    """Delete a backup of this org: a failed one at once; a completed one unless that would lose a point its
    instance's retention keeps recoverable (409 saying why, see :func:`deletion_refused`). The record goes and the
    DeleteBackup event to its data plane (which removes the files and the WAL no other backup needs) is sent in
    one transaction. Returns the backup as it was."""
    async with control.pool.connection() as conn, conn.transaction():
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(Q["backup_of_org_for_update"], {"org_id": org_id, "id": backup_id})
        backup = await cur.fetchone()
        if backup is None:
            raise NotFound(f"backup {backup_id!r} not found")
        if backup["status"] == "pending":
            raise Conflict(f"backup {backup_id!r} is still being taken: delete it once it completed or failed")
        if backup["status"] == "completed":
            # the instance's row locked too: two deletes of its backups are decided one after the other
            row = await control._locked(conn, org_id, str(backup["instance_id"]))
            features = row.get("dp_features")
            if features is not None and DELETE_BACKUP not in features:
                raise Invalid(f"data plane {row['data_plane']!r} does not delete backups (its provider cannot)")
            await cur.execute(Q["completed_backups_of_instance"], {"org_id": org_id, "instance_id": row["id"]})
            ends = {str(b["id"]): b["ended_at"] for b in await cur.fetchall()}
            spec = InstanceSpec.model_validate(row["desired_spec"])
            why = deletion_refused(ends, str(backup["id"]), now or datetime.now(UTC), spec.backup.retention_days)
            if why is not None:
                raise Conflict(f"backup {backup_id!r} of instance {row['name']!r} cannot be deleted: {why}")
            await control._send(conn, row, row["dp_queue"], "DeleteBackup", spec, {}, [], track=False,
                                backup_id=str(backup["id"]))  # fmt: skip
        await conn.execute(Q["delete_backup"], {"id": backup["id"]})
    return _backup_view(backup)


async def request_verification(control: ControlPlane, org_id: str, instance_id: str) -> dict[str, Any]:
    """Ask the instance's data plane to verify its latest backup (a VerifyBackup event): restored with its
    archived WAL into a scratch instance, started, queried and deleted; the outcome becomes the instance's
    ``last_verified_restore``. The instance may be running, stopped or deleted; it needs a recoverable window
    (409 otherwise) on a data plane that restores to a point in time (422 otherwise)."""
    async with control.pool.connection() as conn, conn.transaction():
        row = await control._locked(conn, org_id, instance_id)
        features = row.get("dp_features")
        if features is not None and PITR not in features:
            raise Invalid(f"data plane {row['data_plane']!r} cannot verify backups (its provider archives no WAL)")
        if not (row["status"] or {}).get("recovery_window"):
            raise Conflict(f"instance {row['name']!r} has no backup to verify yet: take one first")
        spec, settings, extensions, _ = _checked_change(row, "Start", None)
        await control._send(conn, row, row["dp_queue"], "VerifyBackup", spec, settings, extensions, track=False)
        await conn.execute(Q["record_verification_request"], {"id": row["id"]})
    return row


async def restore_backup(
    control: ControlPlane, org_id: str, backup_id: str, name: str, data_plane: str | None = None
) -> dict[str, Any]:
    """A new instance named ``name`` from a completed backup of this org (on the backup's data plane)."""
    async with control.pool.connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(Q["backup_of_org"], {"org_id": org_id, "id": backup_id})
        backup = await cur.fetchone()
    if backup is None:
        raise NotFound(f"backup {backup_id!r} not found")
    if backup["status"] != "completed":
        raise Conflict(f"backup {backup_id!r} is {backup['status']}; only completed backups can be restored")
    if data_plane is not None and data_plane != backup["data_plane"]:
        raise Invalid(f"backup {backup_id!r} lives on data plane {backup['data_plane']!r}")
    source = {"backup_id": str(backup["id"]), "instance_id": str(backup["instance_id"]),
              "location": backup["location"], "size_bytes": backup["size_bytes"]}  # fmt: skip
    return await control.create_instance(org_id, _renamed(backup["spec"], name), backup["data_plane"], source)


async def restore_point_in_time(
    control: ControlPlane, org_id: str, source_instance_id: str, name: str, *,
    target_time: datetime | None = None, target_lsn: str | None = None, data_plane: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    """A new instance named ``name`` as instance ``source_instance_id`` of this org (running, stopped or deleted)
    was at ``target_time`` or ``target_lsn`` (neither: the latest point archived). The target must lie in the
    recoverable window the source's data plane last reported (422 stating the window otherwise)."""
    source = await control.get_instance(org_id, source_instance_id)
    plane = source["data_plane"]
    if data_plane is not None and data_plane != plane:
        raise Invalid(f"instance {source['name']!r} lives on data plane {plane!r}")
    features = source.get("dp_features")
    if features is not None and PITR not in features:
        raise Invalid(f"data plane {plane!r} cannot restore to a point in time (its provider archives no WAL)")
    reported = (source.get("status") or {}).get("recovery_window")
    try:
        span = Window.from_dict(reported) if reported else None
    except (KeyError, ValueError, TypeError):
        span = None
    lsn = None
    if target_lsn is not None:
        try:
            lsn = parse_lsn(target_lsn)
        except ValueError as exc:
            raise Invalid(f"target_lsn: {exc}") from None
    why = outside(span, target_time, lsn)
    if why is not None:
        raise Invalid(f"instance {source['name']!r} cannot be restored: {why}")
    restore_from = {"source_instance_id": str(source["id"]), "target_time": _iso(target_time),
                    "target_lsn": target_lsn}  # fmt: skip
    return await control.create_instance(org_id, _renamed(source["desired_spec"], name), plane, restore_from)


def _renamed(spec: dict[str, Any], name: str) -> InstanceSpec:
    try:
        return InstanceSpec.model_validate({**spec, "name": name})
    except ValidationError as exc:
        raise Invalid(validation_message(exc)) from exc
