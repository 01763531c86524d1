"""The provider interface the conductor drives (sync; the conductor runs each call as a durable step).

Every operation is idempotent: calling it again after a crash, or twice, converges to the same result and
never duplicates anything. Failures are either :class:`TransientProviderError` (retry with backoff: a port
race, an instance still starting) or :class:`ProviderError` (permanent: a setting Postgres rejects, an
extension that is not installed) whose message is Postgres's own and becomes the instance's ``last_error``.

Every method is part of :class:`Provider`, so the conductor calls each one plainly (and mypy checks the calls).
What a provider may lack is declared in :attr:`Provider.capabilities`; a method of a capability it lacks raises
:class:`Unsupported`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from howdah.control.capacity import Capacity
from howdah.control.extensions import ExtensionCatalog
from howdah.control.spec import FEATURE_ALLOW_LIST, FEATURE_PITR, FEATURE_POOLER, InstanceSpec
from howdah.errors import HowdahError


class ProviderError(HowdahError):
    """A permanent failure: retrying the same request cannot succeed."""


class TransientProviderError(ProviderError):
    """A failure worth retrying (with backoff)."""


class Unsupported(ProviderError):
    """The provider lacks the capability a call needs (see :attr:`Provider.capabilities`): permanent."""


class Capability(StrEnum):
    """What a provider may or may not do."""

    BACKUP = "backup"  #: :meth:`Provider.backup` takes backups
    RESTORE = "restore"  #: :meth:`Provider.restore` creates an instance from one
    #: continuous WAL archiving, and :meth:`Provider.restore_to` restores to any point of an instance's window
    PITR = FEATURE_PITR
    #: the data plane takes the base backups of a spec's ``schedule`` itself (CloudNativePG's ScheduledBackup):
    #: the control plane's reconciler does not ask for them
    SCHEDULED_BACKUPS = "scheduled_backups"
    #: :meth:`Provider.delete_backup` removes a base backup and the archived WAL only it needed
    DELETE_BACKUP = "delete_backup"
    #: :meth:`Provider.ensure_replicas` runs read replicas as servers of their own; without it, a provider that
    #: has replicas makes them from ``spec.replicas`` in :meth:`Provider.ensure_created` / ``apply_settings``.
    REPLICAS = "replicas"
    #: a spec's ``connection_pooler`` runs (a PgBouncer in front of the primary)
    POOLER = FEATURE_POOLER
    #: a spec's ``ip_allow_list`` is enforced (connections from other addresses are refused)
    IP_ALLOW_LIST = FEATURE_ALLOW_LIST


@dataclass(frozen=True)
class ConnectionInfo:
    host: str
    port: int
    user: str
    password: str
    dbname: str

    def as_dict(self) -> dict[str, Any]:
        return {"host": self.host, "port": self.port, "user": self.user, "password": self.password,
                "dbname": self.dbname}  # fmt: skip


@dataclass(frozen=True)
class InstanceStatus:
    """What the provider observes of one instance right now."""

    exists: bool
    running: bool
    accepting_connections: bool = False
    pending_restart: bool = False
    server_version: str | None = None
    size_bytes: int | None = None
    postmaster_start_time: datetime | None = None
    port: int | None = None
    replicas: list[dict[str, Any]] = field(default_factory=list)
    settings: dict[str, str] = field(default_factory=dict)
    #: continuous archiving: ``archiving``, ``recovery_window`` ({earliest, latest, earliest_lsn, latest_lsn} or
    #: None), ``last_archived_wal``, ``last_archived_at``, ``last_archive_error``, ``last_backup_at`` (each where the
    #: provider knows it; empty: the provider has none)
    archive: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {**self.archive,
            "exists": self.exists, "running": self.running, "accepting_connections": self.accepting_connections,
            "pending_restart": self.pending_restart, "server_version": self.server_version,
            "size_bytes": self.size_bytes, "port": self.port, "replicas": self.replicas,
            "postmaster_start_time": self.postmaster_start_time.isoformat() if self.postmaster_start_time else None,
        }  # fmt: skip


@dataclass(frozen=True)
class Backup:
    backup_id: str
    instance_id: str
    location: str
    size_bytes: int
    created_at: datetime


@dataclass(frozen=True)
class RecoveryTarget:
    """Where a point-in-time restore stops: a time, an LSN (``'0/3000060'``), or neither (the end of the
    archive)."""

    time: datetime | None = None
    lsn: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"target_time": self.time.isoformat() if self.time else None, "target_lsn": self.lsn}

    @classmethod
    def of(cls, fields: dict[str, Any]) -> RecoveryTarget:
        time = fields.get("target_time")
        return cls(datetime.fromisoformat(time) if time else None, fields.get("target_lsn") or None)


class Provider(Protocol):
    """One data plane's way of running instances. ``settings`` are rendered Postgres settings (name → value in
    postgresql.conf syntax, ``shared_preload_libraries`` as a comma-separated list); ``extensions`` are the
    names to CREATE EXTENSION in the app database; ``spec`` is the whole instance spec, for a provider that sizes
    instances itself (its resources, replicas and pooler); one that does not ignores it."""

    name: str
    capabilities: frozenset[Capability]

    def ensure_created(
        self, instance_id: str, name: str, settings: dict[str, str], *, spec: InstanceSpec | None = None
    ) -> None:
        """Allocate storage and a port, initialise the cluster with ``settings`` (no-op if it exists)."""

    def ensure_running(self, instance_id: str) -> InstanceStatus:
        """Start the instance if it is not running and wait until it accepts connections."""

    def ensure_app_database(self, instance_id: str) -> ConnectionInfo:
        """Create the app role (SCRAM password, generated once and kept) and database; return how to connect."""

    def apply_settings(self, instance_id: str, settings: dict[str, str], *, spec: InstanceSpec | None = None) -> bool:
        """Apply settings (reload); return True when a restart is needed for them to take effect."""

    def ensure_extensions(self, instance_id: str, enabled: list[str], disabled: list[str]) -> None:
        """CREATE / DROP EXTENSION in the app database (their libraries must be preloaded already)."""

    def restart(self, instance_id: str) -> InstanceStatus:
        """Restart the server; the returned status has the new postmaster start time."""

    def stop(self, instance_id: str) -> None:
        """Stop the server (data kept). No-op when stopped."""

    def delete(self, instance_id: str) -> None:
        """Stop, remove all data, release the port. No-op when it does not exist."""

    def status(self, instance_id: str) -> InstanceStatus:
        """Observe the instance (never raises for a missing or dead one: ``exists`` / ``running`` say so)."""

    def list_instances(self) -> list[str]:
        """Ids of every instance this provider holds (running or not)."""

    def log_lines(self, instance_id: str, offsets: Mapping[str, int], max_bytes: int) -> list[tuple[str, str, int]]:
        """The instance's server log lines written after ``offsets`` (server → byte offset; 0 when absent), as
        (server, line, end offset), about ``max_bytes`` at most per server; [] when the provider ships none."""

    def capacity(self) -> Capacity | None:
        """What the whole data plane has (cpu, memory, storage), reported when its conductor registers; None (or
        None in a field) when the provider cannot tell: instances are then not checked against it."""

    def backup(self, instance_id: str, backup_id: str | None = None) -> Backup:
        """A backup of the running instance; the id of one already taken returns it (:attr:`Capability.BACKUP`)."""

    def delete_backup(self, instance_id: str, backup_id: str) -> None:
        """Remove base backup ``backup_id`` of ``instance_id`` (running, stopped or deleted) and the archived WAL
        no other backup of it needs; no-op when it is gone (:attr:`Capability.DELETE_BACKUP`). Whether it may go is
        the control plane's decision (:func:`howdah.control.recovery.deletion_refused`)."""

    def restore(self, backup: Backup, new_instance_id: str, name: str | None = None) -> None:
        """Create ``new_instance_id`` from ``backup``, left for :meth:`ensure_running` (:attr:`Capability.RESTORE`)."""

    def restore_to(self, source_instance_id: str, new_instance_id: str, name: str, target: RecoveryTarget) -> None:
        """Create ``new_instance_id`` from the archive of ``source_instance_id`` (running, stopped or deleted) as
        of ``target``: the newest base backup before it, then its WAL replayed up to it; left for
        :meth:`ensure_running`, which returns once it is promoted (:attr:`Capability.PITR`). A target outside
        the source's recoverable window is a :class:`ProviderError` stating the window."""

    def ensure_replicas(self, instance_id: str, replicas: int) -> list[dict[str, Any]]:
        """Make the instance ``replicas`` servers in all, the primary included; the replicas' status
        (:attr:`Capability.REPLICAS`)."""

    def extension_catalog(self) -> ExtensionCatalog:
        """The extensions this data plane's Postgres offers and what each needs (preload libraries, requirements,
        fixed schema), reported when its conductor registers: the control plane validates instances against it."""
