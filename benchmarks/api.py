"""The API benchmark: latency of Howdah's control-plane API under an open-loop load, against two floors served by
the same process in the same run.

    python -m benchmarks.api            # per commit mode: 20 s measured at 200 requests/s, after 3 s of warm-up
    python -m benchmarks.api --quick    # per commit mode: 3 s measured, after 1 s of warm-up

Processes, all on 127.0.0.1: Postgres (embedded, or ``$HOWDAH_DATABASE_URL``); the API and its reconciler in one
uvicorn process, as ``howdah api`` runs them; a stand-in data plane that acknowledges every CRUD event at once
(so PATCHed instances come back Up); and this process, which sets up an org token and N instances and then
sends requests on a fixed schedule whether or not earlier ones have been answered (open loop). Latency is
counted from the scheduled send time, so a late answer is never hidden by a client that waited for it.

The API mix at ``--rate`` (200/s): GET one instance 50 %, GET the list 25 %, PATCH 25 % (round-robin over the
instances, each a reload-only ``work_mem`` change; 202 once the previous change is acknowledged, else 409).
Interleaved with it at ``--peer-rate`` (20/s each), served by the same process: the *floor*, a minimal FastAPI
route answering "GET one instance" with one ``SELECT`` on the same pool (no auth, no models), and ``/healthz``
(no database). After the open-loop run, a closed-loop one measures how many requests of each kind the server
answers at most with 16 in flight (its capacity in this run). All of it runs in a fresh database and fresh
processes with the server's durable defaults, ``synchronous_commit = on`` (as deployed: a commit waits for its
WAL flush); ``--commit off`` (or ``--no-sync-commit``) runs it with commits that do not wait, ``--commit both``
once each way, and every table says which. It prints percentiles, ratios to the floor and the target (GET p99 < 50 ms);
it does not pass or fail. Progress goes to stderr, tables and Markdown to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import importlib.metadata
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from benchmarks._api_http import Connection
from benchmarks._api_server import FLOOR_PATH, POOL_SIZE
from benchmarks._harness import (
    BenchServer,
    Report,
    ResultTable,
    bench_parser,
    fmt_ms,
    fmt_ratio,
    percentile,
    ratio,
    server_settings,
    step,
)
from howdah.control.events import data_plane_queue
from howdah.control.service import ControlPlane
from howdah.schema import install_all

ORG = "bench"
DATA_PLANE = "local"
TARGET_P99 = 0.050  # seconds, GETs
ROOT = Path(__file__).resolve().parent.parent

ONE, LIST, PATCH, FLOOR, HEALTH = "get_one", "get_list", "patch", "floor", "healthz"
API_PATTERN = (ONE, LIST, ONE, PATCH)  # 50 % GET one, 25 % GET list, 25 % PATCH
LABELS = {
    ONE: "GET one instance",
    LIST: "GET instance list",
    PATCH: "PATCH instance (all)",
    FLOOR: "floor: one SELECT, same pool",
    HEALTH: "floor: /healthz, no database",
}


@dataclass(frozen=True)
class Sizes:
    seconds: float
    warmup: float
    rate: float
    peer_rate: float
    instances: int
    capacity_seconds: float  # per kind of request, closed loop
    in_flight: int = 16  # closed loop
    connections: int = 64  # open loop: at most this many requests outstanding; later ones wait in line


FULL = Sizes(seconds=20, warmup=3, rate=200, peer_rate=20, instances=20, capacity_seconds=3)
QUICK = Sizes(seconds=3, warmup=1, rate=200, peer_rate=20, instances=20, capacity_seconds=1)
# What the capacity table measures: (label, request kinds cycled through).
CAPACITY = (
    (LABELS[ONE], (ONE,)),
    (LABELS[LIST], (LIST,)),
    ("PATCH instance", (PATCH,)),
    ("API mix (GET one 50 %, list 25 %, PATCH 25 %)", API_PATTERN),
    (LABELS[FLOOR], (FLOOR,)),
    (LABELS[HEALTH], (HEALTH,)),
)


@dataclass(frozen=True)
class Shot:
    """One request: what, when it was due (seconds from the start), and whether it counts (after the warm-up)."""

    kind: str
    due: float
    target: str
    work_mem: str  # the PATCH's new value
    measured: bool


@dataclass(frozen=True)
class Sample:
    shot: Shot
    lag: float  # when it actually left, after it was due
    latency: float  # answered, after it was due
    status: int  # 0: no HTTP answer (timeout, connection error)


# ------------------------------------------------------------------------------------------------ processes
@dataclass(frozen=True)
class Processes:
    port: int
    pids: dict[str, int]  # "server", "data plane", "client" (this one)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cpu_seconds(self) -> dict[str, float]:
        """CPU time (user + system) each process, and the whole host, has used so far (Linux /proc; else empty)."""
        used = {}
        tick = os.sysconf("SC_CLK_TCK")
        for name, pid in self.pids.items():
            with contextlib.suppress(OSError, IndexError, ValueError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                used[name] = (int(fields[11]) + int(fields[12])) / tick
        with contextlib.suppress(OSError, IndexError, ValueError):
            jiffies = [int(n) for n in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
            used["whole host"] = (sum(jiffies) - jiffies[3] - jiffies[4]) / tick  # all but idle and iowait
        return used


@contextlib.contextmanager
def running(dsn: str) -> Iterator[Processes]:
    """The API (+ reconciler) and the stand-in data plane, each in its own process."""
    env = {**os.environ, "HOWDAH_BENCH_DSN": dsn}
    server = subprocess.Popen(
        [sys.executable, "-m", "benchmarks._api_server"], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
    )
    conductor = subprocess.Popen(
        [sys.executable, "-m", "benchmarks._api_conductor", data_plane_queue(DATA_PLANE)], cwd=ROOT, env=env
    )
    try:
        assert server.stdout is not None
        ready, _, _ = select.select([server.stdout], [], [], 90)
        line = server.stdout.readline() if ready else ""
        if not line:
            raise RuntimeError(f"the API process did not start (exit code {server.poll()})")
        pids = {"server": server.pid, "data plane": conductor.pid, "client": os.getpid()}
        yield Processes(int(json.loads(line)["port"]), pids)
    finally:
        for process in (server, conductor):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in (server, conductor):
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


# --------------------------------------------------------------------------------------------------- setup
async def member_token(dsn: str) -> str:
    """A member token of org ``bench``, and the data plane the instances are placed on."""
    async with AsyncConnectionPool(dsn, min_size=1, max_size=1, kwargs={"autocommit": True}, open=False) as pool:
        control = ControlPlane(pool)
        token, _ = await control.create_token(ORG, "member", "benchmark")
        await control.register_data_plane(DATA_PLANE, "the benchmark's stand-in data plane")
        return token


async def create_instances(base_url: str, token: str, count: int, timeout: float = 120) -> list[str]:
    """``count`` instances, created through the API and brought Up by the stand-in data plane and the reconciler."""
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30) as client:
        ids = []
        for i in range(count):
            body = {"name": f"bench-{i:02d}", "stack": ("standard", "oltp", "olap", "vectordb")[i % 4]}
            response = await client.post(f"/api/v1/orgs/{ORG}/instances", json=body)
            response.raise_for_status()
            ids.append(response.json()["id"])
        deadline = time.monotonic() + timeout
        while True:
            page = (await client.get(f"/api/v1/orgs/{ORG}/instances", params={"limit": 200})).json()
            states = Counter(item["state"] for item in page["items"])
            if states["Up"] == count:
                return ids
            if time.monotonic() > deadline:
                raise RuntimeError(f"instances not Up after {timeout:.0f}s: {dict(states)}")
            await asyncio.sleep(0.2)


# ---------------------------------------------------------------------------------------------------- load
def _shots(kinds: Sequence[str], count: int, instance_ids: Sequence[str]) -> Iterator[tuple[str, str, str]]:
    """``count`` (kind, target, work_mem) triples cycling through ``kinds``; PATCHes go round-robin over the
    instances, each with a new ``work_mem`` so that every accepted PATCH is a real change."""
    patches = 0
    for i in range(count):
        kind = kinds[i % len(kinds)]
        if kind == PATCH:
            yield kind, instance_ids[patches % len(instance_ids)], f"{4 + patches % 97}MB"
            patches += 1
        else:
            yield kind, instance_ids[(i * 7) % len(instance_ids)], ""


def schedule(sizes: Sizes, instance_ids: Sequence[str]) -> list[Shot]:
    """Evenly spaced arrivals: the API mix at ``rate``, each floor at ``peer_rate``, merged by due time."""
    total = sizes.warmup + sizes.seconds
    shots = [
        Shot(kind, i / sizes.rate, target, work_mem, i / sizes.rate >= sizes.warmup)
        for i, (kind, target, work_mem) in enumerate(_shots(API_PATTERN, int(total * sizes.rate), instance_ids))
    ]
    for n, kind in enumerate((FLOOR, HEALTH)):
        offset = (n + 0.5) / (2 * sizes.peer_rate)  # between the API's arrivals, the two floors apart
        for i, (_, target, _) in enumerate(_shots((kind,), int(total * sizes.peer_rate), instance_ids)):
            due = offset + i / sizes.peer_rate
            shots.append(Shot(kind, due, target, "", due >= sizes.warmup))
    return sorted(shots, key=lambda s: s.due)


async def send(conn: Connection, kind: str, target: str, work_mem: str) -> int:
    """One request; its HTTP status, or 0 when there was no answer (timeout, connection error)."""
    if kind == ONE:
        return await conn.request("GET", f"/api/v1/orgs/{ORG}/instances/{target}")
    if kind == LIST:
        return await conn.request("GET", f"/api/v1/orgs/{ORG}/instances?limit=50")
    if kind == PATCH:
        body = {"postgres_configs": {"work_mem": work_mem}}
        return await conn.request("PATCH", f"/api/v1/orgs/{ORG}/instances/{target}", body)
    if kind == FLOOR:
        return await conn.request("GET", FLOOR_PATH.format(instance_id=target))
    return await conn.request("GET", "/healthz")


async def _connections(port: int, token: str, count: int) -> list[Connection]:
    """``count`` connections to the API, opened (one /healthz each) before any clock starts."""
    conns = [Connection("127.0.0.1", port, {"Authorization": f"Bearer {token}"}) for _ in range(count)]
    statuses = await asyncio.gather(*(conn.request("GET", "/healthz") for conn in conns))
    if set(statuses) != {200}:
        raise RuntimeError(f"the API did not answer /healthz on every connection: {Counter(statuses)}")
    return conns


async def drive(port: int, token: str, shots: Sequence[Shot], connections: int) -> list[Sample]:
    """Hand every shot at its due time to the first free one of ``connections`` keep-alive connections (open
    loop: when all are busy, shots wait in line, and the wait counts in their latency), as wrk2 does."""
    loop = asyncio.get_running_loop()
    line: asyncio.Queue[tuple[Shot, float] | None] = asyncio.Queue()
    samples: list[Sample] = []
    conns = await _connections(port, token, connections)

    async def connection(conn: Connection) -> None:
        while (item := await line.get()) is not None:
            shot, due = item
            left = loop.time()
            status = await send(conn, shot.kind, shot.target, shot.work_mem)
            samples.append(Sample(shot, left - due, loop.time() - due, status))
        await conn.close()

    workers = [asyncio.create_task(connection(conn)) for conn in conns]
    start = loop.time() + 0.1
    for shot in shots:
        due = start + shot.due
        wait = due - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        line.put_nowait((shot, due))
    for _ in workers:
        line.put_nowait(None)
    await asyncio.gather(*workers)
    return samples


async def capacity(
    port: int, token: str, kinds: Sequence[str], instance_ids: Sequence[str], seconds: float, in_flight: int
) -> tuple[float, float, Counter[int]]:
    """Closed loop: ``in_flight`` connections, each sending its next request as soon as the last is answered, for
    ``seconds``; (req/s, p50 seconds, statuses)."""
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    shots = _shots(kinds, 10**9, instance_ids)
    conns = await _connections(port, token, in_flight)
    start = loop.time()
    deadline = start + seconds

    async def connection(conn: Connection) -> None:
        while loop.time() < deadline:
            kind, target, work_mem = next(shots)
            began = loop.time()
            statuses[await send(conn, kind, target, work_mem)] += 1
            latencies.append(loop.time() - began)
        await conn.close()

    await asyncio.gather(*(connection(conn) for conn in conns))
    elapsed = loop.time() - start
    return len(latencies) / elapsed, percentile(latencies, 50), statuses


# ------------------------------------------------------------------------------------------------- results
COMMITS = {
    "on": "synchronous_commit = on (as deployed: each commit waits for its WAL flush)",
    "off": "synchronous_commit = off (commits do not wait for the disk)",
}


@dataclass
class Outcome:
    """One commit mode's run: its samples, and the p99 of each kind of request."""

    commit: str
    settings: str  # the server's settings line, as the run's database sees them
    samples: list[Sample]
    capacity: list[tuple[str, float, float, Counter[int]]]  # label, req/s, p50 seconds, statuses
    cpu: dict[str, float]  # share of one core each process used during the open-loop run
    p99: dict[str, float] = field(default_factory=dict)


