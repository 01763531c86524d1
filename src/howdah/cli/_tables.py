"""The tables the CLI prints for people: which fields of the API's records, shortened and made readable how.
Pure (records in, a Rich table out), so their 80-column rendering is checked against golden files."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from rich.table import Table

from howdah.cli._output import Column, records_table
from howdah.cli._refs import human_age, human_size, short_ids


def _short(records: Sequence[Mapping[str, Any]], field: str = "id") -> Column:
    shortest = short_ids([str(r[field]) for r in records])
    return Column(field.upper(), lambda r: shortest[str(r[field])])


def _age(field: str, now: datetime, header: str = "AGE") -> Column:
    return Column(header, lambda r: human_age(r.get(field), now))


def _size(spec: Mapping[str, Any]) -> str:
    return f"{spec['cpu']}/{spec['memory']}/{spec['storage']}"


def instances_table(instances: Sequence[Mapping[str, Any]], now: datetime) -> Table:
    """``instance list``: ids shortened to their shortest unique prefix among these rows."""
    return records_table(instances, [
        _short(instances),
        Column("NAME", lambda r: str(r["name"]), fold=True),
        Column("STATE", lambda r: str(r["state"])),
        Column("STACK", lambda r: str(r["desired_spec"]["stack"])),
        Column("CPU/MEM/DISK", lambda r: _size(r["desired_spec"])),
        Column("PLANE", lambda r: str(r["data_plane"])),
        _age("created_at", now),
    ])  # fmt: skip


def backups_table(backups: Sequence[Mapping[str, Any]], now: datetime) -> Table:
    """``instance backups``: ids as ``restore`` accepts them, sizes in binary units."""
    return records_table(backups, [
        _short(backups),
        Column("STATUS", lambda r: str(r["status"])),
        Column("SIZE", lambda r: human_size(r.get("size_bytes"))),
        _age("created_at", now, "CREATED"),
        Column("ERROR", lambda r: str(r.get("error") or ""), fold=True),
    ])  # fmt: skip


def tokens_table(tokens: Sequence[Mapping[str, Any]], now: datetime) -> Table:
    """``token list``: what ``token revoke`` takes, and what tells tokens apart (never the secret)."""
    return records_table(tokens, [
        _short(tokens),
        Column("NAME", lambda r: str(r["name"] or "-"), fold=True),
        Column("ROLE", lambda r: str(r["role"])),
        Column("PREFIX", lambda r: str(r["prefix"])),
        _age("created_at", now, "CREATED"),
        _age("last_used_at", now, "LAST USED"),
    ])  # fmt: skip


def planes_table(planes: Sequence[Mapping[str, Any]], now: datetime) -> Table:
    """``dataplane list``."""
    return records_table(planes, [
        Column("NAME", lambda r: str(r["name"])),
        Column("DRAINING", lambda r: "yes" if r["draining"] else "no"),
        _age("last_seen_at", now, "LAST SEEN"),
        _age("created_at", now),
        Column("DESCRIPTION", lambda r: str(r["description"] or ""), fold=True),
    ])  # fmt: skip


def fields_table(rows: Sequence[tuple[str, str]], title: str | None = None) -> Table:
    """One record as field/value lines (``get``, ``show``)."""
    table = Table(show_header=False, title=title)
    for key, value in rows:
        table.add_row(key, value)
    return table
