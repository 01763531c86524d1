"""The backup benchmark: what continuous WAL archiving costs a write-heavy instance, and how fast a point-in-time
restore replays WAL.

    python -m benchmarks.backup            # 3 rounds of 10 s per workload and side
    python -m benchmarks.backup --quick    # 1 round of 3 s

Two local instances (the local provider, durable: initdb synced, fsync on), alike in every setting but one: the
first archives its WAL (the default, ``backup.enabled: true``), the second does not (``enabled: false``). Each
round runs each workload on both, one after the other in an order that alternates per round, and reads the
ratio archiving on ÷ off of that round (target: at least 0.9x):

- ``small transactions``: one client, autocommit, each transaction a pgbench-like ``UPDATE`` of a random account
  of 100,000 plus an ``INSERT`` into a history table (transactions per second);
- ``bulk inserts``: one client, each transaction inserting 20,000 rows of 200 bytes (MB of WAL per second, as
  ``pg_current_wal_lsn`` counts it).

Then both instances are stopped and the archiving one is restored from its base backup (taken before the load)
to two points: the LSN a quarter of the way through the WAL archived since, and its latest point (every segment
replayed). Each restore runs twice, in an order that alternates: through Howdah (``restore_to`` +
``ensure_running``) and by hand with the same binaries, the floor (see :mod:`benchmarks._backup_floor`: ``tar``,
``restore_command = cp``, ``pg_ctl start``). It reports the seconds to promotion, the MB of WAL replayed per
second of the restore, and Howdah ÷ by hand.

It prints tables as it goes and Markdown at the end; it does not pass or fail. Everything is removed at the end.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

from benchmarks._backup_floor import FloorRestore, Timing
from benchmarks._harness import Rate, Report, ResultTable, bench_parser, fmt_rate, fmt_ratio, run_for, step
from benchmarks._harness import server_settings as settings_of
from benchmarks._provision_floor import stop_all_under
from howdah.control.recovery import format_lsn, parse_lsn
from howdah.control.spec import InstanceSpec
from howdah.pg._binaries import os_user
from howdah.providers import Backup, ConnectionInfo, RecoveryTarget, TransientProviderError
from howdah.providers import _local_backup as _backup
from howdah.providers._local_archive import wal_dir
from howdah.providers._local_files import instance_os_user_name
from howdah.providers.local import LocalProvider

TARGET = 0.9  # archiving on ÷ off
ACCOUNTS = 100_000
BULK_ROWS = 20_000
SIDES = {"archiving on": "on", "archiving off": "off"}


def _url(info: ConnectionInfo) -> str:
    return make_conninfo(host=info.host, port=info.port, user=info.user, password=info.password, dbname=info.dbname)


def _prepare(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE accounts (id int PRIMARY KEY, balance bigint NOT NULL DEFAULT 0, filler char(84) DEFAULT '')"
        )
        conn.execute("INSERT INTO accounts (id) SELECT g FROM generate_series(1, %s) AS g", (ACCOUNTS,))
        conn.execute("CREATE TABLE history (id int, delta int, at timestamptz DEFAULT now(), filler char(22))")
        conn.execute("CREATE TABLE bulk (id bigint, payload text)")
        conn.execute("VACUUM ANALYZE")


def _small(conn: psycopg.Connection[Any]) -> Callable[[], int]:
    def one() -> int:
        with conn.transaction():
            conn.execute(
                "WITH a AS (UPDATE accounts SET balance = balance + 1 WHERE id = 1 + floor(random() * %s)::int "
                "RETURNING id) INSERT INTO history (id, delta) SELECT id, 1 FROM a",
                (ACCOUNTS,),
            )
        return 1

    return one


def _bulk(conn: psycopg.Connection[Any], wal: list[int]) -> Callable[[], int]:
    def one() -> int:
        before = conn.execute("SELECT pg_current_wal_lsn()").fetchone()
        conn.execute("INSERT INTO bulk SELECT g, repeat('x', 200) FROM generate_series(1, %s) AS g", (BULK_ROWS,))
        after = conn.execute("SELECT pg_current_wal_lsn() - %s::pg_lsn", (before[0] if before else "0/0",)).fetchone()
        wal.append(int(after[0]) if after else 0)
        return 1

    return one


def main() -> None:
    parser = bench_parser("backup", __doc__ or "", "1 round of 3 s per workload and side")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--seconds", type=float, default=None)
    args = parser.parse_args()
    rounds = args.rounds or (1 if args.quick else 3)
    seconds = args.seconds or (3.0 if args.quick else 10.0)
    root = Path(tempfile.mkdtemp(prefix="howdah-bench-backup-", dir="/tmp"))
    root.chmod(0o755)  # the servers' OS users pass through it
    provider = LocalProvider(root / "dataplane", durable=True)
    report = Report("Continuous archiving and point-in-time restore (local provider)")
    try:
        run(provider, report, rounds, seconds, args.no_sync_commit, root)
    finally:
        stop_all_under(provider.home, root / "by-hand")
        for instance_id in provider.list_instances():
            with contextlib.suppress(Exception):
                provider.delete(instance_id)
        shutil.rmtree(root, ignore_errors=True)
    report.finish(args.markdown)


def run(provider: LocalProvider, report: Report, rounds: int, seconds: float, no_sync_commit: bool, root: Path) -> None:
    settings = {"synchronous_commit": "off"} if no_sync_commit else {}
    urls: dict[str, str] = {}
    with step("two instances, alike but for archiving"):
        for side, instance_id in SIDES.items():
            spec = InstanceSpec.model_validate({"name": instance_id, "backup": {"enabled": side == "archiving on"}})
            provider.ensure_created(instance_id, instance_id, settings, spec=spec)
            provider.ensure_running(instance_id)
            urls[side] = _url(provider.ensure_app_database(instance_id))
            _prepare(urls[side])
    with step("a base backup of the archiving instance"):
        base = provider.backup("on", "before-load")
    report.settings = settings_of(urls["archiving on"])
    report.set_facts([
        ("load", f"one client, autocommit; {ACCOUNTS:,} accounts; bulk transactions of {BULK_ROWS:,} rows of 200 B"),
        ("archiving", "archive_mode=on, archive_command = Howdah's push (fsync of file and folder), "
                      "archive_timeout=60s, 16 MB segments; the other instance archive_mode=off"),
        ("rounds", f"{rounds} of {seconds:g} s per workload and side, order alternating per round"),
    ])  # fmt: skip
    samples: dict[tuple[str, str], list[float]] = {}
    for rnd in range(rounds):
        order = list(SIDES) if rnd % 2 == 0 else list(reversed(SIDES))
        for workload in ("small transactions", "bulk inserts"):
            for side in order:
                with step(f"round {rnd + 1}: {workload}, {side}"), psycopg.connect(urls[side], autocommit=True) as conn:
                    wal: list[int] = []
                    work = _small(conn) if workload == "small transactions" else _bulk(conn, wal)
                    rate: Rate = run_for(seconds, work)
                    value = rate.per_second if not wal else sum(wal) / 2**20 / rate.seconds
                    samples.setdefault((workload, side), []).append(value)
    table = ResultTable(
        "Archiving on vs off", ["workload", "archiving on", "archiving off", "on ÷ off (median of rounds)", "target"],
        settings=f"{rounds} rounds of {seconds:g} s per side; small: transactions/s; bulk: MB of WAL/s",
    )  # fmt: skip
    for workload in ("small transactions", "bulk inserts"):
        on, off = samples[(workload, "archiving on")], samples[(workload, "archiving off")]
        ratios = [a / b for a, b in zip(on, off, strict=True) if b]
        table.add_row(workload, fmt_rate(statistics.median(on)), fmt_rate(statistics.median(off)),
                      fmt_ratio(statistics.median(ratios) if ratios else None), f"≥ {TARGET}x")  # fmt: skip
    report.add(table)

    with step("waiting for the archiver to catch up"):
        url = urls["archiving on"]
        password = (provider.home / "instances" / "on" / "superuser.password").read_text().strip()
        with psycopg.connect(url, user="postgres", password=password, autocommit=True) as conn:
            conn.execute("SELECT pg_logical_emit_message(false, 'bench', 'end of load')")
            last = conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline:
                done = conn.execute("SELECT last_archived_wal FROM pg_stat_archiver").fetchone()
                if done and done[0] and last and done[0] >= last[0]:
                    break
                time.sleep(0.2)
    with step("stopping both instances: the restores run alone"):
        for instance_id in SIDES.values():
            provider.stop(instance_id)
    restore_table(provider, report, base, root)


def restore_table(provider: LocalProvider, report: Report, base: Backup, root: Path) -> None:
    """Restore the archiving instance from ``base`` to a quarter of the WAL archived since and to its latest
    point, each through Howdah and by hand (in an order that alternates), and add the table."""
    meta = _backup.load(Path(base.location))
    window = provider.recovery_window("on")
    if meta is None or window is None:
        raise RuntimeError("the archiving instance has no recoverable window")
    start, password = parse_lsn(str(meta[1]["start_lsn"])), str(meta[1]["superuser_password"])
    quarter = start + (window.latest_lsn - start) // 4
    targets = [(f"LSN {format_lsn(quarter)}", quarter, format_lsn(quarter)), ("latest", window.latest_lsn, None)]
    archive = wal_dir(provider.home / "backups", "on")
    owner = os_user(instance_os_user_name(provider.home, "on"))  # the archive's owner (the current user unless root)
    table = ResultTable(
        "Point-in-time restore: Howdah vs by hand",
        ["restore to", "WAL replayed", "Howdah, s", "by hand, s", "Howdah ÷ by hand", "Howdah, MB/s",
         "by hand, MB/s", "before pg_ctl start, Howdah / by hand, s"],
        settings=(
            "the same base backup (pg_basebackup -F tar, client-gzip:1, taken before the load) and archive; "
            "seconds from the start of the restore to promotion (pg_is_in_recovery() false, polled every 50 ms); "
            "MB/s = WAL from the backup's start to the target ÷ those seconds; Howdah: restore_to + ensure_running "
            "(tarfile unpacking, the WAL it replays copied for the new instance and read with cp, archiving on); "
            "by hand: tar -xzf, restore_command = cp from the archive, recovery.signal, pg_ctl start -w, "
            "archive_mode=off; both fsync=on with the source's settings, one restore per side and target, "
            "order alternating"
        ),
    )  # fmt: skip
    for n, (label, stop_at, lsn) in enumerate(targets):
        replayed = (stop_at - start) / 2**20
        timings: dict[str, Timing] = {}
        for side in ("Howdah", "by hand") if n % 2 == 0 else ("by hand", "Howdah"):
            with step(f"restore to {label}, {side}"):
                if side == "Howdah":
                    timings[side] = _howdah_restore(provider, f"restored-{n}", RecoveryTarget(lsn=lsn))
                else:
                    floor = FloorRestore(root / "by-hand" / str(n), provider.home, owner)
                    try:
                        timings[side] = floor.run(Path(base.location) / "data", archive, password, lsn, timeout=1800)
                    finally:
                        floor.destroy()
        howdah, by_hand = timings["Howdah"], timings["by hand"]
        table.add_row(
            label, f"{replayed:,.0f} MB", f"{howdah.total:.1f}", f"{by_hand.total:.1f}",
            fmt_ratio(howdah.total / by_hand.total), fmt_rate(replayed / howdah.total),
            fmt_rate(replayed / by_hand.total), f"{howdah.prepare:.1f} / {by_hand.prepare:.1f}",
        )  # fmt: skip
    report.add(table)


def _howdah_restore(provider: LocalProvider, new_id: str, target: RecoveryTarget) -> Timing:
    """A point-in-time restore of instance ``on`` into ``new_id`` through the provider, timed to its promotion
    (then deleted)."""
    began = time.perf_counter()
    provider.restore_to("on", new_id, new_id, target)
    prepared = time.perf_counter() - began
    deadline = time.monotonic() + 1800
    while True:  # each call waits up to the provider's start timeout for the promotion
        try:
            provider.ensure_running(new_id)
            break
        except TransientProviderError:
            if time.monotonic() > deadline:
                raise
    total = time.perf_counter() - began
    provider.delete(new_id)
    return Timing(prepared, total)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
