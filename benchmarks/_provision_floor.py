"""The provisioning benchmark's floor: a bare Postgres server from the same embedded binaries, with no Howdah.

One floor server is what the local provider's create cannot do without: ``initdb`` with the provider's flags
(see ``LocalBase._initdb``: SCRAM for host and local connections, UTF8, C locale, a superuser password file,
synced to disk as a durable instance is), ``pg_ctl start -w`` listening on 127.0.0.1 on its own port and socket
folder, and the first password-authenticated connection that answers ``SELECT 1``. When run as root, the tools
run as the unprivileged server OS user, as the provider runs them.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

from howdah.pg._binaries import run_tool, server_os_user
from howdah.pg.processes import free_port, pg_ctl_stop, postmaster_pid

SUPERUSER = "postgres"


@dataclass
class FloorServer:
    """One bare server under ``root`` (a folder the server OS user can traverse); ``tools`` is the folder whose
    Postgres install ``run_tool`` uses (the data plane's home, so both run the very same binaries)."""

    root: Path
    tools: Path
    port: int = 0
    password: str = ""

    @property
    def data_dir(self) -> Path:
        return self.root / "pgdata"

    @property
    def socket_dir(self) -> Path:
        return self.root / "run"

    def create_and_start(self, timeout: float = 120) -> tuple[float, float]:
        """initdb + pg_ctl start -w + the first connection; returns (seconds in all, seconds of initdb)."""
        user = server_os_user()
        began = time.perf_counter()
        self.root.mkdir(mode=0o755)
        self.root.chmod(0o755)
        for folder in (self.data_dir, self.socket_dir):
            folder.mkdir(mode=0o700)
            user.chown(folder)
        self.password = secrets.token_urlsafe(24)
        pwfile = self.root / ".initdb-password"
        pwfile.write_text(self.password + "\n")
        pwfile.chmod(0o600)
        user.chown(pwfile)
        args = [
            "-D", str(self.data_dir), "-U", SUPERUSER, f"--pwfile={pwfile}", "--encoding=UTF8", "--locale=C",
            "--auth-host=scram-sha-256", "--auth-local=scram-sha-256", "--no-instructions",
        ]  # fmt: skip
        done = run_tool(self.tools, "initdb", args, timeout=timeout)
        pwfile.unlink(missing_ok=True)
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed: {(done.stderr or done.stdout).strip()}")
        initdb = time.perf_counter() - began
        self.port = free_port()
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.socket_dir} "
            "-c unix_socket_permissions=0700"
        )
        log = self.root / "server.log"
        log.touch()
        user.chown(log)
        started = run_tool(
            self.tools, "pg_ctl",
            ["-D", str(self.data_dir), "-l", str(log), "-o", options, "-w", "-t", str(int(timeout)), "start"],
            timeout=timeout + 15,
        )  # fmt: skip
        if started.returncode != 0:
            raise RuntimeError(f"pg_ctl start failed: {(started.stderr or started.stdout).strip()}")
        deadline = time.monotonic() + timeout
        while True:  # as the provider does after pg_ctl -w: confirm with a real, password-authenticated connection
            try:
                with psycopg.connect(
                    host="127.0.0.1", port=self.port, user=SUPERUSER, password=self.password, dbname="postgres",
                    connect_timeout=2, autocommit=True,
                ) as conn:  # fmt: skip
                    conn.execute("SELECT 1")
                break
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        return time.perf_counter() - began, initdb

    def destroy(self) -> None:
        """Stop the server at once (if it runs) and remove its files."""
        stop_postmaster(self.tools, self.data_dir)
        shutil.rmtree(self.root, ignore_errors=True)


def stop_postmaster(tools: Path, data_dir: Path, timeout: float = 30) -> None:
    """``pg_ctl stop -m immediate``, then SIGKILL if the postmaster is still there."""
    if postmaster_pid(data_dir) is None:
        return
    with contextlib.suppress(Exception):
        pg_ctl_stop(tools, data_dir, "immediate", timeout=min(20, timeout))
    pid = postmaster_pid(data_dir)
    if pid is not None:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while postmaster_pid(data_dir) is not None and time.monotonic() < deadline:
            time.sleep(0.05)


def stop_all_under(tools: Path, root: Path) -> int:
    """Stop every postmaster whose data folder is under ``root`` (a crashed or interrupted run); how many."""
    stopped = 0
    if not root.exists():
        return 0
    for pid_file in root.rglob("postmaster.pid"):
        if postmaster_pid(pid_file.parent) is not None:
            stop_postmaster(tools, pid_file.parent)
            stopped += 1
    return stopped
