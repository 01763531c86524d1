"""``howdah instance status``: one instance's condition, in the manner of ``kubectl cnpg status``. Pure: the API's
records in, a status record (for ``-o json|yaml``) and a Rich rendering of it (80 columns, golden-tested) out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from howdah.cli._output import Column, records_table
from howdah.cli._refs import human_age, human_size, short_ids
from howdah.control.config_engines import Resources
from howdah.control.spec import InstanceSpec
from howdah.control.stacks import StackError, get_stack

__all__ = ["status_record", "status_view"]


def _stack_defaults(name: str, spec: Mapping[str, Any]) -> tuple[dict[str, str], list[str]]:
    """The settings and extensions the instance's stack gives an instance of its size (empty when the stored
    spec no longer reads as a spec)."""
    try:
        parsed = InstanceSpec.model_validate({"name": name, **spec})
        stack = get_stack(parsed.stack)
    except (ValidationError, StackError, ValueError):
        return {}, []
    return dict(stack.settings(Resources.of(parsed))), list(stack.extensions)


def status_record(item: Mapping[str, Any], backups: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """What ``instance status`` shows, as one record with the API's field names where it has them."""
    spec, status = item["desired_spec"], item.get("status") or {}
    defaults, stack_extensions = _stack_defaults(item["name"], spec)
    configs: Mapping[str, str] = spec.get("postgres_configs") or {}
    own = {e["name"]: bool(e.get("enabled", True)) for e in spec.get("extensions") or []}
    completed = [b for b in backups if b["status"] == "completed"]
    last = max(completed, key=lambda b: str(b["created_at"] or ""), default=None)
    settings = {**defaults, **configs}
    storage = status.get("size_bytes")
    return {
        "id": item["id"], "name": item["name"], "state": item["state"], "data_plane": item["data_plane"],
        "work_in_flight": bool(item.get("has_active_work")), "last_error": item.get("last_error"),
        "updated_at": item.get("updated_at"),
        "stack": spec["stack"], "cpu": spec["cpu"], "memory": spec["memory"], "storage": spec["storage"],
        "primary": {
            "running": status.get("running"), "accepting_connections": status.get("accepting_connections"),
            "server_version": status.get("server_version"), "port": status.get("port"),
            "postmaster_start_time": status.get("postmaster_start_time"),
        },
        "replicas": [dict(r) for r in status.get("replicas") or []],
        "pending_restart": status.get("pending_restart"),
        "settings_changed": {name: {"value": value, "stack_default": defaults.get(name)}
                             for name, value in sorted(configs.items())},
        "extensions": {"stack": [n for n in stack_extensions if own.get(n, True)],
                       "enabled": sorted(n for n, on in own.items() if on and n not in stack_extensions),
                       "disabled": sorted(n for n, on in own.items() if not on)},
        "max_connections": settings.get("max_connections"),
        "disk": {"used_bytes": storage, "storage": spec["storage"]},
        "last_backup": dict(last) if last else None,
        "backups": {"completed": len(completed), "failed": sum(b["status"] == "failed" for b in backups),
                    "pending": sum(b["status"] == "pending" for b in backups)},
        "archiving": status.get("archiving"), "recovery_window": status.get("recovery_window"),
        "last_archived_at": status.get("last_archived_at"), "last_archive_error": status.get("last_archive_error"),
    }  # fmt: skip


def _facts(rows: Sequence[tuple[str, str]]) -> Table:
    table = Table(box=None, show_header=False, pad_edge=False, padding=(0, 2, 0, 0))
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for key, value in rows:
        table.add_row(key, value)
    return table


def _yes(value: bool | None, yes: str = "yes", no: str = "no") -> str:
    return "-" if value is None else (yes if value else no)


def _lag(replica: Mapping[str, Any]) -> str:
    size, seconds = replica.get("lag_bytes"), replica.get("replay_lag_seconds")
    if size is None:
        return "-"
    return human_size(int(size)) + (f" ({float(seconds):.1f}s)" if seconds is not None else "")


