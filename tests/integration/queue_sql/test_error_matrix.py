"""Errors, differentially: a generated matrix of bad inputs for every public function that takes any, run against
Howdah's schema and against PGMQ 1.13's own SQL (the oracle). The contract (README, "Compatibility with PGMQ"):

* where PGMQ raises an error of its own (SQLSTATE P0001), Howdah raises the same SQLSTATE and primary message;
* where PGMQ lets a raw Postgres error through (a missing table, NULL formatted as an identifier, a NOT NULL
  violation), Howdah fails too, with the same SQLSTATE or the one HOWDAH_REFUSES lists for a bad input of the
  case, and a message of its own that names the problem;
* where PGMQ accepts the input, so does Howdah, except for the inputs in HOWDAH_REFUSES, which PGMQ accepts and
  then stores or ignores silently (NULL messages, negative visibility timeouts, control characters in names, ...).

Each case changes one argument of a valid call; calls with a bad queue name are also crossed with every other
bad argument, so the order in which the checks run matches too.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from tests.integration.queue_sql.conftest import Outcome, run

Conn = psycopg.Connection[Any]

EXISTING = "<existing>"  # replaced by a queue created for the test, with messages in it
MISSING = "<missing>"  # replaced by the name of a queue that does not exist
# PGMQ needs pg_partman for partitioned queues; Howdah does not. This error of the oracle counts as success.
NO_PARTMAN = "pg_partman is required for partitioned queues"
EARLIER = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True)
class Kind:
    """A kind of argument: its SQL type, a valid value, and bad values (each with a label)."""

    cast: str
    good: Any
    bad: tuple[tuple[str, Any], ...] = ()


BAD_NAMES = (
    ("NULL", None),
    ("empty", ""),
    ("missing", MISSING),
    ("$", "a$b"),
    (";", "a;b"),
    ("--", "a--b"),
    ("quote", "a'b"),
    ("injection", "abc where false; --"),
    ("48 characters", "x" * 48),
    ("48 characters and ;", "x" * 47 + ";"),
    ("48 bytes", "é" * 24),
    ("control character", "tab\there"),
)
NAMES_CROSSED = ("NULL", "missing", ";")  # bad names also tried with each other bad argument
BAD_KEYS = (
    ("NULL", None),
    ("empty", ""),
    ("256 characters", "k" * 256),
    ("space", "logs error"),
    ("!", "logs.error!"),
    ("wildcard", "logs.*"),
    ("leading dot", ".logs"),
    ("trailing dot", "logs."),
    ("..", "logs..error"),
)
BAD_PATTERNS = (
    ("NULL", None),
    ("empty", ""),
    ("256 characters", "p" * 256),
    ("!", "logs!"),
    ("leading dot", ".logs.*"),
    ("trailing dot", "logs.*."),
    ("..", "logs..error"),
    ("**", "logs.**"),
    ("##", "logs.##"),
    ("*#", "logs.*#"),
    ("#*", "logs.#*"),
)
NULL = (("NULL", None),)
NULL_OR_NEGATIVE = (("NULL", None), ("negative", -1))

KINDS = {
    "queue_name": Kind("text", EXISTING, BAD_NAMES),
    "msg": Kind("jsonb", Jsonb({"k": 1}), NULL),
    "headers": Kind("jsonb", Jsonb({"h": 1})),
    "delay": Kind("integer", 0, NULL_OR_NEGATIVE),
    "delay_at": Kind("timestamptz", EARLIER, NULL),
    "msgs": Kind(
        "jsonb[]",
        [Jsonb({"m": 1})],
        (("NULL", None), ("empty", []), ("a NULL element", [None]), ("2-D", [[Jsonb({"m": 1})]])),
    ),
    "headers_array": Kind("jsonb[]", [Jsonb({"h": 1})], (("empty", []), ("longer", [Jsonb({}), Jsonb({})]))),
    "vt": Kind("integer", 0, NULL_OR_NEGATIVE),
    "vt_at": Kind("timestamptz", EARLIER, NULL),
    "qty": Kind("integer", 1, NULL_OR_NEGATIVE),
    "msg_id": Kind("bigint", 1, NULL),
    "msg_ids": Kind("bigint[]", [1, 2], NULL),
    "conditional": Kind("jsonb", Jsonb({}), NULL),
    "max_poll_seconds": Kind("integer", 1, NULL_OR_NEGATIVE),
    "poll_interval_ms": Kind("integer", 10, NULL_OR_NEGATIVE),
    "throttle_interval_ms": Kind("integer", 0, NULL_OR_NEGATIVE),
    "routing_key": Kind("text", "matrix.key", BAD_KEYS),
    "pattern": Kind("text", "matrix.*", BAD_PATTERNS),
    "prefix": Kind("text", "q", NULL),
    "partitioned": Kind("boolean", False, NULL),
}

# What Howdah refuses although PGMQ accepts it (or lets a raw error through), with the SQLSTATE Howdah raises.
# (kind, label) of a bad input, or (function, kind, label) where it holds for some functions only.
HOWDAH_REFUSES: dict[tuple[str, ...], str] = {
    ("delay", "NULL"): "22004",
    ("delay", "negative"): "22023",
    ("delay_at", "NULL"): "22004",
    ("msgs", "2-D"): "22023",
    ("vt", "NULL"): "22004",
    ("vt", "negative"): "22023",
    ("vt_at", "NULL"): "22004",
    ("qty", "NULL"): "22004",
    ("qty", "negative"): "22023",
    ("msg_id", "NULL"): "22004",
    ("msg_ids", "NULL"): "22004",
    ("max_poll_seconds", "NULL"): "22004",
    ("max_poll_seconds", "negative"): "22023",
    ("poll_interval_ms", "NULL"): "22004",
    ("poll_interval_ms", "negative"): "22023",
    ("throttle_interval_ms", "NULL"): "22004",
    ("queue_name", "NULL"): "22004",
    ("queue_name", "empty"): "22023",
    ("queue_name", "48 bytes"): "P0001",
    ("queue_name", "control character"): "22023",
    # PGMQ's validate_queue_name checks only the length (its create checks the characters first); Howdah's
    # checks everything its create does.
    **{("validate_queue_name", "queue_name", label): "P0001" for label in ("$", ";", "--", "quote", "injection")},
}
# Where a queue name is only looked up, Howdah says "does not exist" (42P01) for what PGMQ creates or lets pass.
LOOKUP_ONLY_REFUSES = {("queue_name", "missing"), ("queue_name", "empty"), ("queue_name", "48 bytes")}


@dataclass(frozen=True)
class Fn:
    """A public function's overload: its name and the kinds of its arguments, in order."""

    name: str
    kinds: tuple[str, ...]
    good_queue: str = EXISTING  # MISSING where calling it on the test's queue would destroy it

    @property
    def sql(self) -> str:
        args = ", ".join(f"%s::{KINDS[k].cast}" for k in self.kinds)
        return f"SELECT * FROM pgmq.{self.name}({args})"

    def __str__(self) -> str:
        return f"{self.name}({', '.join(self.kinds)})"


