"""Continuous archiving, base backups and point-in-time restores of CloudNativePG clusters (pure: no I/O).

Why the Barman Cloud Plugin and not ``barmanObjectStore``: from CloudNativePG 1.26 the in-tree
``spec.backup.barmanObjectStore`` of a ``Cluster`` is deprecated and slated for removal; the operator's
recommended way is the Barman Cloud Plugin (``barman-cloud.cloudnative-pg.io``), a CNPG-I plugin with an
``ObjectStore`` resource (``barmancloud.cnpg.io/v1``) of its own. The archive format is the same (barman-cloud
writes ``<destinationPath>/<serverName>/{base,wals}``), so nothing is lost by choosing it, and rendering for the
deprecated field now would mean a migration of every instance later. The plugin must be installed beside the
operator (with cert-manager, as its installation asks).

What one instance with ``backup.enabled`` gets:

- an ``ObjectStore`` named ``<cluster>-store`` whose ``destinationPath`` is ``<data plane prefix>/<cluster>``
  (one folder per instance: the cluster name ends with a hash of the instance id, so no tenant can name its way
  into another's folder), the data plane's endpoint, the access keys by reference to the data plane's ``Secret``
  (never from the instance spec), WAL and base backups compressed, and ``retentionPolicy: <retention_days>d``;
- the ``Cluster``'s plugin entry making the plugin its WAL archiver with that store;
- a ``ScheduledBackup`` (``method: plugin``) with the spec's schedule, converted to the operator's six-field cron.

On-demand backups are ``Backup`` objects of the same method. A restore is a new ``Cluster`` bootstrapped with
``recovery`` from an ``externalClusters`` entry that reads the source's ``ObjectStore`` with the source
cluster's name as ``serverName``; a ``recoveryTarget`` gives the time, the LSN, or the backup (with
``targetImmediate``: the moment that backup became consistent). In plugin mode the recovery window is reported in
the ``ObjectStore``'s ``status.serverRecoveryWindow[<server>]`` (the ``Cluster``'s ``firstRecoverabilityPoint`` /
``lastSuccessfulBackup`` stay empty: they are the in-tree method's, and deprecated too).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from howdah.control.recovery import Window, format_lsn, parse_lsn
from howdah.control.spec import cron_problem

PLUGIN = "barman-cloud.cloudnative-pg.io"
STORE_GROUP = "barmancloud.cnpg.io"
STORE_VERSION = "v1"
OBJECT_STORES = "objectstores"
BACKUPS = "backups"
SCHEDULED_BACKUPS = "scheduledbackups"
#: the annotation carrying a restore's source on the new instance's credentials Secret until its Cluster exists
RECOVERY = "howdah.dev/recovery"
#: set on an ObjectStore whose instance was deleted (the store and its data are kept for restores)
DELETED_AT = "howdah.dev/deleted-at"
SOURCE = "origin"  # the externalClusters entry a restore reads from
COMPRESSION = "gzip"
#: CloudNativePG's default ``archive_timeout``: a healthy archiver has every commit older than this archived
ARCHIVE_TIMEOUT = timedelta(minutes=5)
ARCHIVING_CONDITION = "ContinuousArchiving"
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_BACKUP_ID = re.compile(r"^[0-9]{8}T[0-9]{6}$")  # barman's backup ids


@dataclass(frozen=True)
class ObjectStoreConfig:
    """The data plane's object store, given by its operator (never by an instance spec).

    ``destination``: the S3 bucket and prefix every instance's folder goes under (``s3://backups/howdah``);
    ``endpoint_url``: an S3-compatible endpoint (None: AWS S3); ``secret``: the name of a Secret in the
    namespace holding the access keys under ``access_key_id_key`` / ``secret_access_key_key``.
    """

    destination: str
    secret: str
    endpoint_url: str | None = None
    access_key_id_key: str = "ACCESS_KEY_ID"
    secret_access_key_key: str = "ACCESS_SECRET_KEY"

    def __post_init__(self) -> None:
        if not re.match(r"^s3://[^\s/]+(/[^\s]*)?$", self.destination):
            raise ValueError(
                f"object store destination {self.destination!r}: expected s3://bucket or s3://bucket/prefix"
            )
        if not _NAME.match(self.secret):
            raise ValueError(f"object store secret {self.secret!r} is not a Kubernetes object name")
        for key in (self.access_key_id_key, self.secret_access_key_key):
            if not re.match(r"^[-._a-zA-Z0-9]{1,253}$", key):
                raise ValueError(f"secret key {key!r} is not a valid Secret data key")
        if self.endpoint_url is not None and not re.match(r"^https?://[^\s]+$", self.endpoint_url):
            raise ValueError(f"object store endpoint {self.endpoint_url!r}: expected an http(s) URL")

    def path(self, cluster: str) -> str:
        """The instance's folder (``destinationPath``); barman-cloud writes ``<path>/<cluster>/{base,wals}``."""
        return f"{self.destination.rstrip('/')}/{cluster}"


