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

import logging
import os
import shutil
import time
from functools import cache
from pathlib import Path
from typing import Any

import psycopg

from howdah.control.capacity import Capacity
from howdah.control.extensions import ExtensionCatalog, catalog_from_control_files
from howdah.control.spec import InstanceSpec
from howdah.errors import HowdahError
from howdah.pg._binaries import install_root, remove_os_user
from howdah.pg.files import file_lock
from howdah.pg.processes import postmaster_pid
from howdah.providers import _local_backup as _backup
from howdah.providers import _local_replicas as _replicas
from howdah.providers import _local_sql as q
from howdah.providers._local_base import LocalBase
from howdah.providers._local_conf import (
    PROVIDER_SETTINGS,
    SettingsChecker,
    read_auto_conf,
    same_value,
)
from howdah.providers._local_files import (
    InstancePaths,
    InstanceRecord,
    check_instance_id,
    ensure_secret,
    instance_os_user_name,
    pick_port,
    recorded_ports,
)
from howdah.providers._local_server import kill_postmaster
from howdah.providers.base import (
    Backup,
    Capability,
    ConnectionInfo,
    InstanceStatus,
    ProviderError,
    TransientProviderError,
)

log = logging.getLogger("howdah.providers.local")

__all__ = ["PROVIDER_SETTINGS", "LocalProvider", "local_extension_catalog"]


@cache
def local_extension_catalog() -> ExtensionCatalog:
    """The extensions of the Postgres binaries the local provider runs (the embedded ones): every
    ``share/extension/*.control`` file, read once, merged with what Howdah knows of their preload libraries."""
    folder = install_root() / "share" / "extension"
    files = {path.stem: path.read_text(encoding="utf-8") for path in folder.glob("*.control")}
    return catalog_from_control_files(files, source="the embedded Postgres binaries of the local provider")


