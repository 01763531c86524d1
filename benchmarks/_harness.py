"""Shared plumbing for Howdah's benchmarks: a Postgres server to run on, timing, statistics and result tables.

A benchmark builds :class:`ResultTable` objects and hands them to a :class:`Report`, which prints them as Rich
tables while the run goes on and as Markdown at the end (for the README). Every table is printed under a settings
line: the server's (Postgres version, fsync, synchronous_commit, cores) and the table's own (rounds, batch sizes,
transaction mode). Every benchmark runs on the server's durable defaults (``synchronous_commit=on``, ``fsync=on``)
unless its caller opts out with ``--no-sync-commit``. Nothing here passes or fails: a benchmark reports numbers and
the targets they are read against. Process plumbing (spawning, stopping, CPU and server counters) is in
:mod:`benchmarks._processes`.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import math
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from howdah.pg import EmbeddedPostgres, external_database_url

T = TypeVar("T")

# Progress and notes go to stderr so that stdout carries only the tables (and the Markdown at the end).
progress = Console(stderr=True, highlight=False)


# ----------------------------------------------------------------------------------------------- the server
class BenchServer:
    """One Postgres server for a whole benchmark run, holding one database per contender.

    With ``$HOWDAH_DATABASE_URL`` set, that server is used (its user must be allowed to CREATE DATABASE) and
    the databases created are dropped at the end; otherwise an embedded Postgres is started in a temporary
    folder, with ``settings`` added to its configuration, and removed at the end.

    ``durable`` (the default) keeps the server's durable defaults; ``durable=False`` (``--no-sync-commit``) turns
    ``synchronous_commit`` off on the embedded server and in every database created, and the settings line says so.
    """

    def __init__(self, settings: Mapping[str, str] | None = None, *, keep: bool = False, durable: bool = True) -> None:
        self._settings = dict(settings or {})
        self.durable = durable
        if not durable:
            self._settings["synchronous_commit"] = "off"
        self._keep = keep
        self._server: EmbeddedPostgres | None = None
        self._home: Path | None = None
        self._created: list[str] = []
        self.admin_url = ""

    @property
    def embedded(self) -> bool:
        return self._server is not None

    def __enter__(self) -> BenchServer:
        url = external_database_url()
        if url:
            self.admin_url = url
            return self
        self._home = Path(tempfile.mkdtemp(prefix="howdah-bench-"))
        os.chmod(self._home, 0o755)  # the server may run as another OS user (when we are root)
        self._server = EmbeddedPostgres(self._home, settings=self._settings)
        try:
            self._server.start()
        except BaseException:
            shutil.rmtree(self._home, ignore_errors=True)
            raise
        self.admin_url = self._server.url()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is None:
            if not self._keep:
                for name in self._created:
                    with contextlib.suppress(psycopg.Error):
                        self.drop_database(name)
            return
        self._server.stop(mode="fast")
        if self._home is not None and not self._keep:
            shutil.rmtree(self._home, ignore_errors=True)

    def url(self, dbname: str) -> str:
        return make_conninfo(self.admin_url, dbname=dbname)

    def connect(self, dbname: str | None = None, **kwargs: Any) -> psycopg.Connection[Any]:
        return psycopg.connect(self.url(dbname) if dbname else self.admin_url, autocommit=True, **kwargs)

    def drop_database(self, name: str) -> None:
        with self.connect() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def create_database(self, name: str) -> str:
        """A new, empty database ``name`` (an old one of that name is dropped first); returns its URL."""
        self.drop_database(name)
        with self.connect() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name)))
            if not self.durable:
                conn.execute(sql.SQL("ALTER DATABASE {} SET synchronous_commit = off").format(sql.Identifier(name)))
        self._created.append(name)
        return self.url(name)

    def settings_line(self) -> str:
        """The server half of every table's settings line, read from a benchmark database when one exists."""
        return server_settings(self.url(self._created[-1]) if self._created else self.admin_url)

    def facts(self) -> list[tuple[str, str]]:
        """What the numbers depend on: the server, the machine, the client libraries."""
        with self.connect() as conn:
            version = conn.execute("SHOW server_version").fetchone()
            settings = dict(
                conn.execute(
                    "SELECT name, setting FROM pg_settings WHERE name IN "
                    "('fsync', 'synchronous_commit', 'shared_buffers', 'max_connections')"
                ).fetchall()
            )
        cores = os.cpu_count() or 0
        usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
        where = "embedded (howdah.pg.EmbeddedPostgres), 127.0.0.1 TCP" if self.embedded else "$HOWDAH_DATABASE_URL"
        host = conninfo_to_dict(self.admin_url).get("host", "?")
        return [
            ("Postgres", f"{version[0] if version else '?'} — {where} (host {host})"),
            ("server settings", ", ".join(f"{k}={v}" for k, v in sorted(settings.items()))),
            ("CPU cores", f"{cores} ({usable} usable by this process; client and server share them)"),
            ("machine", f"{platform.machine()} {platform.system()} {platform.release()}"),
            ("Python", f"{platform.python_implementation()} {platform.python_version()}"),
            ("psycopg", psycopg.__version__),
        ]


