"""The Tokens page (org admins): the org's active tokens, creating one (shown once) and revoking one."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse

from howdah.console._web import ConsoleRoute, Session, changing, page, session_of
from howdah.control.errors import Invalid
from howdah.control.service import PLATFORM_ONLY, ROLES, may_issue, require

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)


def _roles(session: Session) -> list[str]:
    """The roles this admin may issue (platform and metrics tokens only a platform admin)."""
    return [role for role in ROLES if session.who.platform or role not in PLATFORM_ONLY]


async def _page(request: Request, session: Session, status: int = 200, **context: Any) -> Response:
    tokens = [row for row in await session.ctl.list_tokens(session.org) if row["revoked_at"] is None]
    values = {"created": None, "error": "", "name": "", "role": "viewer", **context}
    return page(request, "tokens.html", session, status_code=status, tokens=tokens, roles=_roles(session), **values)


@router.get("/tokens")
async def tokens(request: Request) -> Response:
    session = await session_of(request)
    require(session.who, session.org, "admin")
    return await _page(request, session)


@router.post("/tokens")
async def create_token(request: Request) -> Response:
    session = await session_of(request)
    form = await changing(request, session)
    require(session.who, session.org, "admin")
    name, role = form.get("name", "").strip(), form.get("role", "")
    if role not in ROLES:
        return await _page(request, session, 422, error=f"choose a role: one of {_roles(session)}", name=name)
    if len(name) > 100:
        return await _page(request, session, 422, error="a token's name is at most 100 characters", name=name)
    may_issue(session.who, session.org, role)
    token, row = await session.ctl.create_token(session.org, role, name, actor=session.who)
    return await _page(request, session, 201, created={"token": token, "name": row["name"], "role": row["role"]})


@router.post("/tokens/{token_id}/revoke")
async def revoke_token(request: Request, token_id: str) -> Response:
    session = await session_of(request)
    await changing(request, session)
    require(session.who, session.org, "admin")
    if len(token_id) > 64:
        raise Invalid("unknown token id")
    await session.ctl.revoke_token(session.org, token_id, actor=session.who)
    return RedirectResponse("/tokens", status_code=303)
