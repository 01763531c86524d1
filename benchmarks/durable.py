"""The durable-workflow benchmark: Howdah's durable workflows against DBOS (DBOS Transact, the ``dbos`` package)
on one Postgres, in one run.

    python -m benchmarks.durable            # the full run (a few minutes)
    python -m benchmarks.durable --quick    # a smoke run: every measurement, tiny sizes

Measured, each system in its own database and its own fresh processes: (a) workflows/s of 3-step workflows with
1 and with N workers (first start → last finish), (b) the per-step checkpoint overhead (a long workflow against a
0-step one), (c) start → result latency of a 1-step workflow (p50/p99 of sequential runs). It prints the numbers,
Howdah ÷ DBOS and the targets they are read against; it does not pass or fail. Needs ``pip install -e .[bench]``
(for ``dbos``); without it, only Howdah is measured. Progress goes to stderr, tables and Markdown to stdout.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import importlib.util
import os
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import psycopg

from benchmarks._durable_common import BACKLOG_STEPS, DBOS, HOWDAH, LABELS, Sequential, Sizes, Throughput
from benchmarks._harness import (
    BenchServer,
    Report,
    ResultTable,
    bench_parser,
    fmt_ms,
    fmt_rate,
    fmt_ratio,
    package_version,
    percentile,
    ratio,
    rotated,
    step,
    turns,
)
from benchmarks._processes import Counters, delta, run_isolated, sigterm_exits
from howdah.schema import install_all

MODULES = {HOWDAH: "benchmarks._durable_howdah", DBOS: "benchmarks._durable_dbos"}
# 1 worker, N workers (starts while running), a backlog drained by 1 and by N workers, sequential runs
SCENARIOS = ("one", "many", "backlog", "sequential")

FULL = Sizes(
    workflows=1000, rounds=5, workers=4, concurrency=16, starters=8, steps=200, repeats=5, latency_runs=300,
    warmup=50, pool_size=20, dbos_poll=0.01,
)  # fmt: skip
QUICK = Sizes(
    workflows=100, rounds=1, workers=4, concurrency=16, starters=8, steps=20, repeats=2, latency_runs=30,
    warmup=10, pool_size=20, dbos_poll=0.01,
)  # fmt: skip


def _parser() -> argparse.ArgumentParser:
    parser = bench_parser("durable", __doc__, "a fast smoke run (small sizes, one round)")
    parser.add_argument("--workflows", type=int, default=None, help="workflows per throughput round (1000)")
    parser.add_argument("--rounds", type=int, default=None, help="throughput rounds per configuration (5, quick 1)")
    parser.add_argument("--workers", type=int, default=None, help="worker processes of the multi-worker case (4)")
    parser.add_argument("--steps", type=int, default=None, help="steps of the long workflow for (b) (200)")
    parser.add_argument("--pool-size", type=int, default=None, help="connections per process (20)")
    parser.add_argument("--concurrency", type=int, default=None, help="workflows in flight per worker (16)")
    parser.add_argument("--starters", type=int, default=None, help="concurrent start calls in (a) (8)")
    parser.add_argument(
        "--dbos-poll", type=float, default=None, help="DBOS queue polling interval in seconds, N workers (0.01)"
    )
    parser.add_argument(
        "--only", action="append", choices=SCENARIOS, help="run only these parts (repeatable; default: all)"
    )
    parser.add_argument("--no-dbos", action="store_true", help="measure Howdah alone")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="load pg_stat_statements and add the statements each system spends its server time in (1 worker)",
    )
    return parser


def _sizes(args: argparse.Namespace) -> Sizes:
    base = QUICK if args.quick else FULL
    changes = {
        name: value
        for name, value in (
            ("workflows", args.workflows),
            ("rounds", args.rounds),
            ("workers", args.workers),
            ("steps", args.steps),
            ("starters", args.starters),
            ("concurrency", args.concurrency),
            ("pool_size", args.pool_size),
            ("dbos_poll", args.dbos_poll),
        )
        if value is not None
    }
    return dataclasses.replace(base, **changes)


# ----------------------------------------------------------------------------------------------- server counters
@dataclass
class Work:
    """Server counters summed over a configuration's processes, and the workflows they ran."""

    workflows: int = 0
    commits: float | None = 0
    fsyncs: float | None = 0
    wal_bytes: float | None = 0

    def add(self, before: Counters, after: Counters, result: Throughput) -> None:
        def plus(total: float | None, delta: int | None) -> float | None:
            return None if total is None or delta is None else total + delta

        commits = delta(after.commits, before.commits)
        self.commits = plus(self.commits, None if commits is None else commits - result.waiter_queries)
        self.fsyncs = plus(self.fsyncs, delta(after.fsyncs, before.fsyncs))
        self.wal_bytes = plus(self.wal_bytes, delta(after.wal_bytes, before.wal_bytes))
        self.workflows += result.workflows_total

    def per_workflow(self, value: float | None) -> float | None:
        return None if value is None or not self.workflows else value / self.workflows


