"""The Instances pages: the live table, the create form, one instance's page and its lifecycle buttons."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import RedirectResponse
from psycopg.rows import dict_row
from pydantic import ValidationError

from howdah.console._charts import DepthLine, depth_line
from howdah.console._forms import (
    by_state,
    extension_list,
    field_errors,
    instance_fields,
    int_bounds,
    message_field,
    names,
    parse_settings,
    settings_text,
)
from howdah.console._queries import QUERIES
from howdah.console._web import ConsoleRoute, Session, changing, page, session_of
from howdah.control import stacks
from howdah.control.api import InstanceCreate, InstancePatch
from howdah.control.backups import list_backups, request_backup, restore_backup
from howdah.control.errors import Conflict, Invalid, NotFound, Unavailable, http_error
from howdah.control.service import instance_view, require
from howdah.control.spec import ConnectionPooler, InstanceSpec

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

TABLE_LIMIT = 500  # rows of the instances table (newest first)
ACTIONS: dict[str, Literal["Restart", "Stop", "Start"]] = {"restart": "Restart", "stop": "Stop", "start": "Start"}


async def _rows(session: Session, deleted: bool) -> list[dict[str, Any]]:
    async with session.ctl.pool.connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(
            QUERIES["instances_of_org"], {"org_id": session.org, "deleted": deleted, "limit": TABLE_LIMIT}
        )
        return await cur.fetchall()


CHART_WIDTH, CHART_HEIGHT = 360, 80


async def _queue_depths(session: Session) -> DepthLine | None:
    """The platform's queue depth over the last hour (one query), for the platform admin: queues serve every
    org, so no org role sees them."""
    if not session.who.platform:
        return None
    async with session.ctl.pool.connection() as conn:
        rows = await (await conn.execute(QUERIES["queue_depth_history"])).fetchall()
    return depth_line([(at, depth) for at, depth, _ in rows], rows[-1][2], CHART_WIDTH, CHART_HEIGHT) if rows else None


@router.get("/instances")
async def instances(request: Request, deleted: Annotated[bool, Query()] = False) -> Response:
    session = await session_of(request)
    require(session.who, session.org, "viewer")
    rows = await _rows(session, deleted)
    return page(request, "instances.html", session, rows=rows, by_state=by_state(rows), deleted=deleted,
                limit=TABLE_LIMIT, depths=await _queue_depths(session), chart=(CHART_WIDTH, CHART_HEIGHT))  # fmt: skip


@router.get("/instances/rows")
async def instance_rows(request: Request, deleted: Annotated[bool, Query()] = False) -> Response:
    """The chart and the table alone: what the page polls to show states change (one query for the whole page)."""
    session = await session_of(request)
    require(session.who, session.org, "viewer")
    rows = await _rows(session, deleted)
    return page(request, "_instances_live.html", session, rows=rows, by_state=by_state(rows))


def _stack_choices() -> list[tuple[str, str]]:
    return [(name, stacks.describe_stack(name)["description"]) for name in stacks.STACKS]


async def _form(
    request: Request, session: Session, values: dict[str, str], errors: dict[str, str], status: int = 200
) -> Response:
    planes = await session.ctl.usable_data_plane_names()
    return page(
        request, "instance_new.html", session, status_code=status, values=values, errors=errors,
        stacks=_stack_choices(), planes=planes,
    )  # fmt: skip


@router.get("/instances/new")
async def new_instance(request: Request) -> Response:
    session = await session_of(request)
    require(session.who, session.org, "member")
    defaults = InstanceSpec(name="x")
    values = {"name": "", "stack": defaults.stack.value, "cpu": defaults.cpu, "memory": defaults.memory,
              "storage": defaults.storage, "extensions": "", "data_plane": ""}  # fmt: skip
    return await _form(request, session, values, {})


@router.post("/instances")
async def create_instance(request: Request) -> Response:
    session = await session_of(request)
    form = await changing(request, session)
    require(session.who, session.org, "member")
    values = {name: form.get(name, "").strip() for name in ("name", "stack", "cpu", "memory", "storage",
                                                             "extensions", "data_plane")}  # fmt: skip
    try:
        body = InstanceCreate.model_validate(instance_fields(values))
    except ValidationError as exc:
        return await _form(request, session, values, field_errors(exc), status=422)
    spec = InstanceSpec.model_validate(body.model_dump(exclude={"data_plane"}))
    try:
        await session.ctl.create_instance(session.org, spec, body.data_plane)
    except (Invalid, Conflict, Unavailable) as exc:  # shown next to the field the message names
        status = http_error(exc)[0]
        return await _form(request, session, values, {message_field(str(exc)): str(exc)}, status=status)
    return RedirectResponse("/instances", status_code=303)


EVENTS_SHOWN = 50


async def _events(session: Session, instance_id: str) -> list[dict[str, Any]]:
    """The instance's latest recorded states (the instance was found in the session's org beforehand)."""
    async with session.ctl.pool.connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(QUERIES["instance_events"], {"id": instance_id, "limit": EVENTS_SHOWN})
        return await cur.fetchall()


def _config_field(field: str) -> str:
    """Where the configuration form shows an error about ``field``."""
    return field if field in ("extensions", "replicas", "ip_allow_list", "connection_pooler") else "settings"


def _as_patched(spec: dict[str, Any], name: str) -> Any:
    """A stored spec's field in the form a patch sends it (extensions with every default spelled out)."""
    value = spec.get(name)
    if name == "extensions":
        return [
            {"name": e["name"], "enabled": e.get("enabled", True), "version": e.get("version")} for e in value or []
        ]
    return value


