"""The local provider's files: where an instance lives, its record, its port, its configuration, its process.

Layout under the provider's home::

    instances/<id>/instance.json        the record: name, port, the settings Howdah set (atomic rewrites)
    instances/<id>/superuser.password   the ``postgres`` role's password (0600)
    instances/<id>/app.password         the ``app`` role's password (0600), generated once
    instances/<id>/pgdata/              the cluster (0700, owned by the server OS user)
    instances/<id>/run/                 its Unix socket folder (0700)
    instances/<id>/server.log           its server log
    instances/<id>/.initdb              present while initdb has not completed (a crash there is redone)
    instances/<id>/restore-wal/         the WAL a point-in-time restore replays (until it is promoted)
    instances/<id>/replica-<n>/         a read replica: its own pgdata/, run/, server.log (and .initdb)
    locks/                              one lock per instance, one for port allocation
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import tempfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from howdah.pg import processes
from howdah.pg._binaries import OsUser, server_os_user
from howdah.pg.files import write_atomic
from howdah.providers.base import ProviderError

RECORD_VERSION = 1
_INSTANCE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_SOCKET_PATH_MAX = 107  # sizeof(sun_path) - 1 on Linux


def instance_os_user_name(home: Path, instance_id: str) -> str:
    """The OS user name of instance ``instance_id`` under provider ``home``: short (useradd's 32 characters),
    and different for the same id under two homes."""
    digest = hashlib.sha256(f"{home.resolve()}\0{instance_id}".encode()).hexdigest()[:12]
    return f"howdah-{digest}"


def check_instance_id(instance_id: str) -> None:
    if not _INSTANCE_ID.match(instance_id):
        raise ProviderError(
            f"invalid instance id {instance_id!r}: use 1 to 64 letters, digits, '_', '-' or '.', not starting "
            "with a dot, dash or underscore"
        )


# ------------------------------------------------------------------------------------------------- paths
@dataclass(frozen=True)
class InstancePaths:
    """Where one instance's files are (nothing is created by looking)."""

    root: Path

    @property
    def record(self) -> Path:
        return self.root / "instance.json"

    @property
    def data_dir(self) -> Path:
        return self.root / "pgdata"

    @property
    def log_file(self) -> Path:
        return self.root / "server.log"

    @property
    def superuser_password(self) -> Path:
        return self.root / "superuser.password"

    @property
    def next_superuser_password(self) -> Path:
        """A new superuser password while it replaces the current one (after a restore)."""
        return self.root / "superuser.password.next"

    @property
    def app_password(self) -> Path:
        return self.root / "app.password"

    @property
    def replication_password(self) -> Path:
        return self.root / "replication.password"

    def replica(self, name: str) -> InstancePaths:
        """A read replica's files: ``replica-<n>/`` with its own ``pgdata``, ``run`` and ``server.log``."""
        return InstancePaths(self.root / name)

    @property
    def restore_wal(self) -> Path:
        return self.root / "restore-wal"

    @property
    def initdb_marker(self) -> Path:
        return self.root / ".initdb"

    @property
    def socket_dir(self) -> Path:
        """``run/`` in the instance folder, or a short folder under the temp dir when that path would be too
        long for a Unix socket (deterministic, so that it is found again)."""
        preferred = self.root / "run"
        if len(f"{preferred}/.s.PGSQL.65535") <= _SOCKET_PATH_MAX:
            return preferred
        digest = hashlib.sha256(str(self.root).encode()).hexdigest()[:16]
        return Path(tempfile.gettempdir()) / f"howdah-{digest}"

    @property
    def initialised(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists() and not self.initdb_marker.exists()


# ------------------------------------------------------------------------------------------------ record
@dataclass
class InstanceRecord:
    """What the provider keeps about one instance besides the cluster itself."""

    instance_id: str
    name: str
    port: int
    # The settings Howdah put in postgresql.auto.conf (name → value): those no longer wanted are reset.
    settings: dict[str, str] = field(default_factory=dict)
    configured: bool = False
    # Where the cluster came from when it was not initdb'd (a restore): "backup <instance>/<backup>".
    origin: str = ""
    # Read replicas: name ("replica-1" …) → port.
    replicas: dict[str, int] = field(default_factory=dict)
    # The instance's own OS user its servers run as (when Howdah runs as root); "" for instances made before
    # each had one, which run as the shared server user.
    os_user: str = ""
    # False after a restore until the source's superuser password has been replaced by one of its own.
    own_superuser_password: bool = True
    # Continuous WAL archiving into backups/<id>/wal/ (the spec's backup.enabled) and how long backups are kept.
    archive: bool = True
    retention_days: int = 7
    # While a point-in-time restore replays WAL: its recovery settings (emptied once the instance is promoted).
    recovery: dict[str, str] = field(default_factory=dict)
    version: int = RECORD_VERSION

    @classmethod
    def load(cls, path: Path) -> InstanceRecord | None:
        try:
            data: dict[str, Any] = json.loads(path.read_text())
        except (FileNotFoundError, NotADirectoryError):
            return None
        except (OSError, ValueError) as exc:
            raise ProviderError(f"the instance record {path} is unreadable: {exc}") from exc
        return cls(
            instance_id=str(data["instance_id"]),
            name=str(data["name"]),
            port=int(data["port"]),
            settings={str(k): str(v) for k, v in dict(data.get("settings", {})).items()},
            configured=bool(data.get("configured", False)),
            origin=str(data.get("origin", "")),
            replicas={str(k): int(v) for k, v in dict(data.get("replicas", {})).items()},
            os_user=str(data.get("os_user", "")),
            own_superuser_password=bool(data.get("own_superuser_password", True)),
            archive=bool(data.get("archive", True)),
            retention_days=int(data.get("retention_days", 7)),
            recovery={str(k): str(v) for k, v in dict(data.get("recovery", {})).items()},
            version=int(data.get("version", RECORD_VERSION)),
        )

    def save(self, path: Path) -> None:
        write_atomic(path, json.dumps(asdict(self), indent=2, sort_keys=True) + "\n")


def read_secret(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except FileNotFoundError:
        return None


def ensure_secret(path: Path) -> str:
    """The secret kept in ``path`` (mode 0600), generated the first time."""
    existing = read_secret(path)
    if existing:
        return existing
    write_atomic(path, secrets.token_urlsafe(24) + "\n")
    return read_secret(path) or ""


# ------------------------------------------------------------------------------------------------- ports
def pick_port(host: str, port_range: tuple[int, int], reserved: Iterable[int]) -> int:
    """A port in ``port_range`` that no record holds and nothing listens on (:func:`howdah.pg.processes.pick_port`);
    :class:`ProviderError` when the range is full."""
    port = processes.pick_port(host, port_range, reserved)
    if port is None:
        raise ProviderError(f"no free port left in {port_range[0]}-{port_range[1]} on {host}")
    return port


def recorded_ports(instances_dir: Path) -> set[int]:
    ports = set()
    for path in instances_dir.glob("*/instance.json"):
        with contextlib.suppress(ProviderError, KeyError, ValueError, TypeError):
            record = InstanceRecord.load(path)
            if record:
                ports.add(record.port)
                ports.update(record.replicas.values())
    return ports


# ----------------------------------------------------------------------------------------------- folders
def make_instance_dir(path: Path, user: OsUser) -> None:
    """An instance's (or replica's) folder: Howdah's, and passable by the instance's OS ``user`` alone (its
    group), so that no other instance's user, nor anyone else, lists or reads what is inside."""
    path.mkdir(mode=0o700, exist_ok=True)
    if user.is_current:
        path.chmod(0o700)
        return
    os.chown(path, os.geteuid(), user.gid)
    path.chmod(0o750)


def make_server_dir(path: Path, user: OsUser | None = None) -> None:
    """A folder (0700) owned by ``user`` (default: the server OS user); refuses one that someone else owns."""
    path.mkdir(mode=0o700, parents=False, exist_ok=True)
    user = user or server_os_user()
    user.chown(path)
    st = path.stat()
    if st.st_uid != user.uid:
        raise ProviderError(f"{path} is owned by uid {st.st_uid}, not by the server user {user.name!r}")
    path.chmod(0o700)


# --------------------------------------------------------------------------------------------------- log
_SEVERITY = re.compile(r"\b(PANIC|FATAL|ERROR|WARNING|LOG|DETAIL|HINT):\s+(.*)$")
_NOISE = (
    "starting PostgreSQL",
    "listening on",
    "database system is shut down",
    "database system was shut down",
    "redirecting log output",
    "ending log output",
    "skipping missing configuration file",
    "shutting down",
    "aborting startup due to startup process failure",
)


def log_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def log_tail(path: Path, size: int = 64 * 1024) -> str:
    """The last ``size`` bytes of the log at ``path`` ('' when there is none)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(max(0, log_size(path) - size))
            return handle.read().decode(errors="replace")
    except OSError:
        return ""


#: The longest log line shipped whole; a longer one is cut (and marked so).
MAX_LOG_LINE = 8192


def new_log_lines(path: Path, offset: int, max_bytes: int) -> list[tuple[str, int]]:
    """The complete lines of the log file ``path`` after byte ``offset`` (from its start when the file is now
    shorter: it was replaced), at most about ``max_bytes`` of them, each with the offset where it ends."""
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            start = offset if offset <= size else 0
            handle.seek(start)
            chunk = handle.read(max_bytes)
    except OSError:
        return []
    end = chunk.rfind(b"\n")
    if end < 0:
        if len(chunk) < max_bytes:
            return []  # a line still being written
        end = len(chunk) - 1  # one line longer than max_bytes: shipped cut
    lines, position = [], start
    for raw in chunk[: end + 1].splitlines(keepends=True):
        position += len(raw)
        text = raw.rstrip(b"\r\n").replace(b"\0", b"").decode("utf-8", errors="replace")  # text holds no NUL
        if len(text) > MAX_LOG_LINE:
            text = text[:MAX_LOG_LINE] + " [cut]"
        lines.append((text, position))
    return lines


def log_messages(path: Path, offset: int = 0, *, limit: int = 12) -> list[str]:
    """The server's own messages written to ``path`` after ``offset`` (``LEVEL:  text``, noise left out)."""
    try:
        with open(path, errors="replace") as handle:
            handle.seek(offset)
            text = handle.read()
    except OSError:
        return []
    return [f"{level}:  {message}" for level, message in messages_of(text)][-limit:]


def messages_of(text: str) -> list[tuple[str, str]]:
    """``(level, message)`` of each Postgres log line in ``text`` (whatever its log_line_prefix)."""
    messages = []
    for line in text.splitlines():
        match = _SEVERITY.search(line)
        if match and not any(noise in match.group(2) for noise in _NOISE):
            messages.append((match.group(1), match.group(2).strip()))
    return messages
