"""The backup benchmark's floor: a point-in-time restore driven by hand with the same binaries, no Howdah.

From the same base backup (pg_basebackup's gzip-compressed tar files) and the same archived WAL as Howdah's
restore, it runs what a restore by hand needs and nothing more: ``tar -xzf`` of ``base.tar.gz`` into a fresh data
folder and of ``pg_wal.tar.gz`` into its ``pg_wal`` (then ``chown -R`` to the server's OS user when run as root,
as the provider does), the recovery settings appended to ``postgresql.auto.conf`` with a plain
``cp ARCHIVE/%f %p`` as ``restore_command`` reading the archive itself (Howdah first copies the WAL it replays
for the new instance, which reads that copy with ``cp``), ``recovery.signal``, ``pg_ctl start -w``, and a
password-authenticated connection polled every 50 ms until ``pg_is_in_recovery()`` is false (as the provider
waits for the promotion). The server runs as the archive's owner (the source instance's OS user when root), so
that ``cp`` may read the archive.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

from benchmarks._provision_floor import SUPERUSER, stop_postmaster
from howdah.pg._binaries import OsUser
from howdah.pg.files import quote_conf_value
from howdah.pg.processes import free_port, pg_ctl_start, pg_ctl_stop, postmaster_pid


@dataclass
class Timing:
    prepare: float  # unpacking and recovery settings (Howdah: also copying the WAL to replay)
    total: float  # to promotion


def _run(argv: list[str]) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {(done.stderr or done.stdout).strip()}")


@dataclass
class FloorRestore:
    """One restore by hand under ``root`` (a new folder in one the server's ``user`` can traverse); ``tools`` is
    the data plane's home, so that the very same binaries run."""

    root: Path
    tools: Path
    user: OsUser
    port: int = 0

    @property
    def data_dir(self) -> Path:
        return self.root / "pgdata"

    def run(self, backup: Path, archive: Path, password: str, target_lsn: str | None, timeout: float) -> Timing:
        """Restore the base backup in folder ``backup`` (its ``base.tar.gz`` and ``pg_wal.tar.gz``) with the WAL
        in ``archive`` up to ``target_lsn`` (the end of the archive when None), and wait until promoted."""
        began = time.perf_counter()
        self.root.mkdir(mode=0o755, parents=True)
        for folder in (self.root, self.root.parent):
            folder.chmod(0o755)  # the server's OS user passes through
        socket_dir = self.root / "run"
        for folder in (self.data_dir, socket_dir):
            folder.mkdir(mode=0o700)
        _run(["tar", "-xzf", str(backup / "base.tar.gz"), "-C", str(self.data_dir)])
        (self.data_dir / "pg_wal").mkdir(mode=0o700, exist_ok=True)
        _run(["tar", "-xzf", str(backup / "pg_wal.tar.gz"), "-C", str(self.data_dir / "pg_wal")])
        self.port = free_port()
        restore_command = f"cp {shlex.quote(str(archive)).replace('%', '%%')}/%f %p"
        settings = {
            "listen_addresses": "127.0.0.1", "port": str(self.port), "unix_socket_directories": str(socket_dir),
            "unix_socket_permissions": "0700", "archive_mode": "off", "restore_command": restore_command,
            "recovery_target_timeline": "latest",
        }  # fmt: skip
        if target_lsn is not None:
            settings |= {"recovery_target_lsn": target_lsn, "recovery_target_action": "promote"}
        with open(self.data_dir / "postgresql.auto.conf", "a") as conf:
            conf.writelines(f"{name} = {quote_conf_value(value)}\n" for name, value in settings.items())
        (self.data_dir / "recovery.signal").touch()
        if not self.user.is_current:
            _run(["chown", "-R", f"{self.user.uid}:{self.user.gid}", str(self.data_dir), str(socket_dir)])
        prepared = time.perf_counter() - began
        started = pg_ctl_start(self.tools, self.data_dir, self.root / "server.log", timeout=timeout, user=self.user)
        if started.returncode != 0:
            raise RuntimeError(f"pg_ctl start failed: {(started.stderr or started.stdout).strip()}")
        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(
                    host="127.0.0.1", port=self.port, user=SUPERUSER, password=password, dbname="postgres",
                    connect_timeout=3, autocommit=True,
                ) as conn:  # fmt: skip
                    row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
                if row is not None and not row[0]:
                    break
            except psycopg.OperationalError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the restore by hand did not promote within {timeout:g} s")
            time.sleep(0.05)
        return Timing(prepared, time.perf_counter() - began)

    def destroy(self) -> None:
        """Stop the server at once (if it runs) and remove its files."""
        try:
            if postmaster_pid(self.data_dir) is not None:
                pg_ctl_stop(self.tools, self.data_dir, "immediate", timeout=30, user=self.user)
        finally:
            stop_postmaster(self.tools, self.data_dir)
            shutil.rmtree(self.root, ignore_errors=True)
