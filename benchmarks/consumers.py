"""The consumer benchmark: several producer and several consumer processes on one Postgres, end to end — Howdah's
``work()`` against the official pgmq client's read/delete loop and against pgqueuer.

    python -m benchmarks.consumers            # the full run (under ~15 minutes on 2 cores)
    python -m benchmarks.consumers --quick    # a smoke run (under 2 minutes)

Each run: a fresh database with the system's own schema and one queue; C consumer processes started and ready;
then P producer processes send N messages between them (one at a time, or in batches of 100), each stamped with
its send time; the run ends when every message has been handled. Measured: throughput (messages from the first
send to the last handler start), send → handler latency (p50/p99), commits per message (``xact_commit`` of the
run's database, producers and consumers together, start-up and shutdown included), duplicates, and that every id
was handled. The systems take turns run by run (interleaved rounds, the order rotated each round); figures are
medians of the rounds, ratios medians of per-round ratios. The churn case runs once per system, after 1,000,000
messages (``--quick``: 20,000) have passed through the queue. It prints the numbers and the targets they are read
against; it does not pass or fail. Progress goes to stderr, tables and Markdown to stdout.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import _consumers_driver as driver
from benchmarks._consumers_driver import HOWDAH, LABELS, PGMQ, PGQUEUER
from benchmarks._harness import (
    BenchServer,
    Report,
    ResultTable,
    Samples,
    bench_parser,
    fmt_ms,
    fmt_rate,
    fmt_ratio,
    package_version,
    percentile,
    progress,
    step,
    turns,
)
from benchmarks._processes import Counters, delta, forkserver_context, processes, sigterm_exits
from benchmarks._queue_setup import pgmq_sql

SYSTEMS = (HOWDAH, PGMQ, PGQUEUER)
# Imported once by the fork server every producer and consumer process is forked from (see forkserver_context).
PRELOAD = ["benchmarks._consumers_driver", "howdah.queue", "pgmq", "pgqueuer.qm", "pgqueuer.queries", "pgqueuer.db"]
STOP_GRACE = 2.0  # seconds a consumer gets to stop after SIGTERM (its notes are written by then)
BATCH = 100
ID_STRIDE = 100_000_000  # producer p sends ids p * ID_STRIDE + 0, 1, …


@dataclass(frozen=True)
class Case:
    batch: int  # messages per send call (1: single sends)
    consumers: int
    handler_ms: float
    churn: int = 0  # messages passed through the queue before the run

    @property
    def key(self) -> str:
        return f"b{self.batch}-c{self.consumers}-h{self.handler_ms:g}-x{self.churn}"

    @property
    def label(self) -> str:
        sends = "single sends" if self.batch == 1 else f"send_batch {self.batch}"
        text = f"{sends}, {self.consumers} consumer{'s' if self.consumers > 1 else ''}, {self.handler_ms:g} ms handler"
        return text + (f", after {self.churn:,} through" if self.churn else "")


@dataclass(frozen=True)
class Sizes:
    rounds: int
    producers: int
    single: int  # messages per run with single sends
    batched: int  # messages per run with batched sends
    busy_seconds: float  # slow-handler runs: as many messages as sequential consumers handle in this long
    churn: int

    def messages(self, case: Case) -> int:
        n = self.single if case.batch == 1 else self.batched
        if case.handler_ms > 0:  # a sequential consumer handles at most 1000 / handler_ms messages a second
            n = min(n, int(case.consumers * 1000 / case.handler_ms * self.busy_seconds))
        unit = self.producers * case.batch
        return max(unit, n // unit * unit)


# Sized so that the full run stays under ~15 minutes on 2 cores (single sends are the slow part: every one is a
# commit waiting for its WAL flush); --single 10000 gives the sizes of issue 15's first table.
FULL = Sizes(rounds=3, producers=2, single=6_000, batched=20_000, busy_seconds=3.0, churn=1_000_000)
QUICK = Sizes(rounds=1, producers=2, single=1_000, batched=4_000, busy_seconds=1.5, churn=20_000)


def cases(sizes: Sizes, consumers: Sequence[int], quick: bool) -> list[Case]:
    if quick:
        found = [Case(b, c, 0) for b in (1, BATCH) for c in consumers] + [Case(BATCH, max(consumers), 5)]
    else:
        found = [Case(b, c, h) for h in (0, 5) for b in (1, BATCH) for c in consumers]
    return [*found, Case(BATCH, 4 if 4 in consumers else max(consumers), 0, sizes.churn)]


# ----------------------------------------------------------------------------------------------- one run
@dataclass
class Run:
    messages: int
    seconds: float  # first send → last handler start
    sent_seconds: float  # first send → last send
    latencies: list[float]
    commits: int | None
    duplicates: int
    missing: int

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds > 0 else float("nan")

    @property
    def send_rate(self) -> float:
        return self.messages / self.sent_seconds if self.sent_seconds > 0 else float("nan")


def run_once(server: BenchServer, system: str, case: Case, sizes: Sizes, folder: Path) -> Run:
    """One run of ``case`` for ``system`` in a fresh database: consumers and producers start together, the
    producers begin sending once every process is ready."""
    clock = [time.monotonic()]
    dbname = f"bench_consumers_{system}"
    url = server.create_database(dbname)
    driver.install(system, url)
    if case.churn:
        driver.churn(system, url, case.churn)
    n = sizes.messages(case)
    ctx = forkserver_context(PRELOAD)
    counters = [ctx.Value("q", 0, lock=False) for _ in range(case.consumers)]
    run_folder = Path(tempfile.mkdtemp(prefix=f"{system}-", dir=folder))  # no earlier run's notes in it
    outs = [run_folder / f"consumer-{i}.json" for i in range(case.consumers)]
    per, go, dump = n // sizes.producers, ctx.Event(), ctx.Event()
    before = Counters.read(server.admin_url, dbname, settle=0)
    clock.append(time.monotonic())
    consumer_args = [(system, url, case.handler_ms, str(outs[i]), counters[i], dump) for i in range(case.consumers)]
    producer_args = [(system, url, p * ID_STRIDE, per, case.batch, go) for p in range(sizes.producers)]
    with (
        processes(driver.consumer, consumer_args, f"{system}-consumer", STOP_GRACE, ctx) as consumers,
        processes(driver.producer, producer_args, f"{system}-producer", STOP_GRACE, ctx) as producers,
    ):
        time.sleep(0.3)  # the consumers' LISTEN connections are up
        clock.append(time.monotonic())
        go.set()
        _wait_handled(counters, n, consumers, timeout=max(60.0, n / 50))
        clock.append(time.monotonic())
        for process in producers:
            process.join(30)
        dump.set()
        _wait_files(outs, consumers)
    clock.append(time.monotonic())
    after = Counters.read(server.admin_url, dbname)
    notes = [note for out in outs if out.exists() for note in json.loads(out.read_text(encoding="utf-8"))]
    spent = " · ".join(f"{b - a:.1f}" for a, b in itertools.pairwise(clock))
    progress.print(f"[dim]  setup · start · run · stop: {spent} s[/]")
    return _measure(notes, n, sizes.producers, per, delta(after.commits, before.commits))


def _wait_files(outs: list[Path], consumers: list[Any], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not all(out.exists() for out in outs) and time.monotonic() < deadline:
        if all(p.exitcode is not None for p in consumers):
            return
        time.sleep(0.01)


def _wait_handled(counters: list[Any], expected: int, consumers: list[Any], timeout: float) -> None:
    """Until the consumers have handled ``expected`` messages between them (or ``timeout``: the run then shows
    the ids that are missing)."""
    deadline = time.monotonic() + timeout
    while (handled := sum(c.value for c in counters)) < expected:
        if time.monotonic() > deadline or all(p.exitcode is not None for p in consumers):
            progress.print(f"[yellow]only {handled:,} of {expected:,} handled in time[/]")
            return
        time.sleep(0.01)
    time.sleep(0.2)  # a duplicate delivery, if any, is handled by now


def _measure(notes: list[list[float]], n: int, producers: int, per: int, commits: int | None) -> Run:
    first: dict[int, tuple[float, float]] = {}
    for ident, sent, handled in notes:
        if int(ident) not in first or handled < first[int(ident)][1]:
            first[int(ident)] = (sent, handled)
    expected = {p * ID_STRIDE + i for p in range(producers) for i in range(per)}
    if not first:
        return Run(n, float("nan"), float("nan"), [], commits, 0, n)
    start = min(sent for sent, _ in first.values())
    return Run(
        messages=n,
        seconds=max(handled for _, handled in first.values()) - start,
        sent_seconds=max(sent for sent, _ in first.values()) - start,
        latencies=[handled - sent for sent, handled in first.values()],
        commits=commits,
        duplicates=len(notes) - len(first),
        missing=len(expected - first.keys()),
    )


# ----------------------------------------------------------------------------------------------- the rounds
@dataclass
class Results:
    runs: dict[tuple[str, str], list[Run]] = dataclasses.field(default_factory=dict)
    samples: Samples = dataclasses.field(default_factory=Samples)
    failed: dict[str, str] = dataclasses.field(default_factory=dict)


def run(server: BenchServer, systems: list[str], all_cases: list[Case], sizes: Sizes) -> Results:
    results = Results()
    with tempfile.TemporaryDirectory(prefix="howdah-bench-consumers-") as tmp:
        for index, case in enumerate(all_cases):
            rounds = 1 if case.churn else sizes.rounds  # filling a queue with churn takes a minute per system
            for rnd, system in turns(systems, rounds, index):
                if system in results.failed:
                    continue
                what = f"{case.label}: {LABELS[system]}, round {rnd + 1}/{rounds}"
                with step(f"{what}, {sizes.messages(case):,} messages"):
                    try:
                        outcome = run_once(server, system, case, sizes, Path(tmp))
                    except Exception as exc:
                        results.failed[system] = f"{type(exc).__name__}: {exc}"
                        progress.print(f"[red]{LABELS[system]} failed: {results.failed[system]}[/]")
                        continue
                results.runs.setdefault((system, case.key), []).append(outcome)
                results.samples.rates.setdefault((system, case.key), []).append(outcome.rate)
    return results


# ----------------------------------------------------------------------------------------------- the table
def _median(values: list[float]) -> float | None:
    clean = [v for v in values if v == v]
    return statistics.median(clean) if clean else None


def _per(runs: list[Run], what: str) -> str:
    if not runs:
        return "n/a"
    if what == "latency":
        p50 = _median([percentile(r.latencies, 50) for r in runs])
        p99 = _median([percentile(r.latencies, 99) for r in runs])
        return f"{fmt_ms(p50)} / {fmt_ms(p99)}"
    if what == "commits":
        values = [r.commits / r.messages for r in runs if r.commits is not None]
        return f"{statistics.median(values):.2f}" if values else "n/a"
    if what == "sent":
        return fmt_rate(_median([r.send_rate for r in runs]))
    lost = sum(r.missing for r in runs)
    return f"{sum(r.duplicates for r in runs)}" + (f" ({lost} missing!)" if lost else "")


def table(results: Results, systems: list[str], all_cases: list[Case], sizes: Sizes, settings: str) -> ResultTable:
    short = {HOWDAH: "H", PGMQ: "P", PGQUEUER: "Q"}
    order = " · ".join(short[s] for s in systems)
    t = ResultTable(
        "End-to-end consumers: msgs/s from first send to last handled (median of rounds)",
        [
            "case",
            *(f"{LABELS[s]} msgs/s" for s in systems),
            "Howdah ÷ pgmq loop",
            "Howdah ÷ pgqueuer",
            *(f"{LABELS[s]} p50/p99 ms" for s in systems),
            f"commits/msg {order}",
            f"producers' sends/s {order}",
            f"duplicates {order}",
        ],
        settings=settings,
    )
    for case in all_cases:
        runs = {s: results.runs.get((s, case.key), []) for s in systems}
        t.add_row(
            f"{case.label} ({sizes.messages(case):,} msgs)",
            *(fmt_rate(results.samples.median(s, case.key)) if runs[s] else "error" for s in systems),
            fmt_ratio(results.samples.paired_ratio(HOWDAH, PGMQ, case.key)),
            fmt_ratio(results.samples.paired_ratio(HOWDAH, PGQUEUER, case.key)),
            *(_per(runs[s], "latency") for s in systems),
            " · ".join(_per(runs[s], "commits") for s in systems),
            " · ".join(_per(runs[s], "sent") for s in systems),
            " · ".join(_per(runs[s], "duplicates") for s in systems),
        )
    t.notes += [
        "Targets (read, not asserted): Howdah ≥ 1.5x the pgmq loop, ahead of pgqueuer, p50 send → handler < 5 ms "
        "under load.",
        f"Howdah: Queue.send/send_batch + AsyncQueue.work(handler, **{driver.HOWDAH_WORK}) — its defaults. pgmq loop: "
        f"PGMQueue.read_batch(vt={driver.PGMQ_VT}, batch_size={driver.PGMQ_BATCH}) → handle → delete_batch, sleep "
        f"{driver.PGMQ_IDLE * 1000:.0f} ms when empty. pgqueuer: QueueManager.run(batch_size={driver.PGQ_BATCH}, "
        f"dequeue_timeout={driver.PGQ_DEQUEUE_TIMEOUT:g} s) as `pgq run` runs it, producers SyncQueries.enqueue.",
        "Latency: handler start minus the producer's time stamp in the message (first handling of each id); "
        "commits/msg: xact_commit of the run's database over the messages, producers and consumers together.",
        "5 ms handler (asyncio.sleep; the pgmq loop: time.sleep): at most consumers x 200 x "
        f"{sizes.busy_seconds:g} messages, what sequential consumers handle in {sizes.busy_seconds:g} s.",
        f"Churn case: {sizes.churn:,} messages sent and settled 1,000 at a time by the system's own batch calls "
        "before the run (pgqueuer: its rows deleted by SQL, as its completion does), one round only.",
        "Every figure is what the system does with its defaults in this setup; none was tuned for the benchmark.",
    ]
    for system, error in results.failed.items():
        t.notes.append(f"{LABELS[system]} failed and was left out from then on: {error}")
    return t


# ----------------------------------------------------------------------------------------------- main
def _parser() -> argparse.ArgumentParser:
    parser = bench_parser("consumers", __doc__, "a smoke run: small sizes, one round, fewer cases")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (3; quick 1)")
    parser.add_argument("--producers", type=int, default=None, help="producer processes (2)")
    parser.add_argument(
        "--consumers", type=int, action="append", default=None, help="consumer processes (repeatable; 1, 4, 16)"
    )
    parser.add_argument("--churn", type=int, default=None, help="messages through the queue before the churn case")
    parser.add_argument("--single", type=int, default=None, help="messages per run with single sends (6000)")
    parser.add_argument("--batched", type=int, default=None, help="messages per run with send_batch (20000)")
    parser.add_argument("--system", action="append", choices=SYSTEMS, help="only these systems (repeatable)")
    parser.add_argument(
        "--handler-ms", type=float, action="append", default=None, help="only cases with this handler time (repeatable)"
    )
    parser.add_argument(
        "--sends", choices=("single", "batched"), default=None, help="only cases with single or batched sends"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    sigterm_exits()
    base = QUICK if args.quick else FULL
    sizes = dataclasses.replace(
        base,
        rounds=args.rounds or base.rounds,
        producers=args.producers or base.producers,
        churn=base.churn if args.churn is None else args.churn,
        single=args.single or base.single,
        batched=args.batched or base.batched,
    )
    consumers = args.consumers or ([1, 4] if args.quick else [1, 4, 16])
    all_cases = [
        case
        for case in cases(sizes, consumers, args.quick)
        if (args.handler_ms is None or case.handler_ms in args.handler_ms)
        and (args.sends is None or (case.batch == 1) == (args.sends == "single"))
        and ((args.handler_ms is None and args.sends is None) or not case.churn)
    ]
    systems = [s for s in SYSTEMS if not args.system or s in args.system]
    report = Report("Howdah queue consumers, end to end" + (" (--quick)" if args.quick else ""))
    began = time.monotonic()
    with BenchServer(durable=not args.no_sync_commit) as server:
        server.create_database("bench_consumers_settings")
        report.settings = server.settings_line()
        report.set_facts(
            [
                *server.facts(),
                ("Howdah", package_version("howdah")),
                (
                    "pgmq client",
                    f"pgmq {package_version('pgmq')} (PGMQueue) on PGMQ {pgmq_sql()[1]}'s SQL, installed plain",
                ),
                ("pgqueuer", f"{package_version('pgqueuer')} (its own schema, default durability: all tables logged)"),
            ]
        )
        results = run(server, systems, all_cases, sizes)
    transactions = (
        "transactions as each client gives them by default: Howdah an autocommit pool, the pgmq client a "
        "transaction per call (BEGIN … COMMIT), pgqueuer an autocommit connection"
    )
    settings = (
        f"{sizes.rounds} interleaved round(s), fresh database per run, {sizes.producers} producer processes, "
        f"{sizes.single:,} single sends or {sizes.batched:,} in send_batch of {BATCH} per run; {transactions}"
    )
    report.add(table(results, systems, all_cases, sizes, settings))
    report.note(f"The run took {time.monotonic() - began:.0f} s.")
    report.finish(args.markdown)


if __name__ == "__main__":
    main()
