"""``howdah up``: Howdah's main job — Postgres, the schema, and every service, until Ctrl-C."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from typing import Annotated

import psycopg
import typer
from psycopg_pool import AsyncConnectionPool
from rich.live import Live
from rich.panel import Panel
from rich.table import Table

from howdah.cli._api import config_path, read_config, write_config
from howdah.cli._common import console, err_console, friendly
from howdah.cli.workflow import load_app
from howdah.conductor import Conductor
from howdah.console import mount_console
from howdah.control.errors import Unauthorized
from howdah.control.queries import QUERIES
from howdah.control.server import serve_control_plane
from howdah.control.service import ControlPlane
from howdah.df import install as install_df
from howdah.durable import DurableApp, Worker
from howdah.pg import EmbeddedPostgres, external_database_url, howdah_home, migrations
from howdah.pg.processes import LOCALHOST, free_port, port_open
from howdah.providers.local import LocalProvider
from howdah.queue import AsyncQueue, QueueError
from howdah.schema import ALL_COMPONENTS, install_all

DEFAULT_ORG = "default"
LOCAL_DATA_PLANE = "local"


@friendly
def up(
    app_specs: Annotated[
        list[str] | None,
        typer.Option("--app", help="A DurableApp ('package.module:app') to run a worker for; repeatable."),
    ] = None,
    concurrency: int = typer.Option(16, min=1, help="Workflows each worker runs at once."),
    api_port: int = typer.Option(8080, min=0, max=65535, help="The API's port on 127.0.0.1 (0: any free port)."),
    conductor: bool = typer.Option(
        True, "--conductor/--no-conductor", help="Run the local data plane (real Postgres instances on this machine)."
    ),
    maintenance_interval: float = typer.Option(
        60.0, min=1.0, help="Seconds between partition-maintenance passes over partitioned queues."
    ),
) -> None:
    """Start the embedded Postgres (unless HOWDAH_DATABASE_URL is set), install or upgrade the schema, and run
    Howdah's services until Ctrl-C or SIGTERM."""
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
        app_specs = app_specs or []
        apps = [load_app(spec, url) for spec in app_specs]
        if not apps:
            apps.append(DurableApp(url))
        install_df(apps[0])  # its worker also runs the workflows defined in SQL (df.start) of this database
        port = api_port if api_port and not port_open(LOCALHOST, api_port) else free_port()
        api_url = f"http://127.0.0.1:{port}"
        token, org, created = _admin_credentials(url, api_url)
        _banner(server, applied, versions, maintenance_interval, app_specs, concurrency, api_url, conductor)
        if created:  # shown once; afterwards only where it is kept
            console.print(f"platform admin token (org [bold]{org}[/]), shown once: {token}", highlight=False)
        console.print(f"platform admin token saved in {config_path()} (mode 0600)", highlight=False)
        console.print(f"web console: {api_url}/ (sign in with an API token)", highlight=False)
        asyncio.run(_serve(url, apps, concurrency, maintenance_interval, port, conductor))
        console.print("stopping…")
    finally:
        if server is not None and started_here:
            server.stop()
            console.print("embedded Postgres stopped")
    console.print("Howdah stopped cleanly")


def _admin_credentials(dsn: str, api_url: str) -> tuple[str, str, bool]:
    """(token, org, created now): the saved platform-admin token when it is valid for this database, else a new
    one (org "default"), saved in the config file (mode 0600)."""
    saved = read_config()

    async def check_or_create() -> tuple[str, str, bool]:
        async with AsyncConnectionPool(dsn, min_size=1, max_size=1, kwargs={"autocommit": True}, open=False) as pool:
            control = ControlPlane(pool)
            if saved.get("token"):
                try:
                    who = await control.authenticate(saved["token"])
                    if who.platform:
                        return saved["token"], who.org_id, False
                except Unauthorized as exc:  # revoked, or saved for another database: a new token replaces it
                    err_console.print(f"[yellow]the saved platform admin token is refused ({exc}); making a new one[/]")
            token, row = await control.create_token(DEFAULT_ORG, "platform", "howdah up")
            return token, row["org_id"], True

    token, org, created = asyncio.run(check_or_create())
    write_config({"api_url": api_url, "token": token, "org": org})
    return token, org, created


