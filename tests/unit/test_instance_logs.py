"""Reading new lines of a server log (only complete ones, resuming at an offset, from the start of a replaced
file, long lines cut, NUL bytes dropped) and printing them safely (a tenant's terminal escapes are escaped)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import typer

from howdah.cli.instance_logs import parse_since, printable
from howdah.providers._local_files import MAX_LOG_LINE, new_log_lines

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def test_complete_lines_only_and_resuming_at_the_offset(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    log.write_bytes(b"LOG:  one\nLOG:  two\nLOG:  thr")
    first = new_log_lines(log, 0, 1 << 20)
    assert first == [("LOG:  one", 10), ("LOG:  two", 20)]
    with open(log, "ab") as handle:
        handle.write(b"ee\n")
    assert new_log_lines(log, 20, 1 << 20) == [("LOG:  three", 32)]
    assert new_log_lines(log, 32, 1 << 20) == []


def test_a_replaced_file_is_read_from_its_start(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    log.write_bytes(b"LOG:  new\n")
    assert new_log_lines(log, 500, 1 << 20) == [("LOG:  new", 10)]
    assert new_log_lines(tmp_path / "missing.log", 0, 1 << 20) == []


def test_a_flood_is_read_in_bounded_chunks_and_long_lines_are_cut(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    log.write_bytes(b"a" * (MAX_LOG_LINE + 10) + b"\n" + b"LOG:  b\x00c\n")
    [(cut, end)] = new_log_lines(log, 0, MAX_LOG_LINE + 11)
    assert cut == "a" * MAX_LOG_LINE + " [cut]" and end == MAX_LOG_LINE + 11
    assert new_log_lines(log, end, 1 << 20) == [("LOG:  bc", end + 10)]
    chunks = new_log_lines(log, 0, 100)  # no newline within the bound: shipped cut at it, never stuck
    assert chunks == [("a" * 100, 100)]


def test_printed_lines_carry_no_terminal_escapes() -> None:
    line = {"server": "primary", "line": "LOG:  \x1b[2J\x1b]0;owned\x07 hello\ttab"}
    assert printable(line) == "LOG:  \\x1b[2J\\x1b]0;owned\\x07 hello\ttab"
    assert printable({"server": "replica-1", "line": "LOG:  x"}) == "[replica-1] LOG:  x"


def test_since_reads_spans_and_times() -> None:
    assert parse_since("10m", NOW) == NOW - timedelta(minutes=10)
    assert parse_since("2d", NOW) == NOW - timedelta(days=2)
    assert parse_since("2026-12-05 10:00:00+00", NOW) == datetime(2026, 12, 5, 10, tzinfo=UTC)
    for bad in ("soon", "2026-12-05 10:00:00"):
        with pytest.raises(typer.Exit):
            parse_since(bad, NOW)
