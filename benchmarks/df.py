"""The df benchmark: workflows defined in SQL (schema ``df``, pg_durable's API) run by a ``howdah worker`` process,
against the floor of running the same statements directly.

    python -m benchmarks.df            # the full run (about a minute)
    python -m benchmarks.df --quick    # a smoke run: every measurement, tiny sizes

Measured on one Postgres, times taken from the instances' own created_at / completed_at (the server's clock):
(a) per-node overhead: a graph of N sequential nodes that each insert a row, against the same N inserts run
directly by a client, each its own transaction (autocommit: the floor, which commits as often as df does);
(b) throughput of G three-node graphs started by one statement; (c) a fan-out of F nodes that each sleep S
seconds, against one such node (target: at most 2x, with the worker's concurrency at least F). It prints the
numbers and the targets they are read against; it does not pass or fail.
"""

from __future__ import annotations

import dataclasses
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

import psycopg

from benchmarks._harness import BenchServer, Report, ResultTable, bench_parser, package_version, step
from howdah.schema import install_all


@dataclass(frozen=True)
class Sizes:
    rounds: int
    nodes: int  # (a) sequential nodes per graph
    graphs: int  # (b) three-node graphs started at once
    fan_out: int  # (c) nodes of the fan-out
    sleep: float  # (c) seconds each fan-out node sleeps
    concurrency: int  # the worker's


FULL = Sizes(rounds=3, nodes=100, graphs=1000, fan_out=50, sleep=0.2, concurrency=64)
QUICK = Sizes(rounds=1, nodes=20, graphs=100, fan_out=50, sleep=0.2, concurrency=64)
WAIT = 300.0  # seconds any one measurement may take before the run gives up


def _one(conn: psycopg.Connection[tuple[float]], query: str, params: Sequence[object] = ()) -> float:
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return row[0]


def _instances_seconds(conn: psycopg.Connection[tuple[float]], ids: list[str]) -> float:
    """First created → last completed of ``ids``, waiting until every one has finished (failed ones raise)."""
    deadline = time.monotonic() + WAIT
    while True:
        row = conn.execute(
            "SELECT count(*) FILTER (WHERE status IN ('completed', 'failed', 'cancelled')), "
            "count(*) FILTER (WHERE status <> 'completed'), "
            "extract(epoch FROM max(completed_at) - min(created_at)) FROM df.instances WHERE id = ANY(%s)",
            (ids,),
        ).fetchone()
        assert row is not None
        done, not_completed, seconds = row
        if done == len(ids):
            if not_completed:
                raise RuntimeError(f"{not_completed} of {len(ids)} instances did not complete")
            return float(seconds)
        if time.monotonic() > deadline:
            raise TimeoutError(f"{done} of {len(ids)} instances finished in {WAIT:.0f} s")
        time.sleep(0.02)


def _start(conn: psycopg.Connection[tuple[float]], graph: str, count: int = 1) -> list[str]:
    rows = conn.execute(f"SELECT df.start({graph}) FROM generate_series(1, %s)", (count,)).fetchall()
    return [str(row[0]) for row in rows]


def _sequence(nodes: int, table: str) -> str:
    return " ~> ".join([f"'INSERT INTO {table} VALUES (1)'"] * nodes)