def _fns(name: str, *signatures: str, good_queue: str = EXISTING) -> list[Fn]:
    return [Fn(name, tuple(s.split()), good_queue) for s in signatures]


Q = "queue_name"
FUNCTIONS = [
    *_fns("send", "queue_name msg", "queue_name msg headers", "queue_name msg delay", "queue_name msg delay_at"),
    *_fns("send", "queue_name msg headers delay", "queue_name msg headers delay_at"),
    *_fns("send_batch", "queue_name msgs", "queue_name msgs headers_array", "queue_name msgs delay"),
    *_fns("send_batch", "queue_name msgs delay_at", "queue_name msgs headers_array delay"),
    *_fns("send_batch", "queue_name msgs headers_array delay_at"),
    *_fns("read", "queue_name vt qty", "queue_name vt qty conditional"),
    *_fns("read_with_poll", "queue_name vt qty max_poll_seconds poll_interval_ms"),
    *[f for n in ("read_grouped", "read_grouped_rr", "read_grouped_head") for f in _fns(n, "queue_name vt qty")],
    *[
        f
        for n in ("read_grouped_with_poll", "read_grouped_rr_with_poll", "read_grouped_head_with_poll")
        for f in _fns(n, "queue_name vt qty max_poll_seconds poll_interval_ms")
    ],
    *_fns("pop", "queue_name", "queue_name qty"),
    *_fns("archive", "queue_name msg_id", "queue_name msg_ids"),
    *_fns("delete", "queue_name msg_id", "queue_name msg_ids"),
    *_fns("set_vt", "queue_name msg_id vt", "queue_name msg_id vt_at", "queue_name msg_ids vt"),
    *_fns("set_vt", "queue_name msg_ids vt_at"),
    *_fns("metrics", "queue_name"),
    *_fns("purge_queue", "queue_name"),
    *_fns("drop_queue", "queue_name", "queue_name partitioned", good_queue=MISSING),
    *_fns("create", "queue_name"),
    *_fns("create_non_partitioned", "queue_name"),
    *_fns("create_unlogged", "queue_name"),
    *_fns("create_partitioned", "queue_name"),
    *_fns("validate_queue_name", "queue_name"),
    *_fns("format_table_name", "queue_name prefix"),
    *_fns("detach_archive", "queue_name"),
    *_fns("create_fifo_index", "queue_name"),
    *_fns("enable_notify_insert", "queue_name", "queue_name throttle_interval_ms"),
    *_fns("update_notify_insert", "queue_name throttle_interval_ms"),
    *_fns("disable_notify_insert", "queue_name"),
    *_fns("bind_topic", "pattern queue_name"),
    *_fns("unbind_topic", "pattern queue_name"),
    *_fns("validate_routing_key", "routing_key"),
    *_fns("validate_topic_pattern", "pattern"),
    *_fns("test_routing", "routing_key"),
    *_fns("send_topic", "routing_key msg", "routing_key msg delay", "routing_key msg headers delay"),
    *_fns("send_batch_topic", "routing_key msgs", "routing_key msgs headers_array", "routing_key msgs delay"),
    *_fns("send_batch_topic", "routing_key msgs delay_at", "routing_key msgs headers_array delay"),
    *_fns("send_batch_topic", "routing_key msgs headers_array delay_at"),
]
CREATES = {"create", "create_non_partitioned", "create_unlogged", "create_partitioned", "validate_queue_name"}


