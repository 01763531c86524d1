"""The platform's pages (platform admins): workflows, one workflow's step timeline, and queues. Workflows and
queues serve every org at once (the conductors' work, the data planes' events), so no org role sees them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from psycopg.rows import dict_row

from howdah.console._queries import QUERIES
from howdah.console._web import ConsoleRoute, Session, page, session_of
from howdah.control.errors import NotFound
from howdah.control.service import require_platform
from howdah.durable import WorkflowNotFound
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
) -> Response:
    """Workflows of one status, newest first, a page at a time (a keyset on the status index: no count)."""
    session = await _platform(request)
    params = {"status": status, "before_at": before_at, "before_id": before_id, "limit": PAGE_SIZE + 1}
    rows = await _rows(session, "workflows_page", params)
    more = rows[PAGE_SIZE] if len(rows) > PAGE_SIZE else None
    rows = rows[:PAGE_SIZE]
    following = {"at": rows[-1]["created_at"].isoformat(), "id": rows[-1]["id"]} if more and rows else None
    return page(
        request, "workflows.html", session, rows=rows, status=status, statuses=STATUSES, following=following,
        first=before_at is None,
    )  # fmt: skip


@router.get("/workflows/{workflow_id:path}")
async def workflow(request: Request, workflow_id: str) -> Response:
    session = await _platform(request)
    store = Store(session.ctl.pool)
    try:
        info = await store.get(workflow_id)
    except WorkflowNotFound as exc:
        raise NotFound(str(exc)) from exc
    steps = await store.steps(workflow_id)
    children = await _rows(session, "workflow_children", {"id": workflow_id})
    return page(request, "workflow.html", session, wf=info, steps=steps, children=children)


@router.get("/queues")
async def queues(request: Request) -> Response:
    session = await _platform(request)
    return page(request, "queues.html", session, rows=await _rows(session, "queues", {}))
