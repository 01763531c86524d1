"""Profiles like gh's, against a real `howdah api`: `login` checks a token read from stdin (never argv) and saves
it privately, `--profile` and `$HOWDAH_PROFILE` choose, the environment overrides, `whoami` tells, `logout`
forgets, and a revoked token is refused."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest
import typer

from howdah.cli import app
from tests.acceptance.conftest import Cli

pytestmark = pytest.mark.slow


def _fresh(cli: Cli, home: Path) -> Cli:
    """The CLI with an empty config folder and no credentials from the environment."""
    env = {k: v for k, v in cli.env.items() if k not in ("HOWDAH_TOKEN", "HOWDAH_API_URL", "HOWDAH_ORG")}
    return Cli({**env, "XDG_CONFIG_HOME": str(home)}, cli.url, cli.platform)


def _whoami(cli: Cli, *args: str) -> Any:
    return json.loads(cli(*args, "whoami", "-o", "json").stdout)


def test_login_saves_a_checked_token_privately_and_whoami_tells(cli: Cli, tmp_path: Path) -> None:
    run = _fresh(cli, tmp_path / "fresh")
    admin = cli("token", "create", "--role", "admin", "--name", "laptop").stdout.strip()
    done = run("login", "--url", cli.url, "--profile", "work", input=admin + "\n")
    assert admin not in done.stdout + done.stderr  # never echoed
    path = tmp_path / "fresh" / "howdah" / "config.toml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    me = _whoami(run)
    assert {k: me[k] for k in ("org_id", "role", "api_url", "profile")} == {
        "org_id": "acme", "role": "admin", "api_url": cli.url, "profile": "work"}  # fmt: skip
    table = run("whoami").stdout
    assert "acme" in table and "admin" in table and cli.url in table and "work" in table
    assert json.loads(run("instance", "list", "-o", "json").stdout) == []  # the profile's org is acme


def test_a_refused_token_is_not_saved(cli: Cli, tmp_path: Path) -> None:
    run = _fresh(cli, tmp_path / "fresh")
    done = run("login", "--url", cli.url, input="hwd_not_a_token\n", check=False)
    assert done.returncode == 1 and "401" in done.stderr
    assert not (tmp_path / "fresh" / "howdah" / "config.toml").exists()
    unreachable = run("login", "--url", "http://127.0.0.1:9", input="hwd_x\n", check=False)
    assert unreachable.returncode == 4


def test_the_token_is_never_an_argument(cli: Cli, tmp_path: Path) -> None:
    command = typer.main.get_command(app)
    assert isinstance(command, typer.core.TyperGroup)
    options = {name for param in command.commands["login"].params for name in param.opts}
    assert options == {"--url", "--profile"}
    run = _fresh(cli, tmp_path / "fresh")
    done = run("login", "--url", cli.url, "--token", cli.platform, check=False)
    assert done.returncode == 2 and not (tmp_path / "fresh").exists()


def test_profiles_are_chosen_by_option_or_environment_and_the_environment_overrides(cli: Cli, tmp_path: Path) -> None:
    run = _fresh(cli, tmp_path / "fresh")
    member = cli("token", "create", "--role", "member").stdout.strip()
    run("login", "--url", cli.url, "--profile", "ops", input=cli.platform)
    run("login", "--url", cli.url, "--profile", "dev", input=member)  # the last login is the active profile
    assert _whoami(run)["profile"] == "dev" and _whoami(run)["role"] == "member"
    assert _whoami(run, "--profile", "ops")["role"] == "platform"
    by_env = Cli({**run.env, "HOWDAH_PROFILE": "ops"}, cli.url, cli.platform)
    assert _whoami(by_env)["org_id"] == "default"
    assert json.loads(by_env("whoami", "--profile", "dev", "-o", "json").stdout)["role"] == "member"
    overridden = Cli({**run.env, "HOWDAH_TOKEN": cli.platform}, cli.url, cli.platform)
    assert _whoami(overridden)["role"] == "platform"  # the profile dev's address, the environment's token
    run("login", "--url", cli.url, input=cli.platform)  # no --profile: the profile default, not the active one
    assert _whoami(run)["profile"] == "default" and _whoami(run, "--profile", "dev")["role"] == "member"
    missing = run("--profile", "nowhere", "whoami", check=False)
    assert missing.returncode == 1 and "no profile 'nowhere'" in missing.stderr

    run("logout")  # the active one: default
    run("logout", "--profile", "dev")
    assert run("whoami", check=False).returncode == 1  # no active profile left
    assert _whoami(run, "--profile", "ops")["role"] == "platform"
    assert run("logout", "--profile", "dev", check=False).returncode == 3


def test_a_revoked_token_is_refused_at_once(cli: Cli, tmp_path: Path) -> None:
    run = _fresh(cli, tmp_path / "fresh")
    created = json.loads(cli("token", "create", "--role", "viewer", "-o", "json").stdout)
    run("login", "--url", cli.url, input=created["token"])
    assert _whoami(run)["token_id"] == created["id"]
    cli("token", "revoke", created["id"])
    refused = run("whoami", check=False)
    assert refused.returncode == 1 and "401" in refused.stderr
