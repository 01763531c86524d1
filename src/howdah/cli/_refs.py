"""Pure pieces of the CLI's output and input, free of I/O: ids shortened to the shortest unique prefix, a name,
id or id prefix resolved among candidates (as git and docker accept them), sizes and ages for people."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from howdah.errors import HowdahError

# Control characters a tenant's text might carry (terminal escapes): shown as \xNN, never sent raw.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
SHORT_ID = 8  # a listed id is never shorter than this
MIN_PREFIX = 4  # an id prefix typed by hand must have at least this many characters


class RefError(HowdahError):
    """A name, id or id prefix that matches no candidate, or more than one."""


class NoMatch(RefError):
    pass


class Ambiguous(RefError):
    def __init__(self, message: str, candidates: Sequence[str]) -> None:
        super().__init__(message)
        self.candidates = list(candidates)


def escape_controls(text: str) -> str:
    """``text`` safe for a terminal: control characters (but tab and newline) as ``\\xNN``."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _common(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def short_ids(ids: Sequence[str], minimum: int = SHORT_ID) -> dict[str, str]:
    """Each id's shortest prefix, at least ``minimum`` characters, that no other of ``ids`` starts with (the whole
    id when another id equals it or starts with it)."""
    ordered = sorted(set(ids))
    out: dict[str, str] = {}
    for i, full in enumerate(ordered):
        shared = max(
            _common(full, ordered[i - 1]) if i > 0 else 0, _common(full, ordered[i + 1]) if i + 1 < len(ordered) else 0
        )
        out[full] = full[: max(minimum, shared + 1)]
    return out


def resolve(
    ref: str,
    candidates: Sequence[Mapping[str, Any]],
    *,
    what: str,
    named: Sequence[Mapping[str, Any]] | None = None,
) -> Mapping[str, Any]:
    """The candidate ``ref`` designates: an exact name among ``named`` (default: all candidates) wins, then an exact
    id, then the one id starting with ``ref`` (at least MIN_PREFIX characters). Raises NoMatch, or Ambiguous
    listing the candidates' ids (and names) when the name or the prefix fits more than one."""
    by_name = [c for c in (candidates if named is None else named) if c.get("name") == ref]
    if len(by_name) == 1:
        return by_name[0]
    if len(by_name) > 1:
        raise Ambiguous(f"{len(by_name)} {what}s are named {ref!r}; give one's id:", [_label(c) for c in by_name])
    exact = [c for c in candidates if c["id"] == ref]
    if exact:
        return exact[0]
    if len(ref) >= MIN_PREFIX:
        starting = [c for c in candidates if str(c["id"]).startswith(ref)]
        if len(starting) == 1:
            return starting[0]
        if len(starting) > 1:
            labels = [_label(c) for c in starting]
            raise Ambiguous(f"{ref!r} is the start of {len(starting)} {what} ids; give more of one:", labels)
    raise NoMatch(f"no {what} named {ref!r}, nor with that id" + ("" if len(ref) >= MIN_PREFIX else " (an id prefix "
                  f"needs at least {MIN_PREFIX} characters)"))  # fmt: skip


def _label(candidate: Mapping[str, Any]) -> str:
    name = candidate.get("name")
    return f"{candidate['id']} ({name})" if name else str(candidate["id"])


_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def human_size(size: int | None) -> str:
    """``1536`` → ``1.5 KiB``: one decimal under 10 of a unit, none above; ``-`` when unknown."""
    if size is None:
        return "-"
    value = float(size)
    for unit in _UNITS:
        if abs(value) < 1024 or unit == _UNITS[-1]:
            if unit == "B":
                return f"{size} B"
            return f"{value:.1f} {unit}" if abs(value) < 10 else f"{value:.0f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def parse_time(value: str | datetime | None) -> datetime | None:
    """The API's ISO 8601 times (with their zone) as datetimes; None stays None, and so does what is not a time."""
    if value is None or isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def human_age(value: str | datetime | None, now: datetime) -> str:
    """How long ago ``value`` was, in its largest whole unit: ``45s ago``, ``3m ago``, ``2h ago``, ``5d ago``;
    a date past 60 days; ``in 3m`` for a time ahead; ``-`` when unknown."""
    at = parse_time(value)
    if at is None:
        return "-"
    if at.tzinfo is None or now.tzinfo is None:
        at, now = at.replace(tzinfo=None), now.replace(tzinfo=None)
    seconds = int((now - at).total_seconds())
    ahead, seconds = seconds < 0, abs(seconds)
    if seconds >= 60 * 86400:
        return at.date().isoformat()
    for unit, span in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= span or unit == "s":
            amount = f"{seconds // span}{unit}"
            return f"in {amount}" if ahead else f"{amount} ago"
    raise AssertionError("unreachable")


def completions(incomplete: str, instances: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """What a shell offers for an instance argument that starts with ``incomplete``: the names of instances not
    deleted, then (once something is typed) the ids starting with it, as their shortest unique prefix when that
    is at least as long as what is typed, each with a hint (state; name and state)."""
    offered = [(str(i["name"]), str(i["state"])) for i in instances
               if i["state"] != "Deleted" and str(i["name"]).startswith(incomplete)]  # fmt: skip
    if incomplete:
        short = short_ids([str(i["id"]) for i in instances])
        for item in instances:
            full = str(item["id"])
            if full.startswith(incomplete):
                shown = short[full] if len(short[full]) >= len(incomplete) else full
                offered.append((shown, f"{item['name']} ({item['state']})"))
    return offered
