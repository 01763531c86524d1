"""The queue benchmark's contenders: their databases, and one SQL call style to drive each of them.

- ``howdah``: Howdah's ``pgmq`` schema, installed by :func:`howdah.schema.install_all`.
- ``pgmq``: PGMQ's own SQL (the ``sql/pgmq.sql`` shipped in the ``pgmq`` wheel), installed as plain SQL.
- ``raw``: the floor — the very statements Howdah's SQL functions run (its per-queue "kernels", read from the
  installed schema's ``pgmq._howdah_kernels()``), prepared by psycopg and executed directly on a queue's own
  tables, without the function layer. The floor's database holds Howdah's schema and a queue made by
  ``pgmq.create``, so the tables and indexes are the very ones Howdah uses.

Every database keeps the server's durable defaults unless the run opted out (``--no-sync-commit``).
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import psycopg

from benchmarks._harness import BenchServer, Report
from howdah.schema import install_all

HOWDAH, PGMQ, RAW = "howdah", "pgmq", "raw"
LABELS = {HOWDAH: "Howdah", PGMQ: "PGMQ 1.13 SQL", RAW: "floor (Howdah's statements)"}
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


def create_contenders(server: BenchServer, report: Report) -> Contenders:
    """Create the three databases; a contender that cannot be installed is reported and left out."""
    found = Contenders()
    for name in DATABASES.values():
        server.create_database(name)
    for contender in (HOWDAH, RAW):  # the floor runs on Howdah's own tables, so it needs Howdah's schema too
        url = server.url(DATABASES[contender])
        try:
            with psycopg.connect(url, autocommit=True) as conn:
                install_all(conn)
                if contender == RAW:
                    conn.execute("SELECT pgmq.create(%s::text)", (QUEUE,))
            found.urls[contender] = url
        except Exception as exc:
            found.errors[contender] = f"{type(exc).__name__}: {exc}"
            report.note(f"Howdah's queue schema did not install, so {LABELS[contender]} is left out: {exc}")

    url = server.url(DATABASES[PGMQ])
    script, found.pgmq_version = pgmq_sql()
    with psycopg.connect(url, autocommit=True) as conn:
        with conn.transaction():
            conn.execute(script.encode())
        row = conn.execute("SELECT count(*) FROM pg_extension WHERE extname = 'pgmq'").fetchone()
        assert row is not None and row[0] == 0, "PGMQ's SQL must install outside CREATE EXTENSION"
    found.urls[PGMQ] = url
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


def kernel_statements(conn: psycopg.Connection[Any], queue: str = QUEUE) -> dict[str, str]:
    """Howdah's kernel statements for ``queue``, as psycopg queries: the text its SQL functions run, on the
    queue's own tables, with the kernel's parameters as named placeholders (arrays bound in binary) and its
    timestamp argument as ``now()`` — the statement's start in autocommit, where the function passes
    ``clock_timestamp()`` taken as it starts. ``read_one`` is ``read`` with ``LIMIT 1``, as the function runs it
    for one message."""
    rows = conn.execute(
        "SELECT k.name, k.params, k.statement, r.q_rel, r.a_rel "
        "FROM pgmq._howdah_kernels() AS k, pgmq._howdah_resolve(%s::text) AS r",
        (queue,),
    ).fetchall()
    found: dict[str, str] = {}
    for name, params, statement, q_rel, a_rel in rows:
        types = [p.strip().split(" ", 1)[1] for p in params.split(",")]

        def placeholder(match: re.Match[str], types: list[str] = types) -> str:
            n = int(match.group(1))
            kind = types[n - 1]
            if kind == "timestamp with time zone":
                return "now()"
            return f"%(p{n}){'b' if kind.endswith('[]') else 's'}::{kind}"

        text = statement.replace("%1$s", q_rel).replace("%2$s", a_rel).replace("%%", "%")
        found[name.removeprefix("_howdah_k_")] = re.sub(r"\$(\d+)", placeholder, text.replace("%", "%%"))
    found["read_one"] = found["read"].replace("LIMIT %(p3)s::integer", "LIMIT 1")
    return found


class RawApi:
    """The floor: Howdah's own statements (:func:`kernel_statements`), prepared, without the function layer."""

    def __init__(self, conn: psycopg.Connection[Any], queue: str = QUEUE) -> None:
        self.conn = conn
        self.sql = kernel_statements(conn, queue)
        self.tables = [f"pgmq.q_{queue}", f"pgmq.a_{queue}"]

    def create(self) -> None:
        """The queue exists from the start (see :func:`create_contenders`)."""

    def _run(self, name: str, **params: Any) -> psycopg.Cursor[Any]:
        return self.conn.execute(self.sql[name], params, prepare=True)

    def send(self, body: str) -> int:
        return int(self._run("send_one", p2=body, p3=None).fetchall()[0][0])

    def send_batch(self, bodies: list[str]) -> list[Row]:
        return self._run("send_many", p2=bodies, p3=None).fetchall()

    def read(self, qty: int) -> list[Row]:
        if qty == 1:
            return self._run("read_one", p2=VT).fetchall()
        return self._run("read", p2=VT, p3=qty).fetchall()

    def delete(self, msg_id: int) -> bool:
        return self._run("delete_one", p2=msg_id).rowcount > 0

    def delete_batch(self, msg_ids: list[int]) -> list[Row]:
        return self._run("delete_many", p2=msg_ids).fetchall()

    def archive(self, msg_id: int) -> bool:
        return self._run("archive_one", p2=msg_id).rowcount > 0


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
