"""``howdah up``'s live panel, pure: the record of one ``live_panel`` query in, a Rich renderable out (each
instance's progress, the last events, workflows and queues); never server logs, which go to the log file."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from howdah.cli._refs import escape_controls, human_age, parse_time

ROWS = 10  # instances shown (those whose state began last)
EVENTS = 5  # the newest events shown


@dataclass(frozen=True)
class Progress:
    """One instance: its state, since when, and the change in flight or the last error."""

    org_id: str
    name: str
    state: str
    since: datetime | None
    change: str | None
    error: str | None


@dataclass(frozen=True)
class Event:
    """One change of an instance's state, change in flight or error, with the change that led to it."""

    at: datetime | None
    org_id: str
    name: str
    state: str
    change: str | None
    error: str | None


@dataclass(frozen=True)
class LiveData:
    counts: dict[str, int]
    instances: list[Progress]
    events: list[Event]
    workflows: dict[str, int]
    queues: dict[str, int]


def live_data(record: Mapping[str, Any]) -> LiveData:
    """The ``live_panel`` query's row (its JSON columns) as data."""

    def text(value: Any) -> str | None:
        return None if value is None else str(value)

    instances = [Progress(str(i["org_id"]), str(i["name"]), str(i["state"]), parse_time(i.get("since")),
                          text(i.get("change")), text(i.get("error"))) for i in record["instances"]]  # fmt: skip
    events = [Event(parse_time(e.get("at")), str(e["org_id"]), str(e["name"]), str(e["state"]),
                    text(e.get("change")), text(e.get("error"))) for e in record["events"]]  # fmt: skip
    return LiveData({str(k): int(v) for k, v in record["counts"].items()}, instances, events,
                    {str(k): int(v) for k, v in record["workflows"].items()},
                    {str(k): int(v) for k, v in record["queues"].items()})  # fmt: skip


def _who(org_id: str, name: str, home_org: str) -> Text:
    return Text(name if org_id == home_org else f"{org_id}/{name}")


def _doing(change: str | None, error: str | None, *, in_flight: bool = True) -> Text:
    """The change (in flight, or that led to an event), else the last error (a tenant's words: shown as text,
    control characters escaped)."""
    if change:
        return Text(f"{change} in progress" if in_flight else change)
    if error:
        return Text(escape_controls(error), style="red")
    return Text("")


def _counted(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{key}: {value}" for key, value in sorted(counts.items())) or "-"


def live_view(data: LiveData, now: datetime, home_org: str) -> RenderableType:
    """The panel: a summary line, each instance's progress (``ROWS`` at most, then how many more), the newest
    events, then workflows not finished and queues holding messages. Instances of ``home_org`` show by name,
    others as org/name."""
    parts: list[RenderableType] = []
    total = sum(data.counts.values())
    parts.append(Text(f"instances: {total}" + (f" ({_counted(data.counts)})" if total else "")))
    if data.instances:
        table = Table(box=None, pad_edge=False, show_edge=False, expand=False)
        for column in ("instance", "state", "since", "doing"):
            table.add_column(column, overflow="fold")
        for item in data.instances:
            table.add_row(_who(item.org_id, item.name, home_org), item.state, human_age(item.since, now),
                          _doing(item.change, item.error))  # fmt: skip
        parts.append(table)
        if total > len(data.instances):
            parts.append(Text(f"… and {total - len(data.instances)} more (howdah instance list)"))
    if data.events:
        events = Table(title="last events", title_justify="left", box=None, pad_edge=False, expand=False)
        for column in ("at", "instance", "state", "change"):
            events.add_column(column, overflow="fold")
        for event in data.events:
            at = event.at.astimezone(now.tzinfo).strftime("%H:%M:%S") if event.at else "-"
            events.add_row(
                at,
                _who(event.org_id, event.name, home_org),
                event.state,
                _doing(event.change, event.error, in_flight=False),
            )
        parts.append(events)
    parts.append(Text(f"workflows not finished: {_counted(data.workflows)}"))
    parts.append(Text(f"queues holding messages (last minute's sample): {_counted(data.queues)}"))
    return Group(*parts)
