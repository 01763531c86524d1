"""``howdah db``: the embedded Postgres server."""

from __future__ import annotations

import typer
from rich.table import Table

from howdah.cli._common import console, friendly
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
def status() -> None:
    """Show whether the embedded Postgres runs, where, and which URL is in use."""
    server = _server()
    table = Table(show_header=False, box=None)
    external = external_database_url()
    if external:
        table.add_row("database", "HOWDAH_DATABASE_URL is set: the embedded server is not used")
    state = server.status() if server.initialised else None
    table.add_row(
        "embedded server", "not initialised" if state is None else ("running" if state.running else "stopped")
    )
    if state is not None:
        table.add_row("pid", str(state.pid or "-"))
        table.add_row("port", str(state.port))
        table.add_row("data", str(state.data_dir))
        table.add_row("log", str(state.log_file))
    console.print(table)
    if state is None or not state.running:
        raise typer.Exit(3)


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
