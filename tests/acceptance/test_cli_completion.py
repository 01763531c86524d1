"""Shell completion of instance names and ids, asked of a real `howdah api`: what a shell gets for an instance
argument, and nothing at all (no output, no error) when the API cannot be asked."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from howdah.cli._completion import instance_completions
from howdah.pg.processes import free_port
from tests.acceptance.conftest import Cli

pytestmark = pytest.mark.slow


@pytest.fixture
def configured(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> Cli:
    """This process reads the same config as the CLI (its profile: org acme) and nothing from the environment."""
    for name in ("HOWDAH_API_URL", "HOWDAH_TOKEN", "HOWDAH_ORG", "HOWDAH_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", cli.env["XDG_CONFIG_HOME"])
    return cli


@pytest.fixture
def asked(configured: Cli) -> Iterator[dict[str, str]]:
    """Three instances of org acme."""
    cli, ids = configured, {}
    for name in ("shop", "shipping", "depot"):
        ids[name] = json.loads(cli("instance", "create", name, "-o", "json").stdout)["id"]
    yield ids


def _shell(cli: Cli, args: list[str], incomplete: str, **env: str) -> list[str]:
    """What bash gets from `howdah` (the installed command, as `howdah --install-completion` wires it) for the
    word ``incomplete`` after ``args``; nothing may go to stderr, which would land in the terminal."""
    words = ["howdah", *args, incomplete]
    done = subprocess.run(
        [str(Path(sys.executable).parent / "howdah")], capture_output=True, text=True, timeout=60,
        env={**cli.env, **env, "_HOWDAH_COMPLETE": "complete_bash", "COMP_WORDS": " ".join(words),
             "COMP_CWORD": str(len(words) - 1)},
    )  # fmt: skip
    assert done.returncode == 0 and done.stderr == "", done.stderr
    return done.stdout.split()


def test_names_and_id_prefixes_are_completed(
    asked: dict[str, str], cli: Cli, capsys: pytest.CaptureFixture[str]
) -> None:
    assert sorted(value for value, _ in instance_completions("")) == ["depot", "shipping", "shop"]
    offered = dict(instance_completions("sh"))
    assert sorted(offered) == ["shipping", "shop"] and offered["shop"] in ("Submitted", "Creating")  # with states
    shop = asked["shop"]
    by_id = instance_completions(shop[:6])
    assert any(shop.startswith(value) and len(value) >= 8 and hint.startswith("shop (") for value, hint in by_id)
    assert [value for value, _ in instance_completions(shop)] == [shop]  # all of it typed: all of it offered
    for command in ("get", "status", "logs", "stop", "backups", "connect"):
        assert sorted(_shell(cli, ["instance", command], "sh")) == ["shipping", "shop"], command
    assert _shell(cli, ["instance", "create"], "sh") == []  # a new name: nothing to complete from
    assert _shell(cli, ["instance", "restore", "--from"], "dep") == ["depot"]
    assert _shell(cli, ["instance", "get"], shop[:6]) == [short for short, _ in by_id]
    assert capsys.readouterr() == ("", "")


def test_nothing_when_the_api_cannot_be_asked(
    configured: Cli, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert _shell(configured, ["--profile", "nowhere", "instance", "get"], "sh") == []  # no such profile
    assert _shell(configured, ["instance", "get"], "sh", HOWDAH_TOKEN="hwd_wrong") == []
    monkeypatch.setenv("HOWDAH_TOKEN", "hwd_wrong")
    assert instance_completions("sh") == []  # 401
    monkeypatch.delenv("HOWDAH_TOKEN")
    monkeypatch.setenv("HOWDAH_API_URL", f"http://127.0.0.1:{free_port()}")
    assert instance_completions("sh") == []  # nothing listens
    with socket.socket() as silent:  # accepts connections, never answers: the completion gives up
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        monkeypatch.setenv("HOWDAH_API_URL", f"http://127.0.0.1:{silent.getsockname()[1]}")
        assert instance_completions("sh") == []
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "empty"))
    monkeypatch.delenv("HOWDAH_API_URL")
    assert instance_completions("sh") == []  # no profile at all
    assert capsys.readouterr() == ("", "")