def package_version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def server_settings(url: str) -> str:
    """What every figure depends on, in one line: Postgres version, fsync, synchronous_commit (as a session of
    ``url``'s database sees it), and the machine's cores."""
    with psycopg.connect(url, autocommit=True) as conn:
        values = [conn.execute(f"SHOW {name}").fetchone() for name in ("server_version", "fsync", "synchronous_commit")]
    version, fsync, commit = (str(row[0]) if row else "?" for row in values)
    cores = os.cpu_count() or 0
    return f"Postgres {version.split()[0]}, fsync={fsync}, synchronous_commit={commit}, {cores} cores"


def bench_parser(module: str, doc: str, quick: str, *, durability: bool = True) -> argparse.ArgumentParser:
    """The options every benchmark has: ``--quick``, ``--markdown PATH`` and the one opt-out of the durable
    defaults, ``--no-sync-commit`` (unless the benchmark cannot offer it)."""
    parser = argparse.ArgumentParser(prog=f"python -m benchmarks.{module}", description=doc.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help=quick)
    parser.add_argument("--markdown", type=Path, default=None, metavar="PATH", help="write the Markdown here")
    if durability:
        parser.add_argument(
            "--no-sync-commit",
            action="store_true",
            help="run with synchronous_commit=off (commits do not wait for their WAL flush); every table says so",
        )
    return parser


# ----------------------------------------------------------------------------------------------- timing
@dataclass(frozen=True)
class Rate:
    """``ops`` operations done in ``seconds`` of wall-clock time."""

    ops: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.ops / self.seconds if self.seconds > 0 else math.nan


def timed(ops: int, work: Callable[[], object]) -> Rate:
    """Run ``work`` once (it does ``ops`` operations) and return how fast it went."""
    start = time.perf_counter()
    work()
    return Rate(ops, time.perf_counter() - start)


async def atimed(ops: int, work: Callable[[], Any]) -> Rate:
    """:func:`timed` for a coroutine function."""
    start = time.perf_counter()
    await work()
    return Rate(ops, time.perf_counter() - start)


def run_for(seconds: float, step: Callable[[], int]) -> Rate:
    """Call ``step`` (which returns how many operations it did) until ``seconds`` have passed."""
    ops = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        ops += step()
        now = time.perf_counter()
        if now >= deadline:
            return Rate(ops, now - start)


@dataclass(frozen=True)
class Phase:
    """One step of a contender's round: ``work`` does ``ops`` operations; untimed when ``key`` is None."""

    key: str | None
    ops: int
    work: Callable[[], object]