def _servers(record: Mapping[str, Any], now: datetime) -> Table:
    primary = record["primary"]
    since = human_age(primary["postmaster_start_time"], now)
    rows: list[dict[str, str]] = [{
        "name": "primary", "role": "primary",
        "state": _yes(primary["running"], "running", "not running")
        + (", accepting" if primary["accepting_connections"] else ""),
        "port": str(primary["port"] or "-"), "lag": "-", "since": since,
    }]  # fmt: skip
    for replica in record["replicas"]:
        running = replica.get("running", replica.get("ready"))
        state = " ".join(s for s in (_yes(running, "running", "not running"), replica.get("state") or "") if s)
        rows.append({"name": str(replica.get("name", "replica")), "role": str(replica.get("role") or "replica"),
                     "state": state, "port": str(replica.get("port") or "-"), "lag": _lag(replica),
                     "since": "-"})  # fmt: skip
    return records_table(rows, [
        Column("SERVER", lambda r: r["name"]), Column("ROLE", lambda r: r["role"]),
        Column("STATE", lambda r: r["state"], fold=True), Column("PORT", lambda r: r["port"]),
        Column("LAG", lambda r: r["lag"]), Column("STARTED", lambda r: r["since"]),
    ])  # fmt: skip


def _settings(record: Mapping[str, Any]) -> Table:
    rows = [{"name": name, **change} for name, change in record["settings_changed"].items()]
    return records_table(rows, [
        Column("SETTING", lambda r: str(r["name"])), Column("VALUE", lambda r: str(r["value"]), fold=True),
        Column("STACK DEFAULT", lambda r: "-" if r["stack_default"] is None else str(r["stack_default"]), fold=True),
    ])  # fmt: skip


def _backup_rows(record: Mapping[str, Any], now: datetime, backup_ids: Sequence[str]) -> list[tuple[str, str]]:
    last, counts = record["last_backup"], record["backups"]
    shortest = short_ids(list(backup_ids)) if backup_ids else {}
    if last:
        when = human_age(last["created_at"], now)
        shown = f"{when}, {human_size(last.get('size_bytes'))} ({shortest.get(last['id'], last['id'])})"
    else:
        shown = "none yet"
    rows = [
        ("last backup", shown),
        ("backups", f"{counts['completed']} completed, {counts['failed']} failed, {counts['pending']} pending"),
    ]
    span = record["recovery_window"]
    if span:
        rows.append(("recovery window", f"{span['earliest']} to {span['latest']}"))
    elif record["archiving"] is not None:
        rows.append(("recovery window", "none yet: take a base backup"))
    if record["archiving"] is not None:
        archived = "on" if record["archiving"] else "off"
        if record["last_archived_at"]:
            archived += f", last WAL {human_age(record['last_archived_at'], now)}"
        if record["last_archive_error"]:
            archived += f"; fails: {record['last_archive_error']}"
        rows.append(("WAL archiving", archived))
    return rows  # fmt: skip


def status_view(record: Mapping[str, Any], now: datetime, backup_ids: Sequence[str] = ()) -> RenderableType:
    """The record for people: the facts, the servers, the changed settings, extensions and backups; ids whole
    where they are copied (the instance's), backups' as their shortest unique prefix among ``backup_ids``."""
    why = record["last_error"] or ("work in flight" if record["work_in_flight"] else "-")
    disk = record["disk"]
    ext = record["extensions"]
    parts = [f"{', '.join(ext['stack'])} (stack)" if ext["stack"] else "", ", ".join(ext["enabled"])]
    extensions = "; ".join(p for p in parts if p) or "-"
    if ext["disabled"]:
        extensions += f"; off: {', '.join(ext['disabled'])}"
    facts = [
        ("instance", f"{record['name']}  {record['id']}"),
        ("state", f"{record['state']} (changed {human_age(record['updated_at'], now)})"),
        ("why", why),
        ("data plane", record["data_plane"]),
        ("stack", f"{record['stack']}: {record['cpu']} cpu, {record['memory']} memory, {record['storage']} disk"),
        ("postgres", record["primary"]["server_version"] or "-"),
        ("pending restart", _yes(record["pending_restart"])),
        ("disk use", f"{human_size(disk['used_bytes'])} of {disk['storage']}"),
        ("connections", f"at most {record['max_connections'] or '-'}"),
        ("extensions", extensions),
    ]  # fmt: skip
    blocks: list[RenderableType] = [_facts(facts), Text(""), _servers(record, now)]
    if record["settings_changed"]:
        blocks += [Text(""), Text("Settings changed from the stack's defaults", style="bold"), _settings(record)]
    else:
        blocks += [Text(""), Text("Settings: the stack's defaults", style="bold")]
    blocks += [Text(""), _facts(_backup_rows(record, now, backup_ids))]
    return Group(*blocks)