# ----------------------------------------------------------------------------------------------- running
@dataclass
class Results:
    throughput: dict[tuple[str, str], Throughput] = dataclasses.field(default_factory=dict)
    work: dict[tuple[str, str], Work] = dataclasses.field(default_factory=dict)
    sequential: dict[str, Sequential] = dataclasses.field(default_factory=dict)
    statements: dict[str, list[tuple[str, float, float, float]]] = dataclasses.field(default_factory=dict)


def _database(server: BenchServer, system: str, scenario: str) -> tuple[str, str]:
    name = f"bench_durable_{system}_{scenario}"
    url = server.create_database(name)
    if system == HOWDAH:
        with psycopg.connect(url, autocommit=True) as conn:
            install_all(conn)
    return name, url  # DBOS creates its own schema when it launches


def _profiling(server: BenchServer) -> None:
    with server.connect() as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        conn.execute("SELECT pg_stat_statements_reset()")


def _statements(server: BenchServer, dbname: str, workflows: int) -> list[tuple[str, float, float, float]]:
    """The top-level statements of ``dbname`` by total server time: (text, calls/workflow, mean ms, ms/workflow)."""
    with server.connect() as conn:
        rows = conn.execute(
            "SELECT s.query, sum(s.calls), sum(s.total_exec_time) FROM pg_stat_statements s "
            "JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = %s AND s.toplevel "
            "GROUP BY s.query ORDER BY 3 DESC LIMIT 10",
            (dbname,),
        ).fetchall()
    n = max(1, workflows)
    return [
        (re.sub(r"\s+", " ", query).strip(), float(calls) / n, float(total) / float(calls), float(total) / n)
        for query, calls, total in rows
        if calls
    ]


def run(
    server: BenchServer, report: Report, sizes: Sizes, systems: list[str], parts: set[str], profile: bool
) -> Results:
    """Every part, the systems alternating: each throughput round is its own process (the systems take turns
    round by round, so a load change on the machine hits both), the sequential runs one process per system."""
    results = Results()
    for index, scenario in enumerate(s for s in SCENARIOS if s in parts):
        databases = {system: _database(server, system, scenario) for system in systems}
        if scenario == "sequential":
            for system in rotated(systems, index):
                label, (_, url) = LABELS[system], databases[system]
                with step(f"{label}: {sizes.repeats}x 0 and {sizes.steps} steps, {sizes.latency_runs} 1-step runs"):
                    try:
                        results.sequential[system] = run_isolated(MODULES[system], "sequential", url, sizes)
                    except Exception as exc:
                        report.note(f"{label}: the sequential runs failed: {type(exc).__name__}: {exc}")
            continue
        if scenario == "backlog":
            _backlog_rounds(report, results, sizes, systems, databases, index)
            continue
        workers = 1 if scenario == "one" else sizes.workers
        if profile and workers == 1:
            _profiling(server)
        one_round = dataclasses.replace(sizes, rounds=1)
        failed: set[str] = set()
        for turn, system in turns(systems, sizes.rounds, index):
            if system in failed:
                continue
            label, (dbname, url) = LABELS[system], databases[system]
            with step(f"{label}: round {turn + 1}/{sizes.rounds}, {sizes.workflows:,} workflows, {workers} worker(s)"):
                before = Counters.read(server.admin_url, dbname)
                try:
                    result: Throughput = run_isolated(MODULES[system], "throughput", url, one_round, workers)
                except Exception as exc:
                    report.note(f"{label} with {workers} worker(s) failed: {type(exc).__name__}: {exc}")
                    failed.add(system)
                    continue
                after = Counters.read(server.admin_url, dbname)
            total = results.throughput.setdefault((system, scenario), Throughput(how=result.how))
            total.rounds += result.rounds
            total.workflows_total += result.workflows_total
            results.work.setdefault((system, scenario), Work()).add(before, after, result)
        if profile and workers == 1:
            for system in systems:
                work = results.work.get((system, scenario))
                if work is not None:
                    results.statements[system] = _statements(server, databases[system][0], work.workflows)
    return results


