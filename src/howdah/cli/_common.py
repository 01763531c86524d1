"""What every command shares: the console, where the database is, and turning errors into clear messages."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import psycopg
import typer
from rich.console import Console

from howdah.cli._refs import Ambiguous, NoMatch
from howdah.control.errors import http_error
from howdah.errors import HowdahError
from howdah.pg import database_url
from howdah.queue import QueueNotFound

console = Console()
err_console = Console(stderr=True)

P = ParamSpec("P")
T = TypeVar("T")


# The CLI's exit codes (the README's CLI section lists them).
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NOT_FOUND, EXIT_NOT_READY = 0, 1, 2, 3, 4


def exit_code(status: int) -> int:
    """The exit code for an HTTP status (the API's answer, or the status the API gives the same error): the one
    place where statuses become exit codes."""
    if status < 400:
        return EXIT_OK
    if status in (400, 422):
        return EXIT_USAGE  # the caller's input is invalid
    if status == 404:
        return EXIT_NOT_FOUND
    if status in (409, 410, 503):
        return EXIT_NOT_READY  # busy, in the wrong state, finished, or unavailable for now
    return EXIT_FAILED


def fail(message: str, code: int = EXIT_FAILED) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)  # one line, never wrapped
    return typer.Exit(code)


def error_exit(exc: HowdahError) -> int:
    """The exit code of one of Howdah's named errors met by a command."""
    if isinstance(exc, Ambiguous):
        return EXIT_USAGE
    if isinstance(exc, NoMatch | QueueNotFound):
        return EXIT_NOT_FOUND  # the API calls a missing queue unavailable (an unregistered data plane); not here
    return exit_code(http_error(exc)[0])


def friendly(fn: Callable[P, T]) -> Callable[P, T]:
    """Turn Howdah's named errors and connection failures into one red line and their exit code."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return fn(*args, **kwargs)
        except HowdahError as exc:
            message = str(exc)
            if isinstance(exc, Ambiguous):
                message += "".join(f"\n  {candidate}" for candidate in exc.candidates)
            raise fail(message, error_exit(exc)) from None
        except psycopg.OperationalError as exc:
            raise fail(f"cannot reach Postgres: {str(exc).strip()}", EXIT_NOT_READY) from None
        except psycopg.Error as exc:
            raise fail(f"Postgres said: {(exc.diag.message_primary or str(exc)).strip()}") from None

    return wrapper


def resolve_url(explicit: str | None = None) -> str:
    """``--database-url``, else ``$HOWDAH_DATABASE_URL``, else the embedded server (started on demand)."""
    return explicit or database_url(start=True)


def parse_json(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise fail(f"{what} is not valid JSON ({exc.msg} at position {exc.pos}): {text!r}") from None


DatabaseUrlOption = typer.Option(
    None, "--database-url", envvar="HOWDAH_DATABASE_URL", help="Postgres URL (default: the embedded server)."
)
