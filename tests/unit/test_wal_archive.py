"""The WAL archive's pure decisions (window, backup choice, what a restore replays, retention) and its push
command."""

from __future__ import annotations

import stat
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from howdah.control.recovery import (
    SEGMENT_SIZE,
    BackupPoint,
    after_deletion,
    backup_due,
    choose_backup,
    deletion_refused,
    expired_after_delete,
    format_lsn,
    outside,
    parse_lsn,
    replay_files,
    retention,
    segment_name,
    segment_number,
    verification_due,
    window,
)
from howdah.providers import _wal_archive
from howdah.providers._local_archive import archiver_status, push_failure

T0 = datetime(2026, 12, 1, tzinfo=UTC)


def point(backup_id: str, day: int, segment: int) -> BackupPoint:
    """A backup that started at ``segment`` and ended a little later on day ``day``."""
    start = segment * SEGMENT_SIZE + 0x28
    return BackupPoint(backup_id, T0 + timedelta(days=day), start, start + 0x100, 1)


def test_lsns_and_segment_names_round_trip() -> None:
    assert parse_lsn("0/3000060") == 0x3000060 and format_lsn(0x3000060) == "0/3000060"
    assert parse_lsn("1/A") == (1 << 32) + 10 and format_lsn(parse_lsn("16/B374D848")) == "16/B374D848"
    for bad in ("", "3000060", "0/", "x/1", "0/1/2", "123456789/0"):
        with pytest.raises(ValueError, match="is not an LSN"):
            parse_lsn(bad)
    name = segment_name(2, parse_lsn("1/3000060"))
    assert name == "000000020000000100000003"
    assert segment_number(name) == 256 + 3
    assert segment_number(name + ".partial") == 259 and segment_number(name + ".00000028.backup") == 259
    assert segment_number("00000002.history") is None


def test_the_window_runs_from_the_oldest_backup_to_the_last_archived_commit() -> None:
    backups = [point("b2", 2, 20), point("b1", 1, 10)]
    assert window([], None, None) is None
    span = window(backups, T0 + timedelta(days=3), 21 * SEGMENT_SIZE)
    assert span is not None
    assert (span.earliest, span.latest) == (T0 + timedelta(days=1), T0 + timedelta(days=3))
    assert (span.earliest_lsn, span.latest_lsn) == (backups[1].end_lsn, 21 * SEGMENT_SIZE)
    idle = window(backups, None, None)  # nothing archived after the backups: they are the window's ends
    assert idle is not None and idle.latest == T0 + timedelta(days=2) and idle.latest_lsn == backups[0].end_lsn
    assert outside(span, T0 + timedelta(days=2), None) is None
    early = outside(span, T0, None)
    assert early is not None and "outside the recoverable window from 2026-12-02T00:00:00+00:00" in early
    assert outside(span, None, 5 * SEGMENT_SIZE) is not None and outside(None, None, None) is not None


def test_a_restore_starts_from_the_newest_backup_before_its_target() -> None:
    backups = [point("b1", 1, 10), point("b2", 2, 20), point("b3", 3, 30)]
    assert choose_backup(backups) == backups[2]
    assert choose_backup(backups, T0 + timedelta(days=2, hours=5)) == backups[1]
    assert choose_backup(backups, T0 + timedelta(days=2)) == backups[1]  # consistent at its end: usable
    assert choose_backup(backups, T0 + timedelta(hours=5)) is None
    assert choose_backup(backups, target_lsn=backups[1].end_lsn + 1) == backups[1]
    assert choose_backup(backups, target_lsn=backups[0].end_lsn - 1) is None


def test_retention_keeps_every_point_of_the_window_and_the_wal_kept_backups_need() -> None:
    backups = [point("b1", 1, 10), point("b2", 2, 20), point("b3", 9, 30), point("b4", 10, 40)]
    wal = [segment_name(1, n * SEGMENT_SIZE) for n in range(5, 45)] + ["00000002.history"]
    wal += [segment_name(1, 20 * SEGMENT_SIZE) + ".00000028.backup", segment_name(1, 19 * SEGMENT_SIZE) + ".partial"]
    decided = retention(backups, wal, now=T0 + timedelta(days=11), retention_days=7)
    # day 4 is the oldest point to keep: b2 (day 2) is the newest backup before it and stays, b1 goes
    assert decided.delete_backups == ("b1",)
    assert decided.delete_wal == tuple(sorted(
        [segment_name(1, n * SEGMENT_SIZE) for n in range(5, 20)] + [segment_name(1, 19 * SEGMENT_SIZE) + ".partial"]
    ))  # fmt: skip
    kept = set(wal) - set(decided.delete_wal)
    for backup in backups[1:]:  # every kept backup has all its WAL, from its start on
        assert all(segment_name(1, n * SEGMENT_SIZE) in kept for n in range(backup.start_segment, 45))
    assert "00000002.history" in kept
    # everything older than the retention: the newest backup stays with its WAL; nothing without backups
    assert retention(backups, wal, now=T0 + timedelta(days=100), retention_days=7).delete_backups == ("b1", "b2", "b3")
    assert retention([], wal, now=T0 + timedelta(days=100), retention_days=7).delete_wal == ()
    # nothing to remove while every backup is young
    assert retention(backups, wal, now=T0 + timedelta(days=3), retention_days=7).delete_backups == ()


