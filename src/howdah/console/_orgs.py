"""The org switcher (platform admins): which org the pages show. The choice is a cookie like the session's
(HttpOnly, SameSite=Strict); :func:`~howdah.console._session.org_viewed` ignores it for any other role, and every
page still checks the role and org through :func:`~howdah.control.service.require`."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse
from psycopg.rows import dict_row

from howdah.console._queries import QUERIES
from howdah.console._session import ORG_COOKIE, ORG_ID
from howdah.console._web import ConsoleRoute, changing, page, session_of
from howdah.control.errors import NotFound
from howdah.control.service import require_platform

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

ORGS_SHOWN = 1000


@router.get("/orgs")
async def orgs(request: Request) -> Response:
    session = await session_of(request)
    require_platform(session.who)
    async with session.ctl.pool.connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(QUERIES["orgs"], {"limit": ORGS_SHOWN})
        rows = await cur.fetchall()
    return page(request, "orgs.html", session, orgs=rows, limit=ORGS_SHOWN)


@router.post("/orgs")
async def choose_org(request: Request) -> Response:
    """View another org (its own, for the token's org: the cookie is cleared)."""
    session = await session_of(request)
    form = await changing(request, session)
    require_platform(session.who)
    org = form.get("org", "")
    found = False
    if ORG_ID.fullmatch(org):
        async with session.ctl.pool.connection() as conn:
            row = await (await conn.execute(QUERIES["org_exists"], {"id": org})).fetchone()
            found = bool(row and row[0])
    if not found:
        raise NotFound(f"org {org!r} not found")
    response = RedirectResponse("/instances", status_code=303)
    if org == session.who.org_id:
        response.delete_cookie(ORG_COOKIE, path="/", httponly=True, samesite="strict")
    else:
        response.set_cookie(ORG_COOKIE, org, httponly=True, samesite="strict", secure=request.url.scheme == "https")
    return response
