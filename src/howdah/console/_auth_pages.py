"""Signing in and out: the API token goes into the session cookie, never into a URL or script storage."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import RedirectResponse

from howdah.console._session import COOKIE, ORG_COOKIE
from howdah.console._web import ConsoleRoute, changing, check_origin, page, read_form, reason_text, session_of
from howdah.control.api import control_of
from howdah.control.errors import Unauthorized

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)


@router.get("/")
async def home(request: Request) -> Response:
    await session_of(request)
    return RedirectResponse("/instances", status_code=303)


@router.get("/sign-in")
async def sign_in_form(request: Request, reason: Annotated[str, Query(max_length=20)] = "") -> Response:
    return page(request, "sign_in.html", None, error=reason_text(reason))


@router.post("/sign-in")
async def sign_in(request: Request) -> Response:
    check_origin(request)  # no one signs a browser in from another site
    form = await read_form(request)
    token = form.get("token", "").strip()
    ctl = await control_of(request)
    try:
        await ctl.authenticate(token or None)
    except Unauthorized:
        message = "Enter an API token." if not token else "This token is not valid, or has been revoked."
        return page(request, "sign_in.html", None, status_code=401, error=message)
    response = RedirectResponse("/instances", status_code=303)
    # A browser-session cookie scripts cannot read and other sites' requests do not carry; Secure over HTTPS.
    response.set_cookie(COOKIE, token, httponly=True, samesite="strict", secure=request.url.scheme == "https")
    return response


@router.post("/sign-out")
async def sign_out(request: Request) -> Response:
    session = await session_of(request)
    await changing(request, session)
    response = RedirectResponse("/sign-in", status_code=303)
    for cookie in (COOKIE, ORG_COOKIE):
        response.delete_cookie(cookie, path="/", httponly=True, samesite="strict")
    return response