def _backlog_rounds(
    report: Report, results: Results, sizes: Sizes, systems: list[str], databases: dict[str, tuple[str, str]],
    index: int,
) -> None:  # fmt: skip
    """(d): per round and system, a backlog drained by 1 worker process, then one drained by N."""
    one_round = dataclasses.replace(sizes, rounds=1)
    failed: set[str] = set()
    for turn, system in turns(systems, sizes.rounds, index):
        for workers in (1, sizes.workers):
            if system in failed:
                continue
            label, (_, url) = LABELS[system], databases[system]
            what = (
                f"{label}: backlog round {turn + 1}/{sizes.rounds}, {sizes.workflows:,} workflows, {workers} worker(s)"
            )
            with step(what):
                try:
                    result: Throughput = run_isolated(MODULES[system], "backlog", url, one_round, workers)
                except Exception as exc:
                    report.note(f"{label}: the backlog with {workers} worker(s) failed: {type(exc).__name__}: {exc}")
                    failed.add(system)
                    continue
            total = results.throughput.setdefault((system, f"backlog{workers}"), Throughput(how=result.how))
            total.rounds += result.rounds


# ----------------------------------------------------------------------------------------------- tables
def _rate(result: Throughput | None) -> float | None:
    return statistics.median(r.per_second for r in result.rounds) if result and result.rounds else None


def _overhead(result: Sequential | None, steps: int) -> float | None:
    if result is None or not result.zero or not result.long or steps < 1:
        return None
    return (statistics.median(result.long) - statistics.median(result.zero)) / steps


def _pct(values: list[float] | None, pct: float) -> float | None:
    return percentile(values, pct) if values else None


def _settings(sizes: Sizes, part: str = "all") -> str:
    """A table's own settings: the sizes of the parts it shows, and how each system commits."""
    throughput = (
        f"(a) {sizes.rounds} round(s) of {sizes.workflows:,} workflows, 1 and {sizes.workers} worker processes, "
        f"{sizes.concurrency} workflows in flight per worker, {sizes.starters} concurrent starts, "
        f"pool {sizes.pool_size}"
    )
    sequential = f"(b) {sizes.repeats} runs of 0 and {sizes.steps} steps, (c) {sizes.latency_runs} sequential runs"
    commits = "each system commits its own checkpoints (one transaction per step, autocommit)"
    parts = {"all": [throughput, sequential], "a": [throughput], "bc": [sequential]}[part]
    return "; ".join([*parts, commits])


