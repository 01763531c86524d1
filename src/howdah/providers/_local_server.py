"""One Postgres server process of a local instance: start (pg_ctl -w), stop, kill, connect."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from howdah.pg._binaries import OsUser, server_os_user
from howdah.pg.processes import pg_ctl_start, pg_ctl_stop, port_open, port_taken, postmaster_pid
from howdah.providers import _local_sql as q
from howdah.providers._local_conf import write_platform_conf
from howdah.providers._local_files import InstancePaths, log_messages, log_size, make_server_dir, read_secret
from howdah.providers.base import ProviderError, TransientProviderError

# Start failures that go away by themselves: the previous (killed) server's processes are still exiting.
_START_AGAIN = ("pre-existing shared memory block", 'lock file "postmaster.pid" already exists')
_PORT_IN_USE = ("Address already in use", "could not create any TCP/IP sockets")


@dataclass
class Server:
    """A server of instance ``label`` whose files are ``paths``, listening on ``host:port``.

    ``move_port`` is called when another process holds the port: it records a free one and returns it (the
    start then fails with :class:`TransientProviderError`, and the next attempt uses the new port).
    """

    home: Path
    host: str
    paths: InstancePaths
    label: str
    port: int
    password_file: Path
    cluster_name: str
    move_port: Callable[[], int]
    timeout: float = 60.0
    conf: Mapping[str, str] = field(default_factory=dict)
    os_user: OsUser = field(default_factory=server_os_user)

    @property
    def pid(self) -> int | None:
        return postmaster_pid(self.paths.data_dir)

    @contextlib.contextmanager
    def connect(self, dbname: str = "postgres", *, timeout: float = 5) -> Iterator[q.Connection]:
        """A superuser session; :class:`ProviderError` when the server does not run, transient when it runs
        but does not accept connections (yet)."""
        password = read_secret(self.password_file)
        if password is None:
            raise ProviderError(f"{self.label} has no superuser password file")
        try:
            conn = self._connect_finishing_rotation(password, dbname, timeout)
        except psycopg.OperationalError as exc:
            if self.pid is None:
                raise ProviderError(f"{self.label} is not running") from exc
            if f'database "{dbname}" does not exist' in str(exc):
                raise ProviderError(f'database "{dbname}" does not exist in {self.label}') from exc
            raise TransientProviderError(f"{self.label} does not accept connections yet: {str(exc).strip()}") from exc
        with conn:
            yield conn

    def _connect_finishing_rotation(self, password: str, dbname: str, timeout: float) -> q.Connection:
        """Connect with the current password; when a password change was cut short after the server took the
        new one (``<file>.next``), connect with that one and make it current."""
        try:
            return q.connect(self.host, self.port, password, dbname, timeout=timeout)
        except psycopg.OperationalError as exc:
            upcoming_file = self.password_file.with_name(self.password_file.name + ".next")
            upcoming = read_secret(upcoming_file)
            if upcoming is None or "password authentication failed" not in str(exc):
                raise
            conn = q.connect(self.host, self.port, upcoming, dbname, timeout=timeout)
            os.replace(upcoming_file, self.password_file)
            return conn

    def write_conf(self) -> None:
        write_platform_conf(self.paths, self.host, self.port, self.cluster_name, self.conf)

    def start(self) -> None:
        """Start unless running, and wait (bounded) until it accepts connections. A server that refuses to
        start raises :class:`ProviderError` with the messages it logged."""
        deadline = time.monotonic() + self.timeout
        while self.pid is None:
            if port_taken(self.host, self.port):
                old, self.port = self.port, self.move_port()
                raise TransientProviderError(
                    f"port {old} on {self.host} is taken by another process; moved to {self.port}"
                )
            self.write_conf()
            make_server_dir(self.paths.socket_dir, self.os_user)
            offset = log_size(self.paths.log_file)
            done = pg_ctl_start(
                self.home,
                self.paths.data_dir,
                self.paths.log_file,
                timeout=deadline - time.monotonic(),
                user=self.os_user,
            )
            if done.returncode == 0:
                break
            why = "\n".join(log_messages(self.paths.log_file, offset)) or (done.stderr or done.stdout).strip()
            if any(marker in why for marker in _PORT_IN_USE):
                old, self.port = self.port, self.move_port()
                raise TransientProviderError(f"port {old} on {self.host} was taken at start; moved to {self.port}")
            if self.pid is not None:
                raise TransientProviderError(f"{self.label} is still starting")
            if not any(marker in why for marker in _START_AGAIN) or time.monotonic() > deadline:
                raise ProviderError(f"Postgres did not start:\n{why}")
            time.sleep(0.1)  # the killed server's processes are still exiting: try again until the deadline
        while True:  # pg_ctl -w saw "ready" in postmaster.pid; confirm with a real connection
            try:
                with self.connect(timeout=2) as conn:
                    conn.execute("SELECT 1")
                return
            except TransientProviderError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self, mode: str = "fast") -> None:
        """Stop if running (``mode``: smart, fast or immediate) and wait until the process and port are gone."""
        if self.pid is None:
            return
        done = pg_ctl_stop(self.home, self.paths.data_dir, mode, timeout=self.timeout, user=self.os_user)
        deadline = time.monotonic() + self.timeout
        while self.pid is not None or port_open(self.host, self.port):
            if time.monotonic() > deadline:
                detail = (done.stderr or done.stdout).strip()
                raise TransientProviderError(f"{self.label} did not stop in time: {detail}")
            time.sleep(0.02)

    def kill(self) -> None:
        kill_postmaster(self.paths.data_dir, self.label, self.timeout)


def kill_postmaster(data_dir: Path, label: str, timeout: float = 60.0) -> None:
    """SIGKILL the postmaster of ``data_dir`` if it is still there, and wait for it to go."""
    deadline = time.monotonic() + timeout
    while (pid := postmaster_pid(data_dir)) is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        if time.monotonic() > deadline:
            raise TransientProviderError(f"{label} (pid {pid}) does not exit")
        time.sleep(0.02)
