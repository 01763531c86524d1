"""``howdah up``: Howdah's main job — Postgres, the schema, and every service, until Ctrl-C."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated

import httpx
import psycopg
import typer
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool
from rich.live import Live
from rich.panel import Panel
from rich.table import Table

from howdah.cli._common import EXIT_NOT_READY, console, err_console, fail, friendly
from howdah.cli._config import LEGACY_PROFILE, LOCAL_PROFILE, Profile, config_path, save
from howdah.cli._config import load as load_config
from howdah.cli._live_view import EVENTS, ROWS, LiveData, live_data, live_view
from howdah.cli._local import log_to_file, remove_pid_file, running_up, write_pid_file
from howdah.cli.workflow import load_app
from howdah.conductor import Conductor
from howdah.control.errors import Unauthorized
from howdah.control.queries import QUERIES
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
log = logging.getLogger("howdah.up")


@dataclass(frozen=True)
class Shown:
    """What the ready banner shows besides the services: the token lines, and what the next command is."""

    server: EmbeddedPostgres | None
    applied: list[migrations.Migration]
    versions: dict[str, int]
    app_specs: list[str]
    token_lines: list[str]


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
    ready_timeout: float = typer.Option(
        120.0, min=1.0, help="Seconds to wait for /readyz before saying what is not ready (the services keep running)."
    ),
) -> None:
    """Start the embedded Postgres (unless HOWDAH_DATABASE_URL is set), install or upgrade the schema, and run
    Howdah's services until Ctrl-C or SIGTERM (or `howdah down`). The banner shows once /readyz says ready; logs
    go to $HOWDAH_HOME/logs/howdah.log."""
    already = running_up()
    if already is not None:
        raise fail(f"howdah up already runs here (pid {already.pid}, API {already.api_url}); `howdah down` stops it",
                   EXIT_NOT_READY)  # fmt: skip
    logfile = log_to_file()
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
        token_lines = [f"platform admin token (org [bold]{org}[/]), shown once: {token}"] if created else []
        token_lines += [f"platform admin token saved as the active profile {LOCAL_PROFILE!r} in {config_path()}",
                        f"web console: {api_url}/ (sign in with an API token)", f"logs: {logfile}"]  # fmt: skip
        shown = Shown(server, applied, versions, app_specs, token_lines)
        console.print(f"starting; waiting until {api_url}/readyz says ready (logs: {logfile})", highlight=False)
        settings = Settings(concurrency, maintenance_interval, port, conductor, ready_timeout)
        asyncio.run(_serve(url, apps, settings, shown))
        console.print("stopping…")
        left = _still_running(url)
    finally:
        remove_pid_file()
        if server is not None and started_here:
            server.stop()
            console.print("embedded Postgres stopped")
    if not left:
        console.print("Howdah stopped cleanly")
        return
    names = ", ".join(left)
    console.print(f"Howdah stopped; {len(left)} local instance(s) keep running: {names}", highlight=False)
    console.print("stop them with: howdah down --instances", highlight=False)


@dataclass(frozen=True)
class Settings:
    concurrency: int
    maintenance_interval: float
    api_port: int
    conductor: bool
    ready_timeout: float


def _still_running(url: str) -> list[str]:
    """The local data plane's instances whose Postgres still runs (by name, with their org when not the default
    one): they outlive ``howdah up`` by design."""
    running = local_provider().running_instances()
    if not running:
        return []
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
            rows = conn.execute(QUERIES["instances_on_data_plane"], {"data_plane": LOCAL_DATA_PLANE}).fetchall()
    except psycopg.Error:
        rows = []  # the names the data plane keeps are all that can be told
    named = {row[1]: row[2] if row[0] == DEFAULT_ORG else f"{row[0]}/{row[2]}" for row in rows}
    return sorted(named.get(instance_id, name) for instance_id, name in running.items())


def local_provider() -> LocalProvider:
    """The provider of ``howdah up``'s local data plane (its instances live under ``$HOWDAH_HOME/dataplane``)."""
    return LocalProvider(howdah_home() / "dataplane")


