"""Table 1: the SQL API on one autocommit connection — Howdah's schema, PGMQ's own SQL and the floor (the very
statements Howdah's functions run, prepared and executed without the function layer).

Every round runs each contender through the same chain of phases, so its queue is in the same state for
all: N single sends, then N single read+delete pairs that drain them; M messages sent in batches of 100,
then drained by read-100 + delete-100; then K messages read and archived one at a time. Each phase runs for
every contender before the next phase starts, in an order rotated per phase. Rates are messages per second;
the figure shown is the median over the rounds, a ratio the median of the per-round ratios.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from benchmarks._harness import (
    BenchServer,
    Phase,
    ResultTable,
    Samples,
    fmt_rate,
    fmt_ratio,
    run_interleaved,
    step,
)
from benchmarks._queue_setup import (
    BODY,
    DATABASES,
    HOWDAH,
    LABELS,
    PGMQ,
    RAW,
    Contenders,
    SqlApi,
    settle,
    sql_api,
)

BATCH = 100

OPERATIONS = [
    ("send", "send 1"),
    ("send_batch", "send_batch 100 (per message)"),
    ("read_delete", "read 1 + delete 1"),
    ("read_delete_batch", "read 100 + delete 100 (per message)"),
    ("read_archive", "read 1 + archive 1"),
]


@dataclass(frozen=True)
class SqlSizes:
    rounds: int
    single: int  # messages sent one at a time, then read+deleted one at a time
    batched: int  # messages sent in batches of 100, then read+deleted 100 at a time
    archived: int  # messages read+archived one at a time


def _drain_single(api: SqlApi, count: int, archive: bool) -> None:
    finish = api.archive if archive else api.delete
    for _ in range(count):
        rows = api.read(1)
        if not rows:
            raise RuntimeError("the queue ran dry before the phase ended")
        finish(rows[0][0])


def _drain_batches(api: SqlApi, count: int) -> None:
    for _ in range(count // BATCH):
        rows = api.read(BATCH)
        if len(rows) != BATCH:
            raise RuntimeError(f"read {len(rows)} messages where {BATCH} were expected")
        api.delete_batch([row[0] for row in rows])


def plan(api: SqlApi, sizes: SqlSizes) -> list[Phase]:
    """One round of one contender: each send phase fills the queue that the following read phase drains."""
    batch = [BODY] * BATCH
    n_single, n_batched, n_archived = sizes.single, sizes.batched // BATCH * BATCH, sizes.archived

    def cleanup() -> None:  # the prefill for the archive phase rounds up to whole batches
        leftover = api.read(BATCH)
        if leftover:
            api.delete_batch([row[0] for row in leftover])

    return [
        Phase("send", n_single, lambda: [api.send(BODY) for _ in range(n_single)]),
        Phase("read_delete", n_single, lambda: _drain_single(api, n_single, archive=False)),
        Phase("send_batch", n_batched, lambda: [api.send_batch(batch) for _ in range(n_batched // BATCH)]),
        Phase("read_delete_batch", n_batched, lambda: _drain_batches(api, n_batched)),
        Phase(None, 0, lambda: [api.send_batch(batch) for _ in range(-(-n_archived // BATCH))]),
        Phase("read_archive", n_archived, lambda: _drain_single(api, n_archived, archive=True)),
        Phase(None, 0, cleanup),
    ]


def run(
    contenders: Contenders, sizes: SqlSizes, clock: ServerClock | None = None
) -> tuple[ResultTable, Samples, list[str]]:
    names = [name for name in (HOWDAH, PGMQ, RAW) if contenders.have(name)]
    conns: dict[str, psycopg.Connection[Any]] = {
        name: psycopg.connect(contenders.urls[name], autocommit=True) for name in names
    }
    samples = Samples()
    failed: dict[str, str] = {}
    try:
        apis = {name: sql_api(name, conn) for name, conn in conns.items()}
        for api in apis.values():
            api.create()
        with step("Table 1: warm-up"):
            warm_up = SqlSizes(1, 200, 1000, 100)
            run_interleaved({name: plan(api, warm_up) for name, api in apis.items()}, Samples(), failed=failed)
        for rnd in range(sizes.rounds):
            with step(f"Table 1: SQL API, round {rnd + 1}/{sizes.rounds}"):
                for name in names:
                    settle(conns[name], apis[name].tables)
                plans = {name: plan(apis[name], sizes) for name in names}
                if clock is not None:
                    plans = {name: clock.wrap(name, phases) for name, phases in plans.items()}
                run_interleaved(plans, samples, shift=rnd, failed=failed)
    finally:
        for conn in conns.values():
            conn.close()
    return _table(names, sizes, samples, failed), samples, names


def _table(names: list[str], sizes: SqlSizes, samples: Samples, failed: dict[str, str]) -> ResultTable:
    table = ResultTable(
        "Table 1 — SQL API, one connection, autocommit (messages/s, median of rounds)",
        [
            "operation",
            f"{LABELS[HOWDAH]} ops/s",
            f"{LABELS[PGMQ]} ops/s",
            f"{LABELS[RAW]} ops/s",
            "Howdah/PGMQ (target ≥ 1.00x)",
            "Howdah/floor (target ≥ 0.90x)",
        ],
        settings=f"{sizes.rounds} round(s), one connection per contender, autocommit (each call its own "
        f"transaction), batches of {BATCH}",
    )
    spreads: list[float] = []
    for key, label in OPERATIONS:
        rates = {name: samples.median(name, key) for name in (HOWDAH, PGMQ, RAW)}
        spreads += [s for name in names if (s := samples.spread(name, key)) is not None]
        table.add_row(
            label,
            *(fmt_rate(rates[name]) if name not in failed else "error" for name in (HOWDAH, PGMQ, RAW)),
            fmt_ratio(samples.paired_ratio(HOWDAH, PGMQ, key)),
            fmt_ratio(samples.paired_ratio(HOWDAH, RAW, key)),
        )
    table.notes.append(
        f"{sizes.rounds} round(s); each phase runs for every contender before the next phase starts, in an order "
        "rotated per phase; ratios are medians of per-round ratios. "
        f"Per round {sizes.single:,} single sends and "
        f"read+deletes, {sizes.batched:,} messages in batches of {BATCH}, {sizes.archived:,} read+archives. "
        "A read+delete or read+archive counts once per message (two statements). "
        f"{LABELS[RAW]}: Howdah's own kernel statements on a queue of Howdah's schema, prepared, no function layer."
    )
    if spreads:
        table.notes.append(f"Round-to-round spread of a figure: up to {max(spreads):.0%} ((max - min) / median).")
    for name, error in failed.items():
        table.notes.append(f"{LABELS[name]} failed: {error}")
    return table


# ------------------------------------------------------------------------------------- --profile: server time
class ServerClock:
    """Server execution time per phase, from pg_stat_statements (top-level statements of one database).

    Read before and after every timed phase (outside its timing): the difference is what the server spent
    executing that phase's statements; the rest of the client-observed time is round trips, commits and the
    client.
    """

    def __init__(self, server: BenchServer) -> None:
        self.conn = server.connect()
        self.conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        self.spent: dict[tuple[str, str], float] = {}  # (contender, phase) -> milliseconds
        self.ops: dict[tuple[str, str], int] = {}
        self._start: dict[str, float] = {}

    def _now(self, contender: str) -> float:
        row = self.conn.execute(
            "SELECT coalesce(sum(s.total_exec_time), 0) FROM pg_stat_statements s "
            "JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = %s AND s.toplevel",
            (DATABASES[contender],),
        ).fetchone()
        return float(row[0]) if row else 0.0

    def wrap(self, contender: str, phases: list[Phase]) -> list[Phase]:
        wrapped: list[Phase] = []
        for phase in phases:
            if phase.key is None:
                wrapped += [Phase(None, 0, lambda: None), phase, Phase(None, 0, lambda: None)]
                continue
            key = (contender, phase.key)

            def start(contender: str = contender) -> None:
                self._start[contender] = self._now(contender)

            def stop(key: tuple[str, str] = key, ops: int = phase.ops) -> None:
                self.spent[key] = self.spent.get(key, 0.0) + self._now(key[0]) - self._start[key[0]]
                self.ops[key] = self.ops.get(key, 0) + ops

            wrapped += [Phase(None, 0, start), phase, Phase(None, 0, stop)]
        return wrapped

    def micros(self, contender: str, key: str) -> float | None:
        ops = self.ops.get((contender, key))
        return self.spent[(contender, key)] * 1000 / ops if ops else None

    def close(self) -> None:
        self.conn.close()


def profile_table(clock: ServerClock, names: list[str], samples: Samples) -> ResultTable:
    """Where a message's time goes: server execution vs everything else (round trips, commit, client)."""
    table = ResultTable(
        "Table 1b — µs per message: server execution (pg_stat_statements) / client-observed total",
        ["operation", *(LABELS[name] for name in names)],
        settings="Table 1's runs, all rounds; one connection per contender, autocommit",
    )
    for key, label in OPERATIONS:
        cells = []
        for name in names:
            server, rate = clock.micros(name, key), samples.median(name, key)
            total = 1e6 / rate if rate else None
            cells.append(f"{server:,.0f} / {total:,.0f}" if server is not None and total is not None else "n/a")
        table.add_row(label, *cells)
    table.notes.append(
        "Server time = total_exec_time of the phase's top-level statements over its messages (all rounds); "
        "the client-observed total is 1 / the median rate. The difference is round trips, commits and psycopg."
    )
    return table
