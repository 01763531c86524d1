"""Named SQL queries kept in ``.sql`` files next to the code that runs them, loaded once.

A file holds any number of queries, each introduced by a comment line ``-- name: some_name``; the comment
lines just below it document the query, and the statement runs to the next ``-- name:`` line::

    -- name: instance_by_id
    -- One instance of an org, or nothing.
    SELECT * FROM control.instances WHERE org_id = %(org_id)s AND id = %(id)s;

:func:`load_queries` reads every ``*.sql`` file of a package's ``sql/queries`` folder, checks that no name is
defined twice and that no query is empty, and returns a :class:`Queries` mapping that raises a clear error for
a name it does not hold. Placeholders are psycopg's (``%s`` or ``%(name)s``); identifiers are never built
into these texts.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from importlib import resources

from psycopg import sql

from howdah.errors import HowdahError

__all__ = ["Queries", "QueryError", "load_queries", "parse_queries"]

_NAME = re.compile(r"^--\s*name:\s*([a-z_][a-z0-9_]*)\s*$")


class QueryError(HowdahError):
    """A query file is malformed, or code asked for a query no file defines."""


class Queries(Mapping[str, sql.SQL]):
    """Named queries, read-only. ``queries["name"]`` is a :class:`psycopg.sql.SQL` ready to execute."""

    def __init__(self, source: str, texts: Mapping[str, str]) -> None:
        self._source = source
        # The texts come from files shipped inside the wheel, never from input: as literal as source code.
        self._queries = {name: sql.SQL(text) for name, text in texts.items()}
        self._texts = dict(texts)

    def __getitem__(self, name: str) -> sql.SQL:
        try:
            return self._queries[name]
        except KeyError:
            raise QueryError(f"no query named {name!r} in {self._source}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._queries)

    def __len__(self) -> int:
        return len(self._queries)

    def text(self, name: str) -> str:
        """The statement as written in its file (for messages and tests)."""
        self[name]
        return self._texts[name]


def parse_queries(text: str, source: str = "<string>") -> dict[str, str]:
    """Split one file's text into ``{name: statement}`` (the comment lines under a name are dropped)."""
    found: dict[str, str] = {}
    name: str | None = None
    lines: list[str] = []

    def close() -> None:
        if name is None:
            if any(line.strip() and not line.lstrip().startswith("--") for line in lines):
                raise QueryError(f"{source}: SQL before the first '-- name:' line")
            return
        body = "\n".join(lines).strip().rstrip(";").strip()
        if not body:
            raise QueryError(f"{source}: query {name!r} is empty")
        found[name] = body

    for line in text.splitlines():
        match = _NAME.match(line.strip())
        if match:
            close()
            name, lines = match[1], []
            if name in found:
                raise QueryError(f"{source}: query {name!r} is defined twice")
        elif not (not lines and line.lstrip().startswith("--")):  # comments right under the name document it
            lines.append(line)
    close()
    return found


def load_queries(package: str) -> Queries:
    """Every query of ``<package>/sql/queries/*.sql`` (names unique across the files)."""
    folder = resources.files(package).joinpath("sql", "queries")
    texts: dict[str, str] = {}
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".sql"):
            continue
        source = f"{package}/sql/queries/{entry.name}"
        for name, body in parse_queries(entry.read_text(encoding="utf-8"), source).items():
            if name in texts:
                raise QueryError(f"{source}: query {name!r} is also defined in another file of {package}")
            texts[name] = body
    if not texts:
        raise QueryError(f"{package} ships no queries in sql/queries")
    return Queries(package, texts)