def _statuses(samples: Sequence[Sample]) -> str:
    counts = Counter(s.status for s in samples)
    return ", ".join(f"{status or 'error'}: {n}" for status, n in sorted(counts.items()))


def _settings(sizes: Sizes) -> str:
    return (
        f"one run, {sizes.warmup:g} s warm-up + {sizes.seconds:g} s measured, {sizes.instances} instances, "
        f"{sizes.connections} client connections; transactions as the API makes them (its pool autocommits)"
    )


def latency_table(outcome: Outcome, sizes: Sizes) -> ResultTable:
    measured = [s for s in outcome.samples if s.shot.measured]
    window = max(s.shot.due + s.latency for s in measured) - min(s.shot.due for s in measured)
    by_kind: dict[str, list[Sample]] = {}
    for sample in measured:
        by_kind.setdefault(sample.shot.kind, []).append(sample)
    patches = by_kind.get(PATCH, [])
    rows: list[tuple[str, str, list[Sample]]] = [(k, LABELS[k], by_kind.get(k, [])) for k in (ONE, LIST, PATCH)]
    rows += [
        ("202", "… PATCH accepted (202)", [s for s in patches if s.status == 202]),
        ("409", "… PATCH refused: work in flight (409)", [s for s in patches if s.status == 409]),
        (FLOOR, LABELS[FLOOR], by_kind.get(FLOOR, [])),
        (HEALTH, LABELS[HEALTH], by_kind.get(HEALTH, [])),
    ]
    floor = [s.latency for s in by_kind.get(FLOOR, [])]
    floor_p50, floor_p99 = percentile(floor, 50), percentile(floor, 99)
    table = ResultTable(
        f"Latency, {COMMITS[outcome.commit]}: API {sizes.rate:.0f} req/s + floors {sizes.peer_rate:.0f} req/s "
        f"each, open loop, {sizes.seconds:.0f} s measured",
        ["Request", "Requests", "req/s", "Statuses", "p50 ms", "p95 ms", "p99 ms", "max ms", "p50 ÷ floor",
         "p99 ÷ floor"],
        settings=_settings(sizes), server=outcome.settings,
    )  # fmt: skip
    for key, label, group in rows:
        values = [s.latency for s in group]
        p50, p95, p99 = (percentile(values, q) for q in (50, 95, 99))
        outcome.p99[key] = p99
        table.add_row(
            label, f"{len(group):,}", f"{len(group) / window:,.1f}", _statuses(group) or "-", fmt_ms(p50),
            fmt_ms(p95), fmt_ms(p99), fmt_ms(max(values) if values else None), fmt_ratio(ratio(p50, floor_p50)),
            fmt_ratio(ratio(p99, floor_p99)),
        )  # fmt: skip
    api = [s for s in measured if s.shot.kind in (ONE, LIST, PATCH)]
    lags = [s.lag for s in measured]
    table.notes.append(
        f"API requests answered: {len(api):,} in {window:.1f} s = {len(api) / window:,.1f} req/s (offered "
        f"{sizes.rate:.0f}). Waiting for one of the client's {sizes.connections} connections: p99 "
        f"{fmt_ms(percentile(lags, 99))} ms, max {fmt_ms(max(lags))} ms (counted in the latencies)."
    )
    if outcome.cpu:
        used = ", ".join(f"{name} {share:.0%}" for name, share in outcome.cpu.items())
        table.notes.append(
            f"CPU used during the run (warm-up included), in cores: {used} (Postgres and other tenants of the host "
            f"are in the last figure, out of {os.cpu_count()})."
        )
    if len(api) / window < 0.95 * sizes.rate:
        table.notes.append(
            "The server answered fewer requests per second than were offered: it was saturated in this run, "
            "requests queued, and these latencies grow with the length of the run rather than measure the "
            "service time (see the closed-loop capacity below)."
        )
    return table