def test_deleting_a_backup_never_loses_a_point_retention_keeps() -> None:
    ends = {b.backup_id: b.end_time for b in [point("b1", 1, 10), point("b2", 2, 20), point("b3", 9, 30),
                                              point("b4", 10, 40)]}  # fmt: skip
    now = T0 + timedelta(days=11)  # retention from day 4: b2 anchors the window, b1 is retention's to remove
    assert deletion_refused(ends, "b1", now, 7) is None
    anchor = deletion_refused(ends, "b2", now, 7)  # the window would start at b3 (day 9), losing days 4 to 9
    assert anchor is not None and "would then start at 2026-12-10T00:00:00+00:00 instead of 2026-12-05" in anchor
    assert deletion_refused(ends, "b3", now, 7) is None  # b2 replays the archived WAL across it
    assert deletion_refused(ends, "b4", now, 7) is None  # b3 is still a base backup of the last 7 days
    # the last one of the retention period cannot go, nor can the only one
    alone = deletion_refused({"b2": ends["b2"], "b3": ends["b3"]}, "b3", now, 7)
    assert alone is not None and "only base backup of the last 7 days" in alone
    only = deletion_refused({"b4": ends["b4"]}, "b4", now, 7)
    assert only is not None and "no base backup inside its recovery window" in only
    # a young instance: its oldest backup is the window's start, the points after it are all kept
    young = deletion_refused(ends, "b1", T0 + timedelta(days=3), 7)
    assert young is not None and "instead of 2026-12-02" in young
    assert deletion_refused(ends, "b2", T0 + timedelta(days=3), 7) is None
    # two backups that ended together: either may go
    assert deletion_refused({"x": ends["b3"], "y": ends["b3"]}, "x", now, 7) is None


def test_deleting_a_backup_removes_the_wal_only_it_needed() -> None:
    backups = [point("b1", 1, 10), point("b2", 2, 20), point("b3", 9, 30)]
    wal = [segment_name(1, n * SEGMENT_SIZE) for n in range(10, 35)] + ["00000002.history"]
    oldest = after_deletion(backups, wal, "b1")
    assert oldest.delete_backups == ("b1",)
    assert oldest.delete_wal == tuple(segment_name(1, n * SEGMENT_SIZE) for n in range(10, 20))
    assert after_deletion(backups, wal, "b2").delete_wal == ()  # b1 still replays from segment 10 on
    assert after_deletion(backups[:1], wal, "b1").delete_wal == ()  # no backup left: the WAL is all there is


def test_push_is_durable_idempotent_and_never_overwrites(tmp_path: Path) -> None:
    archive, name = tmp_path / "archive", "000000010000000000000003"
    archive.mkdir()
    segment = tmp_path / name
    segment.write_bytes(b"A" * 4096)
    assert _wal_archive.push(archive, segment, name) == "archived"
    assert (archive / name).read_bytes() == b"A" * 4096
    assert stat.S_IMODE((archive / name).stat().st_mode) == 0o600
    assert _wal_archive.push(archive, segment, name) == "already archived"  # a retried push: success
    segment.write_bytes(b"B" * 4096)  # the same name, other content: refused, the archived file untouched
    with pytest.raises(_wal_archive.ArchiveError, match="different content"):
        _wal_archive.push(archive, segment, name)
    assert (archive / name).read_bytes() == b"A" * 4096
    assert sorted(p.name for p in archive.iterdir()) == [name]  # no temporary file left behind
    for bad in ("../../etc/passwd", "x", name + "/..", ""):
        with pytest.raises(_wal_archive.ArchiveError, match="not the name of a WAL file"):
            _wal_archive.push(archive, segment, bad)


def test_the_commands_as_postgres_runs_them(tmp_path: Path) -> None:
    archive, name = tmp_path / "archive", "000000010000000000000004"
    archive.mkdir()
    (tmp_path / "pg_wal").mkdir()
    (tmp_path / "pg_wal" / name).write_bytes(b"wal")
    script = _wal_archive.__file__

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-I", script, *args], capture_output=True, text=True, cwd=tmp_path)

    assert run("push", str(archive), f"pg_wal/{name}", name).returncode == 0
    assert (archive / name).read_bytes() == b"wal"
    (tmp_path / "pg_wal" / name).write_bytes(b"other")
    refused = run("push", str(archive), f"pg_wal/{name}", name)
    assert refused.returncode == 1 and "refusing to overwrite" in refused.stderr
    assert run("bogus").returncode == 2
    assert run("fetch", str(archive), name, "RECOVERYXLOG").returncode == 2  # restores use cp


