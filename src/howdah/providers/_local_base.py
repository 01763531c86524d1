"""The local provider's plumbing: paths, locks, records and ports, initdb, settings files, server handles.

:class:`~howdah.providers.local.LocalProvider` builds the provider's operations on these.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import psycopg

from howdah.pg._binaries import OsUser, os_user, run_tool, server_os_user
from howdah.pg._settings import is_root
from howdah.pg.files import file_lock, first_closed_folder, write_atomic
from howdah.pg.processes import postmaster_pid
from howdah.providers import _local_archive as _archive
from howdah.providers import _local_replicas as _replicas
from howdah.providers import _local_sql as q
from howdah.providers._local_conf import SettingsChecker, write_auto_conf
from howdah.providers._local_files import (
    InstancePaths,
    InstanceRecord,
    check_instance_id,
    ensure_secret,
    instance_os_user_name,
    make_instance_dir,
    make_server_dir,
    pick_port,
    recorded_ports,
)
from howdah.providers._local_server import Server
from howdah.providers.base import ProviderError


class LocalBase:
    """State and helpers shared by the local provider's operations (set up by ``LocalProvider.__init__``)."""

    home: Path
    host: str
    port_range: tuple[int, int]
    durable: bool
    start_timeout: float
    _instances: Path
    _locks: Path
    _backups: Path
    _checker: SettingsChecker

    def _paths(self, instance_id: str) -> InstancePaths:
        check_instance_id(instance_id)
        return InstancePaths(self._instances / instance_id)

    @contextlib.contextmanager
    def _locked(self, instance_id: str) -> Iterator[None]:
        with file_lock(self._locks / f"{instance_id}.lock"):
            yield

    def _prepare_home(self) -> None:
        if not self.home.exists():
            self.home.mkdir(mode=0o755, parents=True, exist_ok=True)
        # instances/: each instance's OS user may pass through to its own folder, nobody may list it
        self._instances.mkdir(mode=0o711, exist_ok=True)
        self._instances.chmod(0o711 if is_root() else 0o700)
        user = server_os_user()
        closed = first_closed_folder(self._instances, user)
        if closed is not None:
            raise ProviderError(
                f"the server user {user.name!r} cannot reach {self._instances}: {closed} is not traversable by "
                "others; choose a home outside it"
            )

    def _load_or_allocate(self, paths: InstancePaths, instance_id: str, name: str, origin: str = "") -> InstanceRecord:
        record = InstanceRecord.load(paths.record)
        if record is not None:
            return record
        os_user = instance_os_user_name(self.home, instance_id) if is_root() else ""
        make_instance_dir(paths.root, self._os_user_named(os_user))
        with file_lock(self._locks / "ports.lock"):
            port = pick_port(self.host, self.port_range, recorded_ports(self._instances))
            record = InstanceRecord(instance_id=instance_id, name=name, port=port, origin=origin, os_user=os_user)
            record.save(paths.record)
        return record

    @staticmethod
    def _os_user_named(name: str) -> OsUser:
        return os_user(name) if name else server_os_user()

    def _os_user(self, record: InstanceRecord) -> OsUser:
        """The OS user the instance's servers run as: its own when Howdah runs as root (created on first use)."""
        return self._os_user_named(record.os_user)

    def _move_port(self, paths: InstancePaths, record: InstanceRecord, replica: str | None = None) -> int:
        """Another process took a port of the instance (or of its ``replica``): record a free one."""
        with file_lock(self._locks / "ports.lock"):
            port = pick_port(self.host, self.port_range, recorded_ports(self._instances) | {record.port})
            if replica is None:
                record.port = port
            else:
                record.replicas[replica] = port
            record.save(paths.record)
        return port

    def _created_record(self, paths: InstancePaths) -> InstanceRecord:
        record = InstanceRecord.load(paths.record)
        if record is None or not paths.initialised or not record.configured:
            raise ProviderError(f"instance {paths.root.name} does not exist (or its creation did not complete)")
        return record

    def _initdb(self, paths: InstancePaths, record: InstanceRecord) -> None:
        paths.initdb_marker.touch()
        shutil.rmtree(paths.data_dir, ignore_errors=True)
        password = ensure_secret(paths.superuser_password)
        user = self._os_user(record)
        make_server_dir(paths.data_dir, user)
        pwfile = paths.root / ".initdb-password"
        write_atomic(pwfile, password + "\n", owner_of=paths.data_dir)
        args = [
            "-D", str(paths.data_dir), "-U", q.SUPERUSER, f"--pwfile={pwfile}", "--encoding=UTF8", "--locale=C",
            "--auth-host=scram-sha-256", "--auth-local=scram-sha-256", "--no-instructions",
        ]  # fmt: skip
        try:
            done = run_tool(self.home, "initdb", [*args, *([] if self.durable else ["--no-sync"])], user=user)
        finally:
            pwfile.unlink(missing_ok=True)
        if done.returncode != 0:
            raise ProviderError(f"initdb failed: {(done.stderr or done.stdout).strip()}")
        paths.initdb_marker.unlink()

    # ------------------------------------------------------------------------------------------- settings
    def _remember_settings(self, paths: InstancePaths, record: InstanceRecord, settings: Mapping[str, str]) -> None:
        record.settings = dict(settings)
        record.save(paths.record)

    def _write_settings_offline(self, paths: InstancePaths, record: InstanceRecord, wanted: dict[str, str]) -> None:
        remove = [name for name in record.settings if name not in wanted]
        # Remember the union first: a crash between the two writes still knows every name Howdah set.
        self._remember_settings(paths, record, {**record.settings, **wanted})
        write_auto_conf(paths.data_dir, wanted, remove)
        self._remember_settings(paths, record, wanted)

    def _durability_conf(self) -> dict[str, str]:
        return {} if self.durable else {"fsync": "off"}

    def _wal_dir(self, instance_id: str) -> Path:
        return _archive.wal_dir(self._backups, instance_id)

    def _primary_conf(self, record: InstanceRecord) -> dict[str, str]:
        """The primary's platform settings: durability, WAL archiving (unless turned off), and while a restore
        replays WAL its recovery settings."""
        conf = self._durability_conf()
        if record.archive:
            tool = _archive.wal_tool(self.home, self._os_user(record))
            conf.update(_archive.archive_conf(tool, self._wal_dir(record.instance_id)))
        return {**conf, **record.recovery}

    def _prepare_archive(self, record: InstanceRecord) -> None:
        if record.archive:
            _archive.prepare_folders(self._backups, record.instance_id, self._os_user(record))

    def _server(self, paths: InstancePaths, record: InstanceRecord) -> Server:
        """The instance's (primary) server."""

        def move_port() -> int:
            return self._move_port(paths, record)

        return Server(
            home=self.home, host=self.host, paths=paths, label=f"instance {record.instance_id}", port=record.port,
            password_file=paths.superuser_password, cluster_name=record.name, move_port=move_port,
            timeout=self.start_timeout, conf=self._primary_conf(record), os_user=self._os_user(record),
        )  # fmt: skip

    def _replica_server(self, paths: InstancePaths, record: InstanceRecord, name: str) -> Server:
        replica = paths.replica(name)

        def move_port() -> int:
            return self._move_port(paths, record, name)

        conf = {**_replicas.standby_conf(self.host, record.port, replica, name), **self._durability_conf()}
        return Server(
            home=self.home, host=self.host, paths=replica, label=f"{name} of instance {record.instance_id}",
            port=record.replicas[name], password_file=paths.superuser_password, cluster_name=f"{record.name}-{name}",
            move_port=move_port, timeout=self.start_timeout, conf=conf, os_user=self._os_user(record),
        )  # fmt: skip

    def _replica_servers(self, paths: InstancePaths, record: InstanceRecord) -> list[Server]:
        return [
            self._replica_server(paths, record, name) for name in record.replicas if paths.replica(name).initialised
        ]

    def _copy_settings(self, paths: InstancePaths, replica: InstancePaths) -> None:
        """A replica runs with its primary's settings (hot standby needs some of them at least as large)."""
        text = (paths.data_dir / "postgresql.auto.conf").read_text()
        write_atomic(replica.data_dir / "postgresql.auto.conf", text, owner_of=replica.data_dir)

    def _start_replica(self, paths: InstancePaths, record: InstanceRecord, name: str) -> None:
        """Start a replica with its primary's current port and settings (reloaded into it when it runs)."""
        if not paths.replica(name).initialised:
            return
        server = self._replica_server(paths, record, name)
        self._copy_settings(paths, server.paths)
        if server.pid is None:
            server.start()
            return
        server.write_conf()
        with server.connect() as conn:
            conn.execute("SELECT pg_catalog.pg_reload_conf()")

    def _restart_replica(self, paths: InstancePaths, record: InstanceRecord, name: str, primary_lsn: str) -> None:
        """Restart a replica with its primary's new settings, once it has replayed the primary's restart: a
        hot standby refuses to start with a lower max_connections (…) than the last value it replayed."""
        server = self._replica_server(paths, record, name)
        if server.pid is not None:
            deadline = time.monotonic() + self.start_timeout
            with contextlib.suppress(ProviderError, psycopg.Error), server.connect() as conn:
                while time.monotonic() < deadline and not _replicas.replayed(conn, primary_lsn):
                    time.sleep(0.02)
            server.stop("fast")
        self._start_replica(paths, record, name)

    def _replica_status(
        self, paths: InstancePaths, record: InstanceRecord, streaming: dict[str, dict[str, Any]]
    ) -> list[dict[str, Any]]:
        return [
            {
                "name": name, "host": self.host, "port": port,
                "running": postmaster_pid(paths.replica(name).data_dir) is not None,
                **streaming.get(name, {"state": None, "lag_bytes": None, "replay_lag_seconds": None}),
            }
            for name, port in sorted(record.replicas.items())
        ]  # fmt: skip