@dataclass(frozen=True)
class Case:
    fn: Fn
    args: tuple[Any, ...]
    bad: tuple[tuple[str, str], ...]  # (kind, label) of each bad argument

    def __str__(self) -> str:
        return f"{self.fn} with " + ", ".join(f"{kind} {label}" for kind, label in self.bad)


def cases(fn: Fn) -> list[Case]:
    good = [fn.good_queue if k == Q else KINDS[k].good for k in fn.kinds]
    out: list[Case] = [Case(fn, tuple(good), ())]
    for i, kind in enumerate(fn.kinds):
        for label, value in KINDS[kind].bad:
            args = [*good]
            args[i] = value
            out.append(Case(fn, tuple(args), ((kind, label),)))
            if kind == Q or Q not in fn.kinds:
                continue
            for name_label, name in BAD_NAMES:
                if name_label in NAMES_CROSSED:
                    crossed = [name if k == Q else a for k, a in zip(fn.kinds, args, strict=True)]
                    out.append(Case(fn, tuple(crossed), ((Q, name_label), (kind, label))))
    return out


FORBIDDEN_CHARACTERS = {"$", ";", "--", "quote", "injection", "48 characters and ;"}


def refused_by_howdah(case: Case) -> set[str]:
    """The SQLSTATEs Howdah may raise for this case where PGMQ accepts it or raises a raw error."""
    allowed = {HOWDAH_REFUSES[b] for b in case.bad if b in HOWDAH_REFUSES}
    if allowed and any(b[0] == Q and b[1] in FORBIDDEN_CHARACTERS for b in case.bad):
        # PGMQ never gets to the name where it accepts the other argument (read_grouped_with_poll with a
        # negative max_poll_seconds returns at once); Howdah checks the name before refusing that argument.
        allowed.add("P0001")
    allowed |= {HOWDAH_REFUSES[k] for b in case.bad if (k := (case.fn.name, *b)) in HOWDAH_REFUSES}
    if case.fn.name not in CREATES:
        allowed |= {"42P01" for b in case.bad if b in LOOKUP_ONLY_REFUSES}
    return allowed