def _change(row: dict[str, Any]) -> dict[str, Any]:
    """The latest change sent to the instance's data plane, and the conductor's workflow carrying it out."""
    sent = row.get("pending_event") or {}
    return {"kind": sent.get("kind", ""), "generation": sent.get("generation"), "sent_at": row.get("work_sent_at"),
            "workflow": f"event-{sent['event_id']}" if sent.get("event_id") else ""}  # fmt: skip


async def _instance_page(
    request: Request, session: Session, instance_id: str, status: int = 200, **context: Any
) -> Response:
    row = await session.ctl.get_instance(session.org, instance_id)
    view = instance_view(row, session.who, request.app.state.sealer)
    backups = await list_backups(session.ctl, session.org, instance_id)
    events = await _events(session, instance_id)
    spec = view["desired_spec"]
    extensions = spec.get("extensions") or []
    pooler = ConnectionPooler.model_validate(spec.get("connection_pooler") or {})  # the API's defaults filled in
    values = {
        "settings": settings_text(spec.get("postgres_configs") or {}),
        "enabled": ", ".join(e["name"] for e in extensions if e.get("enabled", True)),
        "disabled": ", ".join(e["name"] for e in extensions if not e.get("enabled", True)),
        "replicas": str(spec.get("replicas", 1)), "errors": {}, "preview": None,
        "allow": ", ".join(spec.get("ip_allow_list") or []),
        "pooler": "on" if (spec.get("connection_pooler") or {}).get("enabled") else "",
        "pool_mode": (spec.get("connection_pooler") or {}).get("pool_mode", "transaction"), "restore_name": "",
        "pool_clients": str(pooler.max_client_connections), "pool_size": str(pooler.default_pool_size),
        "pool_bounds": {f: int_bounds(ConnectionPooler, f) for f in ("max_client_connections", "default_pool_size")},
        **context,
    }  # fmt: skip
    return page(
        request, "instance.html", session, status_code=status, instance=view, backups=backups, change=_change(row),
        events=events,
        **values,
    )  # fmt: skip


@router.get("/instances/{instance_id}")
async def instance(request: Request, instance_id: str) -> Response:
    session = await session_of(request)
    require(session.who, session.org, "viewer")
    return await _instance_page(request, session, instance_id)


@router.get("/instances/{instance_id}/live")
async def instance_live(request: Request, instance_id: str) -> Response:
    """The parts of an instance's page its polling refreshes: state, last error, latest change and backups."""
    session = await session_of(request)
    require(session.who, session.org, "viewer")
    row = await session.ctl.get_instance(session.org, instance_id)
    view = instance_view(row, session.who, request.app.state.sealer)
    backups = await list_backups(session.ctl, session.org, instance_id)
    events = await _events(session, instance_id)
    return page(request, "_instance_parts.html", session, instance=view, backups=backups, change=_change(row),
                events=events)  # fmt: skip