def summary_table(results: Results, sizes: Sizes) -> ResultTable:
    table = ResultTable(
        "Howdah vs DBOS: durable workflows (summary)",
        ["Metric", "Howdah", "DBOS", "Howdah ÷ DBOS", "Target"],
        settings=_settings(sizes),
    )
    for scenario, workers in (("one", 1), ("many", sizes.workers)):
        h, d = _rate(results.throughput.get((HOWDAH, scenario))), _rate(results.throughput.get((DBOS, scenario)))
        table.add_row(
            f"(a) workflows/s, 3 steps, {workers} worker{'s' if workers > 1 else ''}",
            fmt_rate(h),
            fmt_rate(d),
            fmt_ratio(ratio(h, d)),
            "≥ 2.00x",
        )
    h_seq, d_seq = results.sequential.get(HOWDAH), results.sequential.get(DBOS)
    h, d = _overhead(h_seq, sizes.steps), _overhead(d_seq, sizes.steps)
    table.add_row("(b) per-step checkpoint overhead, ms", _ms2(h), _ms2(d), fmt_ratio(ratio(h, d)), "< 1.00x (lower)")
    for pct in (50, 99):
        h = _pct(h_seq.client if h_seq else None, pct)
        d = _pct(d_seq.client if d_seq else None, pct)
        table.add_row(f"(c) 1-step latency p{pct}, ms", fmt_ms(h), fmt_ms(d), fmt_ratio(ratio(h, d)), "—")
    table.notes += [
        "Howdah ÷ DBOS: above 1 is better for workflows/s, below 1 is better for times.",
        f"(a) {sizes.workflows:,} workflows per round, median of {sizes.rounds} round(s); time = first start call → "
        "last finish (database timestamps); both start with the same number of concurrent start calls.",
        f"(b) = (median time of a {sizes.steps}-step workflow - median time of a 0-step one) ÷ {sizes.steps}, "
        f"created → finished in the database, {sizes.repeats} runs each.",
        f"(c) start call → result in hand, as an application sees it, {sizes.latency_runs} sequential runs.",
    ]
    return table


def backlog_table(results: Results, sizes: Sizes, systems: list[str]) -> ResultTable:
    table = ResultTable(
        f"(d) Backlog: {sizes.workflows:,} workflows of {BACKLOG_STEPS} trivial steps started first, then run by 1 or "
        f"{sizes.workers} worker processes",
        ["Metric", "Howdah", "DBOS", "Howdah ÷ DBOS", "Target"],
        settings=(
            f"{sizes.rounds} round(s), each system's backlog drained by 1 and by {sizes.workers} worker processes "
            f"({sizes.concurrency} workflows in flight per worker, pool {sizes.pool_size}); each system commits its "
            "own checkpoints (one transaction per step, autocommit)"
        ),
    )
    rates = {
        (system, workers): _rate(results.throughput.get((system, f"backlog{workers}")))
        for system in (HOWDAH, DBOS)
        for workers in (1, sizes.workers)
    }
    for workers in (1, sizes.workers):
        h, d = rates[HOWDAH, workers], rates[DBOS, workers]
        name = f"workflows/s, {workers} worker{'s' if workers > 1 else ''}"
        table.add_row(name, fmt_rate(h), fmt_rate(d), fmt_ratio(ratio(h, d)), "≥ 3.00x")
    scaling = {s: ratio(rates[s, sizes.workers], rates[s, 1]) for s in (HOWDAH, DBOS)}
    table.add_row(
        f"{sizes.workers} workers ÷ 1 worker",
        fmt_ratio(scaling[HOWDAH]),
        fmt_ratio(scaling[DBOS]),
        "—",
        "Howdah ≥ 1.00x",
    )
    for system in systems:
        for workers in (1, sizes.workers):
            result = results.throughput.get((system, f"backlog{workers}"))
            if result is not None:
                each = " / ".join(fmt_rate(r.per_second) for r in result.rounds)
                table.notes.append(f"{LABELS[system]}, {workers} worker(s): {result.how}; rounds {each} workflows/s.")
    table.notes.append(
        "Time: the first workflow's execution start → the last finish (database timestamps), so worker processes "
        "coming up is not counted; median of the rounds."
    )
    return table


def _ms2(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds * 1000:.2f}"


