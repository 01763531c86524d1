"""What every console page shares: templates, the signed-in session, form parsing with CSRF and origin checks,
and HTML error pages (the API's JSON error handlers stay as they are for JSON clients)."""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

import jinja2
import psycopg
from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException

from howdah.console._session import COOKIE, CSRF_FIELD, CSRF_HEADER, ORG_COOKIE, csrf_valid, org_viewed, same_origin
from howdah.console._session import csrf_token as make_csrf_token
from howdah.control.api import MAX_BODY_BYTES, control_of
from howdah.control.errors import Forbidden, Invalid, Unauthorized, http_error, message_of
from howdah.control.service import ControlPlane, Principal
from howdah.errors import HowdahError

ENV_SECRET = "HOWDAH_CONSOLE_SECRET"  # the key of CSRF tokens (default: random per process)
ASSETS = "/console-assets"

log = logging.getLogger("howdah.console")

_environment = jinja2.Environment(
    loader=jinja2.PackageLoader("howdah.console", "templates"),
    autoescape=True,  # every value is HTML-escaped unless a template says otherwise (none does)
    undefined=jinja2.StrictUndefined,
)


def _utc(value: datetime | str | None) -> str:
    """A time as the pages show it (UTC, to the second), from a datetime or the API's ISO text."""
    if isinstance(value, str):
        try:
            when: datetime | None = datetime.fromisoformat(value)
        except ValueError:
            return value
    else:
        when = value
    return "" if when is None else when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


_environment.filters["utc"] = _utc
templates = Jinja2Templates(env=_environment)

# Pages only load what this process serves; no inline script or style can run, even if some text slipped through.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
}


def console_secret() -> bytes:
    """The key CSRF tokens are derived with: ``$HOWDAH_CONSOLE_SECRET`` (several API processes behind one address
    must share it), else random for this process (a restart asks open forms to be loaded again)."""
    configured = os.environ.get(ENV_SECRET, "")
    return configured.encode() if configured else secrets.token_bytes(32)


class SignInNeeded(HowdahError):
    """No session, or its token is no longer accepted: the browser is sent to the sign-in page, which says why
    (``reason``: a key of :data:`SIGN_IN_REASONS`, or "" for nothing to say)."""

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason


SIGN_IN_REASONS: Mapping[str, str] = {
    "revoked": "the token of this session is invalid or has been revoked: sign in again",
}


@dataclass(frozen=True)
class Session:
    who: Principal
    token: str
    csrf: str
    ctl: ControlPlane
    org: str  # the org the pages show: the token's, or the one a platform admin chose (see _orgs.py)

    @property
    def elsewhere(self) -> bool:
        """A platform admin viewing an org other than its token's."""
        return self.org != self.who.org_id


async def session_of(request: Request) -> Session:
    """The signed-in caller, from the session cookie (its API token, checked like a bearer token)."""
    token = request.cookies.get(COOKIE)
    if not token:
        raise SignInNeeded("sign in with an API token")
    ctl = await control_of(request)
    try:
        who = await ctl.authenticate(token)
    except Unauthorized as exc:
        raise SignInNeeded(SIGN_IN_REASONS["revoked"], "revoked") from exc
    org = org_viewed(who.org_id, who.platform, request.cookies.get(ORG_COOKIE))
    session = Session(who, token, make_csrf_token(request.app.state.console_secret, token), ctl, org)
    request.state.console_session = session  # error pages keep the navigation
    return session


def _is_form(request: Request) -> bool:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    return kind == "application/x-www-form-urlencoded"


async def read_form(request: Request) -> dict[str, str]:
    """A URL-encoded form's fields (the first value of each); anything else is refused."""
    if not _is_form(request):
        raise Invalid("forms are sent as application/x-www-form-urlencoded")
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise Invalid(f"forms are limited to {MAX_BODY_BYTES} bytes")
    try:
        fields = parse_qs(body.decode(), keep_blank_values=True, max_num_fields=100, strict_parsing=False)
    except (UnicodeDecodeError, ValueError) as exc:
        raise Invalid("the form could not be read") from exc
    return {name: values[0] for name, values in fields.items()}


def check_origin(request: Request) -> None:
    if not same_origin(
        request.headers.get("origin"), request.headers.get("referer"), request.url.scheme, request.headers.get("host")
    ):
        raise Forbidden("this request did not come from a page of this console (its Origin is another site)")


