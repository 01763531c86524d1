"""The benchmark harness states the settings above every table it prints."""

from __future__ import annotations

import io

import pytest
from benchmarks._harness import Report, ResultTable
from rich.console import Console


def _report() -> Report:
    return Report("bench", Console(file=io.StringIO(), width=200))


def test_every_table_carries_the_server_and_its_own_settings_line() -> None:
    report = _report()
    report.settings = "Postgres 18.1, fsync=on, synchronous_commit=on, 2 cores"
    table = ResultTable("T", ["case", "rate"], settings="3 rounds, batches of 100, autocommit")
    table.add_row("a", "1")
    report.add(table)

    markdown = report.markdown()
    title, settings = markdown.index("**T**"), markdown.index("_Settings: Postgres 18.1")
    assert title < settings < markdown.index("| case | rate |")
    assert "synchronous_commit=on, 2 cores; 3 rounds, batches of 100, autocommit_" in markdown


def test_a_table_without_the_server_settings_is_refused() -> None:
    with pytest.raises(ValueError, match="settings"):
        _report().add(ResultTable("T", ["case"]))


def test_a_table_may_state_its_own_server_line() -> None:
    report = _report()
    report.settings = "Postgres 18.1, fsync=on, synchronous_commit=on, 2 cores"
    report.add(ResultTable("T", ["case"], server="Postgres 18.1, fsync=on, synchronous_commit=off, 2 cores"))
    assert "synchronous_commit=off" in report.markdown()
    assert "synchronous_commit=on" not in report.markdown()