def throughput_table(results: Results, sizes: Sizes, systems: list[str]) -> ResultTable:
    table = ResultTable(
        f"(a) Throughput: {sizes.workflows:,} workflows of 3 trivial steps, first start → last finish",
        ["System", "Workers", "workflows/s", "each round", "all started after", "finished after"],
        settings=_settings(sizes, "a"),
    )
    hows: list[str] = []
    for scenario, workers in (("one", 1), ("many", sizes.workers)):
        for system in systems:
            result = results.throughput.get((system, scenario))
            if result is None:
                continue
            table.add_row(
                LABELS[system],
                str(workers),
                fmt_rate(_rate(result)),
                " / ".join(fmt_rate(r.per_second) for r in result.rounds),
                f"{statistics.median(r.started for r in result.rounds):.2f} s",
                f"{statistics.median(r.seconds for r in result.rounds):.2f} s",
            )
            hows.append(f"{LABELS[system]}, {workers} worker{'s' if workers > 1 else ''}: {result.how}.")
    table.notes += hows
    table.notes.append(
        "Each round is a fresh set of processes (with an untimed warm-up); the systems take turns round by round. "
        f"DBOS's queue polling interval is {sizes.dbos_poll:g} s: its default is 1 s, and shorter intervals gave DBOS "
        "more throughput here (at the cost of more idle queries)."
    )
    table.notes.append(
        "The starting process issues the starts with "
        f"{sizes.starters} in flight (asyncio tasks for Howdah, threads for DBOS); every process gets a pool of "
        f"{sizes.pool_size} connections (DBOS's default) and runs up to {sizes.concurrency} workflows at once "
        "(DBOS's in-process start_workflow has no such bound)."
    )
    return table


def _cpu_ms(result: Throughput | None, which: str) -> str:
    """CPU milliseconds per workflow over the timed rounds (``which``: client_cpu or server_cpu)."""
    if result is None:
        return "n/a"
    values = [getattr(r, which) for r in result.rounds]
    if not values or any(v is None for v in values):
        return "n/a"
    return f"{sum(values) * 1000 / sum(r.workflows for r in result.rounds):.2f}"


def work_table(results: Results, sizes: Sizes, systems: list[str]) -> ResultTable:
    table = ResultTable(
        "Cost per workflow during (a)",
        ["System", "Workers", "client CPU, ms", "server CPU, ms", "transactions", "WAL fsyncs", "WAL bytes"],
        settings=_settings(sizes, "a"),
    )
    for scenario, workers in (("one", 1), ("many", sizes.workers)):
        for system in systems:
            work = results.work.get((system, scenario))
            if work is None:
                continue
            result = results.throughput.get((system, scenario))
            commits, fsyncs, wal = (work.per_workflow(v) for v in (work.commits, work.fsyncs, work.wal_bytes))
            table.add_row(
                LABELS[system],
                str(workers),
                _cpu_ms(result, "client_cpu"),
                _cpu_ms(result, "server_cpu"),
                "n/a" if commits is None else f"{commits:.1f}",
                "n/a" if fsyncs is None else f"{fsyncs:.2f}",
                "n/a" if wal is None else f"{wal:,.0f}",
            )
    table.notes += [
        "CPU (timed rounds only): client = the system's Python processes (starter and workers, all threads); "
        "server = every Postgres process (n/a when the server is not on this machine).",
        "transactions (warm-up included): committed in the system's database, idle polling included, the "
        "benchmark's own completion polls subtracted; WAL fsyncs and bytes: whole server. With "
        "synchronous_commit=on a write transaction waits for a WAL fsync; concurrent commits can share one.",
    ]
    return table


def overhead_table(results: Results, sizes: Sizes, systems: list[str]) -> ResultTable:
    table = ResultTable(
        "(b) Per-step checkpoint overhead",
        ["System", "0-step workflow, ms", f"{sizes.steps}-step workflow, ms", "per step, ms"],
        settings=_settings(sizes, "bc"),
    )
    for system in systems:
        result = results.sequential.get(system)
        if result is None:
            continue
        table.add_row(
            LABELS[system],
            fmt_ms(statistics.median(result.zero)),
            fmt_ms(statistics.median(result.long)),
            _ms2(_overhead(result, sizes.steps)),
        )
    table.notes.append("Medians, created → finished in the database; one workflow at a time, worker in-process.")
    return table


