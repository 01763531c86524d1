"""Results of earlier nodes in a SQL node's text: ``$name``, ``$name.col``, ``$name?``, ``$name.col?``, ``$name.*``
(pure, no I/O).

A node bound with ``|=> 'name'`` (``df.as``) leaves its result under that name. A SQL node's result is
``{"rows": [{column: value, …}, …], "row_count": n}``; other nodes' results are any JSON. In a SQL node's text:

- ``$name``: the first column of the first row, as a SQL literal (a string quoted, a number or boolean bare, JSON
  objects and arrays as quoted JSON text); a result that has no rows (not a SQL node's) is its whole JSON text,
  quoted. No row, or a NULL there, is an error, unless written ``$name?``, which gives ``NULL``.
- ``$name.col``: that column of the first row (``$name.col?``: NULL instead of an error). A column the row does
  not have is left as written, so Postgres reports it.
- ``$name.*``: every row, as ``(VALUES (…), …) AS "name"("col", …)`` for use in ``FROM``; at most
  :data:`MAX_ROWS` rows.

Each ``$`` takes the longest name bound so far that the text continues with; a ``$`` followed by no bound name
is left as it is (``$1`` in a string literal, say), so Postgres sees it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from howdah.errors import HowdahError

MAX_ROWS = 10_000
_COLUMN = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*|\*)")


class BindingError(HowdahError):
    """A ``$name`` reference that cannot be substituted (no row, NULL, too many rows): the node fails."""


def literal(value: Any) -> str:
    """``value`` (JSON) as a SQL literal."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    return "'" + text.replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _rows(result: Any) -> list[Any] | None:
    """A SQL node's rows, or None for any other result."""
    rows = result.get("rows") if isinstance(result, dict) else None
    return rows if isinstance(rows, list) else None


def _first_row(name: str, result: Any, optional: bool) -> dict[str, Any] | None:
    rows = _rows(result)
    if rows is None:
        return None
    if not rows:
        if optional:
            return {}
        raise BindingError(f"${name} has no rows — query returned zero results")
    first = rows[0]
    return first if isinstance(first, dict) else {}


def _row_set(name: str, result: Any) -> str:
    rows = _rows(result)
    if rows is None:
        raise BindingError(f"${name}.* needs the rows of a SQL node's result")
    if len(rows) > MAX_ROWS:
        raise BindingError(
            f"${name}.* — result has {len(rows)} rows, exceeding the maximum of {MAX_ROWS} for row-set expansion"
        )
    if not rows:
        return f"(SELECT NULL WHERE false) AS {_ident(name)}"
    columns = list(rows[0])
    values = ", ".join(
        "(" + ", ".join(literal(row.get(c)) + ("::text" if isinstance(row.get(c), str) else "") for c in columns) + ")"
        for row in rows
    )
    return f"(VALUES {values}) AS {_ident(name)}({', '.join(_ident(c) for c in columns)})"


_VARIABLE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def substitute_variables(text: str, values: Mapping[str, str | None]) -> str:
    """``text`` with each ``{name}`` of a known variable replaced by its value as it is (not quoted); an unknown
    ``{x}`` is left as written."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            return match.group(0)
        return values[name] or ""

    return _VARIABLE.sub(value, text)


def _raw(value: Any) -> str:
    """``value`` as text for a non-SQL place (a workflow's JSON args): strings as they are, the rest as JSON."""
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def substitute(text: str, results: Mapping[str, Any], *, raw: bool = False) -> str:
    """``text`` with every reference to a bound result replaced (see the module docstring); ``raw``: values as
    they are (strings unquoted, the rest as JSON, ``$name.*`` the rows as a JSON array), for text that is no
    SQL."""
    if "$" not in text or not results:
        return text
    names = sorted(results, key=len, reverse=True)
    out: list[str] = []
    i = 0
    while i < len(text):
        if text[i] != "$":
            out.append(text[i])
            i += 1
            continue
        name = next((n for n in names if text.startswith(n, i + 1)), None)
        end = i + 1 + len(name) if name is not None else i + 1
        if name is None or (end < len(text) and (text[end].isalnum() or text[end] == "_")):
            out.append("$")
            i += 1
            continue
        column = _COLUMN.match(text, end)
        after = column.end() if column else end
        optional = text.startswith("?", after)
        replaced = _reference(name, column.group(1) if column else None, optional, results[name], raw)
        if replaced is None:  # a column the row does not have: left for Postgres to report
            out.append(text[i:after])
            i = after
            continue
        out.append(replaced)
        i = after + (1 if optional else 0)
    return "".join(out)


_MISSING = object()  # a column the row does not have


def _reference(name: str, column: str | None, optional: bool, result: Any, raw: bool = False) -> str | None:
    """The text for one reference: a SQL literal (``raw``: the value as it is), or None to leave it as written."""
    if column == "*":
        return _raw(result.get("rows") if isinstance(result, dict) else result) if raw else _row_set(name, result)
    value = _lookup(name, column, optional, result)
    if value is _MISSING:
        return None
    if raw:
        return _raw(value)
    if column is None and _rows(result) is None:  # a whole result that is no SQL node's: its JSON, quoted
        return literal(json.dumps(value, separators=(",", ":")))
    return literal(value)


def _lookup(name: str, column: str | None, optional: bool, result: Any) -> Any:
    """The value ``$name[.column][?]`` stands for, checked (no row, NULL); :data:`_MISSING` for a column the row
    does not have."""
    row = _first_row(name, result, optional)
    if row is None:  # not a SQL node's result
        if column is None:
            return result
        if not isinstance(result, dict) or column not in result:
            return _MISSING
        return _checked(f"${name}.{column}", result[column], optional)
    if not row:  # optional and no rows
        return None
    if column is None:
        return _checked(f"${name}", next(iter(row.values()), None), optional, "first column of first row is NULL")
    if column not in row:
        return _MISSING
    return _checked(f"${name}.{column}", row[column], optional)


def _checked(what: str, value: Any, optional: bool, why: str = "NULL") -> Any:
    """``value``, unless it is NULL where a value is required."""
    if value is None and not optional:
        raise BindingError(f"{what} is NULL" + (f" — {why}" if why != "NULL" else ""))
    return value