def run_interleaved(
    plans: Mapping[str, Sequence[Phase]],
    samples: Samples,
    *,
    shift: int = 0,
    failed: dict[str, str] | None = None,
) -> None:
    """Run one round: phase i of every contender before phase i+1 of any, in an order rotated per phase.

    Contenders measured a fraction of a second apart meet the same machine, which keeps per-round ratios
    (:meth:`Samples.paired_ratio`) steady on a shared host. A contender whose phase raises is recorded in
    ``failed`` and skipped from then on.
    """
    failed = {} if failed is None else failed
    names = list(plans)
    for i in range(max((len(p) for p in plans.values()), default=0)):
        for name in rotated(names, shift + i):
            if name in failed or i >= len(plans[name]):
                continue
            phase = plans[name][i]
            try:
                if phase.key is None:
                    phase.work()
                else:
                    samples.add(name, phase.key, timed(phase.ops, phase.work))
            except Exception as exc:
                failed[name] = f"{type(exc).__name__}: {exc}".strip()


def turns(names: Sequence[str], rounds: int, shift: int = 0) -> Iterator[tuple[int, str]]:
    """(round, contender) for ``rounds`` rounds of whole runs, each round in an order rotated by one more: the
    contenders take turns run by run, so a slow spell of a shared machine hits them all alike."""
    for rnd in range(rounds):
        for name in rotated(names, shift + rnd):
            yield rnd, name


def rotated(items: Sequence[T], shift: int) -> list[T]:
    """``items`` starting at ``shift`` (mod len): run contenders in a different order every round."""
    if not items:
        return []
    shift %= len(items)
    return [*items[shift:], *items[:shift]]


@dataclass
class Samples:
    """Per-round rates keyed by (contender, operation); the reported figure is the median of the rounds."""

    rates: dict[tuple[str, str], list[float]] = field(default_factory=dict)

    def add(self, contender: str, operation: str, rate: Rate) -> None:
        self.rates.setdefault((contender, operation), []).append(rate.per_second)

    def median(self, contender: str, operation: str) -> float | None:
        values = self.rates.get((contender, operation))
        return statistics.median(values) if values else None

    def paired_ratio(self, numerator: str, denominator: str, operation: str) -> float | None:
        """The median over rounds of ``numerator / denominator`` measured in the same round.

        The two ran seconds apart, so a slow spell of a shared machine mostly cancels out: this is steadier than
        the ratio of the two medians.
        """
        top = self.rates.get((numerator, operation), [])
        bottom = self.rates.get((denominator, operation), [])
        ratios = [a / b for a, b in zip(top, bottom, strict=False) if b > 0]
        return statistics.median(ratios) if ratios and len(top) == len(bottom) else None

    def spread(self, contender: str, operation: str) -> float | None:
        """(max - min) / median of the rounds: how noisy this figure was."""
        values = self.rates.get((contender, operation))
        if not values or len(values) < 2:
            return None
        mid = statistics.median(values)
        return (max(values) - min(values)) / mid if mid else None