def _admin_credentials(dsn: str, api_url: str) -> tuple[str, str, bool]:
    """(token, org, created now): the platform-admin token saved in profile ``local`` (or, from a config file
    written before profiles, the one it held) when valid for this database, else a new one (org "default");
    saved as profile ``local``, made the active one."""
    config = load_config()
    saved = [config.profiles[name].token for name in (LOCAL_PROFILE, LEGACY_PROFILE) if name in config.profiles]

    async def check_or_create() -> tuple[str, str, bool]:
        async with AsyncConnectionPool(dsn, min_size=1, max_size=1, kwargs={"autocommit": True}, open=False) as pool:
            control = ControlPlane(pool)
            for token in filter(None, saved):
                try:
                    who = await control.authenticate(token)
                    if who.platform:
                        return token, who.org_id, False
                except Unauthorized as exc:  # revoked, or saved for another database: a new token replaces it
                    err_console.print(f"[yellow]the saved platform admin token is refused ({exc}); making a new one[/]")
            token, row = await control.create_token(DEFAULT_ORG, "platform", "howdah up")
            return token, row["org_id"], True

    token, org, created = asyncio.run(check_or_create())
    legacy = config.profiles.get(LEGACY_PROFILE)
    if legacy is not None and legacy.token == token:  # the pre-profile file held this platform's token: now `local`
        config = config.without(LEGACY_PROFILE)
    save(config.with_profile(LOCAL_PROFILE, Profile(api_url, token, org), activate=True))
    return token, org, created


async def _serve(url: str, apps: list[DurableApp], settings: Settings, shown: Shown) -> None:
    """Run every service until SIGINT/SIGTERM; workers finish or hand back their in-flight runs. The banner shows
    once /readyz says ready (with ``--no-conductor``: once the database and the reconciler are)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with AsyncQueue(url, pool_size=1) as queue, contextlib.AsyncExitStack() as stack:
        for app in apps:
            await stack.enter_async_context(app)
        tasks = [
            asyncio.create_task(Worker(app, concurrency=settings.concurrency).run(stop, handle_signals=False))
            for app in apps
        ]
        api_started = asyncio.Event()
        # The web server's modules load only here: every other command starts without them.
        from howdah.console import mount_console
        from howdah.control.server import serve_control_plane

        api = serve_control_plane(
            url, stop, port=settings.api_port, started=api_started, extend=mount_console, configure_logging=False
        )  # its logs go where log_to_file sent them
        tasks.append(asyncio.create_task(api, name="howdah-api"))
        await asyncio.wait_for(api_started.wait(), 30)
        api_url = f"http://127.0.0.1:{settings.api_port}"
        write_pid_file(api_url)
        if settings.conductor:
            agent = Conductor(url, LOCAL_DATA_PLANE, local_provider())
            tasks.append(asyncio.create_task(agent.run(stop), name="howdah-conductor"))
        waited = await _await_ready(api_url, stop, settings.ready_timeout, need_data_plane=settings.conductor)
        if not stop.is_set():
            _banner(shown, settings, api_url, waited)
            console.print("Press Ctrl-C to stop.")
            sys.stdout.flush()  # the line others wait for, also when stdout is a pipe
            if console.is_terminal:
                tasks.append(asyncio.create_task(_live_status(url, stop), name="howdah-live-status"))
        while not stop.is_set():
            try:
                await queue.maintain()
            except QueueError as exc:
                log.warning("partition maintenance failed: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), settings.maintenance_interval)
        await asyncio.gather(*tasks)


@dataclass(frozen=True)
class Readiness:
    """How the wait for /readyz ended: ready or not, after how long, and what /readyz said last."""

    ready: bool
    seconds: float
    why: str


async def _await_ready(api_url: str, stop: asyncio.Event, timeout: float, *, need_data_plane: bool) -> Readiness:
    """Poll /readyz until it says ready (without a conductor of its own, until the checks other than the data
    plane's pass), ``stop`` is set, or ``timeout`` seconds passed."""
    started = time.monotonic()
    why = "/readyz did not answer"
    async with httpx.AsyncClient(base_url=api_url, timeout=5.0) as http:
        while not stop.is_set():
            try:
                answer = (await http.get("/readyz")).json()
                failed = {name: check["detail"] for name, check in answer["checks"].items() if not check["ok"]}
                if not need_data_plane:
                    failed.pop("data_plane", None)
                if not failed:
                    return Readiness(True, time.monotonic() - started, "")
                why = "; ".join(failed.values())
            except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
                why = f"/readyz did not answer: {exc}"
            if time.monotonic() - started > timeout:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.1)
    return Readiness(False, time.monotonic() - started, why)


