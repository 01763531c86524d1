"""The Instances pages: the live table, the create form, one instance's page and its lifecycle buttons."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import RedirectResponse
from psycopg.rows import dict_row
from pydantic import ValidationError

from howdah.console._forms import field_errors, instance_fields, message_field
from howdah.console._queries import QUERIES
from howdah.console._web import ConsoleRoute, Session, changing, page, session_of
from howdah.control import stacks
from howdah.control.api import InstanceCreate
from howdah.control.errors import Conflict, Invalid, Unavailable, http_error
from howdah.control.service import instance_view, list_backups, request_backup, require
from howdah.control.spec import InstanceSpec

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


@router.get("/instances")
async def instances(request: Request, deleted: Annotated[bool, Query()] = False) -> Response:
    session = await session_of(request)
    require(session.who, session.org, "viewer")
    rows = await _rows(session, deleted)
    return page(request, "instances.html", session, rows=rows, deleted=deleted, limit=TABLE_LIMIT)


@router.get("/instances/rows")
async def instance_rows(request: Request, deleted: Annotated[bool, Query()] = False) -> Response:
    """The table's rows alone: what the page polls to show states change (one query for the whole table)."""
    session = await session_of(request)
    require(session.who, session.org, "viewer")
    return page(request, "_instance_rows.html", session, rows=await _rows(session, deleted))


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


@router.get("/instances/{instance_id}")
async def instance(request: Request, instance_id: str) -> Response:
    session = await session_of(request)
    require(session.who, session.org, "viewer")
    row = await session.ctl.get_instance(session.org, instance_id)
    view = instance_view(row, session.who, request.app.state.sealer)
    backups = await list_backups(session.ctl, session.org, instance_id)
    return page(request, "instance.html", session, instance=view, backups=backups, error="")


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
