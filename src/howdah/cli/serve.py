"""``howdah api``: the control plane (API + reconciler) on its own, against any database."""

from __future__ import annotations

import asyncio
import signal

import typer

from howdah.cli._common import DatabaseUrlOption, console, friendly, resolve_url
from howdah.control import ENV_METRICS_OPEN_LOOPBACK


@friendly
def api(
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8080, min=1, max=65535),
    database_url: str | None = DatabaseUrlOption,
    metrics_open_loopback: bool = typer.Option(
        False, "--metrics-open-loopback", envvar=ENV_METRICS_OPEN_LOOPBACK,
        help="Let clients on 127.0.0.1/::1 scrape /metrics without a token (elsewhere a metrics or platform "
        "token is needed).",
    ),
) -> None:  # fmt: skip
    """Serve the control-plane API and run the reconciler until Ctrl-C or SIGTERM (schema must be installed)."""
    url = resolve_url(database_url)
    # The web server's modules load only here: every other command starts without them.
    from howdah.console import mount_console
    from howdah.control.server import serve_control_plane

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        started = asyncio.Event()
        serving = asyncio.create_task(
            serve_control_plane(
                url,
                stop,
                host=host,
                port=port,
                started=started,
                metrics_open_loopback=metrics_open_loopback,
                extend=mount_console,
            )
        )
        await asyncio.wait([serving, asyncio.create_task(started.wait())], return_when=asyncio.FIRST_COMPLETED)
        if started.is_set():
            console.print(
                f"control plane API and web console on http://{host}:{port}/ (docs: /docs); reconciler running"
            )
        await serving

    asyncio.run(main())
    console.print("control plane stopped")