async def _serve(
    url: str, apps: list[DurableApp], concurrency: int, maintenance_interval: float, api_port: int, conductor: bool
) -> None:
    """Run every service until SIGINT/SIGTERM; workers finish or hand back their in-flight runs."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with AsyncQueue(url, pool_size=1) as queue, contextlib.AsyncExitStack() as stack:
        for app in apps:
            await stack.enter_async_context(app)
        tasks = [
            asyncio.create_task(Worker(app, concurrency=concurrency).run(stop, handle_signals=False)) for app in apps
        ]
        api_started = asyncio.Event()
        tasks.append(
            asyncio.create_task(
                serve_control_plane(url, stop, port=api_port, started=api_started, extend=mount_console)
            )
        )
        await asyncio.wait_for(api_started.wait(), 30)
        if conductor:
            agent = Conductor(url, LOCAL_DATA_PLANE, LocalProvider(howdah_home() / "dataplane"))
            tasks.append(asyncio.create_task(agent.run(stop), name="howdah-conductor"))
        console.print("Press Ctrl-C to stop.")
        sys.stdout.flush()  # the line others wait for, also when stdout is a pipe
        if console.is_terminal:
            tasks.append(asyncio.create_task(_live_status(url, stop), name="howdah-live-status"))
        while not stop.is_set():
            try:
                await queue.maintain()
            except QueueError as exc:
                err_console.print(f"[yellow]partition maintenance failed:[/] {exc}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), maintenance_interval)
        await asyncio.gather(*tasks)


async def _live_status(url: str, stop: asyncio.Event, every: float = 2.0) -> None:
    """A Rich live panel of what the platform is doing: instances by state, workflows by status, queues."""
    async with AsyncConnectionPool(
        url, min_size=1, max_size=1, kwargs={"autocommit": True}, open=False, check=AsyncConnectionPool.check_connection
    ) as pool:
        with Live(console=console, refresh_per_second=2, transient=True) as live:
            while not stop.is_set():
                with contextlib.suppress(psycopg.Error):  # best effort: the services log their own errors
                    live.update(await _status_table(pool))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), every)


async def _status_table(pool: AsyncConnectionPool) -> Table:
    table = Table(title="live status", box=None)
    for column in ("what", "counts"):
        table.add_column(column)
    async with pool.connection() as conn:
        queries = (
            ("instances", QUERIES["instances_by_state"]),
            ("workflows", "SELECT status, count(*) FROM howdah.workflows GROUP BY 1 ORDER BY 1"),
            ("queue depth", "SELECT queue_name, queue_length FROM pgmq.metrics_all() WHERE queue_length > 0"),
        )
        for label, query in queries:
            cur = await conn.execute(query)
            rows = await cur.fetchall()
            table.add_row(label, ", ".join(f"{key}: {value}" for key, value in rows) or "-")
    return table


def _banner(
    server: EmbeddedPostgres | None,
    applied: list[migrations.Migration],
    versions: dict[str, int],
    maintenance_interval: float,
    app_specs: list[str],
    concurrency: int,
    api_url: str,
    conductor: bool,
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
    table.add_row("web console", f"{api_url}/")
    table.add_row("control-plane API", f"{api_url}  (OpenAPI: {api_url}/docs)")
    table.add_row("reconciler", "applies data-plane state events")
    table.add_row("queue maintenance", f"every {maintenance_interval:g}s (partitioned queues)")
    if conductor:
        table.add_row("conductor", f"data plane {LOCAL_DATA_PLANE!r}: instances under {howdah_home() / 'dataplane'}")
    for spec in app_specs:
        table.add_row("workflow worker", f"{spec} (concurrency {concurrency})")
    if not app_specs:
        table.add_row("workflow worker", "none (add --app package.module:app)")
    console.print(Panel(table, title="Howdah is up", expand=False))
    console.print(
        "next: [bold]howdah instance create demo --wait[/] then [bold]howdah instance connect demo[/]"
        if conductor
        else "next: [bold]howdah queue create demo[/] then [bold]howdah queue send demo '{\"hello\": 1}'[/]"
    )
