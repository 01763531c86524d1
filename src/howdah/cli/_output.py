"""One way to print what a command found: a table for people, or JSON or YAML for scripts (``-o/--output``), with
the API's field names. Data goes to stdout; messages and progress go to stderr (``err_console``)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Any

import typer
import yaml
from rich.table import Table

from howdah.cli._common import console


class Format(StrEnum):
    table = "table"
    json = "json"
    yaml = "yaml"


OutputOption = Annotated[
    Format, typer.Option("-o", "--output", help="table for people; json or yaml (the API's fields) for scripts.")
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Same as -o json.")]


def chosen(output: Format, as_json: bool) -> Format:
    """``--json`` is ``-o json``."""
    return Format.json if as_json else output


@dataclasses.dataclass(frozen=True)
class Column:
    """A table column: its header, the cell of a record, and whether its text may fold onto more lines when the
    table is too wide (a name, a message); the other columns are never wrapped nor cut (ids must be copied whole)."""

    header: str
    cell: Callable[[Mapping[str, Any]], str]
    fold: bool = False


def records_table(records: Sequence[Mapping[str, Any]], columns: Sequence[Column]) -> Table:
    """Records as a borderless table (headers, then one line per record): the folding columns give way."""
    table = Table(box=None, pad_edge=False, padding=(0, 2, 0, 0), header_style="bold")
    for column in columns:
        widest = max([len(column.header), *(len(column.cell(record)) for record in records)])
        if column.fold:
            table.add_column(column.header, overflow="fold", min_width=len(column.header))
        else:
            table.add_column(column.header, no_wrap=True, min_width=widest)
    for record in records:
        table.add_row(*(column.cell(record) for column in columns))
    return table


def plain(data: Any) -> Any:
    """``data`` as JSON's types (dataclasses as objects, times as ISO 8601 text)."""
    return json.loads(json.dumps(data, default=_jsonable))


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def emit(data: Any, output: Format, table: Callable[[], Any]) -> None:
    """Print ``data`` (a list of records or one record) as JSON or YAML on stdout, or as ``table()`` renders it."""
    if output is Format.json:
        typer.echo(json.dumps(plain(data), indent=2))
    elif output is Format.yaml:
        typer.echo(yaml.safe_dump(plain(data), sort_keys=False, allow_unicode=True), nl=False)
    else:
        console.print(table())