def latency_table(results: Results, sizes: Sizes, systems: list[str]) -> ResultTable:
    table = ResultTable(
        f"(c) Latency of a 1-step workflow, {sizes.latency_runs} sequential runs (ms)",
        ["System", "p50", "p99", "server p50", "server p99", "p50 outside the server run"],
        settings=_settings(sizes, "bc"),
    )
    for system in systems:
        result = results.sequential.get(system)
        if result is None:
            continue
        client50, server50 = _pct(result.client, 50), _pct(result.server, 50)
        table.add_row(
            LABELS[system],
            fmt_ms(client50),
            fmt_ms(_pct(result.client, 99)),
            fmt_ms(server50),
            fmt_ms(_pct(result.server, 99)),
            fmt_ms(None if client50 is None or server50 is None else client50 - server50),
        )
    table.notes += [
        "p50/p99: start call → result returned (Howdah: DurableApp.start + WorkflowHandle.result; DBOS: "
        "DBOS.start_workflow + get_result).",
        "server: the same runs' created → finished timestamps; the last column is what the client adds on top "
        "(the start's own round trip before the row exists, and learning that the run finished).",
    ]
    return table


def statements_table(results: Results, system: str, sizes: Sizes) -> ResultTable:
    table = ResultTable(
        f"Where {LABELS[system]}'s server time goes, (a) with 1 worker (pg_stat_statements, top level)",
        ["Statement", "calls/workflow", "mean ms", "ms/workflow"],
        settings=_settings(sizes, "a"),
    )
    for query, calls, mean, per_wf in results.statements.get(system, []):
        text = query if len(query) <= 90 else query[:87] + "…"
        table.add_row(text, f"{calls:.2f}", f"{mean:.3f}", f"{per_wf:.3f}")
    table.notes.append("Server execution time only (no network, no commit wait).")
    return table


# ----------------------------------------------------------------------------------------------- main
def _load() -> str:
    """The 1/5/15-minute load averages: other work on the machine moves these numbers."""
    if not hasattr(os, "getloadavg"):
        return "n/a"
    return " / ".join(f"{x:.1f}" for x in os.getloadavg()) + " (1 / 5 / 15 min)"


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    sigterm_exits()
    sizes = _sizes(args)
    parts = set(args.only or SCENARIOS)
    settings: dict[str, str] = {}
    if args.profile:
        settings.update({"shared_preload_libraries": "pg_stat_statements", "pg_stat_statements.track": "all"})

    report = Report("Howdah durable workflows vs DBOS" + (" (--quick)" if args.quick else ""))
    systems = [HOWDAH]
    if not args.no_dbos:
        if importlib.util.find_spec("dbos") is None:
            report.note("DBOS is not installed (pip install -e '.[bench]'), so only Howdah is measured.")
        else:
            systems.append(DBOS)

    with BenchServer(settings, durable=not args.no_sync_commit) as server:
        report.settings = server.settings_line()
        report.set_facts(
            [
                *server.facts(),
                ("Howdah", package_version("howdah")),
                ("DBOS", f"dbos {package_version('dbos')} (DBOS Transact; system database on this server)"),
                ("SQLAlchemy (DBOS's driver layer)", package_version("sqlalchemy")),
                ("load average at start", _load()),
            ]
        )
        results = run(server, report, sizes, systems, parts, args.profile)
    report.note(f"Load average at the end: {_load()}.")
    report.add(summary_table(results, sizes))
    if "one" in parts or "many" in parts:
        report.add(throughput_table(results, sizes, systems))
        report.add(work_table(results, sizes, systems))
    if "backlog" in parts:
        report.add(backlog_table(results, sizes, systems))
    if "sequential" in parts:
        report.add(overhead_table(results, sizes, systems))
        report.add(latency_table(results, sizes, systems))
    for system in systems:
        if results.statements.get(system):
            report.add(statements_table(results, system, sizes))
    report.finish(args.markdown)


if __name__ == "__main__":
    main()
