"""``howdah db``: the embedded Postgres server."""

from __future__ import annotations

import typer
from rich.table import Table

from howdah.cli._common import EXIT_NOT_FOUND, console, friendly
from howdah.cli._output import Format, JsonFlag, OutputOption, chosen, emit
from howdah.pg import EmbeddedPostgres, external_database_url

app = typer.Typer(help="Start, stop and inspect the embedded Postgres server.", no_args_is_help=True)


def _server() -> EmbeddedPostgres:
    return EmbeddedPostgres()


@app.command()
@friendly
def start() -> None:
    """Start the embedded Postgres (initialising it on first use)."""
    status = _server().start()
    console.print(f"Postgres running (pid {status.pid}) on 127.0.0.1:{status.port}, data in {status.data_dir}")


@app.command()
@friendly
def stop(
    mode: str = typer.Option("fast", help="smart (wait for clients), fast (roll back) or immediate."),
) -> None:
    """Stop the embedded Postgres."""
    _server().stop(mode=mode)
    console.print("Postgres stopped")


@app.command()
@friendly
def status(output: OutputOption = Format.table, as_json: JsonFlag = False) -> None:
    """Show whether the embedded Postgres runs, where, and which URL is in use (exit code 3 when it does not run)."""
    server = _server()
    state = server.status() if server.initialised else None
    record = {
        "external_database_url": external_database_url() is not None,
        "initialised": state is not None,
        "running": bool(state and state.running),
        "pid": state.pid if state else None,
        "port": state.port if state else None,
        "data_dir": str(state.data_dir) if state else None,
        "log_file": str(state.log_file) if state else None,
    }
    rows = (
        [("database", "HOWDAH_DATABASE_URL is set: the embedded server is not used")]
        if record["external_database_url"]
        else []
    )
    rows.append(
        ("embedded server", "not initialised" if state is None else ("running" if state.running else "stopped"))
    )
    if state is not None:
        rows += [("pid", str(state.pid or "-")), ("port", str(state.port)), ("data", str(state.data_dir)),
                 ("log", str(state.log_file))]  # fmt: skip
    emit(record, chosen(output, as_json), lambda: _plain_fields(rows))
    if not record["running"]:
        raise typer.Exit(EXIT_NOT_FOUND)


@app.command()
@friendly
def url(
    dbname: str = typer.Option("postgres", "--dbname", help="Database name to put in the URL."),
) -> None:
    """Print the connection URL (HOWDAH_DATABASE_URL, or the embedded server's, starting it if needed)."""
    external = external_database_url()
    if external:
        typer.echo(external)
        return
    server = _server()
    server.start()
    typer.echo(server.url(dbname))


def _plain_fields(rows: list[tuple[str, str]]) -> Table:
    table = Table(show_header=False, box=None)
    for key, value in rows:
        table.add_row(key, value)
    return table
