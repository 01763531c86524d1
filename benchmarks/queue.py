"""The queue benchmark: Howdah's ``pgmq`` schema against PGMQ 1.13's own SQL and a floor (Howdah's own
statements, prepared, without the function layer), on one Postgres with its durable defaults, in one run.

    python -m benchmarks.queue            # the full run (a few minutes)
    python -m benchmarks.queue --quick    # a smoke run of a few seconds' worth of each measurement

Tables: (1) the SQL API on one connection, (2) send → consume latency, (3) the Python clients head to head,
(4) throughput before and after heavy churn, partitioned and not. The end-to-end consumer comparison with several
processes is ``benchmarks.consumers``. It prints numbers, ratios and the targets
they are read against; it does not pass or fail. Progress goes to stderr, tables and Markdown to stdout.
"""

from __future__ import annotations

import argparse
import importlib.metadata
from collections.abc import Sequence

from benchmarks import _queue_churn, _queue_clients, _queue_latency, _queue_sql
from benchmarks._harness import BenchServer, Report, bench_parser, step
from benchmarks._queue_setup import create_contenders

SECTIONS = ("sql", "latency", "clients", "churn")


def _parser() -> argparse.ArgumentParser:
    parser = bench_parser("queue", __doc__, "a fast smoke run (small sizes, one round)")
    parser.add_argument(
        "--churn", type=int, default=None, metavar="N", help="messages of partitioned churn (default 1,000,000)"
    )
    parser.add_argument("--rounds", type=int, default=None, help="rounds per contender (default 7, quick 1)")
    parser.add_argument(
        "--only", action="append", choices=SECTIONS, help="run only these sections (repeatable; default: all)"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="load pg_stat_statements and split Table 1's time per message into server execution and the rest "
        "(embedded server only)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    quick = args.quick
    rounds = args.rounds or (1 if quick else 7)
    churn = args.churn if args.churn is not None else (50_000 if quick else 1_000_000)
    sections = set(args.only or SECTIONS)
    settings: dict[str, str] = {}
    if args.profile:
        settings.update({"shared_preload_libraries": "pg_stat_statements", "pg_stat_statements.track": "top"})

    report = Report("Howdah queue benchmark" + (" (--quick)" if quick else ""))
    with BenchServer(settings, durable=not args.no_sync_commit) as server:
        with step("Creating the databases"):
            contenders = create_contenders(server, report)
        report.settings = server.settings_line()
        report.set_facts(
            [
                *server.facts(),
                ("PGMQ SQL", f"{contenders.pgmq_version} (sql/pgmq.sql of the pgmq wheel, installed as plain SQL)"),
                ("pgmq client", importlib.metadata.version("pgmq")),
                ("Howdah", importlib.metadata.version("howdah")),
            ]
        )
        if "sql" in sections:
            sizes = _queue_sql.SqlSizes(rounds, *((500, 5_000, 300) if quick else (1_000, 20_000, 500)))
            clock = _queue_sql.ServerClock(server) if args.profile else None
            table, samples, names = _queue_sql.run(contenders, sizes, clock)
            report.add(table)
            if clock is not None:
                report.add(_queue_sql.profile_table(clock, names, samples))
                clock.close()
        if "latency" in sections:
            latency = _queue_latency.LatencySizes(*((60, 0.01) if quick else (400, 0.005)))
            report.add(_queue_latency.run(contenders, latency))
        if "clients" in sections:
            clients = _queue_clients.ClientSizes(rounds, *((300, 3_000) if quick else (1_000, 10_000)))
            report.add(_queue_clients.run(contenders, clients))
        if "churn" in sections:
            churn_sizes = _queue_churn.ChurnSizes(churn, 0.5 if quick else 1.0, pairs=3 if quick else 5)
            churn_table = _queue_churn.run(contenders, churn_sizes)
            if churn_table is None:
                report.note("Table 4 needs Howdah's schema, which did not install; it was skipped.")
            else:
                report.add(churn_table)
    report.finish(args.markdown)


if __name__ == "__main__":
    main()
