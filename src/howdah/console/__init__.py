"""The web console: server-rendered pages over the control plane's service layer, served by the API process.

:func:`mount_console` adds its pages and assets to the control plane's FastAPI app (same port); the JSON API is
unchanged (a path no route takes is an HTML page only for a browser on a console path). Sign-in keeps the API
token in an HttpOnly, SameSite=Strict cookie; every state-changing form is checked for its origin and CSRF
token; every page checks the role and org the token has.
"""

from __future__ import annotations

import inspect

from fastapi import FastAPI, Request, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from howdah.console import _auth_pages, _instances, _orgs, _platform, _queues, _tokens
from howdah.console._web import ASSETS, console_secret, http_error_page, wants_page

__all__ = ["mount_console"]


def mount_console(app: FastAPI) -> None:
    """Serve the console at ``/`` of ``app`` (made by :func:`howdah.control.api.create_app`)."""
    app.state.console_secret = console_secret()
    app.mount(ASSETS, StaticFiles(packages=[("howdah.console", "static")]), name="console-assets")
    for module in (_auth_pages, _instances, _tokens, _orgs, _platform, _queues):
        app.include_router(module.router)
    api_error = app.exception_handlers[StarletteHTTPException]

    async def http_error(request: Request, exc: Exception) -> Response:
        """A path or method no route takes: a page for a browser on a console path, else the API's JSON."""
        if isinstance(exc, StarletteHTTPException) and wants_page(request.url.path, request.headers.get("accept", "")):
            return await http_error_page(request, exc)
        response = api_error(request, exc)
        return await response if inspect.isawaitable(response) else response

    app.add_exception_handler(StarletteHTTPException, http_error)
