"""``howdah conductor``: a data plane's agent, provisioning instances through a provider."""

from __future__ import annotations

import asyncio
import importlib
import signal
from pathlib import Path
from typing import Annotated, Any, cast

import typer

from howdah.cli._common import DatabaseUrlOption, console, fail, friendly, resolve_url
from howdah.conductor import LEASE, STATUS_INTERVAL, Conductor
from howdah.pg import howdah_home
from howdah.providers import Provider


def make_provider(
    kind: str, home: Path | None, namespace: str, object_store: dict[str, str | None] | None = None
) -> Provider:
    """The provider named ``kind`` (imported on demand: the kubernetes client is only needed for kubernetes);
    ``object_store``: the Kubernetes data plane's (``ObjectStoreConfig``'s fields), None for none."""
    if kind == "local":
        local = importlib.import_module("howdah.providers.local")
        return cast(Provider, local.LocalProvider((home or howdah_home() / "dataplane").resolve()))
    if kind == "kubernetes":
        kubernetes = importlib.import_module("howdah.providers.kubernetes")
        store = importlib.import_module("howdah.providers._cnpg_backup")
        try:
            config = store.ObjectStoreConfig(**{k: v for k, v in object_store.items() if v}) if object_store else None
        except ValueError as exc:
            raise fail(str(exc)) from None
        return cast(Provider, kubernetes.KubernetesProvider(namespace, object_store=config))
    raise fail(f"unknown provider {kind!r}: use local or kubernetes")


def _store_option(name: str, help_text: str) -> Any:
    """A Kubernetes object-store option: ``--object-store-NAME``, or ``HOWDAH_K8S_OBJECT_STORE_NAME``."""
    return typer.Option(
        None, f"--object-store-{name}", envvar=f"HOWDAH_K8S_OBJECT_STORE_{name.upper().replace('-', '_')}",
        help=help_text,
    )  # fmt: skip


@friendly
def run_conductor(
    data_plane: str = typer.Option("local", "--data-plane", help="The data plane this conductor serves."),
    provider: str = typer.Option("local", help="local (Postgres processes here) or kubernetes (CloudNativePG)."),
    home: Annotated[
        Path | None, typer.Option(help="Where the local provider keeps instances (default: under HOWDAH_HOME).")
    ] = None,
    namespace: str = typer.Option("howdah", help="Kubernetes namespace (kubernetes provider)."),
    store_destination: str | None = _store_option(
        "destination", "Backups of the kubernetes provider: bucket and prefix, e.g. s3://backups/howdah."
    ),
    store_secret: str | None = _store_option(
        "secret", "Name of the Secret (in the namespace) with the object store's access keys."
    ),
    store_endpoint: str | None = _store_option("endpoint", "S3-compatible endpoint URL (default: AWS S3)."),
    store_key_id: str | None = _store_option(
        "key-id-key", "The Secret's key holding the access key id (default ACCESS_KEY_ID)."
    ),
    store_secret_key: str | None = _store_option(
        "secret-key-key", "The Secret's key holding the secret access key (default ACCESS_SECRET_KEY)."
    ),
    lease: int = typer.Option(
        LEASE, min=1, help="Seconds a conductor holds the workflow of an event: after a crash, another takes it over "
        "when they run out (a shorter lease recovers sooner, at the cost of more frequent renewals).",
    ),
    status_interval: float = typer.Option(
        STATUS_INTERVAL, min=0.1, help="Seconds between two looks at the instances that should be Up (a dead server is "
        "restarted, status and server logs are shipped).",
    ),
    database_url: str | None = DatabaseUrlOption,
) -> None:  # fmt: skip
    """Register the data plane and carry out its CRUD events until Ctrl-C or SIGTERM."""
    url = resolve_url(database_url)
    if (store_destination is None) != (store_secret is None):
        raise fail("an object store needs both --object-store-destination and --object-store-secret")
    store = {
        "destination": store_destination, "secret": store_secret, "endpoint_url": store_endpoint,
        "access_key_id_key": store_key_id, "secret_access_key_key": store_secret_key,
    } if store_destination else None  # fmt: skip
    agent = Conductor(
        url, data_plane, make_provider(provider, home, namespace, store), lease=lease, status_interval=status_interval
    )

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        console.print(f"conductor for data plane {data_plane!r} ({provider} provider) started")
        await agent.run(stop)

    asyncio.run(main())
    console.print("conductor stopped")
