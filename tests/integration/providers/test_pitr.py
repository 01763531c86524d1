"""Continuous WAL archiving and point-in-time restores of the local provider, with real Postgres 18 servers."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import stat
import tarfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from howdah.control.spec import InstanceSpec
from howdah.pg.processes import postmaster_pid
from howdah.providers import ConnectionInfo, ProviderError, RecoveryTarget
from howdah.providers.local import LocalProvider
from tests.waiting import wait_until

pytestmark = pytest.mark.slow


def up(provider: LocalProvider, instance_id: str, spec: InstanceSpec | None = None) -> ConnectionInfo:
    provider.ensure_created(instance_id, instance_id, {}, spec=spec)
    provider.ensure_running(instance_id)
    return provider.ensure_app_database(instance_id)


def connect(info: ConnectionInfo, **overrides: Any) -> psycopg.Connection[tuple[Any, ...]]:
    return psycopg.connect(**{**info.as_dict(), **overrides}, connect_timeout=5, autocommit=True)


def superuser(home: Path, instance_id: str, info: ConnectionInfo) -> psycopg.Connection[tuple[Any, ...]]:
    password = (home / "instances" / instance_id / "superuser.password").read_text().strip()
    return connect(info, user="postgres", password=password)


def one(conn: psycopg.Connection[tuple[Any, ...]], query: str) -> Any:
    row = conn.execute(query).fetchone()
    assert row is not None
    return row[0]


def switch_and_archive(home: Path, instance_id: str, info: ConnectionInfo) -> str:
    """Close the current segment and wait (bounded) until the archiver has archived it; returns its name."""
    with superuser(home, instance_id, info) as conn:
        conn.execute("SELECT pg_logical_emit_message(false, 'test', 'a record to switch away from')")
        segment = str(one(conn, "SELECT pg_walfile_name(pg_switch_wal())"))

        def archived() -> bool:
            last = conn.execute("SELECT last_archived_wal FROM pg_stat_archiver").fetchone()
            return last is not None and last[0] is not None and str(last[0]) >= segment

        wait_until(archived, timeout=30, what=f"segment {segment} archived")
    return segment


def rows(info: ConnectionInfo) -> list[int]:
    with connect(info) as conn:
        return [int(r[0]) for r in conn.execute("SELECT n FROM t ORDER BY n").fetchall()]


def test_restore_to_a_time_an_lsn_and_the_latest_point_after_a_delete(provider: LocalProvider, home: Path) -> None:
    source = up(provider, "src")
    with connect(source) as conn:
        conn.execute("CREATE TABLE t (n int)")
    provider.backup("src", "base")
    marks: dict[str, Any] = {}
    with connect(source) as conn:
        conn.execute("INSERT INTO t VALUES (1)")  # each statement its own transaction (autocommit)
        marks["lsn after 1"] = one(conn, "SELECT pg_current_wal_lsn()::text")
        conn.execute("INSERT INTO t VALUES (2)")
        marks["time after 2"] = one(conn, "SELECT clock_timestamp()")  # after commit 2, before commit 3
        conn.execute("INSERT INTO t VALUES (3)")
    switch_and_archive(home, "src", source)

    # the archive: complete segments, private to the instance's OS user, and the window they make
    wal = home / "backups" / "src" / "wal"
    assert stat.S_IMODE(wal.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in wal.iterdir())
    window = provider.recovery_window("src")
    assert window is not None and window.earliest < marks["time after 2"] < window.latest
    status = provider.status("src").as_dict()
    assert status["archiving"] is True and status["last_archive_error"] is None
    assert status["last_archived_wal"] and status["recovery_window"] == window.as_dict()

    provider.restore_to("src", "at-time", "at-time", RecoveryTarget(time=marks["time after 2"]))
    at_time = provider.ensure_running("at-time")
    assert at_time.accepting_connections
    restored = provider.ensure_app_database("at-time")
    assert rows(restored) == [1, 2]  # the third transaction committed after the target: absent
    # new passwords: the source's open nothing in the copy
    assert restored.password != source.password
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        connect(restored, password=source.password)
    with connect(restored) as conn:  # promoted: it takes writes, and archives into its own folder
        conn.execute("INSERT INTO t VALUES (20)")
    assert not (home / "instances" / "at-time" / "restore-wal").exists()
    assert (home / "backups" / "at-time" / "wal").is_dir()

    provider.restore_to("src", "at-lsn", "at-lsn", RecoveryTarget(lsn=marks["lsn after 1"]))
    provider.ensure_running("at-lsn")
    assert rows(provider.ensure_app_database("at-lsn")) == [1]

    provider.stop("src")  # a stopped source: its window is read from its files
    assert provider.status("src").as_dict()["recovery_window"] == window.as_dict()
    provider.restore_to("src", "while-stopped", "while-stopped", RecoveryTarget())
    provider.ensure_running("while-stopped")
    assert rows(provider.ensure_app_database("while-stopped")) == [1, 2, 3]

    provider.delete("src")
    assert [b.backup_id for b in provider.list_backups("src")] == ["base"]  # backups outlive their instance
    for path in [home / "backups" / "src", wal, *wal.iterdir()]:  # Howdah's now: no recycled uid gets them
        assert (path.stat().st_uid, path.stat().st_gid) == (os.geteuid(), os.getegid()), path
    assert stat.S_IMODE((home / "backups" / "src").stat().st_mode) == 0o700
    provider.restore_to("src", "latest", "latest", RecoveryTarget())
    provider.ensure_running("latest")
    assert rows(provider.ensure_app_database("latest")) == [1, 2, 3]

    with pytest.raises(ProviderError, match="outside the recoverable window from") as refused:
        provider.restore_to("src", "too-early", "too-early", RecoveryTarget(time=window.earliest - timedelta(hours=1)))
    assert window.earliest.isoformat() in str(refused.value)
    assert "too-early" not in provider.list_instances()

    # a deleted instance's backups and archive stay for its retention (7 days by default), then go
    assert provider.expire_deleted() == []
    assert provider.expire_deleted(now=datetime.now(UTC) + timedelta(days=7, minutes=1)) == ["src"]
    assert provider.list_backups("src") == [] and provider.recovery_window("src") is None
    assert not (home / "backups" / "src").exists()
    with pytest.raises(ProviderError, match="no base backup"):
        provider.restore_to("src", "too-late", "too-late", RecoveryTarget())


def test_a_different_segment_in_the_archive_is_refused_never_overwritten(provider: LocalProvider, home: Path) -> None:
    info = up(provider, "clash")
    wal = home / "backups" / "clash" / "wal"
    with superuser(home, "clash", info) as conn:
        conn.execute("CREATE TABLE x AS SELECT 1")
        planted_name = str(one(conn, "SELECT pg_walfile_name(pg_current_wal_lsn())"))
    planted = wal / planted_name
    planted.write_bytes(b"not this segment")
    with superuser(home, "clash", info) as conn:
        conn.execute("SELECT pg_switch_wal()")
        wait_until(
            lambda: one(conn, "SELECT last_failed_wal FROM pg_stat_archiver") == planted_name,
            timeout=30,
            what="the archiver fails on the planted segment",
        )
    assert planted.read_bytes() == b"not this segment"  # refused, not overwritten
    error = provider.status("clash").as_dict()["last_archive_error"]
    assert error is not None and planted_name in error
    assert provider.status("clash").running  # the instance keeps running

    planted.unlink()  # the store is right again: archiving resumes with the very segment, which Postgres kept
    switch_and_archive(home, "clash", info)
    assert planted.stat().st_size == 16 * 2**20
    assert provider.status("clash").as_dict()["last_archive_error"] is None


def test_archiving_off_in_the_spec_archives_nothing(provider: LocalProvider, home: Path) -> None:
    spec = InstanceSpec.model_validate({"name": "quiet", "backup": {"enabled": False}})
    info = up(provider, "quiet", spec)
    with superuser(home, "quiet", info) as conn:
        assert one(conn, "SHOW archive_mode") == "off"
        conn.execute("SELECT pg_switch_wal()")
    assert provider.status("quiet").as_dict()["archiving"] is False
    on = InstanceSpec.model_validate({"name": "quiet"})
    assert provider.apply_settings("quiet", {}, spec=on) is True  # archive_mode needs a restart
    provider.restart("quiet")
    with superuser(home, "quiet", info) as conn:
        assert one(conn, "SHOW archive_mode") == "on"
    assert switch_and_archive(home, "quiet", info)
    assert provider.status("quiet").as_dict()["recovery_window"] is None  # no base backup yet


def test_a_kill_9_loses_no_archived_commit(provider: LocalProvider, home: Path) -> None:
    info = up(provider, "crashy")
    with connect(info) as conn:
        conn.execute("CREATE TABLE t (n int)")
    provider.backup("crashy", "base")
    with connect(info) as conn:
        conn.execute("INSERT INTO t VALUES (1)")
        segment = one(conn, "SELECT pg_walfile_name(pg_current_wal_lsn())")
    # a push killed mid-copy leaves its temporary file: it is no segment, and the next push of that name works
    wal = home / "backups" / "crashy" / "wal"
    (wal / f".{segment}.dead.tmp").write_bytes(b"half a segment")
    pid = postmaster_pid(home / "instances" / "crashy" / "pgdata")
    assert pid is not None
    os.kill(pid, signal.SIGKILL)  # before the segment holding commit 1 was archived
    wait_until(lambda: not provider.status("crashy").running, what="the killed instance seen down")
    provider.ensure_running("crashy")
    with connect(info) as conn:
        conn.execute("INSERT INTO t VALUES (2)")
    switch_and_archive(home, "crashy", info)
    provider.restore_to("crashy", "after-crash", "after-crash", RecoveryTarget())
    provider.ensure_running("after-crash")
    assert rows(provider.ensure_app_database("after-crash")) == [1, 2]


def test_deleting_a_backup_removes_its_files_and_the_wal_only_it_needed(provider: LocalProvider, home: Path) -> None:
    info = up(provider, "pruned")
    provider.backup("pruned", "first")
    first_segments = [switch_and_archive(home, "pruned", info) for _ in range(2)]
    provider.backup("pruned", "second")
    later = switch_and_archive(home, "pruned", info)
    wal = home / "backups" / "pruned" / "wal"
    before = {p.name for p in wal.iterdir()}
    assert set(first_segments) <= before

    provider.delete_backup("pruned", "first")
    assert [b.backup_id for b in provider.list_backups("pruned")] == ["second"]
    assert not (home / "backups" / "pruned" / "first").exists()
    after = {p.name for p in wal.iterdir()}
    assert not set(first_segments) & after and later in after  # what the second backup replays stays
    window = provider.recovery_window("pruned")
    assert window is not None and window.earliest == provider.list_backups("pruned")[0].created_at
    provider.delete_backup("pruned", "first")  # gone already: nothing to do

    provider.delete_backup("pruned", "second")  # the last one: the archived WAL is all there is, and stays
    assert provider.list_backups("pruned") == [] and {p.name for p in wal.iterdir()} == after


def test_base_backups_are_compressed_and_plain_ones_still_restore(provider: LocalProvider, home: Path) -> None:
    info = up(provider, "packed")
    with connect(info) as conn:
        conn.execute("CREATE TABLE t AS SELECT g AS n FROM generate_series(1, 3) AS g")
    taken = provider.backup("packed", "packed-1")
    data = home / "backups" / "packed" / "packed-1" / "data"
    assert sorted(p.name for p in data.iterdir()) == ["backup_manifest", "base.tar.gz", "pg_wal.tar.gz"]
    with gzip.open(data / "base.tar.gz") as packed:
        assert packed.read(262)[257:262] == b"ustar"  # a gzip-compressed tar
    assert taken.size_bytes == sum(p.stat().st_size for p in data.iterdir())
    provider.restore(taken, "unpacked", "unpacked")
    provider.ensure_running("unpacked")
    assert rows(provider.ensure_app_database("unpacked")) == [1, 2, 3]

    # a backup taken before backups were compressed: the cluster's plain files (its WAL in pg_wal/)
    old = home / "backups" / "packed" / "plain-1"
    shutil.copytree(data.parent, old)
    for name, into in (("base.tar.gz", old / "data"), ("pg_wal.tar.gz", old / "data" / "pg_wal")):
        with tarfile.open(old / "data" / name) as tar:
            tar.extractall(into, filter="data")
        (old / "data" / name).unlink()
    meta = json.loads((old / "backup.json").read_text())
    del meta["format"]
    (old / "backup.json").write_text(json.dumps({**meta, "backup_id": "plain-1"}))
    plain = next(b for b in provider.list_backups("packed") if b.backup_id == "plain-1")
    provider.restore(plain, "from-plain", "from-plain")
    provider.ensure_running("from-plain")
    assert rows(provider.ensure_app_database("from-plain")) == [1, 2, 3]


def test_an_unwritable_store_stops_the_window_and_archiving_resumes(provider: LocalProvider, home: Path) -> None:
    info = up(provider, "blocked")
    with connect(info) as conn:
        conn.execute("CREATE TABLE t (n int)")
    provider.backup("blocked", "base")
    with connect(info) as conn:
        conn.execute("INSERT INTO t VALUES (1)")
    switch_and_archive(home, "blocked", info)
    before = provider.status("blocked").as_dict()
    assert before["last_archive_error"] is None and before["recovery_window"] is not None

    wal = home / "backups" / "blocked" / "wal"
    wal.chmod(0o500)  # the store refuses writes (its owner, the instance's OS user, included)
    try:
        with connect(info) as conn:
            conn.execute("INSERT INTO t VALUES (2)")
            during = one(conn, "SELECT clock_timestamp()")
        with superuser(home, "blocked", info) as conn:
            stuck = str(one(conn, "SELECT pg_walfile_name(pg_switch_wal())"))
            wait_until(
                lambda: one(conn, "SELECT last_failed_wal FROM pg_stat_archiver") == stuck,
                timeout=30,
                what="the archiver failing on the unwritable store",
            )
            kept = one(conn, "SELECT count(*) FROM pg_ls_dir('pg_wal/archive_status') AS f WHERE f LIKE '%.ready'")
        status = provider.status("blocked").as_dict()
        assert status["running"] and status["accepting_connections"]  # the instance keeps running
        error = status["last_archive_error"]
        assert error is not None and stuck in error and "Permission denied" in error, error  # why, too
        assert str(home) not in error  # the data plane's layout stays its own
        assert status["recovery_window"] == before["recovery_window"]  # the window stops advancing
        assert status["last_archived_wal"] == before["last_archived_wal"] and kept >= 1  # Postgres keeps the WAL
        with connect(info) as conn:
            conn.execute("INSERT INTO t VALUES (3)")  # writes go on
    finally:
        wal.chmod(0o700)

    switch_and_archive(home, "blocked", info)  # the store is back: the kept segments are archived, then new ones
    after = provider.status("blocked").as_dict()
    assert after["last_archive_error"] is None
    assert datetime.fromisoformat(after["recovery_window"]["latest"]) > during
    provider.restore_to("blocked", "unblocked", "unblocked", RecoveryTarget())
    provider.ensure_running("unblocked")
    assert rows(provider.ensure_app_database("unblocked")) == [1, 2, 3]