def capacity_table(outcomes: Sequence[Outcome], sizes: Sizes) -> ResultTable:
    table = ResultTable(
        f"Capacity: closed loop, {sizes.in_flight} requests in flight, {sizes.capacity_seconds:.0f} s per row "
        "(measured after the open-loop run)",
        ["Request", "commits", "req/s", "p50 ms", "Statuses", "req/s ÷ floor"],
        settings=_settings(sizes) + "; synchronous_commit as in each row",
    )
    for outcome in outcomes:
        floor = next(rate for label, rate, _, _ in outcome.capacity if label == LABELS[FLOOR])
        for label, rate, p50, statuses in outcome.capacity:
            counts = ", ".join(f"{status or 'error'}: {n}" for status, n in sorted(statuses.items()))
            table.add_row(
                label, f"synchronous_commit={outcome.commit}", f"{rate:,.0f}", fmt_ms(p50), counts,
                fmt_ratio(ratio(rate, floor)),
            )  # fmt: skip
    return table


def target_table(outcomes: Sequence[Outcome], sizes: Sizes) -> ResultTable:
    title = f"Target: GET p99 < {TARGET_P99 * 1000:.0f} ms at {sizes.rate:.0f} req/s"
    table = ResultTable(
        title,
        ["Request", "commits", "p99 ms", "target ms", "met"],
        settings=_settings(sizes) + "; synchronous_commit as in each row",
    )
    for outcome in outcomes:
        for kind in (ONE, LIST):
            p99 = outcome.p99[kind]
            met = "yes" if p99 < TARGET_P99 else "no"
            table.add_row(LABELS[kind], f"synchronous_commit={outcome.commit}", fmt_ms(p99), fmt_ms(TARGET_P99), met)
    return table


