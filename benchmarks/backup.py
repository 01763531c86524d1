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

Then the archiving instance is restored to its latest point (base backup taken before the load, every segment
since replayed), and the WAL it replayed per second of the restore is reported, with the time to promotion.

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

from benchmarks._harness import Rate, Report, ResultTable, bench_parser, fmt_rate, fmt_ratio, run_for, step
from benchmarks._harness import server_settings as settings_of
from howdah.control.spec import InstanceSpec
from howdah.providers import ConnectionInfo, RecoveryTarget, TransientProviderError
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
        run(provider, report, rounds, seconds, args.no_sync_commit)
    finally:
        for instance_id in provider.list_instances():
            with contextlib.suppress(Exception):
                provider.delete(instance_id)
        shutil.rmtree(root, ignore_errors=True)
    report.finish(args.markdown)


def run(provider: LocalProvider, report: Report, rounds: int, seconds: float, no_sync_commit: bool) -> None:
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
        provider.backup("on", "before-load")
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
    window = provider.recovery_window("on")
    replayed = window.latest_lsn - window.earliest_lsn if window else 0
    began = time.perf_counter()
    with step("restore to the latest point"):
        provider.restore_to("on", "restored", "restored", RecoveryTarget())
        deadline = time.monotonic() + 1800
        while True:  # each call waits up to the provider's start timeout for the promotion
            try:
                provider.ensure_running("restored")
                break
            except TransientProviderError:
                if time.monotonic() > deadline:
                    raise
    elapsed = time.perf_counter() - began
    how = "latest point; the base backup unpacked (tar, gzip), every archived segment replayed"
    restore = ResultTable("Point-in-time restore", ["WAL replayed after the base backup", "restore to promotion",
                                                    "replay, MB/s"], settings=how)  # fmt: skip
    restore.add_row(f"{replayed / 2**20:,.0f} MB", f"{elapsed:.1f} s", fmt_rate(replayed / 2**20 / elapsed))
    restore.notes.append("not yet compared with pg_basebackup + restore_command driven by hand")
    report.add(restore)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
