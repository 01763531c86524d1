"""The web console: server-rendered pages over the control plane's service layer, served by the API process.

:func:`mount_console` adds its pages and assets to the control plane's FastAPI app (same port); the JSON API is
unchanged. Sign-in keeps the API token in an HttpOnly, SameSite=Strict cookie; every state-changing form is
checked for its origin and CSRF token; every page checks the role and org the token has.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from howdah.console import _auth_pages, _instances, _platform, _queues, _tokens
from howdah.console._web import ASSETS, console_secret

__all__ = ["mount_console"]


def mount_console(app: FastAPI) -> None:
    """Serve the console at ``/`` of ``app`` (made by :func:`howdah.control.api.create_app`)."""
    app.state.console_secret = console_secret()
    app.mount(ASSETS, StaticFiles(packages=[("howdah.console", "static")]), name="console-assets")
    for module in (_auth_pages, _instances, _tokens, _platform, _queues):
        app.include_router(module.router)
