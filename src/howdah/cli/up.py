"""``howdah up``: Howdah's main job — Postgres, the schema, and every service, until Ctrl-C."""

from __future__ import annotations

import signal
import threading
from types import FrameType

import psycopg
import typer
from rich.panel import Panel
from rich.table import Table

from howdah.cli._common import console, err_console, friendly
from howdah.pg import EmbeddedPostgres, external_database_url, migrations
from howdah.queue import Queue, QueueError
from howdah.schema import ALL_COMPONENTS, install_all


@friendly
def up(
    maintenance_interval: float = typer.Option(
        60.0, min=1.0, help="Seconds between partition-maintenance passes over partitioned queues."
    ),
) -> None:
    """Start the embedded Postgres (unless HOWDAH_DATABASE_URL is set), install or upgrade the schema, and run
    Howdah's services until Ctrl-C or SIGTERM."""
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    server: EmbeddedPostgres | None = None
    started_here = False
    try:
        external = external_database_url()
        if external:
            url = external
        else:
            server = EmbeddedPostgres()
            started_here = server.pid() is None
            server.start()
            url = server.url()
        with psycopg.connect(url, autocommit=True) as conn:
            applied = install_all(conn)
            versions = {c.name: max(migrations.state(conn, c).applied, default=0) for c in ALL_COMPONENTS}
        _banner(server, url if external else None, applied, versions, maintenance_interval)
        with Queue(url, pool_size=1) as queue:
            while not stop.is_set():
                try:
                    queue.maintain()
                except QueueError as exc:
                    err_console.print(f"[yellow]partition maintenance failed:[/] {exc}")
                stop.wait(maintenance_interval)
        console.print("stopping…")
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if server is not None and started_here:
            server.stop()
            console.print("embedded Postgres stopped")
    console.print("Howdah stopped cleanly")


def _banner(
    server: EmbeddedPostgres | None,
    external: str | None,
    applied: list[migrations.Migration],
    versions: dict[str, int],
    maintenance_interval: float,
) -> None:
    table = Table(show_header=True, box=None)
    table.add_column("service")
    table.add_column("where")
    if server is not None:
        status = server.status()
        table.add_row("Postgres 18 (embedded)", f"127.0.0.1:{status.port}  data: {status.data_dir}")
    else:
        table.add_row("Postgres (external)", "HOWDAH_DATABASE_URL")
    schema = ", ".join(f"{name} v{version:04d}" for name, version in versions.items())
    table.add_row("schema", f"{schema}" + (f"  ({len(applied)} migration(s) applied now)" if applied else ""))
    table.add_row("queue maintenance", f"every {maintenance_interval:g}s (partitioned queues)")
    console.print(Panel(table, title="Howdah is up", expand=False))
    console.print(
        "connection URL: [bold]howdah db url[/]   try: [bold]howdah queue create demo[/] then "
        '[bold]howdah queue send demo \'{"hello": "world"}\'[/] and [bold]howdah queue tail demo '
        "--from-start[/]"
    )
    console.print("Press Ctrl-C to stop.")