async def changing(request: Request, session: Session) -> dict[str, str]:
    """The form of a state-changing request, once its origin and CSRF token are checked (else 403)."""
    check_origin(request)
    form = await read_form(request) if _is_form(request) else {}  # no form: only the CSRF header can pass
    presented = form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER)
    if not csrf_valid(request.app.state.console_secret, session.token, presented):
        raise Forbidden("the form's CSRF token is missing or wrong: load the page again and retry")
    return form


def page(
    request: Request, template: str, session: Session | None, status_code: int = 200, **context: Any
) -> HTMLResponse:
    """A page rendered with the layout's context: who is signed in, the CSRF token, the navigation."""
    values: dict[str, Any] = {"session": session, "csrf": session.csrf if session else "", "assets": ASSETS}
    values.update(context)
    return templates.TemplateResponse(request, template, values, status_code=status_code)


TITLES = {400: "Bad request", 403: "Not allowed", 404: "Not found", 405: "Method not allowed", 409: "Conflict",
          422: "Invalid input", 503: "Unavailable"}  # fmt: skip


def error_hint(status: int, who: Principal | None) -> str:
    """What an error page adds to the error's own words: why such a thing happens."""
    if status == 404:
        return "What this address names does not exist, or belongs to another org."
    if status == 403 and who is not None:
        return f"Your token (role {who.role} in org {who.org_id}) does not allow this."
    if status == 405:
        return "This address is a page of the console, but not for this kind of request."
    return ""


def error_page(request: Request, status: int, message: str) -> HTMLResponse:
    """What went wrong, in words, with the navigation when the caller is signed in."""
    title = TITLES.get(status, "Error" if status >= 500 else "Request refused")
    session: Session | None = getattr(request.state, "console_session", None)
    hint = error_hint(status, session.who if session else None)
    return page(request, "error.html", session, status_code=status, title=title, message=message, hint=hint)


# Paths of the JSON API and of what machines read: their errors stay the API's JSON, whoever asks.
NOT_PAGES = ("/api", "/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/docs-assets", ASSETS)


def wants_page(path: str, accept: str) -> bool:
    """Whether an error answers as an HTML page: a console path (none of :data:`NOT_PAGES`) asked for by a
    browser (its ``Accept`` names text/html); everything else keeps the API's JSON error."""
    if any(path == prefix or path.startswith(prefix + "/") for prefix in NOT_PAGES):
        return False
    return "text/html" in accept.lower()


def secured(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


async def http_error_page(request: Request, exc: StarletteHTTPException) -> HTMLResponse:
    """The page for a path no console route takes (404) or a method it does not (405), signed in or not."""
    with contextlib.suppress(SignInNeeded, HowdahError, psycopg.Error):
        await session_of(request)  # the navigation, when the browser is signed in
    if exc.status_code == 404:
        message = f"There is no page at {request.url.path}."
    elif exc.status_code == 405:
        message = f"{request.method} is not a request this page takes."
    else:
        message = str(exc.detail)
    response = error_page(request, exc.status_code, message)
    response.headers.update(exc.headers or {})
    secured(response)
    return response


class ConsoleRoute(APIRoute):
    """A console route: errors become HTML pages (a lost session a redirect to sign-in), and every response
    carries the console's security headers."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                response = await handler(request)
            except SignInNeeded as exc:
                response = RedirectResponse(f"/sign-in?reason={exc.reason}", status_code=303)
                response.delete_cookie(COOKIE, path="/")
            except RequestValidationError as exc:
                where = "; ".join(
                    f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', 'invalid')}" for e in exc.errors()
                )
                response = error_page(request, 422, where or "invalid request")
            except psycopg.DataError:  # as the API: a value Postgres cannot store (for example NUL)
                response = error_page(
                    request, 422, "a value contains characters Postgres cannot store (for example NUL)"
                )
            except (HowdahError, psycopg.Error) as exc:
                status, code, retry_after = http_error(exc)
                if status >= 500:
                    log.log(logging.WARNING if status == 503 else logging.ERROR, "%s: %s", code, exc,
                            exc_info=status != 503)  # fmt: skip
                response = error_page(request, status, message_of(exc, status))
                if retry_after:
                    response.headers["Retry-After"] = str(retry_after)
            except Exception:  # a page like every other error, never a stack trace
                log.exception("console page %s failed", request.url.path)
                response = error_page(request, 500, "internal error; the server log has the details")
            return secured(response)

        return handle


def reason_text(code: str) -> str:
    """What the sign-in page says for a ``reason`` it was sent with (nothing for one it does not know)."""
    return SIGN_IN_REASONS.get(code, "")
