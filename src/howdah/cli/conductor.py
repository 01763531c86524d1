"""``howdah conductor``: a data plane's agent, provisioning instances through a provider."""

from __future__ import annotations

import asyncio
import importlib
import signal
from pathlib import Path
from typing import Annotated, cast

import typer

from howdah.cli._common import DatabaseUrlOption, console, fail, friendly, resolve_url
from howdah.conductor import Conductor
from howdah.pg import howdah_home
from howdah.providers import Provider


def make_provider(kind: str, home: Path | None, namespace: str) -> Provider:
    """The provider named ``kind`` (imported on demand: the kubernetes client is only needed for kubernetes)."""
    if kind == "local":
        local = importlib.import_module("howdah.providers.local")
        return cast(Provider, local.LocalProvider((home or howdah_home() / "dataplane").resolve()))
    if kind == "kubernetes":
        kubernetes = importlib.import_module("howdah.providers.kubernetes")
        return cast(Provider, kubernetes.KubernetesProvider(namespace))
    raise fail(f"unknown provider {kind!r}: use local or kubernetes")


@friendly
def run_conductor(
    data_plane: str = typer.Option("local", "--data-plane", help="The data plane this conductor serves."),
    provider: str = typer.Option("local", help="local (Postgres processes here) or kubernetes (CloudNativePG)."),
    home: Annotated[
        Path | None, typer.Option(help="Where the local provider keeps instances (default: under HOWDAH_HOME).")
    ] = None,
    namespace: str = typer.Option("howdah", help="Kubernetes namespace (kubernetes provider)."),
    database_url: str | None = DatabaseUrlOption,
) -> None:
    """Register the data plane and carry out its CRUD events until Ctrl-C or SIGTERM."""
    url = resolve_url(database_url)
    agent = Conductor(url, data_plane, make_provider(provider, home, namespace))

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        console.print(f"conductor for data plane {data_plane!r} ({provider} provider) started")
        await agent.run(stop)

    asyncio.run(main())
    console.print("conductor stopped")
