"""The control plane's named queries: each one the code asks for exists, each one is used, and each one is
accepted by Postgres against the migrated control schema (a typo or a schema drift fails here, not in use)."""

from __future__ import annotations

import re
from pathlib import Path

import psycopg
import pytest

from howdah.control.queries import QUERIES

SOURCE = Path(__file__).resolve().parents[3] / "src" / "howdah"
_LOOKUP = re.compile(r"\bQ(?:UERIES)?\[([^\]]+)\]")
_NAME = re.compile(r'"([a-z_][a-z0-9_]*)"')
_PLACEHOLDER = re.compile(r"%\((\w+)\)s|%s")


def names_in_code() -> set[str]:
    """The names looked up by the control plane's modules and by any other module that imports its queries (the
    CLI's ``howdah up``, ``howdah down``)."""
    names: set[str] = set()
    for path in SOURCE.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        if (SOURCE / "control") in path.parents or "from howdah.control.queries import QUERIES" in text:
            for lookup in _LOOKUP.findall(text):
                names.update(_NAME.findall(lookup))
    return names


def test_every_query_the_code_asks_for_exists_and_every_query_is_used() -> None:
    used = names_in_code()
    assert used, "no query lookups found: the pattern no longer matches the code"
    assert sorted(used - set(QUERIES)) == []
    assert sorted(set(QUERIES) - used) == []


def as_prepared(text: str) -> str:
    """psycopg's placeholders as Postgres's ``$n`` (a name used twice is one parameter, as psycopg binds it)."""
    numbers: dict[str, int] = {}

    def number(match: re.Match[str]) -> str:
        key = match[1] or f"#{len(numbers)}"
        numbers.setdefault(key, len(numbers) + 1)
        return f"${numbers[key]}"

    return _PLACEHOLDER.sub(number, text)


@pytest.mark.parametrize("name", sorted(QUERIES))
def test_each_query_prepares_against_the_control_schema(
    conn: psycopg.Connection[tuple[object, ...]], name: str
) -> None:
    with conn.transaction(force_rollback=True):
        conn.execute(f"PREPARE q AS {as_prepared(QUERIES.text(name))}")
        row = conn.execute("SELECT count(*) FROM pg_prepared_statements WHERE name = 'q'").fetchone()
        assert row == (1,)
    conn.execute("DEALLOCATE ALL")
