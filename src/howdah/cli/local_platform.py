"""``howdah status`` and ``howdah down``: whether the platform is ready, and stopping the local one."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import httpx
import psycopg
import typer

from howdah.cli._api import ENV_URL, Api, ApiSettings, profile_name
from howdah.cli._common import EXIT_FAILED, EXIT_NOT_READY, err_console, fail, friendly
from howdah.cli._config import LOCAL_PROFILE
from howdah.cli._config import load as load_config
from howdah.cli._local import alive, pid_path, running_up
from howdah.cli._output import Format, OutputOption, emit
from howdah.cli._tables import fields_table
from howdah.cli.up import DEFAULT_ORG, LOCAL_DATA_PLANE, local_provider
from howdah.control.queries import QUERIES
from howdah.pg import EmbeddedPostgres, external_database_url

POLL_SECONDS = 0.2


def platform_url(explicit: str | None = None) -> str | None:
    """Where the platform's API is: ``--url``, else ``$HOWDAH_API_URL``, else the address the running ``howdah up``
    of this ``$HOWDAH_HOME`` recorded in its pid file, else the one of the CLI's profile (see ``howdah login``)."""
    if explicit or os.environ.get(ENV_URL):
        return (explicit or os.environ[ENV_URL]).rstrip("/")
    running = running_up()
    if running is not None:
        return running.api_url
    config = load_config()
    name = profile_name(config=config)
    found = config.profiles.get(name) if name else None
    return found.api_url if found and found.api_url else None


def readiness(url: str | None) -> dict[str, Any]:
    """``/readyz``'s answer with the address asked, or a record of why there is none."""
    if not url:
        return {"url": None, "status": "unknown", "error": {"message": "no platform address: run `howdah up`"}}
    try:
        answer = httpx.get(f"{url}/readyz", timeout=5.0)
        body = answer.json()
        if not isinstance(body, dict) or "status" not in body:
            raise ValueError(f"/readyz answered {answer.status_code} without a readiness record")
    except (httpx.HTTPError, ValueError) as exc:
        return {"url": url, "status": "unreachable", "error": {"message": f"cannot reach {url}/readyz: {exc}"}}
    return {"url": url, **body}


def _rows(record: dict[str, Any]) -> list[tuple[str, str]]:
    rows = [("platform", record["url"] or "-"), ("status", record["status"])]
    for name, check in (record.get("checks") or {}).items():
        rows.append((name, ("ok: " if check["ok"] else "[red]not ok:[/] ") + check["detail"]))
    if record["status"] != "ready" and "checks" not in record:
        rows.append(("why", record["error"]["message"]))
    return rows


@friendly
def status(
    wait: bool = typer.Option(False, "--wait", help="Wait until the platform is ready."),
    timeout: float = typer.Option(120.0, min=0.0, help="With --wait: how many seconds at most."),
    url: str | None = typer.Option(None, "--url", help="The API's address (default: the local platform's)."),
    output: OutputOption = Format.table,
) -> None:
    """Whether the platform is ready, as /readyz says (exit 0), or not yet (exit 4, saying why)."""
    deadline = time.monotonic() + timeout
    while True:
        record = readiness(platform_url(url))  # read anew each time: `howdah up` may record its address later
        if record["status"] == "ready" or not wait or time.monotonic() >= deadline:
            break
        time.sleep(POLL_SECONDS)
    emit(record, output, lambda: fields_table(_rows(record), "Howdah"))
    if record["status"] != "ready":
        raise typer.Exit(EXIT_NOT_READY)


@friendly
def down(
    instances: bool = typer.Option(False, "--instances", help="Stop every local instance too (their data is kept)."),
    timeout: float = typer.Option(120.0, min=1.0, help="Seconds to wait for each step."),
) -> None:
    """Stop the running `howdah up` (SIGTERM, then wait); with --instances, first stop every instance of its local
    data plane through the API (so that the platform knows them Stopped), and any left running afterwards."""
    running = running_up()
    if instances and running is not None:
        _stop_through_api(running.api_url, timeout)
    if running is not None:
        os.kill(running.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while alive(running.pid):
            if time.monotonic() > deadline:
                raise fail(f"howdah up (pid {running.pid}) did not stop within {timeout:g}s", EXIT_FAILED)
            time.sleep(POLL_SECONDS)
        err_console.print(f"howdah up (pid {running.pid}) stopped")
    else:
        err_console.print(f"howdah up does not run here (no live process in {pid_path()})", highlight=False)
    provider = local_provider()
    left = provider.running_instances()
    if instances:
        for instance_id, name in left.items():  # the platform is down: straight through the data plane
            provider.stop(instance_id)
            err_console.print(f"stopped instance {name} ({instance_id}) on the local data plane", highlight=False)
        left = provider.running_instances()
        if left:
            raise fail(f"still running: {', '.join(left.values())}", EXIT_FAILED)
    elif left:
        err_console.print(
            f"{len(left)} local instance(s) keep running: {', '.join(sorted(left.values()))}; "
            "`howdah down --instances` stops them", highlight=False,
        )  # fmt: skip


def _stop_through_api(api_url: str, timeout: float) -> None:
    """Stop each local instance that is not stopped yet through the API (every org's: the platform token may act
    in any), then wait until each is settled."""
    api = Api(ApiSettings.load(url=api_url, profile=LOCAL_PROFILE))  # `howdah up` saved its token there
    targets = [row for row in _local_instances() if row[3] != "Stopped"]
    asked = []
    for org, instance_id, name, _ in targets:
        path = f"/api/v1/orgs/{org}/instances/{instance_id}"
        try:
            api.call("POST", f"{path}/stop", retry_for=timeout)
        except typer.Exit:  # said why already (for example: still being created); the sweep below stops it
            continue
        asked.append((path, org, name))
    deadline = time.monotonic() + timeout
    for path, org, name in asked:
        while (item := api.call("GET", path, retry_for=timeout))["state"] not in ("Stopped", "Error", "Deleted"):
            if time.monotonic() > deadline:
                raise fail(f"{name} is still {item['state']} after {timeout:g}s", EXIT_NOT_READY)
            time.sleep(POLL_SECONDS)
        shown = name if org == DEFAULT_ORG else f"{org}/{name}"
        err_console.print(f"instance {shown}: {item['state']}", highlight=False)


def _local_instances() -> list[tuple[str, str, str, str]]:
    """(org, id, name, state) of every org's instances on the local data plane, read from the control database
    on this host (the API lists one org's at a time, and no route lists the orgs)."""
    url = external_database_url() or EmbeddedPostgres().url()
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
            rows = conn.execute(QUERIES["instances_on_data_plane"], {"data_plane": LOCAL_DATA_PLANE}).fetchall()
    except psycopg.Error as exc:
        raise fail(f"cannot read the local instances from the control database: {exc}", EXIT_NOT_READY) from None
    return [(str(a), str(b), str(c), str(d)) for a, b, c, d in rows]
