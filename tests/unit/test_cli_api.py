"""The CLI's API client: ``--wait`` honours 409/503 + Retry-After (bounded); psql never sees the password in argv."""

from __future__ import annotations

import stat
import time
from pathlib import Path

import httpx
import pytest
import typer

from howdah.cli._api import Api, ApiSettings
from howdah.cli.instance import psql_invocation

SETTINGS = ApiSettings("http://howdah.test", "hwd_x", "acme")


def _api(answers: list[httpx.Response]) -> tuple[Api, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answers.pop(0) if len(answers) > 1 else answers[0]

    return Api(SETTINGS, transport=httpx.MockTransport(handler)), seen


def _busy(status: int = 409) -> httpx.Response:
    return httpx.Response(status, headers={"Retry-After": "0"}, json={"error": {"code": "c", "message": "busy"}})


def test_waiting_retries_while_the_api_says_retry_after() -> None:
    api, seen = _api([_busy(), _busy(503), httpx.Response(202, json={"state": "Configuring"})])
    assert api.call("PATCH", "/x", json={}, retry_for=30) == {"state": "Configuring"}
    assert len(seen) == 3


def test_waiting_is_bounded() -> None:
    api, seen = _api([_busy()])
    started = time.monotonic()
    with pytest.raises(typer.Exit):
        api.call("PATCH", "/x", json={}, retry_for=0.5)
    assert time.monotonic() - started < 5 and len(seen) >= 2


def test_without_wait_a_409_is_an_error_and_conflicts_without_retry_after_are_never_retried() -> None:
    api, seen = _api([_busy()])
    with pytest.raises(typer.Exit):
        api.call("PATCH", "/x", json={})
    assert len(seen) == 1
    api, seen = _api([httpx.Response(409, json={"error": {"code": "conflict", "message": "exists"}})])
    with pytest.raises(typer.Exit):
        api.call("POST", "/x", json={}, retry_for=30)
    assert len(seen) == 1


def test_psql_gets_the_password_from_a_private_passfile(tmp_path: Path) -> None:
    connection = {"host": "127.0.0.1", "port": 5433, "user": "app", "password": "p:w\\d s3cret", "dbname": "app"}
    passfile = tmp_path / "pgpass"
    argv, env = psql_invocation("/usr/bin/psql", connection, passfile)
    assert not any("s3cret" in arg for arg in argv)
    assert env == {"PGPASSFILE": str(passfile)}
    assert stat.S_IMODE(passfile.stat().st_mode) == 0o600
    assert passfile.read_text() == "*:*:*:*:p\\:w\\\\d s3cret\n"
    assert argv[0] == "/usr/bin/psql" and "app@127.0.0.1:5433/app" in argv[-1]