def store_name(cluster: str) -> str:
    return f"{cluster}-store"


def scheduled_backup_name(cluster: str) -> str:
    return f"{cluster}-scheduled"


def backup_name(cluster: str, backup_id: str) -> str:
    """The ``Backup`` object of Howdah's backup ``backup_id`` (a lowercase DNS label; ValueError otherwise)."""
    name = f"{cluster}-{backup_id}"
    if not _NAME.match(backup_id) or len(name) > 253:
        raise ValueError(f"backup id {backup_id!r} is not a lowercase DNS label")
    return name


def six_field_cron(schedule: str) -> str:
    """A five-field cron (minute hour day month weekday, as the instance spec has it) as the six-field one of
    CloudNativePG's ``ScheduledBackup`` (seconds first): ``0 3 * * *`` → ``0 0 3 * * *``. Weekday 7 (Sunday to
    cron, not to the operator's parser) becomes 0. ValueError for what :func:`~howdah.control.spec.cron_problem`
    refuses."""
    problem = cron_problem(schedule)
    if problem is not None:
        raise ValueError(problem)
    fields = schedule.split()
    weekday = ",".join("0" if item == "7" else item for item in fields[4].split(","))
    return " ".join(["0", *fields[:4], weekday])


def _metadata(name: str, namespace: str, labels: Mapping[str, str]) -> dict[str, Any]:
    return {"name": name, "namespace": namespace, "labels": dict(labels)}


def render_object_store(
    cluster: str, store: ObjectStoreConfig, retention_days: int, *, namespace: str, labels: Mapping[str, str]
) -> dict[str, Any]:
    """The plugin's ``ObjectStore`` of one instance (see the module docstring)."""
    credentials = {
        "accessKeyId": {"name": store.secret, "key": store.access_key_id_key},
        "secretAccessKey": {"name": store.secret, "key": store.secret_access_key_key},
    }
    configuration: dict[str, Any] = {
        "destinationPath": store.path(cluster),
        **({"endpointURL": store.endpoint_url} if store.endpoint_url else {}),
        "s3Credentials": credentials,
        "wal": {"compression": COMPRESSION},
        "data": {"compression": COMPRESSION},
    }
    return {
        "apiVersion": f"{STORE_GROUP}/{STORE_VERSION}",
        "kind": "ObjectStore",
        "metadata": _metadata(store_name(cluster), namespace, labels),
        "spec": {"configuration": configuration, "retentionPolicy": f"{int(retention_days)}d"},
    }


def archiver_plugin(cluster: str) -> dict[str, Any]:
    """The ``Cluster``'s ``spec.plugins`` entry: the plugin archives its WAL to its ``ObjectStore``."""
    return {
        "name": PLUGIN,
        "enabled": True,
        "isWALArchiver": True,
        "parameters": {"barmanObjectName": store_name(cluster)},
    }


def _plugin_configuration(cluster: str) -> dict[str, Any]:
    return {"name": PLUGIN, "parameters": {"barmanObjectName": store_name(cluster)}}


def render_scheduled_backup(
    cluster: str, schedule: str, *, namespace: str, labels: Mapping[str, str]
) -> dict[str, Any]:
    """The ``ScheduledBackup`` taking base backups at ``schedule`` (five-field cron, UTC); ValueError for a bad
    schedule. No backup at creation (``immediate``): the first follows the schedule, as on the local provider."""
    return {
        "apiVersion": "postgresql.cnpg.io/v1",
        "kind": "ScheduledBackup",
        "metadata": _metadata(scheduled_backup_name(cluster), namespace, labels),
        "spec": {
            "cluster": {"name": cluster},
            "schedule": six_field_cron(schedule),
            "method": "plugin",
            "pluginConfiguration": _plugin_configuration(cluster),
            "backupOwnerReference": "none",
        },
    }


def render_backup(cluster: str, backup_id: str, *, namespace: str, labels: Mapping[str, str]) -> dict[str, Any]:
    """An on-demand ``Backup`` of the cluster's primary to its ``ObjectStore``."""
    return {
        "apiVersion": "postgresql.cnpg.io/v1",
        "kind": "Backup",
        "metadata": _metadata(backup_name(cluster, backup_id), namespace, labels),
        "spec": {
            "cluster": {"name": cluster},
            "method": "plugin",
            "pluginConfiguration": _plugin_configuration(cluster),
        },
    }


