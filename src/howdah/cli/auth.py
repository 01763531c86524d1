"""``howdah login``, ``logout`` and ``whoami``: the platforms the CLI talks to, as named profiles (like gh)."""

from __future__ import annotations

import sys
from typing import Annotated

import httpx
import typer

from howdah.cli._api import Api, ApiSettings, named_profile, profile_name
from howdah.cli._common import EXIT_NOT_FOUND, err_console, fail, friendly
from howdah.cli._config import LEGACY_PROFILE, Profile, ProfileError, config_path, save, save_profile
from howdah.cli._config import load as load_config
from howdah.cli._output import Format, JsonFlag, OutputOption, chosen, emit
from howdah.cli._tables import fields_table

ProfileOption = Annotated[
    str | None,
    typer.Option("--profile", help="The profile (default: howdah --profile, $HOWDAH_PROFILE, else the active one)."),
]


LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


def unencrypted_elsewhere(url: str) -> bool:
    """Whether ``url`` would carry the token in clear over a network (plain http to another machine)."""
    parsed = httpx.URL(url)
    return parsed.scheme == "http" and parsed.host not in LOOPBACK


def _token_from_terminal_or_stdin() -> str:
    """The token from standard input when it is not a terminal (a pipe, a file), else from a prompt that does not
    echo it; never from the command line, where other users of the machine could read it."""
    if sys.stdin.isatty():
        token = str(typer.prompt("API token (hwd_…)", hide_input=True, err=True))
    else:
        token = sys.stdin.readline()
    token = token.strip()
    if not token:
        raise typer.BadParameter("no token given (type it at the prompt, or pipe it on stdin)")
    return token


@friendly
def login(
    url: Annotated[str, typer.Option("--url", help="The API's address, for example https://howdah.example.com.")],
    profile: Annotated[
        str | None,
        typer.Option(
            "--profile",
            help="The profile to save (default: howdah --profile, $HOWDAH_PROFILE, else "
            "'default'; never the active one unless named).",
        ),
    ] = None,
) -> None:
    """Check an API token against the API at --url and save both as a profile (--profile, else 'default'), made
    the active one. The token is read from a hidden prompt, or from stdin: `howdah login --url URL < token.txt`."""
    try:
        name = named_profile(profile) or LEGACY_PROFILE  # never the active one unless named: it may be `local`
    except ProfileError as exc:
        raise typer.BadParameter(str(exc), param_hint="--profile") from None
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise typer.BadParameter(f"not a URL: {exc}", param_hint="--url") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise typer.BadParameter("must be http:// or https:// and a host", param_hint="--url")
    if unencrypted_elsewhere(url):
        err_console.print(f"[yellow]warning:[/] {url} is plain http: the token crosses the network unencrypted "
                          "(use https://)", highlight=False, soft_wrap=True)  # fmt: skip
    token = _token_from_terminal_or_stdin()
    who = Api(ApiSettings(url.rstrip("/"), token, "")).whoami()  # 401: refused, nothing saved
    path = save_profile(name, Profile(url.rstrip("/"), token, who["org_id"]))
    err_console.print(
        f"logged in to {url} as {who['role']} of org {who['org_id']}; profile {name!r} (active) saved in {path}",
        highlight=False,
    )


@friendly
def logout(profile: ProfileOption = None) -> None:
    """Forget a profile's address and token (the token stays valid: `howdah token revoke` revokes it)."""
    config = load_config()
    name = profile_name(profile, config)
    if name is None or name not in config.profiles:
        raise fail(f"no profile {name or '(none active)'} in {config_path()}", EXIT_NOT_FOUND)
    save(config.without(name))
    err_console.print(f"profile {name!r} removed from {config_path()}", highlight=False)


@friendly
def whoami(profile: ProfileOption = None, output: OutputOption = Format.table, as_json: JsonFlag = False) -> None:
    """Who the CLI is to the API: the token's org and role, the endpoint, and the profile."""
    settings = ApiSettings.load(profile=profile, need_org=False)
    who = Api(settings).whoami()
    record = {**who, "api_url": settings.url, "profile": settings.profile}
    rows = [("org", who["org_id"]), ("role", who["role"]), ("token", who["token_id"]),
            ("endpoint", settings.url), ("profile", settings.profile or "- (environment)")]  # fmt: skip
    emit(record, chosen(output, as_json), lambda: fields_table(rows, "howdah whoami"))
