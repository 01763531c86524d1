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
import subprocess
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import psycopg

from howdah.control import recovery as _plan
from howdah.control.capacity import Capacity
from howdah.control.extensions import ExtensionCatalog, catalog_from_control_files
from howdah.control.spec import InstanceSpec
from howdah.errors import HowdahError
from howdah.pg._binaries import install_root, remove_os_user
from howdah.pg.files import file_lock, write_atomic
from howdah.pg.processes import postmaster_pid
from howdah.providers import _local_archive as _archive
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
    log_messages,
    log_tail,
    new_log_lines,
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
    RecoveryTarget,
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
    capabilities = frozenset(
        {Capability.BACKUP, Capability.RESTORE, Capability.PITR, Capability.REPLICAS, Capability.DELETE_BACKUP}
    )

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
            if spec is not None:
                record.archive, record.retention_days = spec.backup.enabled, spec.backup.retention_days
            self._checker.validate(wanted)
            self._write_settings_offline(paths, record, wanted)
            self._server(paths, record).write_conf()
            record.name, record.configured = name, True
            record.save(paths.record)

    def ensure_running(self, instance_id: str) -> InstanceStatus:
        paths = self._paths(instance_id)
        with self._locked(instance_id):
            record = self._created_record(paths)
            self._prepare_archive(record)
            self._server(paths, record).start()
            if record.recovery:
                self._await_promotion(paths, record)
            for name in record.replicas:
                self._start_replica(paths, record, name)
        return self.status(instance_id)

    def _await_promotion(self, paths: InstancePaths, record: InstanceRecord) -> None:
        """Wait (bounded) until a restore has replayed its WAL and promoted; then its recovery settings and WAL
        copy go. A restore that stops (a target Postgres cannot reach) raises with the server's messages."""
        server = self._server(paths, record)
        deadline = time.monotonic() + self.start_timeout
        while True:
            if server.pid is None:
                why = "\n".join(log_messages(paths.log_file))
                raise ProviderError(f"the restore of instance {record.instance_id} stopped:\n{why}")
            try:
                with server.connect(timeout=3) as conn:
                    replaying = q.in_recovery(conn)
            except TransientProviderError:
                replaying = True
            if not replaying:
                break
            if time.monotonic() > deadline:
                raise TransientProviderError(f"instance {record.instance_id} is still replaying WAL")
            time.sleep(0.05)
        record.recovery = {}
        record.save(paths.record)
        shutil.rmtree(paths.restore_wal, ignore_errors=True)

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
            if spec is not None and (record.archive, record.retention_days) != (
                spec.backup.enabled,
                spec.backup.retention_days,
            ):
                archive_changed = record.archive != spec.backup.enabled
                record.archive, record.retention_days = spec.backup.enabled, spec.backup.retention_days
                record.save(paths.record)
                if archive_changed and postmaster_pid(paths.data_dir) is not None:
                    self._prepare_archive(record)
                    self._server(paths, record).write_conf()  # reloaded below; archive_mode waits for a restart
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
        """Stop and remove the instance; its backups and archive stay for its ``retention_days`` (see
        :meth:`expire_deleted`)."""
        paths = self._paths(instance_id)
        with self._locked(instance_id):
            known = InstanceRecord.load(paths.record)
            retention_days = known.retention_days if known else InstanceRecord.retention_days
            if paths.root.exists():
                record = known
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
            # Its backups and archive outlive it for its retention, Howdah's alone from now on: a later OS user
            # given the same uid must not own them.
            _archive.mark_deleted(self._backups, instance_id, retention_days, datetime.now(UTC))
            _archive.adopt(self._backups, instance_id)
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
                    archiver = q.archiver(conn)
            except (ProviderError, psycopg.Error, OSError) as exc:
                log.debug("instance %s: not observable (%s); reported from its files", instance_id, exc)
            else:
                return InstanceStatus(
                    exists=True, running=True, accepting_connections=True, pending_restart=seen.pending_restart,
                    server_version=seen.server_version, size_bytes=seen.size_bytes,
                    postmaster_start_time=seen.postmaster_start_time, port=record.port, settings=seen.settings,
                    replicas=self._replica_status(paths, record, seen.replication),
                    archive=self._archive_status(record, archiver),
                )  # fmt: skip
        return InstanceStatus(
            exists=True, running=running, port=record.port, settings=dict(record.settings),
            replicas=self._replica_status(paths, record, {}), archive=self._archive_status(record, None),
        )  # fmt: skip

    def _archive_status(self, record: InstanceRecord, archiver: tuple[Any, ...] | None) -> dict[str, Any]:
        """Archiving as ``status`` reports it: the archiver's last success or failure, the recoverable window."""
        wal = self._wal_dir(record.instance_id)
        log_file = self._paths(record.instance_id).log_file
        found = _archive.archiver_status(archiver, wal, record.archive, lambda: log_tail(log_file))
        try:
            span = _archive.recoverable(self.home, wal, self._backup_points(record.instance_id))
        except (OSError, ProviderError, subprocess.SubprocessError) as exc:
            log.warning("instance %s: its recoverable window could not be read: %s", record.instance_id, exc)
            span = None
        return {**found, "recovery_window": span.as_dict() if span else None}

    def running_instances(self) -> dict[str, str]:
        """The instances with a Postgres server running here (their primary or a replica), id → name, read from
        their files."""
        running = {}
        for instance_id in self.list_instances():
            paths = self._paths(instance_id)
            data_dirs = [paths.data_dir, *paths.root.glob("replica-*/pgdata")]
            if any(postmaster_pid(data_dir) is not None for data_dir in data_dirs):
                record = InstanceRecord.load(paths.record)
                running[instance_id] = record.name if record is not None else instance_id
        return running

    def log_lines(self, instance_id: str, offsets: Mapping[str, int], max_bytes: int) -> list[tuple[str, str, int]]:
        """The new lines of the server logs of the instance's primary (``primary``) and replicas (by name)."""
        paths = self._paths(instance_id)
        record = InstanceRecord.load(paths.record)
        servers = {"primary": paths.log_file}
        servers.update({name: paths.replica(name).log_file for name in (record.replicas if record else {})})
        return [
            (server, line, end)
            for server, path in servers.items()
            for line, end in new_log_lines(path, offsets.get(server, 0), max_bytes)
        ]

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
            _archive.prepare_folders(self._backups, instance_id, self._os_user(record))
            meta = {
                "backup_id": backup_id,
                "instance_id": instance_id,
                "name": record.name,
                "settings": record.settings,
            }
            done = _backup.take(self.home, self.host, record.port, paths, folder, meta)
            self.apply_retention(instance_id, record.retention_days)
        self.expire_deleted()
        return done

    def expire_deleted(self, now: datetime | None = None) -> list[str]:
        """Remove the backups and archives of deleted instances once their retention has passed (run after
        every base backup); returns the instance ids whose backups went."""
        if not self._backups.is_dir():
            return []
        gone = _archive.expired_deleted(self._backups, now or datetime.now(UTC))
        for instance_id in gone:
            with self._locked(instance_id):  # not while a restore copies from them
                _archive.remove_all(self._backups, instance_id)
        return gone

    def _backup_points(self, instance_id: str) -> list[_plan.BackupPoint]:
        points = (_archive.backup_point(meta) for _, meta in self._loaded_backups(instance_id))
        return [point for point in points if point is not None]

    def apply_retention(self, instance_id: str, retention_days: int, now: datetime | None = None) -> _plan.Retention:
        """Remove the base backups of ``instance_id`` older than ``retention_days`` (the newest of them stays, for
        the window's first days) and the archived WAL that only they needed; returns what was removed."""
        decided = _plan.retention(
            self._backup_points(instance_id), _archive.archived(self._wal_dir(instance_id)),
            now or datetime.now(UTC), retention_days,
        )  # fmt: skip
        _archive.remove(self._backups, instance_id, decided)
        return decided

    def delete_backup(self, instance_id: str, backup_id: str) -> None:
        """Remove base backup ``backup_id`` and the archived WAL no other backup of the instance needs (no-op when
        it is gone): the backup stops being listed before its files go."""
        check_instance_id(instance_id)
        check_instance_id(backup_id)
        with self._locked(instance_id):  # not while a restore copies from it or a backup's retention runs
            if not (self._backups / instance_id / backup_id).exists():
                return
            decided = _plan.after_deletion(
                self._backup_points(instance_id), _archive.archived(self._wal_dir(instance_id)), backup_id
            )
            _archive.remove(self._backups, instance_id, decided)

    def list_backups(self, instance_id: str) -> list[Backup]:
        """The complete backups of ``instance_id`` (also after the instance was deleted), oldest first."""
        return [backup for backup, _ in self._loaded_backups(instance_id)]

    def recovery_window(self, instance_id: str) -> _plan.Window | None:
        """What ``instance_id`` (also after it was deleted) can be restored to."""
        return _archive.recoverable(self.home, self._wal_dir(instance_id), self._backup_points(instance_id))

    def _loaded_backups(self, instance_id: str) -> list[tuple[Backup, dict[str, Any]]]:
        check_instance_id(instance_id)
        folder = self._backups / instance_id
        found = (
            [
                _backup.load(path)
                for path in folder.iterdir()
                if path.is_dir() and path.name[0] != "." and path.name != "wal"
            ]
            if folder.is_dir()
            else []
        )
        return sorted((item for item in found if item), key=lambda item: item[0].created_at)

    def restore(self, backup: Backup, new_instance_id: str, name: str | None = None) -> None:
        """Create instance ``new_instance_id`` from ``backup`` (with the source's settings, and passwords of its
        own once running); it is left stopped: :meth:`ensure_running` starts it, replaying the backup's WAL.
        Idempotent."""
        loaded = _backup.load(Path(backup.location))
        if loaded is None:
            raise ProviderError(f"no complete backup at {backup.location}")
        meta = loaded[1]
        origin = f"backup {meta['instance_id']}/{meta['backup_id']}"
        self._restore_cluster(new_instance_id, name, Path(backup.location), meta, origin)

    def restore_to(self, source_instance_id: str, new_instance_id: str, name: str, target: RecoveryTarget) -> None:
        """Create ``new_instance_id`` as ``source_instance_id`` was at ``target``: the newest base backup before
        it, the archived WAL from that backup on copied for it, and recovery settings that replay up to the
        target and promote (to the end of the archive when nothing after the target is archived). Left
        stopped: :meth:`ensure_running` replays and returns once promoted. Idempotent."""
        check_instance_id(source_instance_id)
        try:
            lsn = _plan.parse_lsn(target.lsn) if target.lsn is not None else None
        except ValueError as exc:
            raise ProviderError(str(exc)) from None
        with self._locked(source_instance_id):  # its retention waits: the chosen backup and WAL stay until copied
            metas = {
                str(meta["backup_id"]): (backup, meta) for backup, meta in self._loaded_backups(source_instance_id)
            }
            points = self._backup_points(source_instance_id)
            wal = self._wal_dir(source_instance_id)
            last_commit, last_lsn = _archive.last_records(self.home, wal, points)
            why = _plan.outside(_plan.window(points, last_commit, last_lsn), target.time, lsn)
            start = _plan.choose_backup(points, target.time, lsn)
            if why is not None or start is None:
                raise ProviderError(
                    f"instance {source_instance_id} cannot be restored: {why or 'no base backup before the target'}"
                )
            # Past the last archived commit (record) nothing would stop the replay: it then replays the whole archive.
            stop_time = (
                target.time
                if target.time is not None and last_commit is not None and target.time < last_commit
                else None
            )
            stop_lsn = target.lsn if lsn is not None and last_lsn is not None and lsn < last_lsn else None
            backup, meta = metas[start.backup_id]
            origin = f"point in time of {source_instance_id}: {target.as_dict()}"
            paths = self._paths(new_instance_id)

            def replay(record: InstanceRecord) -> None:
                _archive.stage(wal, paths.restore_wal, start, lsn if stop_lsn is not None else None,
                               self._os_user(record))  # fmt: skip
                write_atomic(paths.data_dir / "recovery.signal", "", owner_of=paths.data_dir)
                record.recovery = _archive.recovery_conf(paths.restore_wal, stop_time, stop_lsn)

            self._restore_cluster(new_instance_id, name, Path(backup.location), meta, origin, replay)

    def _restore_cluster(
        self, new_instance_id: str, name: str | None, location: Path, meta: dict[str, Any], origin: str,
        prepare: Callable[[InstanceRecord], None] | None = None,
    ) -> None:  # fmt: skip
        """The new instance's record and the backup's cluster, ``prepare``d before it is marked configured."""
        paths = self._paths(new_instance_id)
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
                _backup.copy_cluster(location, paths, meta, self._os_user(record))
                if prepare is not None:
                    prepare(record)
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
