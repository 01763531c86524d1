"""Point-in-time recovery decisions, free of I/O: LSNs and segment names, the recoverable window, which base
backup a restore starts from, and what retention removes. Data planes decide with them over their archives; the
control plane checks a restore's target against the window an instance's status reports.

Segments are Postgres's default 16 MB (``initdb`` without ``--wal-segsize``, as the local provider runs it).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from howdah.durable._schedule import prev_tick

SEGMENT_SIZE = 16 * 2**20
_SEGMENTS_PER_ID = 2**32 // SEGMENT_SIZE
_LSN = re.compile(r"^([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})$")
_SEGMENT = re.compile(r"^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})(\.partial|\.[0-9A-F]{8}\.backup)?$")


def parse_lsn(text: str) -> int:
    """``'0/3000060'`` → its byte position; ValueError for anything else."""
    match = _LSN.match(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not an LSN like '0/3000060'")
    return (int(match.group(1), 16) << 32) | int(match.group(2), 16)


def format_lsn(position: int) -> str:
    return f"{position >> 32:X}/{position & 0xFFFFFFFF:X}"


def segment_number(name: str) -> int | None:
    """The position of a WAL file's segment in the WAL (its timeline aside); None for a history file."""
    match = _SEGMENT.match(name)
    if match is None:
        return None
    return int(match.group(2), 16) * _SEGMENTS_PER_ID + int(match.group(3), 16)


def segment_name(timeline: int, position: int) -> str:
    """The name of the segment holding LSN ``position`` on ``timeline``."""
    number = position // SEGMENT_SIZE
    return f"{timeline:08X}{number // _SEGMENTS_PER_ID:08X}{number % _SEGMENTS_PER_ID:08X}"


@dataclass(frozen=True)
class BackupPoint:
    """A completed base backup as recovery sees it: it is consistent from ``end_lsn`` (reached by ``end_time``),
    and replay from it needs the WAL from ``start_segment`` on."""

    backup_id: str
    end_time: datetime
    start_lsn: int
    end_lsn: int
    timeline: int

    @property
    def start_segment(self) -> int:
        return self.start_lsn // SEGMENT_SIZE


@dataclass(frozen=True)
class Window:
    """The points an instance can be restored to: from the end of its oldest base backup to the last commit (and
    WAL record) its archive holds."""

    earliest: datetime
    latest: datetime
    earliest_lsn: int
    latest_lsn: int

    def as_dict(self) -> dict[str, str]:
        return {"earliest": self.earliest.isoformat(), "latest": self.latest.isoformat(),
                "earliest_lsn": format_lsn(self.earliest_lsn), "latest_lsn": format_lsn(self.latest_lsn)}  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Window:
        """The window as :meth:`as_dict` wrote it (KeyError/ValueError when it is not one)."""
        return cls(datetime.fromisoformat(data["earliest"]), datetime.fromisoformat(data["latest"]),
                   parse_lsn(data["earliest_lsn"]), parse_lsn(data["latest_lsn"]))  # fmt: skip

    def describe(self) -> str:
        return (
            f"from {self.earliest.isoformat()} to {self.latest.isoformat()} "
            f"(LSN {format_lsn(self.earliest_lsn)} to {format_lsn(self.latest_lsn)})"
        )


def window(backups: Iterable[BackupPoint], last_commit: datetime | None, last_lsn: int | None) -> Window | None:
    """The recoverable window, or None without a base backup. ``last_commit``/``last_lsn``: the last commit time
    and record position found in the archive (None when it holds nothing after the backups)."""
    points = sorted(backups, key=lambda b: b.end_lsn)
    if not points:
        return None
    latest = max(points[-1].end_time, last_commit) if last_commit else points[-1].end_time
    latest_lsn = max(points[-1].end_lsn, last_lsn) if last_lsn is not None else points[-1].end_lsn
    return Window(points[0].end_time, latest, points[0].end_lsn, latest_lsn)


def outside(span: Window | None, target_time: datetime | None, target_lsn: int | None) -> str | None:
    """Why a restore to the target cannot be done from ``span``, or None when it can."""
    if span is None:
        return "there is no base backup to restore from: take one first"
    if target_time is not None and not span.earliest <= target_time <= span.latest:
        return f"target_time {target_time.isoformat()} is outside the recoverable window {span.describe()}"
    if target_lsn is not None and not span.earliest_lsn <= target_lsn <= span.latest_lsn:
        return f"target_lsn {format_lsn(target_lsn)} is outside the recoverable window {span.describe()}"
    return None


def replay_files(names: Iterable[str], start: BackupPoint, stop_lsn: int | None) -> list[str]:
    """The archived files a restore from ``start`` replays: every history file and the segments from the backup's
    start on; when it stops at ``stop_lsn``, none past the segment after the target's (replay reads on past its
    target to find where the target's record ends). Partial segments are never replayed."""
    last = None if stop_lsn is None else stop_lsn // SEGMENT_SIZE + 1
    return [
        name
        for name in names
        if not name.endswith(".partial")
        and (
            (number := segment_number(name)) is None
            or (number >= start.start_segment and (last is None or number <= last))
        )
    ]


def choose_backup(
    backups: Iterable[BackupPoint], target_time: datetime | None = None, target_lsn: int | None = None
) -> BackupPoint | None:
    """The newest base backup consistent before the target (the newest of all for the latest point)."""
    fitting = [
        b for b in backups
        if (target_time is None or b.end_time <= target_time) and (target_lsn is None or b.end_lsn <= target_lsn)
    ]  # fmt: skip
    return max(fitting, key=lambda b: b.end_lsn, default=None)