@router.post("/instances/{instance_id}/configure")
async def configure(request: Request, instance_id: str) -> Response:
    """Change the overridden settings, the extensions and the replicas: the API's Update (its validation, the
    state machine: Configuring when a reload applies it, Restarting when Postgres must restart). Only what the
    form changes is sent. With ``intent=preview`` the change is checked the same way and nothing is written:
    the page says whether applying it would restart Postgres, and why."""
    session = await session_of(request)
    form = await changing(request, session)
    require(session.who, session.org, "member")
    current = (await session.ctl.get_instance(session.org, instance_id))["desired_spec"]
    typed = {name: form.get(name, "") for name in ("settings", "enabled", "disabled", "replicas", "allow", "pooler",
                                                   "pool_mode", "pool_clients", "pool_size")}  # fmt: skip
    errors: dict[str, str] = {}
    wanted: dict[str, Any] = {}
    try:
        wanted["postgres_configs"] = parse_settings(typed["settings"])
    except ValueError as exc:
        errors["settings"] = str(exc)
    try:
        wanted["extensions"] = extension_list(typed["enabled"], typed["disabled"])
    except ValueError as exc:
        errors["extensions"] = str(exc)
    wanted["ip_allow_list"] = names(typed["allow"])
    wanted["connection_pooler"] = {
        **(current.get("connection_pooler") or {}), "enabled": typed["pooler"] == "on",
        "pool_mode": typed["pool_mode"] or (current.get("connection_pooler") or {}).get("pool_mode", "transaction"),
    }  # fmt: skip
    for field, key, words in (("pool_clients", "max_client_connections", "max client connections"),
                              ("pool_size", "default_pool_size", "default pool size")):  # fmt: skip
        if typed[field].strip():
            try:
                wanted["connection_pooler"][key] = int(typed[field])
            except ValueError:
                errors["connection_pooler"] = f"{words}: a whole number"
    if typed["replicas"].strip():
        try:
            wanted["replicas"] = int(typed["replicas"])
        except ValueError:
            errors["replicas"] = "replicas: a whole number from 1 to 5"
    if not errors:
        try:
            patch = InstancePatch.model_validate(wanted).model_dump(mode="json", exclude_unset=True)
            changes = {name: value for name, value in patch.items() if value != _as_patched(current, name)}
            if not changes:
                raise Invalid("nothing to change: the form holds what the instance has")
            if form.get("intent") == "preview":  # checked like the Update, nothing written
                reasons = await session.ctl.update_preview(session.org, instance_id, changes)
                return await _instance_page(request, session, instance_id, 200, preview={"reasons": reasons}, **typed)
            await session.ctl.change(session.org, instance_id, "Update", changes)
        except ValidationError as exc:
            errors.update({_config_field(k): v for k, v in field_errors(exc).items()})
        except (Invalid, Conflict) as exc:
            errors[_config_field(message_field(str(exc)))] = str(exc)
    if errors:
        status = 409 if any("still working" in e for e in errors.values()) else 422
        return await _instance_page(request, session, instance_id, status, errors=errors, **typed)
    return RedirectResponse(f"/instances/{instance_id}", status_code=303)


@router.post("/instances/{instance_id}/restore")
async def restore(request: Request, instance_id: str) -> Response:
    """A new instance from one of this instance's completed backups (the API's restore: new passwords)."""
    session = await session_of(request)
    form = await changing(request, session)
    require(session.who, session.org, "member")
    name, backup_id = form.get("restore_name", "").strip(), form.get("backup_id", "")
    if backup_id not in {b["id"] for b in await list_backups(session.ctl, session.org, instance_id)}:
        raise NotFound(f"backup {backup_id!r} of this instance not found")
    try:
        await restore_backup(session.ctl, session.org, backup_id, name)
    except (Invalid, Conflict, Unavailable) as exc:
        status = http_error(exc)[0]
        return await _instance_page(request, session, instance_id, status, errors={"restore": str(exc)},
                                    restore_name=name)  # fmt: skip
    return RedirectResponse("/instances", status_code=303)


@router.post("/instances/{instance_id}/{action}")
async def act(request: Request, instance_id: str, action: str) -> Response:
    session = await session_of(request)
    form = await changing(request, session)
    require(session.who, session.org, "member")
    if action in ACTIONS:
        await session.ctl.change(session.org, instance_id, ACTIONS[action])
    elif action == "delete":
        row = await session.ctl.get_instance(session.org, instance_id)
        if form.get("confirm_name", "") != row["name"]:
            raise Invalid(f"to delete it, type the instance's name ({row['name']}) exactly")
        await session.ctl.change(session.org, instance_id, "Delete")
        return RedirectResponse("/instances", status_code=303)
    elif action == "backup":
        await request_backup(session.ctl, session.org, instance_id)
    else:
        raise Invalid(f"unknown action {action!r}: one of {[*ACTIONS, 'delete', 'backup']}")
    return RedirectResponse(f"/instances/{instance_id}", status_code=303)