def mismatch(case: Case, ours: Outcome, theirs: Outcome) -> str | None:
    """Why Howdah's outcome breaks the contract for this case, or None."""
    pgmq_failed = theirs.failed and theirs.message != NO_PARTMAN
    if pgmq_failed and theirs.sqlstate == "P0001":
        if (ours.sqlstate, ours.message) != (theirs.sqlstate, theirs.message):
            return f"{case}: PGMQ {theirs.sqlstate} {theirs.message!r}, Howdah {ours.sqlstate} {ours.message!r}"
        return None
    allowed = refused_by_howdah(case) | ({theirs.sqlstate} if pgmq_failed else set())
    if ours.failed and ours.sqlstate not in allowed:
        return f"{case}: PGMQ {theirs.sqlstate} {theirs.message!r}, Howdah {ours.sqlstate} {ours.message!r}"
    if pgmq_failed and not ours.failed:
        return f"{case}: PGMQ {theirs.sqlstate} {theirs.message!r}, Howdah succeeded"
    return None


def _substitute(args: tuple[Any, ...], existing: str, missing: str) -> tuple[Any, ...]:
    return tuple(existing if a == EXISTING else missing if a == MISSING else a for a in args)


@pytest.fixture
def pair(conn: Conn, oracle: Conn, queue_name: str) -> Iterator[tuple[Conn, Conn, str]]:
    """Both databases with the same queue holding messages; every statement bounded by a timeout."""
    for c in (conn, oracle):
        c.execute("SET statement_timeout = '20s'")
        c.execute("SELECT pgmq.create(%s)", (queue_name,))
        c.execute("SELECT * FROM pgmq.send_batch(%s::text, %s::jsonb[])", (queue_name, [Jsonb({})] * 30))
    yield conn, oracle, queue_name
    for c in (conn, oracle):
        for name in [queue_name, *(value for _, value in BAD_NAMES if isinstance(value, str) and value != MISSING)]:
            run(c, "SELECT pgmq.drop_queue(%s)", (name,))


@pytest.mark.parametrize("fn", FUNCTIONS, ids=str)
def test_errors_match_pgmq(pair: tuple[Conn, Conn, str], fn: Fn) -> None:
    ours_conn, theirs_conn, queue = pair
    problems: list[str] = []
    for case in cases(fn):
        args = _substitute(case.args, queue, f"missing_{queue}")
        ours, theirs = run(ours_conn, fn.sql, args), run(theirs_conn, fn.sql, args)
        if (problem := mismatch(case, ours, theirs)) is not None:
            problems.append(problem)
    assert problems == []


def test_the_matrix_covers_every_public_function_taking_arguments(conn: Conn) -> None:
    rows = conn.execute(
        "SELECT DISTINCT p.proname::text FROM pg_proc AS p WHERE p.pronamespace = 'pgmq'::regnamespace "
        "AND p.proname !~ '^(_|howdah_)' AND p.pronargs > 0"
    ).fetchall()
    untested = {name for (name,) in rows} - {fn.name for fn in FUNCTIONS}
    # acquire_queue_lock takes any text; list_topic_bindings filters by any text; maintain_partitions and
    # convert_archive_partitioned are covered in test_bad_input.py and test_partitioned.py (PGMQ needs pg_partman).
    assert untested == {
        "acquire_queue_lock",
        "list_topic_bindings",
        "maintain_partitions",
        "convert_archive_partitioned",
    }
