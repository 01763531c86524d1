"""Continuous WAL archiving of local instances: the archive folders, the server settings that fill them, what
they make recoverable, the WAL a point-in-time restore replays, and retention.

Layout under the provider's home::

    backups/<instance id>/wal/                    the instance's archived WAL (owned by its OS user, 0700)
    instances/<new id>/restore-wal/               a restore's copy of the WAL it replays (removed once promoted)

When Howdah runs as root each instance's server runs as its own OS user and writes its archive itself:
``backups/`` can then be passed through by others (0711) but not listed, ``backups/<id>/`` only by the
instance's group (0710), and its base backups stay Howdah's alone (0700). A restored instance never reads the
archive of its source: the WAL it replays is copied for it.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from howdah.control.recovery import (
    BackupPoint,
    Retention,
    Window,
    expired_after_delete,
    parse_lsn,
    replay_files,
    segment_number,
    window,
)
from howdah.pg._binaries import OsUser, run_tool
from howdah.pg.files import write_atomic
from howdah.providers import _wal_archive
from howdah.providers.base import ProviderError

_SCRIPT = Path(_wal_archive.__file__).resolve()
ARCHIVE_TIMEOUT = "60s"
_RECORD = re.compile(r"\blsn: ([0-9A-F]+/[0-9A-F]+),")
_COMMIT = re.compile(r"desc: COMMIT (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?) UTC")
_SCAN_SEGMENTS = 8  # how far back from the newest archived segment a last commit is looked for


def wal_dir(backups: Path, instance_id: str) -> Path:
    return backups / instance_id / "wal"


def prepare_folders(backups: Path, instance_id: str, user: OsUser) -> Path:
    """``backups/``, ``backups/<id>/`` and its ``wal/`` (writable by the instance's OS ``user`` alone)."""
    shared = not user.is_current
    backups.mkdir(mode=0o700, parents=True, exist_ok=True)
    backups.chmod(0o711 if shared else 0o700)
    own = backups / instance_id
    own.mkdir(mode=0o700, exist_ok=True)
    if shared:
        os.chown(own, os.geteuid(), user.gid)
    own.chmod(0o710 if shared else 0o700)
    wal = own / "wal"
    wal.mkdir(mode=0o700, exist_ok=True)
    user.chown(wal)
    wal.chmod(0o700)
    return wal


@dataclass(frozen=True)
class WalTool:
    """How a server runs :mod:`howdah.providers._wal_archive`: an interpreter its OS user may run, and a copy of
    the script in the provider's home (which every server's user can reach, unlike, say, a virtualenv under
    ``/root``)."""

    python: str
    script: Path

    def command(self, action: str, *args: str) -> str:
        """A shell command (``%`` in paths escaped for Postgres, each word shell-quoted)."""
        words = [shlex.quote(part.replace("%", "%%")) for part in (self.python, str(self.script), action, *args)]
        return " ".join([words[0], "-I", *words[1:]])


def wal_tool(home: Path, user: OsUser) -> WalTool:
    """The :class:`WalTool` of servers running as ``user`` (the script copied to ``home/bin`` when it changed)."""
    folder = home / "bin"
    folder.mkdir(mode=0o755, exist_ok=True)
    script = folder / "howdah-wal.py"
    text = _SCRIPT.read_text()
    if not script.exists() or script.read_text() != text:
        write_atomic(script, text, mode=0o644)
    return WalTool(_python_for(user.uid, user.gid) if not user.is_current
                   else sys.executable, script)  # fmt: skip


@lru_cache(maxsize=64)
def _python_for(uid: int, gid: int) -> str:
    """The first Python 3 interpreter that runs as ``uid`` (the virtualenv's, or the system's)."""
    candidates = [
        sys.executable,
        getattr(sys, "_base_executable", ""),
        shutil.which("python3") or "",
        "/usr/bin/python3",
    ]
    for candidate in dict.fromkeys(c for c in candidates if c):
        try:
            done = subprocess.run(
                [candidate, "-I", "-c", "import sys; sys.exit(sys.version_info < (3, 8))"],
                user=uid, group=gid, extra_groups=[], capture_output=True, timeout=30, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        except (OSError, subprocess.SubprocessError):
            continue
        if done.returncode == 0:
            return candidate
    raise ProviderError(f"no Python 3 interpreter that uid {uid} may run was found (tried {candidates}): WAL "
                        "archiving needs one")  # fmt: skip


def archive_conf(tool: WalTool, wal: Path) -> dict[str, str]:
    """Settings that archive every completed segment into ``wal`` (and one at least every minute)."""
    command = tool.command("push", str(wal)) + " %p %f"
    return {"archive_mode": "on", "archive_command": command, "archive_timeout": ARCHIVE_TIMEOUT}


def recovery_conf(staging: Path, target_time: datetime | None, target_lsn: str | None) -> dict[str, str]:
    """Settings of a restore that replays the WAL in ``staging`` up to the target (the end when None), then
    promotes."""
    # The staged copies belong to the new instance: a plain cp is all a restore needs (an absolute path, so the
    # server's environment cannot choose which program runs).
    cp = shlex.quote(shutil.which("cp") or "/bin/cp")
    conf = {"restore_command": f"{cp} {shlex.quote(str(staging).replace('%', '%%'))}/%f %p",
            "recovery_target_timeline": "latest"}  # fmt: skip
    if target_time is not None:
        conf["recovery_target_time"] = target_time.astimezone(UTC).isoformat(sep=" ")
    if target_lsn is not None:
        conf["recovery_target_lsn"] = target_lsn
    if target_time is not None or target_lsn is not None:
        conf["recovery_target_action"] = "promote"
    return conf


# ----------------------------------------------------------------------------------------------- window
def backup_point(meta: dict[str, Any]) -> BackupPoint | None:
    """What recovery needs to know of a base backup (None for one taken before its WAL range was recorded)."""
    try:
        return BackupPoint(
            backup_id=str(meta["backup_id"]),
            end_time=datetime.fromisoformat(str(meta["created_at"])),
            start_lsn=parse_lsn(str(meta["start_lsn"])),
            end_lsn=parse_lsn(str(meta["end_lsn"])),
            timeline=int(meta["timeline"]),
        )
    except (KeyError, ValueError):
        return None


def wal_range(data_dir: Path) -> dict[str, Any]:
    """The WAL range of a plain-format base backup, from its ``backup_manifest``."""
    try:
        manifest = json.loads((data_dir / "backup_manifest").read_text())
        ranges = manifest["WAL-Ranges"]
        return {"start_lsn": ranges[0]["Start-LSN"], "end_lsn": ranges[-1]["End-LSN"],
                "timeline": int(ranges[-1]["Timeline"])}  # fmt: skip
    except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
        raise ProviderError(f"the base backup's manifest has no WAL range: {exc}") from exc


def archived(wal: Path) -> list[str]:
    """The WAL files in an archive folder (completed pushes only), in WAL order."""
    try:
        names = [entry.name for entry in os.scandir(wal) if _wal_archive.WAL_NAME.match(entry.name)]
    except FileNotFoundError:
        return []
    return sorted(names)


@lru_cache(maxsize=256)
def _records(home: Path, segment: Path, size: int, mtime_ns: int) -> tuple[datetime | None, int | None]:
    """The last commit time and last record position in one archived segment (``pg_waldump``; cached: an
    archived segment never changes)."""
    done = run_tool(home, "pg_waldump", [str(segment)], as_server_user=False, timeout=120)
    commit, last = None, None
    for line in done.stdout.splitlines():
        record = _RECORD.search(line)
        if record:
            last = parse_lsn(record.group(1))
        found = _COMMIT.search(line)
        if found:
            commit = datetime.fromisoformat(found.group(1)).replace(tzinfo=UTC)
    return commit, last


def _records_of(home: Path, segment: Path) -> tuple[datetime | None, int | None]:
    st = segment.stat()
    return _records(home, segment, st.st_size, st.st_mtime_ns)


def last_records(home: Path, wal: Path, points: list[BackupPoint]) -> tuple[datetime | None, int | None]:
    """The last commit time and the last record position the archive ``wal`` holds after the newest base
    backup's start (None, None when it holds nothing from there on)."""
    if not points:
        return None, None
    newest_start = max(b.start_segment for b in points)
    segments = [name for name in archived(wal) if len(name) == 24 and (segment_number(name) or 0) >= newest_start]
    last_commit, last_lsn = None, None
    for position, name in enumerate(reversed(segments[-_SCAN_SEGMENTS:])):
        commit, last = _records_of(home, wal / name)
        if position == 0:
            last_lsn = last
        if commit is not None:
            last_commit = commit
            break
    return last_commit, last_lsn


def recoverable(home: Path, wal: Path, points: list[BackupPoint]) -> Window | None:
    """The window the base backups ``points`` and the archive ``wal`` make recoverable."""
    return window(points, *last_records(home, wal, points))


def archiver_status(
    row: tuple[Any, ...] | None, wal: Path, enabled: bool, log_tail: Callable[[], str] = str
) -> dict[str, Any]:
    """``last_archived_wal``/``_at`` and ``last_archive_error`` from ``pg_stat_archiver`` (``row``: last archived
    wal and time, last failed wal and time, failures), or from the archive folder when the server does not run.
    The error says why the last push failed when the end of the server's log (``log_tail()``, read only then)
    does."""
    if row is None:
        names = [name for name in archived(wal) if len(name) == 24]
        at = datetime.fromtimestamp((wal / names[-1]).stat().st_mtime, UTC).isoformat() if names else None
        return {"archiving": enabled, "last_archived_wal": names[-1] if names else None, "last_archived_at": at,
                "last_archive_error": None}  # fmt: skip
    wal_name, wal_time, failed_name, failed_time, failures = row
    error = None
    if failed_time is not None and (wal_time is None or failed_time > wal_time):
        error = f"archiving {failed_name} failed at {failed_time.isoformat()} ({failures} failures in all)"
        reason = push_failure(log_tail(), wal)
        if reason:
            error += f": {reason}"
    return {"archiving": enabled, "last_archived_wal": wal_name,
            "last_archived_at": wal_time.isoformat() if wal_time else None, "last_archive_error": error}  # fmt: skip


_PUSH_FAILED = "howdah WAL push: "


def push_failure(log_tail: str, wal: Path) -> str | None:
    """Why the last push failed, from the end of the server's log (what the archive command printed), with the
    archive folder's path left out (the data plane's layout is none of the tenant's business)."""
    found = [line.split(_PUSH_FAILED, 1)[1].strip() for line in log_tail.splitlines() if _PUSH_FAILED in line]
    if not found:
        return None
    return found[-1].replace(f"{wal}/", "").replace(str(wal), "the archive folder")


_DELETED = "deleted.json"


def mark_deleted(backups: Path, instance_id: str, retention_days: int, now: datetime) -> None:
    """Record when instance ``instance_id`` was deleted and how long its backups are kept (the first deletion
    counts: a repeated delete does not extend it)."""
    own = backups / instance_id
    if own.is_dir() and not (own / _DELETED).exists():
        record = {"deleted_at": now.isoformat(), "retention_days": retention_days}
        write_atomic(own / _DELETED, json.dumps(record) + "\n")


def expired_deleted(backups: Path, now: datetime) -> list[str]:
    """The deleted instances whose backups and archive are kept past their retention."""
    due = []
    for marker in sorted(backups.glob(f"*/{_DELETED}")):
        try:
            record = json.loads(marker.read_text())
            deleted_at = datetime.fromisoformat(record["deleted_at"])
            if expired_after_delete(deleted_at, int(record["retention_days"]), now):
                due.append(marker.parent.name)
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return due


def remove_all(backups: Path, instance_id: str) -> None:
    """Remove every backup and the archive of ``instance_id`` (gone from every listing before its files go)."""
    own = backups / instance_id
    tomb = own.with_name(f".{instance_id}.expired")
    if own.exists():
        own.rename(tomb)
    shutil.rmtree(tomb, ignore_errors=True)


def adopt(backups: Path, instance_id: str) -> None:
    """Make a deleted instance's archive Howdah's alone (owner and group), so that an OS user created later with
    a recycled uid or gid gets no access to it."""
    own = backups / instance_id
    if not own.is_dir():
        return
    uid, gid = os.geteuid(), os.getegid()
    for folder, dirs, files in os.walk(own):
        for name in [*dirs, *files]:
            path = os.path.join(folder, name)
            if os.lstat(path).st_uid != uid or os.lstat(path).st_gid != gid:
                os.chown(path, uid, gid, follow_symlinks=False)
    os.chown(own, uid, gid)
    own.chmod(0o700)


# ------------------------------------------------------------------------------------------------ restore
def stage(wal: Path, staging: Path, start: BackupPoint, stop_lsn: int | None, user: OsUser) -> int:
    """Copy what a restore from ``start`` (to ``stop_lsn``, or the end when None) replays into ``staging``, owned
    by the new instance's ``user`` (see :func:`recovery.replay_files`); returns how many files."""
    staging.mkdir(mode=0o700, exist_ok=True)
    user.chown(staging)
    names = replay_files(archived(wal), start, stop_lsn)
    for name in names:
        copy = staging / name
        if not copy.exists():
            partial = staging / f".{name}.tmp"
            shutil.copyfile(wal / name, partial)
            partial.chmod(0o600)
            user.chown(partial)
            partial.rename(copy)
    return len(names)


# ---------------------------------------------------------------------------------------------- retention
def remove(backups: Path, instance_id: str, decided: Retention) -> None:
    """Carry out a retention decision: the base backups first, then the WAL only they needed."""
    for backup_id in decided.delete_backups:
        folder = backups / instance_id / backup_id
        tomb = folder.with_name(f".{backup_id}.deleting")
        if folder.exists():
            folder.rename(tomb)  # no longer listed as a backup before its files go
        shutil.rmtree(tomb, ignore_errors=True)
    wal = wal_dir(backups, instance_id)
    for name in decided.delete_wal:
        (wal / name).unlink(missing_ok=True)
