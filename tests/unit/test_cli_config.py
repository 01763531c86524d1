"""The CLI's config file: profiles written privately and atomically, read back the same, and the file written
before profiles existed still read."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from howdah.cli._config import Config, Profile, ProfileError, config_path, load, parse, render, save, save_profile
from howdah.cli.auth import unencrypted_elsewhere


@pytest.fixture(autouse=True)
def config_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))


def test_profiles_round_trip_with_awkward_values() -> None:
    config = Config("b", {"a": Profile("https://a.example", 'hwd_"quoted"\\back', "acme"),
                          "b": Profile("http://127.0.0.1:8080", "hwd_b", "default")})  # fmt: skip
    assert parse(render(config)) == config


def test_the_file_and_its_folder_are_private_and_replaced_whole(tmp_path: Path) -> None:
    save_profile("work", Profile("https://h.example", "hwd_secret", "acme"))
    path = config_path()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    before = path.stat().st_ino
    save_profile("home", Profile("https://g.example", "hwd_other", "beta"), activate=False)
    assert path.stat().st_ino != before  # a new file renamed over the old one, never rewritten in place
    assert [p.name for p in path.parent.iterdir()] == ["config.toml"]  # no temporary file left behind
    config = load()
    assert config.active == "work" and set(config.profiles) == {"work", "home"}


def test_a_loose_folder_is_made_private() -> None:
    config_path().parent.mkdir(parents=True, mode=0o755)
    save(Config())
    assert stat.S_IMODE(config_path().parent.stat().st_mode) == 0o700


def test_a_file_from_before_profiles_reads_as_the_active_profile_default() -> None:
    config = parse('api_url = "http://127.0.0.1:8080"\ntoken = "hwd_x"\norg = "default"\n')
    assert config == Config("default", {"default": Profile("http://127.0.0.1:8080", "hwd_x", "default")})


def test_forgetting_the_active_profile_leaves_none_active() -> None:
    config = Config("a", {"a": Profile(token="x"), "b": Profile(token="y")}).without("a")
    assert config == Config(None, {"b": Profile(token="y")})


@pytest.mark.parametrize("name", ["", "a b", "x/y", "a.b", "é", "n" * 64, "profiles]\n[x"])
def test_profile_names_are_plain(name: str) -> None:
    with pytest.raises(ProfileError):
        Config().with_profile(name, Profile(), activate=True)


def test_an_unreadable_file_is_a_clear_error() -> None:
    config_path().parent.mkdir(parents=True)
    config_path().write_text("token = ")
    with pytest.raises(ProfileError, match="not a valid config file"):
        load()


def test_a_readable_file_left_by_someone_else_is_replaced_by_a_private_one() -> None:
    config_path().parent.mkdir(parents=True)
    config_path().write_text('active = "x"\n')
    config_path().chmod(0o644)
    save_profile("x", Profile("https://h.example", "hwd_secret", "acme"))
    assert stat.S_IMODE(config_path().stat().st_mode) == 0o600


def test_a_symlink_in_place_of_the_file_is_replaced_and_its_target_left_alone(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere.toml"
    elsewhere.write_text("# not yours\n")
    config_path().parent.mkdir(parents=True)
    config_path().symlink_to(elsewhere)
    save_profile("x", Profile("https://h.example", "hwd_secret", "acme"))
    assert elsewhere.read_text() == "# not yours\n" and not config_path().is_symlink()
    assert load().profiles["x"].token == "hwd_secret"


@pytest.mark.parametrize(
    ("url", "warned"),
    [("http://127.0.0.1:8080", False), ("http://localhost:8080", False), ("http://[::1]:8080", False),
     ("https://howdah.example.com", False), ("http://howdah.example.com", True), ("http://10.0.0.5:8080", True)],
)  # fmt: skip
def test_login_warns_of_a_token_sent_in_clear_over_a_network(url: str, warned: bool) -> None:
    assert unencrypted_elsewhere(url) is warned