# ---------------------------------------------------------------------------------------------------- main
def run_once(server: BenchServer, sizes: Sizes, commit: str) -> Outcome:
    """One commit mode: a fresh database, fresh processes, instances, then the load."""
    with step(f"synchronous_commit={commit}: creating the database"):
        name = f"howdah_bench_api_{commit}"
        dsn = server.create_database(name)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("ALTER DATABASE {} SET synchronous_commit = {}").format(
                sql.Identifier(name), sql.SQL(commit)
            ))  # fmt: skip
        with psycopg.connect(dsn, autocommit=True) as conn:
            install_all(conn)
        token = asyncio.run(member_token(dsn))
        settings = server_settings(dsn)
    with running(dsn) as processes:
        with step(f"synchronous_commit={commit}: creating {sizes.instances} instances, waiting until they are Up"):
            ids = asyncio.run(create_instances(processes.base_url, token, sizes.instances))
        what = f"synchronous_commit={commit}: {sizes.warmup:.0f} s warm-up + {sizes.seconds:.0f} s measured"
        with step(what):
            cpu_before, began = processes.cpu_seconds(), time.monotonic()
            samples = asyncio.run(drive(processes.port, token, schedule(sizes, ids), sizes.connections))
            cpu_after, elapsed = processes.cpu_seconds(), time.monotonic() - began
        cpu = {name: (cpu_after[name] - used) / elapsed for name, used in cpu_before.items() if name in cpu_after}
        measured = []
        with step(f"synchronous_commit={commit}: capacity, closed loop"):
            for label, kinds in CAPACITY:
                rate, p50, statuses = asyncio.run(
                    capacity(processes.port, token, kinds, ids, sizes.capacity_seconds, sizes.in_flight)
                )
                measured.append((label, rate, p50, statuses))
    return Outcome(commit, settings, samples, measured, cpu)