@dataclass(frozen=True)
class Retention:
    delete_backups: tuple[str, ...]
    delete_wal: tuple[str, ...]


def _kept_by_retention(ends: dict[str, datetime], cutoff: datetime) -> set[str]:
    """The backups (id → end time) retention keeps: those that ended at ``cutoff`` or later, and the newest of
    those that ended before it (a point just inside the window replays from it)."""
    older = sorted((end, backup_id) for backup_id, end in ends.items() if end < cutoff)
    return {backup_id for backup_id, end in ends.items() if end >= cutoff} | {b for _, b in older[-1:]}


def _unneeded_wal(kept: list[BackupPoint], wal_files: Iterable[str]) -> tuple[str, ...]:
    """The WAL segments older than the start of every ``kept`` backup (none without a kept backup: then the WAL
    is all there is). History files are never among them."""
    if not kept:
        return ()
    oldest_needed = min(b.start_segment for b in kept)
    return tuple(
        sorted(name for name in wal_files if (number := segment_number(name)) is not None and number < oldest_needed)
    )


def retention(
    backups: Iterable[BackupPoint], wal_files: Iterable[str], now: datetime, retention_days: int
) -> Retention:
    """What to remove so that every point of the last ``retention_days`` stays recoverable: the backups that
    ended before then, except the newest of those (a point just inside the window replays from it), and the WAL
    segments older than the start of every kept backup. History files are always kept; with no backup nothing is
    removed (the WAL is all there is)."""
    points = sorted(backups, key=lambda b: b.end_lsn)
    kept_ids = _kept_by_retention({b.backup_id: b.end_time for b in points}, now - timedelta(days=retention_days))
    kept = [b for b in points if b.backup_id in kept_ids]
    return Retention(tuple(b.backup_id for b in points if b.backup_id not in kept_ids), _unneeded_wal(kept, wal_files))


def deletion_refused(ends: dict[str, datetime], backup_id: str, now: datetime, retention_days: int) -> str | None:
    """Why base backup ``backup_id`` may not be deleted, or None when it may. ``ends``: the instance's completed
    base backups (id → the time each is consistent from), ``backup_id`` among them.

    Deleting is refused when it would lose a point that retention promises to keep recoverable: when no backup
    that ended in the last ``retention_days`` would remain (the instance would have no base backup inside its
    window), or when it is the oldest of the backups retention keeps and the next kept one ended inside the
    retention period (the window would then start at that later backup: the points before it could no longer be
    recovered). A backup between two kept ones may go: the one before it replays the archived WAL across it.
    Backups retention would remove anyway (older than the newest one before the retention period) always may."""
    cutoff = now - timedelta(days=retention_days)
    kept = _kept_by_retention(ends, cutoff)
    if backup_id not in kept:
        return None
    end = ends[backup_id]
    others = sorted(ends[b] for b in kept if b != backup_id)
    if not any(other >= cutoff for other in others):
        return (
            f"it is the only base backup of the last {retention_days} days: the instance would be left with no base "
            "backup inside its recovery window (take another backup first)"
        )
    if all(other > end for other in others) and others[0] > cutoff:
        start = max(end, cutoff)
        return (
            f"the kept backups' recovery window would then start at {others[0].isoformat()} instead of "
            f"{start.isoformat()}: the points between, inside the {retention_days}-day retention, could no longer "
            "be recovered"
        )
    return None


def after_deletion(backups: Iterable[BackupPoint], wal_files: Iterable[str], backup_id: str) -> Retention:
    """What deleting base backup ``backup_id`` removes: it, and the WAL segments no kept backup needs any more
    (those older than the start of every other backup; none when no other backup is left)."""
    kept = [b for b in backups if b.backup_id != backup_id]
    return Retention((backup_id,), _unneeded_wal(kept, wal_files))


def expired_after_delete(deleted_at: datetime, retention_days: int, now: datetime) -> bool:
    """Whether a deleted instance's backups and archive have outlived it by its ``retention_days``."""
    return now >= deleted_at + timedelta(days=retention_days)


def backup_due(schedule: str, since: datetime, now: datetime) -> bool:
    """Whether a tick of the cron ``schedule`` (UTC) came after ``since`` (the last base backup asked for, or the
    instance's creation) and by ``now``: at most one backup per tick, however late the check."""
    return since < prev_tick(schedule, now)


#: How long a restore verification asked for and not reported counts as in flight: a data plane that never
#: answers holds up its instance's scheduled verifications that long, not for ever.
VERIFICATION_IN_FLIGHT_FOR = timedelta(hours=6)


def verification_due(
    schedule: str, created: datetime, last_verified: datetime | None, requested: datetime | None, now: datetime,
    in_flight_for: timedelta = VERIFICATION_IN_FLIGHT_FOR,
) -> bool:  # fmt: skip
    """Whether a scheduled restore verification is due: none in flight (``requested`` less than ``in_flight_for``
    before ``now``, its outcome not reported yet), and a tick of the cron ``schedule`` came after the last
    verification (its outcome's time; the instance's creation when never verified; the unanswered request when
    one was given up on): at most one per tick, as :func:`backup_due`."""
    if requested is not None and now - requested < in_flight_for:
        return False
    since = max(moment for moment in (created, last_verified, requested) if moment is not None)
    return backup_due(schedule, since, now)
