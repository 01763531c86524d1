"""``howdah up`` keeps the platform admin token it saved while the database accepts it, and says so when it
must make a new one; it saves it as the active profile ``local``, also over a config file written before
profiles existed."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from howdah.cli._config import LOCAL_PROFILE, config_path, load
from howdah.cli.up import _admin_credentials

API_URL = "http://127.0.0.1:8080"


@pytest.fixture(autouse=True)
def config_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))


def test_a_saved_token_the_database_accepts_is_kept(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    token, org, created = _admin_credentials(db_url, API_URL)
    config = load()
    assert created and org == "default" and config.active == LOCAL_PROFILE
    assert config.profiles[LOCAL_PROFILE].token == token and config.profiles[LOCAL_PROFILE].api_url == API_URL
    assert _admin_credentials(db_url, API_URL) == (token, org, False)
    assert "refused" not in capsys.readouterr().err
    assert stat.S_IMODE(config_path().stat().st_mode) == 0o600
    assert stat.S_IMODE(config_path().parent.stat().st_mode) == 0o700


def test_a_refused_saved_token_is_replaced_and_reported(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    config_path().parent.mkdir(parents=True)
    config_path().write_text('[profiles.local]\ntoken = "hwd_revoked_or_from_another_database"\n')
    token, _, created = _admin_credentials(db_url, API_URL)
    assert created and token != "hwd_revoked_or_from_another_database" and load().profiles["local"].token == token
    assert "the saved platform admin token is refused (invalid or revoked token)" in capsys.readouterr().err


def test_a_config_file_from_before_profiles_keeps_working(db_url: str) -> None:
    token, _, _ = _admin_credentials(db_url, API_URL)
    config_path().write_text(f'api_url = "{API_URL}"\ntoken = "{token}"\norg = "default"\n')  # the old layout
    old = load()
    assert old.active == "default" and old.profiles["default"].token == token  # still read, as profile default
    assert _admin_credentials(db_url, "http://127.0.0.1:9090") == (token, "default", False)  # its token kept
    config = load()
    assert set(config.profiles) == {LOCAL_PROFILE} and config.active == LOCAL_PROFILE
    assert config.profiles[LOCAL_PROFILE].api_url == "http://127.0.0.1:9090"