def _parser() -> argparse.ArgumentParser:
    parser = bench_parser("api", __doc__, "a smoke run: 3 s measured after 1 s of warm-up")
    parser.add_argument("--seconds", type=float, default=None, help="seconds measured per commit mode (20; quick 3)")
    parser.add_argument("--rate", type=float, default=None, help="API requests per second (200)")
    parser.add_argument("--peer-rate", type=float, default=None, help="requests per second to each floor (20)")
    parser.add_argument("--instances", type=int, default=None, help="instances to create (20)")
    parser.add_argument(
        "--commit", choices=("on", "off", "both"), default="on", help="synchronous_commit (on, the server's default)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    base = QUICK if args.quick else FULL
    sizes = dataclasses.replace(
        base, seconds=args.seconds or base.seconds, rate=args.rate or base.rate,
        peer_rate=args.peer_rate or base.peer_rate, instances=args.instances or base.instances,
    )  # fmt: skip
    commit = "off" if args.no_sync_commit else args.commit
    commits = ("on", "off") if commit == "both" else (commit,)
    report = Report("Howdah API benchmark" + (" (--quick)" if args.quick else ""))
    with BenchServer() as server:
        load_before = os.getloadavg()[0]
        outcomes = [run_once(server, sizes, commit) for commit in commits]
        load_after = os.getloadavg()[0]
        report.settings = outcomes[0].settings
        report.set_facts(
            [
                *server.facts(),
                ("server", f"uvicorn {importlib.metadata.version('uvicorn')} (asyncio, h11), 1 process with the "
                 f"reconciler, pool of {POOL_SIZE}; FastAPI {importlib.metadata.version('fastapi')}, pydantic "
                 f"{importlib.metadata.version('pydantic')}"),
                ("client", f"one process, {sizes.connections} keep-alive connections (open loop) of a minimal asyncio "
                 "HTTP/1.1 client (benchmarks/_api_http.py), one member token"),
                ("data plane", "a stand-in process that acknowledges each CRUD event at once (nothing provisioned)"),
                ("instances", f"{sizes.instances} in org '{ORG}', all Up before the load starts"),
                ("load average (1 min)", f"{load_before:.1f} before, {load_after:.1f} after (other work on the host)"),
            ]
        )  # fmt: skip
    for outcome in outcomes:
        report.add(latency_table(outcome, sizes))
    report.add(target_table(outcomes, sizes))
    report.add(capacity_table(outcomes, sizes))
    report.note(
        "Latency is counted from each request's scheduled send time. The floors are served by the API's own "
        "process from its pool, interleaved with the API's requests: 'one SELECT' answers GET one instance with a "
        "single query, without authentication or models; /healthz touches no database."
    )
    report.finish(args.markdown)


if __name__ == "__main__":
    main()
