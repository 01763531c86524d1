"""What every command shares: the console, where the database is, and turning errors into clear messages."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import psycopg
import typer
from rich.console import Console

from howdah.errors import HowdahError
from howdah.pg import database_url

console = Console()
err_console = Console(stderr=True)

P = ParamSpec("P")
T = TypeVar("T")


def fail(message: str, code: int = 1) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code)


def friendly(fn: Callable[P, T]) -> Callable[P, T]:
    """Turn Howdah's named errors and connection failures into one red line and exit code 1."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return fn(*args, **kwargs)
        except HowdahError as exc:
            raise fail(str(exc)) from None
        except psycopg.OperationalError as exc:
            raise fail(f"cannot reach Postgres: {str(exc).strip()}") from None
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
