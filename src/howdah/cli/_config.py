"""The CLI's config file: named profiles (an API address, a token, an org), like gh's hosts, and which one is
active. The file holds tokens, so it is private (0600 in a 0700 folder) and replaced atomically."""

from __future__ import annotations

import json
import os
import re
import tempfile
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path

import platformdirs

from howdah.errors import ConfigurationError

LOCAL_PROFILE = "local"  # the one `howdah up` writes for the platform it runs
LEGACY_PROFILE = "default"  # what a config file written before profiles existed holds
_NAME = re.compile(r"[A-Za-z0-9_-]{1,63}")
_FIELDS = ("api_url", "token", "org")


class ProfileError(ConfigurationError):
    """The config file cannot be read, or a profile name is not acceptable."""


@dataclass(frozen=True)
class Profile:
    api_url: str = ""
    token: str = ""
    org: str = ""


@dataclass(frozen=True)
class Config:
    active: str | None = None
    profiles: dict[str, Profile] = field(default_factory=dict)

    def with_profile(self, name: str, profile: Profile, *, activate: bool) -> Config:
        return Config(name if activate else self.active, {**self.profiles, check_name(name): profile})

    def without(self, name: str) -> Config:
        left = {key: value for key, value in self.profiles.items() if key != name}
        return Config(None if self.active == name else self.active, left)


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise ProfileError(f"profile name {name!r} must be 1 to 63 letters, digits, '-' or '_'")
    return name


def config_path() -> Path:
    return Path(platformdirs.user_config_dir("howdah", appauthor=False)) / "config.toml"


def parse(text: str) -> Config:
    """A config file's profiles; one written before profiles existed (``api_url``, ``token``, ``org`` at the top)
    reads as the active profile ``default``."""
    data = tomllib.loads(text)
    profiles: dict[str, Profile] = {}
    tables = data.get("profiles")
    for name, values in (tables if isinstance(tables, dict) else {}).items():
        if isinstance(values, dict):
            profiles[name] = Profile(**{key: str(values[key]) for key in _FIELDS if key in values})
    active = data.get("active")
    legacy = {key: str(data[key]) for key in _FIELDS if isinstance(data.get(key), str)}
    if legacy and LEGACY_PROFILE not in profiles:
        profiles[LEGACY_PROFILE] = Profile(**legacy)
        active = active or LEGACY_PROFILE
    return Config(active if isinstance(active, str) and active in profiles else None, profiles)


def render(config: Config) -> str:
    """The file's text: TOML strings written as JSON strings (the same escapes), profile names as bare keys."""
    lines = ["# howdah's CLI profiles (howdah login / logout / whoami); this file holds tokens: keep it private\n"]
    if config.active:
        lines.append(f"active = {json.dumps(config.active)}\n")
    for name, profile in sorted(config.profiles.items()):
        lines.append(f"\n[profiles.{check_name(name)}]\n")
        lines += [f"{key} = {json.dumps(getattr(profile, key))}\n" for key in _FIELDS if getattr(profile, key)]
    return "".join(lines)


def load() -> Config:
    path = config_path()
    try:
        return parse(path.read_text())
    except FileNotFoundError:
        return Config()
    except (tomllib.TOMLDecodeError, TypeError) as exc:
        raise ProfileError(f"{path} is not a valid config file: {exc}") from None


def save(config: Config) -> Path:
    """Replace the config file at once (a reader sees the old file or the new one, never a part), mode 0600 in a
    folder of mode 0700."""
    path = config_path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    fd, temporary = tempfile.mkstemp(prefix=".config-", suffix=".toml", dir=path.parent)  # mode 0600
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(render(config))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def save_profile(name: str, profile: Profile, *, activate: bool = True) -> Path:
    return save(load().with_profile(name, profile, activate=activate))


def update_profile(name: str, **values: str) -> Path:
    """Change some fields of profile ``name`` (created when missing), keeping the others and the active one."""
    config = load()
    current = config.profiles.get(name, Profile())
    return save(config.with_profile(name, replace(current, **values), activate=config.active is None))