def percentile(values: Sequence[float], pct: float) -> float:
    """The ``pct`` percentile (0-100) of ``values``, linearly interpolated; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * pct / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator == 0 or math.isnan(denominator):
        return None
    return numerator / denominator


# ----------------------------------------------------------------------------------------------- formatting
def fmt_rate(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    return f"{value:,.0f}"


def fmt_ratio(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.2f}x"


def fmt_ms(seconds: float | None) -> str:
    if seconds is None or math.isnan(seconds):
        return "n/a"
    return f"{seconds * 1000:.1f}"


def fmt_bytes(size: float | None) -> str:
    if size is None:
        return "n/a"
    for unit in ("B", "kB", "MB", "GB"):
        if abs(size) < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"  # pragma: no cover - the loop always returns


# ----------------------------------------------------------------------------------------------- tables
@dataclass
class ResultTable:
    """One result table: a title, column headers, rows of already-formatted cells and notes under it."""

    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    settings: str = ""  # this table's own settings (rounds, sizes, transaction mode), after the server's
    server: str = ""  # the server's settings line, filled in by Report.add

    def settings_line(self) -> str:
        return "Settings: " + "; ".join(part for part in (self.server, self.settings) if part)

    def add_row(self, *cells: str) -> None:
        if len(cells) != len(self.columns):
            raise ValueError(f"{self.title}: a row has {len(cells)} cells for {len(self.columns)} columns")
        self.rows.append(list(cells))

    def rich(self) -> Table:
        table = Table(
            title=f"{escape(self.title)}\n[dim]{escape(self.settings_line())}[/]",
            title_justify="left",
            caption_justify="left",
        )
        for i, name in enumerate(self.columns):
            table.add_column(name, justify="left" if i == 0 else "right")
        for row in self.rows:
            table.add_row(*row)
        if self.notes:
            table.caption = "\n".join(self.notes)
        return table

    def markdown(self) -> str:
        def cell(text: str) -> str:
            return text.replace("|", "\\|")

        lines = [f"**{self.title}**", "", f"_{cell(self.settings_line())}_", ""]
        lines.append("| " + " | ".join(cell(c) for c in self.columns) + " |")
        lines.append("|" + "|".join(":---" if i == 0 else "---:" for i in range(len(self.columns))) + "|")
        lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in self.rows]
        if self.notes:
            lines.append("")
            lines += [f"{note}  " for note in self.notes]
        return "\n".join(lines)


class Report:
    """A benchmark's facts and tables: printed with Rich as they come, rendered as Markdown at the end."""

    def __init__(self, title: str, console: Console | None = None) -> None:
        self.title = title
        self.facts: list[tuple[str, str]] = []
        self.tables: list[ResultTable] = []
        self.notes: list[str] = []
        self.settings = ""  # the server's settings line (server_settings), printed above every table
        self.console = console or Console(highlight=False)
        if not self.console.is_terminal:
            self.console.width = 180  # piped into a file: do not wrap the tables at 80 columns

    def set_facts(self, facts: list[tuple[str, str]]) -> None:
        self.facts = facts
        facts_table = Table(title=self.title, title_justify="left", show_header=False, box=None)
        facts_table.add_column(style="bold")
        facts_table.add_column()
        for name, value in facts:
            facts_table.add_row(name, value)
        self.console.print(facts_table)
        self.console.print()

    def add(self, table: ResultTable) -> None:
        if not self.settings:
            raise ValueError(f"{table.title}: set Report.settings (the server's settings line) before adding tables")
        table.server = table.server or self.settings
        self.tables.append(table)
        self.console.print(table.rich())
        self.console.print()

    def note(self, text: str) -> None:
        self.notes.append(text)
        self.console.print(f"[yellow]note:[/] {text}")

    def markdown(self) -> str:
        parts = [f"### {self.title}", ""]
        parts += [f"- {name}: {value}" for name, value in self.facts]
        for table in self.tables:
            parts += ["", table.markdown()]
        if self.notes:
            parts += ["", *[f"> {note}" for note in self.notes]]
        return "\n".join(parts) + "\n"

    def finish(self, path: Path | None) -> None:
        """The Markdown (to ``path``, or after the tables), and the end of the run."""
        self.write_markdown(path)
        progress.print("[dim]done[/]")

    def write_markdown(self, path: Path | None) -> None:
        text = self.markdown()
        if path is None:
            self.console.rule("Markdown")
            sys.stdout.write(text)
            sys.stdout.flush()
        else:
            path.write_text(text, encoding="utf-8")
            progress.print(f"Markdown written to {path}")


@contextlib.contextmanager
def step(what: str) -> Iterator[None]:
    """Show ``what`` on stderr while it runs, and how long it took."""
    start = time.perf_counter()
    with progress.status(what):
        yield
    progress.print(f"[dim]{what} … {time.perf_counter() - start:.1f}s[/]")
