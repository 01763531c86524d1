"""``install``, ``upgrade``, ``verify`` and ``sql`` for a layer's schema, shared by ``howdah queue`` and
``howdah durable``: a layer is its own migrations component, after those of the layers it runs on."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
import typer

from howdah.cli._common import DatabaseUrlOption, console, fail, friendly, resolve_url
from howdah.cli._output import Format, OutputOption, emit
from howdah.pg import migrations
from howdah.pg.migrations import Component


def _connect(database_url: str | None) -> psycopg.Connection[Any]:
    return psycopg.connect(resolve_url(database_url), autocommit=True)


def _names(applied: Sequence[migrations.Migration]) -> str:
    return ", ".join(f"{m.version:04d}_{m.name}" for m in applied)


def _verified(state: migrations.SchemaState) -> dict[str, Any]:
    """One component's verification as a record (``-o json|yaml``)."""
    return {
        "component": state.component,
        "version": max(state.applied, default=None),
        "pending": list(state.pending),
        "problems": list(state.problems),
        "ok": bool(state.applied) and state.ok,
    }


def add_schema_commands(app: typer.Typer, components: Sequence[Component]) -> None:
    """Add the schema commands of ``components[-1]`` to ``app``. The components before it are the schemas it
    needs, installed and checked first, in order; each is reported under its own name."""
    layer = components[-1].name

    @friendly
    def install(database_url: str | None = DatabaseUrlOption) -> None:
        with _connect(database_url) as conn:
            for component in components:
                applied = migrations.upgrade(conn, component)
                if applied:
                    console.print(f"installed {component.name} schema: {_names(applied)}")
                else:
                    version = max(migrations.state(conn, component).applied, default=0)
                    console.print(f"{component.name} schema already installed (version {version:04d})")

    @friendly
    def upgrade(database_url: str | None = DatabaseUrlOption) -> None:
        with _connect(database_url) as conn:
            if not migrations.state(conn, components[-1]).applied:
                raise fail(f"the {layer} schema is not installed here; run `howdah {layer} install`")
            applied = [m for component in components for m in migrations.upgrade(conn, component)]
        console.print(f"applied {len(applied)} migration(s)" if applied else f"{layer} schema is up to date")

    @friendly
    def verify(database_url: str | None = DatabaseUrlOption, output: OutputOption = Format.table) -> None:
        with _connect(database_url) as conn:
            states = [migrations.state(conn, component) for component in components]
        if output is not Format.table:
            records = [_verified(state) for state in states]
            emit(records, output, lambda: "")
            if not all(record["ok"] for record in records):
                raise typer.Exit(1)
            return
        missing = [state.component for state in states if not state.applied]
        if missing:
            raise fail(f"the {' and '.join(missing)} schema{'s are' if len(missing) > 1 else ' is'} not installed")
        ok = True
        for state in states:
            for problem in state.problems:
                console.print(f"[red]problem:[/] {problem}")
            if state.pending:
                console.print(f"[yellow]pending migrations:[/] {', '.join(f'{v:04d}' for v in state.pending)}")
            if state.ok:
                console.print(f"{state.component} schema OK (version {max(state.applied):04d})")
            ok = ok and state.ok
        if not ok:
            raise typer.Exit(1)

    def print_sql() -> None:
        typer.echo("\n".join(component.sql() for component in components))

    needs = f" (after the {', '.join(c.name for c in components[:-1])} schema it needs)" if components[:-1] else ""
    install_help = f"Install the {layer} schema{needs} into the database; a no-op when it is up to date."
    app.command("install", help=install_help)(install)
    app.command("upgrade", help=f"Apply the pending migrations of the {layer} schema{needs}.")(upgrade)
    app.command("verify", help="Check that the installed schema matches this Howdah (exit 1 when not).")(verify)
    app.command("sql", help="Print the SQL that `install` runs (every migration in order).")(print_sql)
