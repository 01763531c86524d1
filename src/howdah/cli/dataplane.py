"""``howdah dataplane``: the data planes every org shares, through the API (platform admin)."""

from __future__ import annotations

from datetime import UTC, datetime

import typer

from howdah.cli._api import Api, ApiSettings
from howdah.cli._common import friendly
from howdah.cli._output import Format, JsonFlag, OutputOption, chosen, emit
from howdah.cli._refs import NoMatch, human_age
from howdah.cli._tables import fields_table, planes_table

app = typer.Typer(help="Data planes (platform admin; through the API).", no_args_is_help=True)
PLANES = "/api/v1/data-planes"


@app.command("list")
@friendly
def list_(output: OutputOption = Format.table, as_json: JsonFlag = False) -> None:
    """Every data plane: whether it is draining, when its conductor was last seen."""
    planes = Api(ApiSettings.load()).call("GET", PLANES)
    emit(planes, chosen(output, as_json), lambda: planes_table(planes, datetime.now(UTC)))


@app.command()
@friendly
def show(name: str, output: OutputOption = Format.table, as_json: JsonFlag = False) -> None:
    """One data plane."""
    found = [plane for plane in Api(ApiSettings.load()).call("GET", PLANES) if plane["name"] == name]
    if not found:
        raise NoMatch(f"no data plane named {name!r}")
    plane, now = found[0], datetime.now(UTC)
    rows = [("name", plane["name"]), ("queue", plane["queue_name"]), ("draining", "yes" if plane["draining"] else "no"),
            ("description", plane["description"] or "-"), ("created", human_age(plane["created_at"], now)),
            ("last seen", human_age(plane["last_seen_at"], now))]  # fmt: skip
    emit(plane, chosen(output, as_json), lambda: fields_table(rows, f"data plane {name}"))
