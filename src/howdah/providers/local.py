"""The local provider: every instance a real Postgres 18 server from the embedded binaries, on this machine.

Each instance has its own data directory under ``home/instances/<id>/``, its own port on 127.0.0.1 (recorded in
its ``instance.json``), its own Unix socket folder and log, and password (SCRAM) authentication only: initdb's
``trust`` is never used. When Howdah runs as root the servers run as the unprivileged ``howdah`` OS user. All
state is on disk, so a new provider on the same home adopts the running servers (from ``postmaster.pid``).

Settings the user controls go to ``postgresql.auto.conf`` (ALTER SYSTEM while the server runs, the same file
edited directly while it does not); the provider's own (address, port, socket folder) go to ``howdah.conf``,
included from ``postgresql.conf``. Values are checked by Postgres itself before anything is written.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import MappingProxyType

import psycopg

from howdah.pg._binaries import run_tool, server_os_user
from howdah.providers import _local_backup as _backup
from howdah.providers import _local_sql as q
from howdah.providers._local_conf import (
    PROVIDER_SETTINGS,
    SettingsChecker,
    read_auto_conf,
    same_value,
    write_auto_conf,
)
from howdah.providers._local_files import (
    InstancePaths,
    InstanceRecord,
    check_instance_id,
    ensure_secret,
    file_lock,
    make_server_dir,
    pick_port,
    postmaster_pid,
    recorded_ports,
    write_atomic,
)
from howdah.providers._local_server import Server, kill_postmaster
from howdah.providers.base import Backup, ConnectionInfo, InstanceStatus, ProviderError, TransientProviderError

__all__ = ["DEFAULT_EXTENSION_LIBRARIES", "PROVIDER_SETTINGS", "LocalProvider"]

# Libraries an extension needs in shared_preload_libraries before CREATE EXTENSION makes it usable.
DEFAULT_EXTENSION_LIBRARIES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "pg_stat_statements": ("pg_stat_statements",),
        "pg_cron": ("pg_cron",),
        "pgaudit": ("pgaudit",),
        "timescaledb": ("timescaledb",),
        "pg_wait_sampling": ("pg_wait_sampling",),
    }
)


class LocalProvider:
    """Instances as Postgres servers on this machine, under ``home``.

    ``durable=False`` skips initdb's fsync and runs the servers with ``fsync = off``: for tests and benchmarks
    only, a machine crash can then lose or corrupt their data.
    """

    name = "local"

    def __init__(
        self,
        home: Path,
        *,
        host: str = "127.0.0.1",
        port_range: tuple[int, int] = (20000, 29999),
        durable: bool = True,
        start_timeout: float = 60.0,
        extension_libraries: Mapping[str, tuple[str, ...]] = DEFAULT_EXTENSION_LIBRARIES,
    ) -> None:
        if not 1024 <= port_range[0] <= port_range[1] <= 65535:
            raise ValueError(f"invalid port range {port_range}")
        self.home = Path(home).resolve()
        self.host = host
        self.port_range = port_range
        self.durable = durable
        self.start_timeout = start_timeout
        self.extension_libraries = extension_libraries
        self._instances = self.home / "instances"
        self._locks = self.home / "locks"
        self._backups = self.home / "backups"
        self._checker = SettingsChecker(self.home)

    # ============================================================================================ protocol
    def ensure_created(self, instance_id: str, name: str, settings: dict[str, str]) -> None:
        """Record, port, cluster (initdb, redone when a crash interrupted it) and configuration. While the
        server does not run, ``settings`` are (re)written, so a create that failed on a bad value converges
        once called with corrected ones; a running instance is left as it is (see :meth:`apply_settings`)."""
        paths = self._paths(instance_id)
        wanted = self._checker.normalised(settings)
        with self._locked(instance_id):
            self._prepare_home()
            record = self._load_or_allocate(paths, instance_id, name)
            if not paths.initialised:
                self._initdb(paths)
            if postmaster_pid(paths.data_dir) is not None:
                return
            self._checker.validate(wanted)
            self._write_settings_offline(paths, record, wanted)
            self._server(paths, record).write_conf()
            record.name, record.configured = name, True
            record.save(paths.record)

    def ensure_running(self, instance_id: str) -> InstanceStatus:
        paths = self._paths(instance_id)
        with self._locked(instance_id):
            self._server(paths, self._created_record(paths)).start()
        return self.status(instance_id)

    def ensure_app_database(self, instance_id: str) -> ConnectionInfo:
        paths = self._paths(instance_id)
        with self._locked(instance_id):
            record = self._created_record(paths)
            password = ensure_secret(paths.app_password)
            with self._server(paths, record).connect() as conn:
                try:
                    q.ensure_app_role_and_database(conn, password)
                except psycopg.Error as exc:
                    raise ProviderError(q.pg_message(exc)) from exc
        return ConnectionInfo(self.host, record.port, q.APP_ROLE, password, q.APP_DATABASE)

    def apply_settings(self, instance_id: str, settings: dict[str, str]) -> bool:
        """ALTER SYSTEM every wanted setting, RESET those Howdah set before and no longer wants, reload, and
        say whether a restart is needed. A value Postgres rejects raises :class:`ProviderError` with its
        message and changes nothing. On a server that is not running the files are edited instead and False
        is returned: the settings take effect when it starts."""
        paths = self._paths(instance_id)
        wanted = self._checker.normalised(settings)
        with self._locked(instance_id):
            record = self._created_record(paths)
            self._checker.validate(wanted)
            if postmaster_pid(paths.data_dir) is None:
                self._write_settings_offline(paths, record, wanted)
                return False
            with self._server(paths, record).connect() as conn:
                previous = read_auto_conf(paths.data_dir)
                changes: dict[str, str | None] = {
                    name: value for name, value in wanted.items() if not same_value(name, previous.get(name), value)
                }
                changes.update({name: None for name in record.settings if name not in wanted and name in previous})
                if changes:
                    before = dict(record.settings)
                    self._remember_settings(paths, record, {**before, **wanted})  # crash-safe: every name set
                    try:
                        q.apply_system_settings(conn, changes, previous)
                    except ProviderError:
                        self._remember_settings(paths, record, before)
                        raise
                self._remember_settings(paths, record, wanted)
                try:
                    q.reload(conn)
                    return q.restart_needed(conn, wanted.get("shared_preload_libraries"))
                except psycopg.Error as exc:
                    raise TransientProviderError(q.pg_message(exc)) from exc

    def ensure_extensions(self, instance_id: str, enabled: list[str], disabled: list[str]) -> None:
        paths = self._paths(instance_id)
        with self._locked(instance_id):
            record = self._created_record(paths)
            pending = read_auto_conf(paths.data_dir).get("shared_preload_libraries")
            with self._server(paths, record).connect(q.APP_DATABASE) as conn:
                q.ensure_extensions(conn, enabled, disabled, self.extension_libraries, pending)

    def restart(self, instance_id: str) -> InstanceStatus:
        paths = self._paths(instance_id)
        with self._locked(instance_id):
            server = self._server(paths, self._created_record(paths))
            before = None
            if server.pid is not None:
                with server.connect() as conn:
                    before = q.postmaster_start_time(conn)
            server.stop("fast")
            server.start()
            with server.connect() as conn:
                after = q.postmaster_start_time(conn)
            if after == before:
                raise ProviderError(f"instance {instance_id} did not restart: its postmaster start time is unchanged")
        return self.status(instance_id)

    def stop(self, instance_id: str) -> None:
        paths = self._paths(instance_id)
        with self._locked(instance_id):
            record = InstanceRecord.load(paths.record)
            if record is not None:
                self._server(paths, record).stop("fast")

    def delete(self, instance_id: str) -> None:
        paths = self._paths(instance_id)
        with self._locked(instance_id):
            if paths.root.exists():
                record = InstanceRecord.load(paths.record)
                try:
                    if record is not None:
                        self._server(paths, record).stop("immediate")
                finally:
                    kill_postmaster(paths.data_dir, f"instance {instance_id}", self.start_timeout)
                tomb = self._instances / f".deleting-{instance_id}-{os.getpid()}-{time.monotonic_ns()}"
                paths.root.rename(tomb)  # the port is free once the record is out of instances/<id>/
                shutil.rmtree(tomb)
            if paths.socket_dir.parent != paths.root:
                shutil.rmtree(paths.socket_dir, ignore_errors=True)
            for leftover in self._instances.glob(f".deleting-{instance_id}-*"):
                shutil.rmtree(leftover, ignore_errors=True)

    def status(self, instance_id: str) -> InstanceStatus:
        try:
            paths = self._paths(instance_id)
            record = InstanceRecord.load(paths.record)
        except ProviderError:
            return InstanceStatus(exists=False, running=False)
        if record is None or not paths.initialised:
            return InstanceStatus(exists=False, running=False, port=record.port if record else None)
        running = postmaster_pid(paths.data_dir) is not None
        if running:
            try:
                with self._server(paths, record).connect(timeout=3) as conn:
                    seen = q.observe(conn, record.settings)
            except (ProviderError, psycopg.Error, OSError):
                pass
            else:
                return InstanceStatus(
                    exists=True, running=True, accepting_connections=True, pending_restart=seen.pending_restart,
                    server_version=seen.server_version, size_bytes=seen.size_bytes,
                    postmaster_start_time=seen.postmaster_start_time, port=record.port, settings=seen.settings,
                )  # fmt: skip
        return InstanceStatus(exists=True, running=running, port=record.port, settings=dict(record.settings))

    def list_instances(self) -> list[str]:
        if not self._instances.is_dir():
            return []
        return sorted(
            path.name
            for path in self._instances.iterdir()
            if not path.name.startswith(".") and (path / "instance.json").exists()
        )

    # ============================================================================================= backups
    def backup(self, instance_id: str, backup_id: str | None = None) -> Backup:
        """A base backup of the running instance (pg_basebackup, WAL included) under ``home/backups/<id>/``.
        Given the id of a backup already taken, that backup is returned (idempotent)."""
        paths = self._paths(instance_id)
        backup_id = backup_id or _backup.new_backup_id()
        check_instance_id(backup_id)
        folder = self._backups / instance_id / backup_id
        with self._locked(instance_id):
            taken = _backup.load(folder)
            if taken is not None:
                return taken[0]
            record = self._created_record(paths)
            with self._server(paths, record).connect() as conn:  # running and accepting connections
                conn.execute("SELECT 1")
            meta = {
                "backup_id": backup_id,
                "instance_id": instance_id,
                "name": record.name,
                "settings": record.settings,
            }
            return _backup.take(self.home, self.host, record.port, paths, folder, {**meta, "settings": record.settings})

    def list_backups(self, instance_id: str) -> list[Backup]:
        """The complete backups of ``instance_id`` (also after the instance was deleted), oldest first."""
        check_instance_id(instance_id)
        folder = self._backups / instance_id
        found = (
            [_backup.load(path) for path in folder.iterdir() if not path.name.startswith(".")]
            if folder.is_dir()
            else []
        )
        return sorted((item[0] for item in found if item), key=lambda backup: backup.created_at)

    def restore(self, backup: Backup, new_instance_id: str, name: str | None = None) -> None:
        """Create instance ``new_instance_id`` from ``backup`` (with the source's settings and passwords); it is
        left stopped: :meth:`ensure_running` starts it, replaying the backup's WAL. Idempotent."""
        paths = self._paths(new_instance_id)
        loaded = _backup.load(Path(backup.location))
        if loaded is None:
            raise ProviderError(f"no complete backup at {backup.location}")
        meta = loaded[1]
        origin = f"backup {meta['instance_id']}/{meta['backup_id']}"
        with self._locked(new_instance_id):
            self._prepare_home()
            existing = InstanceRecord.load(paths.record)
            if existing is not None and existing.origin != origin:
                raise ProviderError(f"instance {new_instance_id} already exists (it was not restored from {origin})")
            if existing is not None and existing.configured:
                return
            record = self._load_or_allocate(paths, new_instance_id, name or str(meta["name"]), origin)
            if not paths.initialised:
                paths.initdb_marker.touch()
                _backup.copy_cluster(Path(backup.location), paths, meta)
                paths.initdb_marker.unlink()
            record.settings = {str(k): str(v) for k, v in dict(meta.get("settings", {})).items()}
            record.configured = True
            self._server(paths, record).write_conf()
            record.save(paths.record)

    # ============================================================================================ helpers
    def _paths(self, instance_id: str) -> InstancePaths:
        check_instance_id(instance_id)
        return InstancePaths(self._instances / instance_id)

    @contextlib.contextmanager
    def _locked(self, instance_id: str) -> Iterator[None]:
        with file_lock(self._locks / f"{instance_id}.lock"):
            yield

    def _prepare_home(self) -> None:
        for folder in (self.home, self._instances):
            if not folder.exists():
                folder.mkdir(mode=0o755, parents=True, exist_ok=True)
        user = server_os_user()
        if user.is_current:
            return
        for folder in [*reversed(self._instances.parents), self._instances]:
            st = folder.stat()
            if st.st_uid != user.uid and not st.st_mode & 0o001:
                raise ProviderError(
                    f"the server user {user.name!r} cannot reach {self._instances}: {folder} is not traversable by "
                    "others; choose a home outside it"
                )

    def _load_or_allocate(self, paths: InstancePaths, instance_id: str, name: str, origin: str = "") -> InstanceRecord:
        record = InstanceRecord.load(paths.record)
        if record is not None:
            return record
        paths.root.mkdir(mode=0o755, exist_ok=True)
        paths.root.chmod(0o755)
        with file_lock(self._locks / "ports.lock"):
            port = pick_port(self.host, self.port_range, recorded_ports(self._instances))
            record = InstanceRecord(instance_id=instance_id, name=name, port=port, origin=origin)
            record.save(paths.record)
        return record

    def _move_port(self, paths: InstancePaths, record: InstanceRecord) -> int:
        """Another process took the instance's port: record a free one (the next start uses it)."""
        with file_lock(self._locks / "ports.lock"):
            record.port = pick_port(self.host, self.port_range, recorded_ports(self._instances) | {record.port})
            record.save(paths.record)
        return record.port

    def _created_record(self, paths: InstancePaths) -> InstanceRecord:
        record = InstanceRecord.load(paths.record)
        if record is None or not paths.initialised or not record.configured:
            raise ProviderError(f"instance {paths.root.name} does not exist (or its creation did not complete)")
        return record

    def _initdb(self, paths: InstancePaths) -> None:
        paths.initdb_marker.touch()
        shutil.rmtree(paths.data_dir, ignore_errors=True)
        password = ensure_secret(paths.superuser_password)
        make_server_dir(paths.data_dir)
        pwfile = paths.root / ".initdb-password"
        write_atomic(pwfile, password + "\n", owner_is_server=True)
        args = [
            "-D", str(paths.data_dir), "-U", q.SUPERUSER, f"--pwfile={pwfile}", "--encoding=UTF8", "--locale=C",
            "--auth-host=scram-sha-256", "--auth-local=scram-sha-256", "--no-instructions",
        ]  # fmt: skip
        try:
            done = run_tool(self.home, "initdb", [*args, *([] if self.durable else ["--no-sync"])])
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

    def _server(self, paths: InstancePaths, record: InstanceRecord) -> Server:
        """The instance's (primary) server."""

        def move_port() -> int:
            return self._move_port(paths, record)

        return Server(
            home=self.home, host=self.host, paths=paths, label=f"instance {record.instance_id}", port=record.port,
            password_file=paths.superuser_password, cluster_name=record.name, move_port=move_port,
            timeout=self.start_timeout, conf={} if self.durable else {"fsync": "off"},
        )  # fmt: skip