class LocalProvider(LocalBase):
    """Instances as Postgres servers on this machine, under ``home``.

    ``durable=False`` skips initdb's fsync and runs the servers with ``fsync = off``: for tests and benchmarks
    only, a machine crash can then lose or corrupt their data.
    """

    name = "local"
    capabilities = frozenset({Capability.BACKUP, Capability.RESTORE, Capability.REPLICAS})

    def __init__(
        self,
        home: Path,
        *,
        host: str = "127.0.0.1",
        port_range: tuple[int, int] = (20000, 29999),
        durable: bool = True,
        start_timeout: float = 60.0,
    ) -> None:
        if not 1024 <= port_range[0] <= port_range[1] <= 65535:
            raise ValueError(f"invalid port range {port_range}")
        self.home = Path(home).resolve()
        self.host = host
        self.port_range = port_range
        self.durable = durable
        self.start_timeout = start_timeout
        self._instances = self.home / "instances"
        self._locks = self.home / "locks"
        self._backups = self.home / "backups"
        self._checker = SettingsChecker(self.home)

    # ============================================================================================ protocol
    def capacity(self) -> Capacity:
        """This host: its physical memory, its cpus, and the size of the filesystem that holds ``home`` (or would,
        before it exists). Every instance, with each of its replicas, runs here."""
        where = self.home
        while not where.exists() and where != where.parent:
            where = where.parent
        disk = shutil.disk_usage(where)
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        return Capacity(cpu=os.cpu_count(), memory_bytes=memory, storage_bytes=disk.used + disk.free)

    def extension_catalog(self) -> ExtensionCatalog:
        """What the binaries this provider runs offer (see :func:`local_extension_catalog`)."""
        return local_extension_catalog()

    def ensure_created(
        self, instance_id: str, name: str, settings: dict[str, str], *, spec: InstanceSpec | None = None
    ) -> None:
        """Record, port, cluster (initdb, redone when a crash interrupted it) and configuration. While the
        server does not run, ``settings`` are (re)written, so a create that failed on a bad value converges
        once called with corrected ones; a running instance is left as it is (see :meth:`apply_settings`).
        ``spec`` is not read: the host's resources are shared, and replicas come from :meth:`ensure_replicas`."""
        paths = self._paths(instance_id)
        wanted = self._checker.normalised(settings)
        with self._locked(instance_id):
            self._prepare_home()
            record = self._load_or_allocate(paths, instance_id, name)
            if not paths.initialised:
                self._initdb(paths, record)
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
            record = self._created_record(paths)
            self._server(paths, record).start()
            for name in record.replicas:
                self._start_replica(paths, record, name)
        return self.status(instance_id)

    def ensure_app_database(self, instance_id: str) -> ConnectionInfo:
        paths = self._paths(instance_id)
        with self._locked(instance_id):
            record = self._created_record(paths)
            password = ensure_secret(paths.app_password)
            with self._server(paths, record).connect() as conn:
                try:
                    q.ensure_app_role_and_database(conn, password)
                    if not record.own_superuser_password:  # restored: the source's password, replaced once
                        self._rotate_superuser_password(paths, conn)
                        record.own_superuser_password = True
                        record.save(paths.record)
                except psycopg.Error as exc:
                    raise ProviderError(q.pg_message(exc)) from exc
        return ConnectionInfo(self.host, record.port, q.APP_ROLE, password, q.APP_DATABASE)

    @staticmethod
    def _rotate_superuser_password(paths: InstancePaths, conn: q.Connection) -> None:
        """A new superuser password: kept as ``.next`` first, set in the server, then made current. A crash in
        between leaves both files, and :meth:`Server.connect` finishes the change with whichever works."""
        upcoming = ensure_secret(paths.next_superuser_password)
        q.set_password(conn, q.SUPERUSER, upcoming)
        os.replace(paths.next_superuser_password, paths.superuser_password)

    def apply_settings(self, instance_id: str, settings: dict[str, str], *, spec: InstanceSpec | None = None) -> bool:
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
                    needed = q.restart_needed(conn, wanted.get("shared_preload_libraries"))
                except psycopg.Error as exc:
                    raise TransientProviderError(q.pg_message(exc)) from exc
            for replica in self._replica_servers(paths, record):
                self._copy_settings(paths, replica.paths)
                if replica.pid is not None:
                    with replica.connect() as conn:
                        conn.execute("SELECT pg_catalog.pg_reload_conf()")
            return needed

    def ensure_extensions(self, instance_id: str, enabled: list[str], disabled: list[str]) -> None:
        paths = self._paths(instance_id)
        with self._locked(instance_id):
            record = self._created_record(paths)
            pending = read_auto_conf(paths.data_dir).get("shared_preload_libraries")
            with self._server(paths, record).connect(q.APP_DATABASE) as conn:
                q.ensure_extensions(conn, enabled, disabled, self.extension_catalog().preload_map(), pending)

    def restart(self, instance_id: str) -> InstanceStatus:
        """Restart the server (then its replicas, with its current settings); confirmed by a new
        ``pg_postmaster_start_time()``."""
        paths = self._paths(instance_id)
        with self._locked(instance_id):
            record = self._created_record(paths)
            server = self._server(paths, record)
            before = None
            if server.pid is not None:
                with server.connect() as conn:
                    before = q.postmaster_start_time(conn)
            server.stop("fast")
            server.start()
            with server.connect() as conn:
                after = q.postmaster_start_time(conn)
                primary_lsn = q.current_wal_lsn(conn)
            if after == before:
                raise ProviderError(f"instance {instance_id} did not restart: its postmaster start time is unchanged")
            for name in record.replicas:
                self._restart_replica(paths, record, name, primary_lsn)
        return self.status(instance_id)

    def stop(self, instance_id: str) -> None:
        paths = self._paths(instance_id)
        with self._locked(instance_id):
            record = InstanceRecord.load(paths.record)
            if record is not None:
                self._server(paths, record).stop("fast")
                for name in record.replicas:
                    self._replica_server(paths, record, name).stop("fast")

    def delete(self, instance_id: str) -> None:
        paths = self._paths(instance_id)
        with self._locked(instance_id):
            if paths.root.exists():
                record = InstanceRecord.load(paths.record)
                try:
                    if record is not None:
                        for server in [self._server(paths, record), *self._replica_servers(paths, record)]:
                            server.stop("immediate")
                finally:
                    for data_dir in [paths.data_dir, *paths.root.glob("replica-*/pgdata")]:
                        kill_postmaster(data_dir, f"instance {instance_id}", self.start_timeout)
                tomb = self._instances / f".deleting-{instance_id}-{os.getpid()}-{time.monotonic_ns()}"
                paths.root.rename(tomb)  # the port is free once the record is out of instances/<id>/
                shutil.rmtree(tomb)
            if paths.socket_dir.parent != paths.root:
                shutil.rmtree(paths.socket_dir, ignore_errors=True)
            for leftover in self._instances.glob(f".deleting-{instance_id}-*"):
                shutil.rmtree(leftover, ignore_errors=True)
            try:  # its processes are gone: its OS user goes too (its name is derived, so a crash never loses it)
                remove_os_user(instance_os_user_name(self.home, instance_id), self.start_timeout)
            except HowdahError as exc:
                raise TransientProviderError(str(exc)) from exc

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
            except (ProviderError, psycopg.Error, OSError) as exc:
                log.debug("instance %s: not observable (%s); reported from its files", instance_id, exc)
            else:
                return InstanceStatus(
                    exists=True, running=True, accepting_connections=True, pending_restart=seen.pending_restart,
                    server_version=seen.server_version, size_bytes=seen.size_bytes,
                    postmaster_start_time=seen.postmaster_start_time, port=record.port, settings=seen.settings,
                    replicas=self._replica_status(paths, record, seen.replication),
                )  # fmt: skip
        return InstanceStatus(
            exists=True, running=running, port=record.port, settings=dict(record.settings),
            replicas=self._replica_status(paths, record, {}),
        )  # fmt: skip

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
            return _backup.take(self.home, self.host, record.port, paths, folder, meta)

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
                _backup.copy_cluster(Path(backup.location), paths, meta, self._os_user(record))
                paths.initdb_marker.unlink()
            record.settings = {str(k): str(v) for k, v in dict(meta.get("settings", {})).items()}
            record.own_superuser_password = False
            record.configured = True
            self._server(paths, record).write_conf()
            record.save(paths.record)

    # ============================================================================================ replicas
    def ensure_replicas(self, instance_id: str, replicas: int) -> list[dict[str, Any]]:
        """Make the running instance ``replicas`` servers in all (the spec's count): the primary and
        ``replicas - 1`` read replicas streaming from it, each cloned with pg_basebackup into ``replica-<n>/``
        and started on its own port; replicas beyond the count are removed. Returns ``status().replicas``."""
        if not 1 <= replicas <= 16:
            raise ProviderError(f"replicas must be between 1 and 16, not {replicas}")
        paths = self._paths(instance_id)
        wanted = [f"replica-{n}" for n in range(1, replicas)]
        with self._locked(instance_id):
            record = self._created_record(paths)
            password = ensure_secret(paths.replication_password)
            with self._server(paths, record).connect() as conn:
                for name in sorted(set(record.replicas) - set(wanted)):
                    replica = paths.replica(name)
                    try:
                        self._replica_server(paths, record, name).stop("immediate")
                    finally:
                        kill_postmaster(replica.data_dir, f"{name} of instance {instance_id}", self.start_timeout)
                    _replicas.drop_slot(conn, name, self.start_timeout)
                    shutil.rmtree(replica.root, ignore_errors=True)
                    del record.replicas[name]
                    record.save(paths.record)
                try:
                    _replicas.prepare_primary(conn, password, wanted)
                except psycopg.Error as exc:
                    raise ProviderError(q.pg_message(exc)) from exc
            for name in wanted:
                if name not in record.replicas:
                    with file_lock(self._locks / "ports.lock"):
                        record.replicas[name] = pick_port(self.host, self.port_range, recorded_ports(self._instances))
                        record.save(paths.record)
                if not paths.replica(name).initialised:
                    _replicas.clone(
                        self.home, self.host, record.port, paths.replica(name), name, password, self._os_user(record)
                    )
                self._start_replica(paths, record, name)
        return self.status(instance_id).replicas
