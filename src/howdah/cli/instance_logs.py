"""``howdah instance logs NAME [-f] [--since 10m]``: the instance's Postgres log, as its data plane shipped it to
the control plane (through the API; any role of the org may read it). A command of ``howdah instance``."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import typer

from howdah.cli._api import Api, ApiSettings
from howdah.cli._common import EXIT_USAGE, fail, friendly
from howdah.cli._completion import InstanceName
from howdah.cli._output import Format, OutputOption, emit
from howdah.cli._refs import escape_controls

FOLLOW_EVERY = 1.0  # seconds between reads with -f (the data plane ships every few seconds)
_SPAN = re.compile(r"^\s*(\d+)\s*(s|m|h|d)\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_since(text: str, now: datetime) -> datetime:
    """``10m``, ``2h``, ``30s``, ``1d`` ago, or a time with its zone."""
    span = _SPAN.match(text)
    if span:
        return now - timedelta(**{_UNITS[span[2]]: int(span[1])})
    try:
        at = datetime.fromisoformat(text.strip())
    except ValueError:
        raise fail(
            f"--since takes 10m, 2h, 1d or a time like '2026-12-05 10:00:00+00', not {text!r}", EXIT_USAGE
        ) from None
    if at.tzinfo is None:
        raise fail(f"--since {text!r} has no time zone: add one, e.g. '+00'", EXIT_USAGE)
    return at


def printable(line: Any) -> str:
    """One log line for a terminal: the server's name before a replica's, control characters escaped."""
    text = escape_controls(str(line["line"]))
    return text if line["server"] == "primary" else f"[{line['server']}] {text}"


@friendly
def logs(
    name: InstanceName,
    follow: bool = typer.Option(False, "-f", "--follow", help="Keep printing new lines until Ctrl-C."),
    since: str | None = typer.Option(None, "--since", help="Only lines from then on: 10m, 2h, 1d, or a time."),
    output: OutputOption = Format.table,
) -> None:
    """An instance's Postgres log (by name, id or unique id prefix): the newest few thousand lines its data plane
    shipped, oldest first; with -o json one array (with -f, one object per line)."""
    if follow and output is Format.yaml:
        raise fail("-f prints lines as they come: use -o table or -o json", EXIT_USAGE)
    api = Api(ApiSettings.load())
    item = api.find(name)
    path = f"{api.instances}/{item['id']}/logs"
    params: dict[str, Any] = {"after": 0}
    if since:
        params["since"] = parse_since(since, datetime.now(UTC)).isoformat()
    gathered: list[dict[str, Any]] = []
    try:
        while True:
            page = api.call("GET", path, params=params)
            for line in page["lines"]:
                if output is Format.table:
                    typer.echo(printable(line))
                elif follow:
                    typer.echo(json.dumps(line))
                else:
                    gathered.append(line)
            params["after"] = page["next_after"]
            if page["lines"]:
                continue  # more may wait: read on at once
            if not follow:
                break
            time.sleep(FOLLOW_EVERY)
    except KeyboardInterrupt:
        return
    if output is not Format.table and not follow:
        emit(gathered, output, lambda: None)
