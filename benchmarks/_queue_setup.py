"""The queue benchmark's contenders: their databases, and one SQL call style to drive each of them.

- ``howdah``: Howdah's ``pgmq`` schema, installed by :func:`howdah.schema.install_all`.
- ``pgmq``: PGMQ's own SQL (the ``sql/pgmq.sql`` shipped in the ``pgmq`` wheel), installed as plain SQL.
- ``raw``: the floor — a table shaped exactly like a PGMQ queue table (and its archive), driven by plain
  prepared statements doing only what each operation must do.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import psycopg
from psycopg import sql

from benchmarks._harness import BenchServer, Report
from howdah.schema import install_all

HOWDAH, PGMQ, RAW = "howdah", "pgmq", "raw"
LABELS = {HOWDAH: "Howdah", PGMQ: "PGMQ 1.13 SQL", RAW: "raw SQL"}
DATABASES = {HOWDAH: "bench_howdah", PGMQ: "bench_pgmq", RAW: "bench_raw"}

QUEUE = "bench"
VT = 30

# One realistic small job description (~150 bytes of JSON), the same for every contender.
PAYLOAD: dict[str, Any] = {
    "kind": "order.created",
    "order_id": 123456789,
    "customer": "c-000042",
    "amount_cents": 1999,
    "currency": "EUR",
    "items": [{"sku": "A-1", "qty": 2}, {"sku": "B-7", "qty": 1}],
}
BODY = json.dumps(PAYLOAD, separators=(",", ":"))


@dataclass
class Contenders:
    """The URL of each contender's database; a contender whose setup failed is missing, with the reason."""

    urls: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    pgmq_version: str = "?"

    def have(self, name: str) -> bool:
        return name in self.urls


def pgmq_sql() -> tuple[str, str]:
    """PGMQ's install script and its version, as shipped inside the installed ``pgmq`` wheel."""
    folder = resources.files("pgmq").joinpath("sql")
    version = folder.joinpath("VERSION").read_text(encoding="utf-8").strip()
    return folder.joinpath("pgmq.sql").read_text(encoding="utf-8"), version


RAW_DDL = """
CREATE SCHEMA raw;
CREATE TABLE raw.q_bench (
    msg_id       bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY,
    read_ct      integer DEFAULT 0 NOT NULL,
    enqueued_at  timestamptz DEFAULT now() NOT NULL,
    last_read_at timestamptz,
    vt           timestamptz NOT NULL,
    message      jsonb,
    headers      jsonb
);
CREATE INDEX q_bench_vt_idx ON raw.q_bench (vt);
CREATE TABLE raw.a_bench (
    msg_id       bigint PRIMARY KEY,
    read_ct      integer DEFAULT 0 NOT NULL,
    enqueued_at  timestamptz DEFAULT now() NOT NULL,
    last_read_at timestamptz,
    archived_at  timestamptz DEFAULT now() NOT NULL,
    vt           timestamptz NOT NULL,
    message      jsonb,
    headers      jsonb
);
CREATE INDEX archived_at_idx_bench ON raw.a_bench (archived_at);
"""


def create_contenders(server: BenchServer, report: Report, *, durable: bool) -> Contenders:
    """Create the three databases; a contender that cannot be installed is reported and left out.

    Unless ``durable``, the databases get ``synchronous_commit = off``: the figures then show what each call
    costs in CPU and round trips rather than how fast (and how steadily) this machine's disk flushes.
    """
    found = Contenders()
    for name in DATABASES.values():
        server.create_database(name)
        if not durable:
            with server.connect() as conn:
                conn.execute(sql.SQL("ALTER DATABASE {} SET synchronous_commit = off").format(sql.Identifier(name)))
    url = server.url(DATABASES[HOWDAH])
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            install_all(conn)
        found.urls[HOWDAH] = url
    except Exception as exc:
        found.errors[HOWDAH] = f"{type(exc).__name__}: {exc}"
        report.note(f"Howdah's queue schema did not install, so Howdah is left out: {found.errors[HOWDAH]}")

    url = server.url(DATABASES[PGMQ])
    script, found.pgmq_version = pgmq_sql()
    with psycopg.connect(url, autocommit=True) as conn:
        with conn.transaction():
            conn.execute(script.encode())
        row = conn.execute("SELECT count(*) FROM pg_extension WHERE extname = 'pgmq'").fetchone()
        assert row is not None and row[0] == 0, "PGMQ's SQL must install outside CREATE EXTENSION"
    found.urls[PGMQ] = url

    url = server.url(DATABASES[RAW])
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(RAW_DDL.encode())
    found.urls[RAW] = url
    return found


# ------------------------------------------------------------------------------------------- SQL call style
Row = tuple[Any, ...]