def test_a_scheduled_backup_is_due_once_per_tick() -> None:
    daily = "0 3 * * *"
    created = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    assert not backup_due(daily, created, datetime(2026, 12, 2, 2, 59, tzinfo=UTC))  # no tick since creation
    assert backup_due(daily, created, datetime(2026, 12, 2, 3, 0, tzinfo=UTC))
    assert backup_due(daily, created, datetime(2026, 12, 5, 9, 0, tzinfo=UTC))  # late: one backup, not four
    asked = datetime(2026, 12, 5, 9, 0, 5, tzinfo=UTC)
    assert not backup_due(daily, asked, datetime(2026, 12, 5, 23, 0, tzinfo=UTC))
    assert backup_due(daily, asked, datetime(2026, 12, 6, 3, 0, 1, tzinfo=UTC))


def test_a_scheduled_verification_is_due_once_per_tick_and_never_while_one_runs() -> None:
    weekly = "0 4 * * 0"  # Sundays 04:00
    created = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)  # a Tuesday
    sunday = datetime(2026, 12, 6, 4, 0, tzinfo=UTC)
    assert not verification_due(weekly, created, None, None, sunday - timedelta(seconds=1))  # no tick yet
    assert verification_due(weekly, created, None, None, sunday)  # never verified: since its creation
    assert verification_due(weekly, created, None, None, sunday + timedelta(days=20))  # late: one, not three
    asked = sunday + timedelta(seconds=5)
    assert not verification_due(weekly, created, None, asked, sunday + timedelta(hours=1))  # in flight
    often = "*/5 * * * *"  # ticks while it runs: none asked until it reports
    assert not verification_due(often, created, None, asked, sunday + timedelta(hours=1))
    reported = sunday + timedelta(minutes=3)
    assert not verification_due(weekly, created, reported, None, sunday + timedelta(days=6))  # this tick's done
    assert verification_due(weekly, created, reported, None, sunday + timedelta(days=7))
    # a request its data plane never answered holds the schedule for a while, then the next tick asks again
    old, unanswered = created - timedelta(days=60), asked - timedelta(days=7)
    assert not verification_due(weekly, old, None, unanswered, sunday - timedelta(hours=1))  # its tick asked
    assert verification_due(weekly, old, None, unanswered, sunday)


def test_a_deleted_instances_backups_expire_after_its_retention() -> None:
    deleted = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    assert not expired_after_delete(deleted, 7, deleted + timedelta(days=6, hours=23))
    assert expired_after_delete(deleted, 7, deleted + timedelta(days=7))
    assert expired_after_delete(deleted, 1, deleted + timedelta(days=30))


def test_an_archive_error_says_why_without_the_data_planes_paths() -> None:
    wal = Path("/srv/howdah/backups/abc/wal")
    log = (
        "2026-12-06 20:00:00 UTC LOG:  checkpoint complete\n"
        "howdah WAL push: [Errno 28] No space left on device\n"
        f"howdah WAL push: [Errno 13] Permission denied: '{wal}/.000000010000000000000003.1a2b.tmp'\n"
        "2026-12-06 20:00:01 UTC LOG:  archive command failed with exit code 1\n"
    )
    assert push_failure(log, wal) == "[Errno 13] Permission denied: '.000000010000000000000003.1a2b.tmp'"
    assert push_failure("LOG:  nothing of the archive\n", wal) is None
    failed = datetime(2026, 12, 6, 20, 0, 1, tzinfo=UTC)
    status = archiver_status(("00000001000000000000000A", T0, "000000010000000000000003", failed, 4), wal, True,
                             lambda: log)  # fmt: skip
    assert status["last_archive_error"] == (
        "archiving 000000010000000000000003 failed at 2026-12-06T20:00:01+00:00 (4 failures in all): "
        "[Errno 13] Permission denied: '.000000010000000000000003.1a2b.tmp'"
    )
    archived_later = archiver_status(("00000001000000000000000A", failed, "x", T0, 4), wal, True, lambda: log)
    assert archived_later["last_archive_error"] is None


def test_a_restore_stages_only_the_wal_it_replays() -> None:
    start = BackupPoint("b", T0, 3 * SEGMENT_SIZE + 40, 3 * SEGMENT_SIZE + 400, 1)
    segments = [segment_name(1, n * SEGMENT_SIZE) for n in range(1, 10)]  # segments 1..9
    others = ["00000002.history", segments[-1] + ".partial", segments[2] + ".00000028.backup"]
    kept = ["00000002.history", segments[2] + ".00000028.backup"]
    assert replay_files(segments + others, start, None) == segments[2:] + kept  # the backup's segment on, no .partial
    # to an LSN in segment 5: up to segment 6, where replay finds the end of the target's record
    assert replay_files(segments + others, start, 5 * SEGMENT_SIZE + 10) == segments[2:6] + kept
    # a target at the very end of a segment still gets the next one; one at a segment's start, the one after
    assert replay_files(segments, start, 6 * SEGMENT_SIZE - 1) == segments[2:6]
    assert replay_files(segments, start, 6 * SEGMENT_SIZE) == segments[2:7]