# --- restores -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recovery:
    """Where a new cluster's data comes from: the archive of the cluster ``server`` (its ``ObjectStore``
    ``store``), replayed up to ``target_time`` or ``target_lsn``, or to the end of the backup ``backup_id``
    (barman's id), or to the end of the archive when none is given."""

    server: str
    store: str
    target_time: datetime | None = None
    target_lsn: str | None = None
    backup_id: str | None = None

    def __post_init__(self) -> None:
        if not _NAME.match(self.server) or not _NAME.match(self.store):
            raise ValueError(f"recovery source {self.server!r} / {self.store!r} is not a Kubernetes name")
        if self.target_time is not None and self.target_time.tzinfo is None:
            raise ValueError("a recovery target time needs a time zone")
        if self.target_lsn is not None:
            object.__setattr__(self, "target_lsn", format_lsn(parse_lsn(self.target_lsn)))
        if self.backup_id is not None and not _BACKUP_ID.match(self.backup_id):
            raise ValueError(f"{self.backup_id!r} is not a barman backup id")
        if sum(x is not None for x in (self.target_time, self.target_lsn, self.backup_id)) > 1:
            raise ValueError("a recovery has at most one target: a time, an LSN or a backup")

    def recovery_target(self) -> dict[str, Any] | None:
        if self.target_time is not None:  # RFC 3339 in UTC, which the operator reads as such
            return {"targetTime": self.target_time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")}
        if self.target_lsn is not None:
            return {"targetLSN": self.target_lsn}
        if self.backup_id is not None:
            return {"backupID": self.backup_id, "targetImmediate": True}
        return None

    def external_cluster(self) -> dict[str, Any]:
        return {
            "name": SOURCE,
            "plugin": {
                "name": PLUGIN,
                "parameters": {"barmanObjectName": self.store, "serverName": self.server},
            },
        }

    def to_json(self) -> str:
        return json.dumps({
            "server": self.server, "store": self.store, "backup_id": self.backup_id, "target_lsn": self.target_lsn,
            "target_time": self.target_time.isoformat() if self.target_time else None,
        }, sort_keys=True)  # fmt: skip

    @classmethod
    def from_json(cls, text: str) -> Recovery:
        """What :meth:`to_json` wrote (ValueError otherwise)."""
        try:
            data = json.loads(text)
            time = data.get("target_time")
            return cls(
                str(data["server"]), str(data["store"]), datetime.fromisoformat(time) if time else None,
                data.get("target_lsn"), data.get("backup_id"),
            )  # fmt: skip
        except (KeyError, TypeError, AttributeError, json.JSONDecodeError) as exc:
            raise ValueError(f"not a recovery: {exc}") from None


def recovery_of(bootstrap: Mapping[str, Any], external_clusters: Iterable[Mapping[str, Any]]) -> Recovery | None:
    """The :class:`Recovery` a rendered ``bootstrap`` and ``externalClusters`` came from (None: not a restore)."""
    recovery = bootstrap.get("recovery")
    if not isinstance(recovery, Mapping):
        return None
    source = next((c for c in external_clusters if c.get("name") == recovery.get("source")), None)
    parameters = ((source or {}).get("plugin") or {}).get("parameters") or {}
    target = recovery.get("recoveryTarget") or {}
    time = target.get("targetTime")
    try:
        return Recovery(
            str(parameters.get("serverName")), str(parameters.get("barmanObjectName")),
            datetime.fromisoformat(time) if time else None, target.get("targetLSN"), target.get("backupID"),
        )  # fmt: skip
    except ValueError:
        return None


# --- reading status back --------------------------------------------------------------------------------------


def _time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _lsn(value: object) -> int | None:
    try:
        return parse_lsn(value) if isinstance(value, str) else None
    except ValueError:
        return None


@dataclass(frozen=True)
class BackupState:
    """A ``Backup`` object as its status says: ``phase`` (``completed``, ``failed``, … or None before any)."""

    name: str
    cluster: str
    phase: str | None
    backup_id: str | None
    started_at: datetime | None
    stopped_at: datetime | None
    begin_lsn: int | None
    end_lsn: int | None
    error: str | None


def backup_state(obj: Mapping[str, Any]) -> BackupState:
    status: Mapping[str, Any] = obj.get("status") or {}
    phase = status.get("phase")
    error = status.get("error")
    backup_id = status.get("backupId")
    return BackupState(
        name=str((obj.get("metadata") or {}).get("name", "")),
        cluster=str(((obj.get("spec") or {}).get("cluster") or {}).get("name", "")),
        phase=str(phase) if phase else None,
        backup_id=str(backup_id) if isinstance(backup_id, str) and _BACKUP_ID.match(backup_id) else None,
        started_at=_time(status.get("startedAt")),
        stopped_at=_time(status.get("stoppedAt")),
        begin_lsn=_lsn(status.get("beginLSN")),
        end_lsn=_lsn(status.get("endLSN")),
        error=str(error) if error else None,
    )


def backup_location(store: ObjectStoreConfig, cluster: str, backup_id: str) -> str:
    """Where barman-cloud keeps a base backup: ``<path>/<server>/base/<backup id>``."""
    return f"{store.path(cluster)}/{cluster}/base/{backup_id}"


def parse_location(store: ObjectStoreConfig, location: str) -> tuple[str, str]:
    """The (cluster, barman backup id) of a location :func:`backup_location` wrote; ValueError for any other."""
    prefix = store.destination.rstrip("/") + "/"
    parts = location[len(prefix) :].split("/") if location.startswith(prefix) else []
    if len(parts) != 4 or parts[0] != parts[1] or parts[2] != "base":
        raise ValueError(f"{location!r} is not a backup in this data plane's object store")
    cluster, backup_id = parts[0], parts[3]
    if not _NAME.match(cluster) or not _BACKUP_ID.match(backup_id):
        raise ValueError(f"{location!r} is not a backup in this data plane's object store")
    return cluster, backup_id


def _archiving(cluster: Mapping[str, Any] | None) -> bool | None:
    """The Cluster's ``ContinuousArchiving`` condition (None: not reported)."""
    conditions = ((cluster or {}).get("status") or {}).get("conditions") or []
    for condition in conditions:
        if isinstance(condition, Mapping) and condition.get("type") == ARCHIVING_CONDITION:
            return condition.get("status") == "True"
    return None


def archive_status(
    server: str,
    store: Mapping[str, Any] | None,
    backups: Iterable[BackupState],
    cluster: Mapping[str, Any] | None,
    now: datetime,
) -> dict[str, Any]:
    """``InstanceStatus.archive`` of the cluster ``server``: whether it archives (the ``ContinuousArchiving``
    condition; None before the operator reports it), its recoverable window, and its newest base backup.

    The window starts at the store's ``firstRecoverabilityPoint`` for the server (the LSN: the end of the oldest
    completed ``Backup`` of the cluster). Its end is the newest completed backup's end, or, while the Cluster's
    ``ContinuousArchiving`` condition is true, ``now`` less the operator's ``archive_timeout`` (every commit
    older than that is archived); neither the plugin nor the operator reports the last archived LSN, so LSN
    targets are offered up to the newest backup's end only. No window without both the store's report and a
    completed backup with its LSNs.
    """
    window_status = (((store or {}).get("status") or {}).get("serverRecoveryWindow") or {}).get(server) or {}
    first = _time(window_status.get("firstRecoverabilityPoint"))
    last_backup = _time(window_status.get("lastSuccessfulBackupTime"))
    done = sorted(
        (b for b in backups if b.cluster == server and b.phase == "completed" and b.end_lsn is not None),
        key=lambda b: b.end_lsn or 0,
    )
    archiving = _archiving(cluster)
    span: Window | None = None
    if first is not None and done:
        newest = done[-1]
        latest = max(t for t in (first, last_backup, newest.stopped_at) if t is not None)
        if archiving:
            latest = max(latest, now - ARCHIVE_TIMEOUT)
        assert done[0].end_lsn is not None and newest.end_lsn is not None
        span = Window(first, latest, done[0].end_lsn, max(newest.end_lsn, done[0].end_lsn))
    newest_time = last_backup or (done[-1].stopped_at if done else None)
    return {
        "archiving": archiving if store is not None else False,  # None: the operator has not said yet
        "recovery_window": span.as_dict() if span else None,
        "last_backup_at": newest_time.isoformat() if newest_time else None,
        "last_archive_error": None if archiving is not False else "the operator reports WAL archiving failing",
    }


__all__ = [
    "BACKUPS",
    "OBJECT_STORES",
    "PLUGIN",
    "RECOVERY",
    "SCHEDULED_BACKUPS",
    "STORE_GROUP",
    "STORE_VERSION",
    "BackupState",
    "ObjectStoreConfig",
    "Recovery",
    "archive_status",
    "archiver_plugin",
    "backup_location",
    "backup_name",
    "backup_state",
    "parse_location",
    "recovery_of",
    "render_backup",
    "render_object_store",
    "render_scheduled_backup",
    "six_field_cron",
    "store_name",
]
