"""``howdah up`` keeps the platform admin token it saved while the database accepts it, and says so when it
must make a new one."""

from __future__ import annotations

from pathlib import Path

import pytest

from howdah.cli._api import read_config, write_config
from howdah.cli.up import _admin_credentials

API_URL = "http://127.0.0.1:8080"


@pytest.fixture(autouse=True)
def config_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))


def test_a_saved_token_the_database_accepts_is_kept(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    token, org, created = _admin_credentials(db_url, API_URL)
    assert created and org == "default" and read_config()["token"] == token
    assert _admin_credentials(db_url, API_URL) == (token, org, False)
    assert "refused" not in capsys.readouterr().err


def test_a_refused_saved_token_is_replaced_and_reported(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    write_config({"token": "hwd_revoked_or_from_another_database"})
    token, _, created = _admin_credentials(db_url, API_URL)
    assert created and token != "hwd_revoked_or_from_another_database" and read_config()["token"] == token
    assert "the saved platform admin token is refused (invalid or revoked token)" in capsys.readouterr().err
