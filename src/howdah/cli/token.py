"""``howdah token``: the org's API tokens through the API (org admin), so they work against a remote Howdah."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import typer
from psycopg_pool import AsyncConnectionPool

from howdah.cli._api import Api, ApiSettings, profile_name
from howdah.cli._common import DatabaseUrlOption, err_console, friendly, resolve_url
from howdah.cli._config import LEGACY_PROFILE, update_profile
from howdah.cli._output import Format, JsonFlag, OutputOption, chosen, emit
from howdah.cli._refs import resolve
from howdah.cli._tables import tokens_table
from howdah.control.service import ControlPlane

app = typer.Typer(help="API tokens of an org (org admin; through the API).", no_args_is_help=True)

OrgOption = typer.Option(None, help="The org (default: the CLI's configured org).")


def _tokens(org: str) -> str:
    return f"/api/v1/orgs/{org}/tokens"


@app.command("list")
@friendly
def list_(org: str | None = OrgOption, output: OutputOption = Format.table, as_json: JsonFlag = False) -> None:
    """The org's active tokens (never their secrets); ids as their shortest unique prefix."""
    api = Api(ApiSettings.load())
    listed = api.call("GET", _tokens(org or api.settings.org))
    emit(listed, chosen(output, as_json), lambda: tokens_table(listed, datetime.now(UTC)))


@app.command("create")
@friendly
def create(
    org: str | None = OrgOption,
    role: str = typer.Option(
        "member", help="admin, member or viewer; platform (data planes, every org) or metrics (/metrics only)."
    ),
    name: str = typer.Option("", help="A label for the token."),
    save: bool = typer.Option(
        False,
        help="Also save it (with its org, and --api-url) in the CLI's profile (howdah --profile, else the "
        "active one, else 'default').",
    ),
    api_url: str | None = typer.Option(None, help="The API URL to save with --save."),
    via_database: bool = typer.Option(
        False,
        "--via-database",
        help="Write it straight into the control-plane database instead of calling the "
        "API: on the platform's host, before any token exists (the audit trail says 'database'; --org required).",
    ),
    database_url: str | None = DatabaseUrlOption,
    output: OutputOption = Format.table,
) -> None:
    """Create an API token; its secret is printed once (alone on stdout, or in the record with -o), and only its
    hash is stored."""
    if via_database:
        if not org:
            raise typer.BadParameter("--via-database needs --org", param_hint="--org")
        created = asyncio.run(_create_in_database(resolve_url(database_url), org, role, name))
    else:
        api = Api(ApiSettings.load())
        org = org or api.settings.org
        created = api.call("POST", _tokens(org), json={"role": role, "name": name})
    if output is Format.table:
        err_console.print(f"token {created['id']} ({created['role']} of {org}); the secret, shown once:")
        typer.echo(created["token"])
    else:
        emit(created, output, lambda: None)
    if save:
        values = {"token": created["token"], "org": org}
        if api_url:
            values["api_url"] = api_url
        name = profile_name() or LEGACY_PROFILE
        err_console.print(f"saved as profile {name!r} in {update_profile(name, **values)}", style="dim")


async def _create_in_database(url: str, org: str, role: str, name: str) -> dict[str, str]:
    async with AsyncConnectionPool(url, min_size=1, max_size=1, kwargs={"autocommit": True}, open=False) as pool:
        token, row = await ControlPlane(pool).create_token(org, role, name)
    return {"id": str(row["id"]), "org_id": org, "role": str(row["role"]), "name": str(row["name"]), "token": token}


@app.command()
@friendly
def revoke(token: str = typer.Argument(..., help="The token's id, unique id prefix or name."),
           org: str | None = OrgOption) -> None:  # fmt: skip
    """Revoke a token: the API refuses it from then on."""
    api = Api(ApiSettings.load())
    path = _tokens(org or api.settings.org)
    found = resolve(token, api.call("GET", path), what="token")
    api.call("DELETE", f"{path}/{found['id']}")
    err_console.print(f"token {found['id']} revoked")