class FunctionApi:
    """PGMQ's SQL functions called through psycopg (Howdah's schema and PGMQ's answer the same calls).

    Array parameters go in binary (``%b``): psycopg's text dumper for a list of JSON strings escapes every
    quote with a regex and costs ~3 ms per 100 messages, which would swamp what the server does.
    """

    SEND = "SELECT * FROM pgmq.send(%s::text, %s::jsonb)"
    SEND_BATCH = "SELECT * FROM pgmq.send_batch(%s::text, %b::jsonb[])"
    READ = "SELECT * FROM pgmq.read(%s::text, %s::integer, %s::integer)"
    DELETE = "SELECT pgmq.delete(%s::text, %s::bigint)"
    DELETE_BATCH = "SELECT * FROM pgmq.delete(%s::text, %b::bigint[])"
    ARCHIVE = "SELECT pgmq.archive(%s::text, %s::bigint)"

    def __init__(self, conn: psycopg.Connection[Any], queue: str = QUEUE) -> None:
        self.conn = conn
        self.queue = queue
        self.tables = [f"pgmq.q_{queue}", f"pgmq.a_{queue}"]

    def create(self) -> None:
        self.conn.execute("SELECT pgmq.create(%s::text)", (self.queue,))

    def send(self, body: str) -> int:
        return int(self.conn.execute(self.SEND, (self.queue, body), prepare=True).fetchall()[0][0])

    def send_batch(self, bodies: list[str]) -> list[Row]:
        return self.conn.execute(self.SEND_BATCH, (self.queue, bodies), prepare=True).fetchall()

    def read(self, qty: int) -> list[Row]:
        return self.conn.execute(self.READ, (self.queue, VT, qty), prepare=True).fetchall()

    def delete(self, msg_id: int) -> bool:
        return bool(self.conn.execute(self.DELETE, (self.queue, msg_id), prepare=True).fetchall()[0][0])

    def delete_batch(self, msg_ids: list[int]) -> list[Row]:
        return self.conn.execute(self.DELETE_BATCH, (self.queue, msg_ids), prepare=True).fetchall()

    def archive(self, msg_id: int) -> bool:
        return bool(self.conn.execute(self.ARCHIVE, (self.queue, msg_id), prepare=True).fetchall()[0][0])


class RawApi:
    """The floor: prepared statements on ``raw.q_bench`` doing exactly what each operation must do."""

    SEND = "INSERT INTO raw.q_bench (vt, message) VALUES (clock_timestamp(), %s::jsonb) RETURNING msg_id"
    SEND_BATCH = "INSERT INTO raw.q_bench (vt, message) SELECT clock_timestamp(), unnest(%b::jsonb[]) RETURNING msg_id"
    READ = (
        "WITH cte AS (SELECT msg_id FROM raw.q_bench WHERE vt <= clock_timestamp() "
        "ORDER BY msg_id LIMIT %s FOR UPDATE SKIP LOCKED) "
        "UPDATE raw.q_bench m SET last_read_at = clock_timestamp(), "
        "vt = clock_timestamp() + make_interval(secs => %s), read_ct = read_ct + 1 "
        "FROM cte WHERE m.msg_id = cte.msg_id "
        "RETURNING m.msg_id, m.read_ct, m.enqueued_at, m.last_read_at, m.vt, m.message, m.headers"
    )
    DELETE = "DELETE FROM raw.q_bench WHERE msg_id = %s RETURNING msg_id"
    DELETE_BATCH = "DELETE FROM raw.q_bench WHERE msg_id = ANY(%b::bigint[]) RETURNING msg_id"
    ARCHIVE = (
        "WITH archived AS (DELETE FROM raw.q_bench WHERE msg_id = %s "
        "RETURNING msg_id, vt, read_ct, enqueued_at, last_read_at, message, headers) "
        "INSERT INTO raw.a_bench (msg_id, vt, read_ct, enqueued_at, last_read_at, message, headers) "
        "SELECT msg_id, vt, read_ct, enqueued_at, last_read_at, message, headers FROM archived RETURNING msg_id"
    )

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn
        self.tables = ["raw.q_bench", "raw.a_bench"]

    def create(self) -> None:
        """The tables exist from the start (see ``RAW_DDL``)."""

    def send(self, body: str) -> int:
        return int(self.conn.execute(self.SEND, (body,), prepare=True).fetchall()[0][0])

    def send_batch(self, bodies: list[str]) -> list[Row]:
        return self.conn.execute(self.SEND_BATCH, (bodies,), prepare=True).fetchall()

    def read(self, qty: int) -> list[Row]:
        return self.conn.execute(self.READ, (qty, VT), prepare=True).fetchall()

    def delete(self, msg_id: int) -> bool:
        return bool(self.conn.execute(self.DELETE, (msg_id,), prepare=True).fetchall())

    def delete_batch(self, msg_ids: list[int]) -> list[Row]:
        return self.conn.execute(self.DELETE_BATCH, (msg_ids,), prepare=True).fetchall()

    def archive(self, msg_id: int) -> bool:
        return bool(self.conn.execute(self.ARCHIVE, (msg_id,), prepare=True).fetchall())


SqlApi = FunctionApi | RawApi


def sql_api(contender: str, conn: psycopg.Connection[Any]) -> SqlApi:
    return RawApi(conn) if contender == RAW else FunctionApi(conn)


def settle(conn: psycopg.Connection[Any], tables: list[str]) -> None:
    """Put every contender in the same starting state: its tables vacuumed, then a checkpoint."""
    for table in tables:
        exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()
        if exists and exists[0]:
            conn.execute(f"VACUUM (ANALYZE) {table}")
    with contextlib.suppress(psycopg.errors.InsufficientPrivilege):
        conn.execute("CHECKPOINT")