def measure(url: str, sizes: Sizes) -> dict[str, list[float]]:
    """Every measurement, ``sizes.rounds`` times; seconds per entry."""
    found: dict[str, list[float]] = {}
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET search_path = df, public")
        conn.execute("CREATE TABLE public.bench_rows (v int)")
        _instances_seconds(conn, _start(conn, "'SELECT 1'"))  # the worker is up
        for _ in range(sizes.rounds):
            with step(f"(a) {sizes.nodes} sequential nodes, 1 node, and the floor"):
                long = _instances_seconds(conn, _start(conn, _sequence(sizes.nodes, "public.bench_rows")))
                short = _instances_seconds(conn, _start(conn, _sequence(1, "public.bench_rows")))
                began = time.perf_counter()
                for _ in range(sizes.nodes):
                    conn.execute("INSERT INTO public.bench_rows VALUES (1)")
                floor = time.perf_counter() - began
            found.setdefault("node", []).append((long - short) / (sizes.nodes - 1))
            found.setdefault("floor", []).append(floor / sizes.nodes)
            with step(f"(b) {sizes.graphs} three-node graphs"):
                graph = "'INSERT INTO public.bench_rows VALUES (1)' ~> 'SELECT 2' ~> 'SELECT 3'"
                found.setdefault("graphs", []).append(_instances_seconds(conn, _start(conn, graph, sizes.graphs)))
            with step(f"(c) a {sizes.fan_out}-way fan-out and one node, {sizes.sleep:g} s each"):
                node = f"'SELECT pg_sleep({sizes.sleep})'"
                fan = _instances_seconds(conn, _start(conn, "(" + " & ".join([node] * sizes.fan_out) + ")"))
                one = _instances_seconds(conn, _start(conn, node))
            found.setdefault("fan_out", []).append(fan)
            found.setdefault("one", []).append(one)
    return found


def table(found: dict[str, list[float]], sizes: Sizes) -> ResultTable:
    med = {key: statistics.median(values) for key, values in found.items()}
    t = ResultTable(
        "df: workflows defined in SQL, run by a howdah worker process",
        ["metric", "df", "floor / one node", "ratio", "target"],
        settings=(
            f"{sizes.rounds} round(s), medians; worker concurrency {sizes.concurrency} (its pool follows it); "
            "every node and every floor statement its own transaction"
        ),
    )
    t.add_row(
        f"(a) per node, ms ({sizes.nodes} sequential inserts)",
        f"{med['node'] * 1000:.2f}",
        f"{med['floor'] * 1000:.2f}",
        f"{med['node'] / med['floor']:.2f}x",
        "—",
    )
    t.add_row(f"(b) three-node graphs/s ({sizes.graphs:,} started at once)", f"{sizes.graphs / med['graphs']:,.0f}",
              "—", "—", "—")  # fmt: skip
    t.add_row(
        f"(c) {sizes.fan_out}-way fan-out, s ({sizes.sleep:g} s nodes)",
        f"{med['fan_out']:.3f}",
        f"{med['one']:.3f}",
        f"{med['fan_out'] / med['one']:.2f}x",
        "≤ 2.00x",
    )
    t.notes.append(
        "(a) df's time per node beyond a 1-node graph (first start to last finish of the instance) against the "
        "same insert run by a client in autocommit: both commit once per statement and wait for its WAL flush; df "
        "also records the node's result and checkpoint in that transaction, and its worker reads the next step."
    )
    return t


def main(argv: Sequence[str] | None = None) -> None:
    parser = bench_parser("df", __doc__, "a smoke run: small sizes, one round")
    parser.add_argument("--rounds", type=int, default=None, help="rounds (3; quick 1)")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    sizes = dataclasses.replace(sizes, rounds=args.rounds or sizes.rounds)
    report = Report("Howdah df (pg_durable's SQL API)" + (" (--quick)" if args.quick else ""))
    with BenchServer(durable=not args.no_sync_commit) as server:
        url = server.create_database("bench_df")
        with psycopg.connect(url, autocommit=True) as conn:
            install_all(conn)
        report.settings = server.settings_line()
        report.set_facts([*server.facts(), ("Howdah", package_version("howdah"))])
        worker = subprocess.Popen(
            [sys.executable, "-m", "howdah.cli", "worker", "--database-url", url, "--concurrency",
             str(sizes.concurrency)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            found = measure(url, sizes)
        finally:
            worker.terminate()
            worker.wait(30)
    report.add(table(found, sizes))
    report.finish(args.markdown)


if __name__ == "__main__":
    main()