async def _live_status(url: str, stop: asyncio.Event, every: float = 2.0) -> None:
    """A Rich live panel of what the platform is doing (each instance's progress, the last events, workflows and
    queues), from one query of the control database per refresh; server logs go to the log file, never here."""
    async with AsyncConnectionPool(
        url, min_size=1, max_size=1, kwargs={"autocommit": True}, open=False, check=AsyncConnectionPool.check_connection
    ) as pool:
        with Live(console=console, refresh_per_second=2, transient=True) as live:
            while not stop.is_set():
                with contextlib.suppress(psycopg.Error):  # best effort: the services log their own errors
                    live.update(
                        Panel(live_view(await _live_data(pool), datetime.now(UTC), DEFAULT_ORG), title="live status")
                    )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), every)


async def _live_data(pool: AsyncConnectionPool) -> LiveData:
    async with pool.connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(QUERIES["live_panel"], {"rows": ROWS, "events": EVENTS})
        row = await cur.fetchone()
    assert row is not None
    return live_data(row)


def _banner(shown: Shown, settings: Settings, api_url: str, waited: Readiness) -> None:
    table = Table(show_header=True, box=None)
    table.add_column("service")
    table.add_column("where")
    if shown.server is not None:
        status = shown.server.status()
        table.add_row("Postgres 18 (embedded)", f"127.0.0.1:{status.port}  data: {status.data_dir}")
    else:
        table.add_row("Postgres (external)", "HOWDAH_DATABASE_URL")
    schema = ", ".join(f"{name} v{version:04d}" for name, version in shown.versions.items())
    table.add_row(
        "schema", f"{schema}" + (f"  ({len(shown.applied)} migration(s) applied now)" if shown.applied else "")
    )
    table.add_row("web console", f"{api_url}/")
    table.add_row("control-plane API", f"{api_url}  (OpenAPI: {api_url}/docs)")
    table.add_row("reconciler", "applies data-plane state events")
    table.add_row("queue maintenance", f"every {settings.maintenance_interval:g}s (partitioned queues)")
    if settings.conductor:
        table.add_row("conductor", f"data plane {LOCAL_DATA_PLANE!r}: instances under {howdah_home() / 'dataplane'}")
    else:
        table.add_row("conductor", "none here (--no-conductor): /readyz waits for one (howdah conductor)")
    for spec in shown.app_specs:
        table.add_row("workflow worker", f"{spec} (concurrency {settings.concurrency})")
    if not shown.app_specs:
        table.add_row("workflow worker", "none (add --app package.module:app)")
    title = f"Howdah is up (ready in {waited.seconds:.1f}s)" if waited.ready else "Howdah runs but is not ready"
    console.print(Panel(table, title=title, expand=False))
    if not waited.ready:
        err_console.print(
            f"[yellow]not ready after {waited.seconds:.0f}s:[/] {waited.why}; the services keep running, and "
            "`howdah status --wait` tells when it is", highlight=False,
        )  # fmt: skip
    for line in shown.token_lines:
        console.print(line, highlight=False)
    console.print(f"ready: {api_url}/readyz" if waited.ready else f"not ready: {api_url}/readyz", highlight=False)
    console.print(
        "next: [bold]howdah instance create demo --wait[/] then [bold]howdah instance connect demo[/]"
        if settings.conductor
        else "next: [bold]howdah queue create demo[/] then [bold]howdah queue send demo '{\"hello\": 1}'[/]"
    )
