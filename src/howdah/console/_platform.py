"""The platform's workflow pages (platform admins): workflows by status and one workflow's step timeline, with
Cancel, Retry and Send signal. Workflows serve every org at once (the conductors' work), so no org role sees
them; the Queues pages (``_queues.py``) likewise."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import quote

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import RedirectResponse
from psycopg.rows import dict_row

from howdah.console._queries import QUERIES
from howdah.console._web import ConsoleRoute, Session, changing, page, session_of
from howdah.control.errors import NotFound
from howdah.control.service import require_platform
from howdah.durable._store import Store

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

PAGE_SIZE = 50
Status = Literal["pending", "running", "sleeping", "waiting", "succeeded", "failed", "cancelled"]
STATUSES: tuple[Status, ...] = ("running", "pending", "sleeping", "waiting", "succeeded", "failed", "cancelled")


async def _platform(request: Request) -> Session:
    session = await session_of(request)
    require_platform(session.who)
    return session


async def _rows(session: Session, query: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    async with session.ctl.pool.connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(QUERIES[query], params)
        return await cur.fetchall()


@router.get("/workflows")
async def workflows(
    request: Request,
    status: Status = "running",
    before_at: Annotated[datetime | None, Query()] = None,
    before_id: Annotated[str, Query(max_length=200)] = "",
    name: Annotated[str, Query(max_length=200)] = "",
) -> Response:
    """Workflows of one status (and name, when given), newest first, a page at a time (a keyset on an index of
    the status, or of the status and name: no count)."""
    session = await _platform(request)
    name = name.strip()
    params = {"status": status, "name": name, "before_at": before_at, "before_id": before_id, "limit": PAGE_SIZE + 1}
    rows = await _rows(session, "workflows_page_named" if name else "workflows_page", params)
    more = rows[PAGE_SIZE] if len(rows) > PAGE_SIZE else None
    rows = rows[:PAGE_SIZE]
    following = {"at": rows[-1]["created_at"].isoformat(), "id": rows[-1]["id"]} if more and rows else None
    return page(
        request, "workflows.html", session, rows=rows, status=status, statuses=STATUSES, following=following,
        first=before_at is None, name=name,
    )  # fmt: skip


async def _workflow_page(
    request: Request, session: Session, workflow_id: str, status: int = 200, **context: Any
) -> Response:
    store = Store(session.ctl.pool)
    info = await store.get(workflow_id)  # WorkflowNotFound: 404
    steps = await store.steps(workflow_id)
    children = await _rows(session, "workflow_children", {"id": workflow_id})
    values = {"error": "", "signal_name": "", "signal_payload": "", **context}
    return page(request, "workflow.html", session, status_code=status, wf=info, steps=steps, children=children,
                **values)  # fmt: skip


@router.get("/workflows/{workflow_id:path}")
async def workflow(request: Request, workflow_id: str) -> Response:
    return await _workflow_page(request, await _platform(request), workflow_id)


@router.post("/workflows/{workflow_id:path}/{action}")
async def workflow_action(request: Request, workflow_id: str, action: str) -> Response:
    """Cancel, Retry (from the last checkpoint) or send a signal (a name and a JSON payload)."""
    session = await _platform(request)
    form = await changing(request, session)
    store = Store(session.ctl.pool)
    await store.get(workflow_id)  # WorkflowNotFound: 404
    if action == "cancel":
        await store.cancel(workflow_id)
    elif action == "retry":
        await store.retry(workflow_id)
    elif action == "signal":
        name, raw = form.get("signal_name", "").strip(), form.get("signal_payload", "").strip()
        try:
            payload = json.loads(raw) if raw else None
        except ValueError as exc:
            return await _workflow_page(request, session, workflow_id, 422, signal_name=name, signal_payload=raw,
                                        error=f"the payload is not JSON: {exc}")  # fmt: skip
        if not 1 <= len(name) <= 200:
            return await _workflow_page(request, session, workflow_id, 422, signal_name=name, signal_payload=raw,
                                        error="a signal needs a name (at most 200 characters)")  # fmt: skip
        await store.signal(workflow_id, name, payload)
    else:
        raise NotFound(f"no workflow action {action!r} (cancel, retry, signal)")
    return RedirectResponse(f"/workflows/{quote(workflow_id, safe='')}", status_code=303)
