"""The control plane's operations, free of HTTP: every accepted change is one transaction that validates,
passes the state machine, writes the instance row and enqueues the CRUD event for its data plane."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from pydantic import ValidationError

from howdah.control import _metadata_cache, fsm, readiness, restart, stacks
from howdah.control.capacity import Capacity, check_capacity
from howdah.control.errors import (
    RETRY_AFTER_SECONDS,
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    Unauthorized,
    Unavailable,
)
from howdah.control.events import STATE_QUEUE, CrudEvent, CrudKind, data_plane_queue
from howdah.control.extensions import ExtensionCatalog
from howdah.control.queries import QUERIES as Q
from howdah.control.sealing import SEALED, Sealer, SecretUnavailable, open_connection
from howdah.control.spec import InstanceSpec
from howdah.queue import AsyncQueue

Role = Literal["platform", "metrics", "admin", "member", "viewer"]
OrgRole = Literal["admin", "member", "viewer"]
# Every role a token can hold. Org routes rank viewer < member < admin < platform (each includes the ones
# before it); metrics ranks nowhere: it scrapes /metrics and does nothing else.
ROLES: tuple[Role, ...] = ("viewer", "member", "admin", "platform", "metrics")
_RANK: dict[str, int] = {"viewer": 0, "member": 1, "admin": 2, "platform": 3}
PLATFORM_ONLY: frozenset[str] = frozenset({"platform", "metrics"})  # roles only a platform admin issues
DEFAULT_MAX_TOKENS_PER_ORG = 100
TOKEN_PREFIX = "hwd_"


@dataclass(frozen=True)
class Principal:
    org_id: str
    role: Role
    token_id: str

    def at_least(self, role: OrgRole) -> bool:
        return self.role in _RANK and _RANK[self.role] >= _RANK[role]

    @property
    def platform(self) -> bool:
        return self.role == "platform"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def validation_message(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"]) or "body"
        parts.append(f"{where}: {error['msg'].removeprefix('Value error, ')}")
    return "; ".join(parts)


class ControlPlane:
    """Orgs, tokens, data planes and instances over one async pool (autocommit connections)."""

    def __init__(self, pool: AsyncConnectionPool, *, max_tokens_per_org: int = DEFAULT_MAX_TOKENS_PER_ORG) -> None:
        self.pool = pool
        self.max_tokens_per_org = max_tokens_per_org

    # ---------------------------------------------------------------------------------- orgs & tokens
    async def create_token(
        self, org_id: str, role: str, name: str = "", *, actor: Principal | None = None
    ) -> tuple[str, dict[str, Any]]:
        """A new token for ``org_id`` (created if missing); the plaintext is returned once and never stored.

        ``actor`` is the API caller (authorised beforehand with :func:`may_issue`); None means direct database
        access (``howdah up``, ``howdah token create``). The audit record is written in the same transaction; an
        org at its cap of active tokens gets a 409.
        """
        if role not in ROLES:
            raise Invalid(f"role must be one of {list(ROLES)}, not {role!r}")
        if len(name) > 100:
            raise Invalid("token name must be at most 100 characters")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        async with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            try:
                await cur.execute(Q["issue_token"], {
                    "org_id": org_id, "name": name, "role": role, "token_sha256": hash_token(token),
                    "prefix": token[:12], "max_tokens": self.max_tokens_per_org, **_actor(actor),
                })  # fmt: skip
            except psycopg.errors.CheckViolation as exc:
                raise Invalid(f"org id {org_id!r} must be lowercase letters, digits and '-' (≤ 63)") from exc
            except psycopg.Error as exc:
                if exc.sqlstate == "HW409":
                    raise Conflict(exc.diag.message_primary or "too many active tokens") from exc
                raise
            row = await cur.fetchone()
        assert row is not None
        return token, row

    async def list_tokens(self, org_id: str) -> list[dict[str, Any]]:
        async with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(Q["tokens_of_org"], {"org_id": org_id})
            return await cur.fetchall()

    async def revoke_token(self, org_id: str, token_id: str, *, actor: Principal | None = None) -> None:
        """Revoke a token of ``org_id`` (audited); platform and metrics tokens only by a platform admin."""
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(Q["active_token_role_for_update"], {"org_id": org_id, "token_id": token_id})
            found = await cur.fetchone()
            if found is None:
                raise NotFound(f"token {token_id!r} not found")
            if actor is not None and found[0] in PLATFORM_ONLY and not actor.platform:
                raise Forbidden(f"only a platform admin may revoke a {found[0]} token")
            await conn.execute(Q["revoke_token"], {"org_id": org_id, "token_id": token_id, **_actor(actor)})

    async def token_audit(self, org_id: str, limit: int = 1000) -> list[dict[str, Any]]:
        """The org's token changes, oldest first (who did what, when, to which token and role)."""
        async with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(Q["token_audit"], {"org_id": org_id, "limit": limit})
            return list(reversed(await cur.fetchall()))

    async def authenticate(self, token: str | None) -> Principal:
        if not token:
            raise Unauthorized("missing bearer token (Authorization: Bearer hwd_…)")
        async with self.pool.connection() as conn:
            # A read, plus a write at most once a minute per token (see the query).
            cur = await conn.execute(Q["authenticate"], {"token_sha256": hash_token(token)})
            row = await cur.fetchone()
        if row is None:
            raise Unauthorized("invalid or revoked token")
        return Principal(row[0], row[1], row[2])

    # ------------------------------------------------------------------------------------ data planes
    # Data planes are shared by every org: the API lets only a platform admin change them (see the routes).
    async def register_data_plane(
        self,
        name: str,
        description: str = "",
        capacity: Capacity | None = None,
        extensions: ExtensionCatalog | None = None,
        features: Iterable[str] | None = None,
        heartbeat: float | None = None,
    ) -> dict[str, Any]:
        """Create or refresh a data plane (a conductor registering itself at start: idempotent), with what it has
        in all, the extensions and the features it offers, as its provider reports them (None: unknown; instances
        are then not checked against it). It is seen now; ``heartbeat``: the seconds within which its conductor
        promises to call :meth:`data_plane_heartbeat` again (None: it promises none)."""
        return await self._write_data_plane(
            name, description, upsert=True, capacity=capacity, extensions=extensions, features=features,
            heartbeat=heartbeat,
        )  # fmt: skip

    async def create_data_plane(self, name: str, description: str = "") -> dict[str, Any]:
        """A new data plane and its CRUD-event queue; 409 when one of that name exists."""
        return await self._write_data_plane(name, description, upsert=False)

    async def _write_data_plane(
        self, name: str, description: str, *, upsert: bool, capacity: Capacity | None = None,
        extensions: ExtensionCatalog | None = None, features: Iterable[str] | None = None,
        heartbeat: float | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        queue = data_plane_queue(name)
        has = capacity or Capacity()
        catalog = None if extensions is None else Jsonb(extensions.to_json())
        async with self.pool.connection() as conn, conn.transaction():
            cur = conn.cursor(row_factory=dict_row)
            try:
                await cur.execute(Q["upsert_data_plane" if upsert else "insert_data_plane"], {
                    "name": name, "queue_name": queue, "description": description, "cpu": has.cpu,
                    "memory_bytes": has.memory_bytes, "storage_bytes": has.storage_bytes,
                    "extension_catalog": catalog, "features": None if features is None else sorted(set(features)),
                    "heartbeat_seconds": heartbeat,
                })  # fmt: skip
            except psycopg.errors.CheckViolation as exc:
                raise Invalid(f"data plane name {name!r} must be lowercase letters, digits and '-' (≤ 31)") from exc
            row = await cur.fetchone()
            if row is None:
                raise Conflict(f"data plane {name!r} already exists (PATCH it to change it)")
            await AsyncQueue(conn).create(queue)
            await AsyncQueue(conn).create(STATE_QUEUE)
        return row

    async def update_data_plane(
        self, name: str, description: str | None = None, draining: bool | None = None
    ) -> dict[str, Any]:
        """Change a data plane's description, or drain it (no new instances go there) and undrain it."""
        async with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(Q["update_data_plane"], {"description": description, "draining": draining, "name": name})
            row = await cur.fetchone()
        if row is None:
            raise NotFound(f"data plane {name!r} not found")
        return row

    async def delete_data_plane(self, name: str) -> None:
        """Remove a data plane no instance or backup refers to, with its queue; else 409 (drain it instead)."""
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(Q["data_plane_references_for_update"], {"name": name})
            found = await cur.fetchone()
            if found is None:
                raise NotFound(f"data plane {name!r} not found")
            queue, instances, live, backups = found
            if instances or backups:
                raise Conflict(
                    f"data plane {name!r} still has {instances} instance(s) ({live} not deleted) and {backups} "
                    "backup(s) recorded: drain it instead (PATCH draining=true), so no new instances go there"
                )
            await conn.execute(Q["delete_data_plane"], {"name": name})
            await AsyncQueue(conn).drop(queue)

    async def list_data_planes(self) -> list[dict[str, Any]]:
        async with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(Q["list_data_planes"])
            return await cur.fetchall()

    async def data_plane_extensions(self, name: str) -> ExtensionCatalog | None:
        """The extension catalog data plane ``name`` reported (None: none yet), or 404."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(Q["data_plane_extension_catalog"], {"name": name})
            row = await cur.fetchone()
        if row is None:
            raise NotFound(f"data plane {name!r} not found")
        return _catalog(row[0])

    async def usable_data_plane_names(self) -> list[str]:
        """The data planes new instances may be placed on (every org may use every one that is not draining)."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(Q["usable_data_plane_names"])
            return [name for (name,) in await cur.fetchall()]

    # What a data plane's conductor asks of the control plane: it reads no control table itself.
    async def data_plane_heartbeat(self, name: str, interval: float) -> None:
        """The conductor of data plane ``name`` is alive now, and will say so again within ``interval`` seconds
        (404 when the plane was removed meanwhile)."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(Q["data_plane_heartbeat"], {"name": name, "interval": interval})
            if await cur.fetchone() is None:
                raise NotFound(f"data plane {name!r} not found")

    async def supervised_instances(self, data_plane: str) -> list[tuple[str, int]]:
        """The instances of ``data_plane`` that should be Up with no work in flight, as (id, generation)."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(Q["supervised_instances"], {"data_plane": data_plane})
            return [(str(iid), int(generation)) for iid, generation in await cur.fetchall()]

    async def awaits_answer(self, data_plane: str, instance_id: str, generation: int) -> bool:
        """Whether an instance of ``data_plane`` still waits for the answer to its work of ``generation``."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                Q["awaits_answer"], {"data_plane": data_plane, "id": instance_id, "generation": generation}
            )
            row = await cur.fetchone()
        return bool(row and row[0])

    async def _pick_data_plane(
        self, conn: psycopg.AsyncConnection[Any], wanted: str | None
    ) -> tuple[str, str, Capacity, ExtensionCatalog | None]:
        """The data plane a new instance goes to: its name, CRUD-event queue, capacity and extension catalog."""
        cur = await conn.execute(Q["data_planes_for_placement"])
        rows = await cur.fetchall()
        planes = {
            name: (name, queue, _capacity(cpu, memory, storage, features), _catalog(catalog))
            for name, queue, draining, catalog, features, cpu, memory, storage in rows
            if not draining
        }
        draining = {name for name, _, drained, *_ in rows if drained}
        if wanted is None:
            if len(planes) == 1:
                return next(iter(planes.values()))
            if not planes:
                raise Unavailable(
                    "no data plane can take new instances yet (none is registered, or all are draining); "
                    "retry once a conductor runs"
                )
            raise Invalid(f"several data planes exist; choose one with data_plane (one of {sorted(planes)})")
        if wanted in draining:
            raise Conflict(f"data plane {wanted!r} is draining: it takes no new instances (one of {sorted(planes)})")
        if wanted not in planes:
            raise Invalid(f"data plane {wanted!r} does not exist (known: {sorted(planes)})")
        return planes[wanted]

    # -------------------------------------------------------------------------------------- readiness
    async def component_heartbeat(self, component: str, interval: float) -> None:
        """A control-plane loop (the reconciler) ticked now, and will again within ``interval`` seconds."""
        async with self.pool.connection() as conn:
            await conn.execute(Q["component_heartbeat"], {"component": component, "interval": interval})

    async def readiness(self) -> list[readiness.Check]:
        """Whether a create issued now would be accepted and acted on: see :mod:`howdah.control.readiness`.
        A database that does not answer is a failed check, not an error."""
        try:
            async with self.pool.connection() as conn:
                cur = await conn.execute(Q["readiness_components"])
                components = [readiness.ComponentBeat(*row) for row in await cur.fetchall()]
                cur = await conn.execute(Q["readiness_data_planes"])
                planes = [readiness.PlaneBeat(*row) for row in await cur.fetchall()]
        except (psycopg.Error, PoolTimeout) as exc:
            return readiness.database_down(str(exc).strip()[:200] or type(exc).__name__)
        return readiness.assess(components, planes)

    # -------------------------------------------------------------------------------------- instances
    async def create_instance(
        self, org_id: str, spec: InstanceSpec, data_plane: str | None, restore_from: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        state = fsm.State.Submitted  # a new instance: Create brings it into being in Submitted
        async with self.pool.connection() as conn, conn.transaction():
            plane, queue, capacity, catalog = await self._pick_data_plane(conn, data_plane)
            settings, extensions = _render(spec, catalog, plane)
            check_capacity(spec, capacity, plane)
            cur = conn.cursor(row_factory=dict_row)
            try:
                await cur.execute(Q["insert_instance"], {
                    "org_id": org_id, "name": spec.name, "data_plane": plane, "state": str(state),
                    "desired_spec": Jsonb(spec.model_dump(mode="json")),
                })  # fmt: skip
            except psycopg.errors.UniqueViolation as exc:
                raise Conflict(f"an instance named {spec.name!r} already exists in org {org_id!r}") from exc
            except psycopg.errors.ForeignKeyViolation as exc:  # only a platform admin reaches an unknown org
                raise NotFound(f"org {org_id!r} not found") from exc
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
        await cur.execute(Q["track_sent_work"], {"event": Jsonb(payload), "id": row["id"]})
        updated = await cur.fetchone()
        assert updated is not None
        return updated

    async def list_instances(
        self, org_id: str, state: str | None, limit: int, offset: int
    ) -> tuple[list[dict[str, Any]], int]:
        async with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(Q["list_instances"], {"org_id": org_id, "state": state, "limit": limit, "offset": offset})
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
            Q["instance_of_org_for_update" if lock else "instance_of_org"], {"org_id": org_id, "id": instance_id}
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
            spec, settings, extensions, reasons = _checked_change(row, kind, changes)
            needs_restart = bool(reasons)
            try:
                new_state = fsm.next_state(state, fsm.Event(kind), restart_needed=needs_restart)
            except fsm.TransitionError as exc:
                raise Conflict(str(exc)) from exc
            busy = fsm.has_active_work(new_state)  # e.g. Stopped + Update: recorded now, applied at Start
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(Q["accept_change"], {
                "state": str(new_state), "desired_spec": Jsonb(spec.model_dump(mode="json")), "has_active_work": busy,
                "clear_error": kind != "Delete", "id": row["id"],
            })  # fmt: skip
            updated = await cur.fetchone()
            assert updated is not None
            if not busy:
                return updated
            return await self._send(conn, updated, row["dp_queue"], kind, spec, settings, extensions)

    async def update_preview(self, org_id: str, instance_id: str, changes: dict[str, Any]) -> list[str]:
        """What an Update with ``changes`` would need, checked exactly as :meth:`change` checks it (a 422 for a
        bad change), with nothing written: every reason Postgres must restart; empty when a reload applies it."""
        async with self.pool.connection() as conn:
            row = await self._locked(conn, org_id, instance_id, lock=False)
        return _checked_change(row, "Update", changes)[3]


def _checked_change(
    row: dict[str, Any], kind: CrudKind, changes: dict[str, Any] | None
) -> tuple[InstanceSpec, dict[str, str], list[str], list[str]]:
    """The spec, settings and extensions an instance (``row``, with its data plane's columns) gets from a
    change, validated (422 otherwise), and for an Update every reason it needs a restart."""
    desired = InstanceSpec.model_validate(row["desired_spec"])
    spec = desired
    if changes:
        try:
            spec = desired.patched(changes)
        except ValidationError as exc:
            raise Invalid(validation_message(exc)) from exc
        except ValueError as exc:
            raise Invalid(str(exc)) from exc
    if changes:  # only what a change touches: a stored spec can always be stopped, deleted or fixed
        has = _capacity(row["dp_cpu"], row["dp_memory_bytes"], row["dp_storage_bytes"], row["dp_features"])
        check_capacity(spec, has, row["data_plane"], previous=desired)
    catalog = _catalog(row["dp_extension_catalog"])
    settings, extensions = _render(spec, catalog, row["data_plane"], check_values=bool(changes))
    reasons: list[str] = []
    if kind == "Update" and row["actual_spec"]:
        actual = InstanceSpec.model_validate(row["actual_spec"])
        reasons = restart.restart_reasons(
            spec,
            actual,
            settings,
            _render(actual, catalog, row["data_plane"], check_values=False)[0],
            _metadata_cache.contexts(spec.pg_version, catalog),
            catalog,
        )
    return spec, settings, extensions, reasons


def _actor(actor: Principal | None) -> dict[str, str | None]:
    """The audit columns of a token change: who made it (None: direct database access)."""
    return {"actor_token_id": actor.token_id if actor else None, "actor_role": actor.role if actor else None}


def _capacity(
    cpu: Decimal | None, memory_bytes: int | None, storage_bytes: int | None, features: list[str] | None = None
) -> Capacity:
    """A data plane's recorded capacity (its columns ``cpu``, ``memory_bytes``, ``storage_bytes``, ``features``)."""
    offered = None if features is None else frozenset(features)
    return Capacity(None if cpu is None else float(cpu), memory_bytes, storage_bytes, offered)


def _render(
    spec: InstanceSpec, catalog: ExtensionCatalog | None, data_plane: str, *, check_values: bool = True
) -> tuple[dict[str, str], list[str]]:
    """The settings and extensions a spec asks for on ``data_plane``, or a 422 naming the offending setting or
    extension. Extensions are checked against the data plane's ``catalog``; a data plane that has reported none
    (a conductor older than catalogs) gets them unchecked, and refuses a missing one itself. Without
    ``check_values`` (a stored spec) neither values nor extension names are checked. Postgres's setting facts
    were read at start-up, off the event loop."""
    facts = _metadata_cache.facts(spec.pg_version)
    unknown = restart.unknown_settings(list(spec.postgres_configs), _metadata_cache.contexts(spec.pg_version, catalog))
    if unknown:
        raise Invalid(f"unknown Postgres setting(s): {', '.join(unknown)}")
    try:
        # Values are checked as Postgres would read them; a spec stored before a check existed can still be
        # stopped, deleted or fixed (only a change re-checks it).
        metadata = facts.metadata if check_values else None
        settings = stacks.render_settings(
            spec, catalog, data_plane=data_plane, check_extensions=check_values, setting_metadata=metadata
        )
        return settings, stacks.extensions_to_enable(spec, None, catalog if check_values else None)
    except (stacks.StackError, ValueError) as exc:
        raise Invalid(str(exc)) from exc


def _catalog(stored: Any) -> ExtensionCatalog | None:
    """A data plane's stored extension catalog (column ``extension_catalog``), None when it reported none."""
    return None if stored is None else ExtensionCatalog.from_json(stored)


def instance_view(row: dict[str, Any], principal: Principal, sealer: Sealer) -> dict[str, Any]:
    """The API representation of an instance row: the password, opened from its sealed form (or stored in
    plaintext before sealing), only for member and admin; one that does not open is left out with a message."""
    connection = dict(row["connection"]) if row.get("connection") else None
    if connection is not None and principal.at_least("member"):
        try:
            connection = open_connection(connection, sealer, str(row["id"]))
        except SecretUnavailable as exc:
            connection.pop(SEALED, None)
            connection["password_error"] = f"the password cannot be opened by this control plane: {exc}"
    elif connection is not None:
        connection.pop("password", None)
        connection.pop(SEALED, None)
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
        "status": {**(row["status"] or {}), "last_verified_restore": row.get("last_verified_restore")},
        "connection": connection,
        "last_error": row["last_error"],
        "created_at": _iso(row["created_at"]),
        "updated_at": _iso(row["updated_at"]),
    }


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def require(principal: Principal, org_id: str, role: OrgRole) -> None:
    """404 for another org's resources (never 403, which would leak their existence); 403 for a weak role.

    A platform admin reaches every org (it may cross orgs; it answers for the whole platform)."""
    if principal.org_id != org_id and not principal.platform:
        raise NotFound(f"org {org_id!r} not found")
    if not principal.at_least(role):
        raise Forbidden(f"this needs the {role} role; the token has {principal.role}")


def require_platform(principal: Principal) -> None:
    """Platform-wide resources (data planes, anything that crosses orgs) are the platform admin's alone."""
    if not principal.platform:
        raise Forbidden(
            f"this needs the platform role (it changes or shows what every org shares); the token has {principal.role}"
        )


def may_issue(principal: Principal, org_id: str, role: str) -> None:
    """An org admin issues admin, member and viewer tokens of its org; platform and metrics tokens, and tokens
    of other orgs, only a platform admin."""
    require(principal, org_id, "admin")
    if role in PLATFORM_ONLY and not principal.platform:
        raise Forbidden(f"only a platform admin may create {role} tokens")


def may_scrape_metrics(principal: Principal) -> bool:
    """/metrics names every org's queues and counts: metrics and platform tokens only."""
    return principal.role in ("metrics", "platform")
