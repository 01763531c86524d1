"""Cron schedules: which ticks are due and when the next one is (pure; croniter does the calendar)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from croniter import croniter

from howdah.durable._errors import DurableError

Missed = Literal["skip", "catch_up"]
MAX_CATCH_UP = 1000  # never start more than this many runs for one schedule in one pass


class InvalidSchedule(DurableError, ValueError):
    """A cron expression or missed-tick policy that cannot be used."""


@dataclass(frozen=True)
class Schedule:
    name: str
    cron: str
    workflow: str
    args: dict[str, object]
    missed: Missed = "skip"

    def __post_init__(self) -> None:
        if not croniter.is_valid(self.cron):
            raise InvalidSchedule(f"schedule {self.name!r}: {self.cron!r} is not a valid cron expression")
        if self.missed not in ("skip", "catch_up"):
            raise InvalidSchedule(f"schedule {self.name!r}: missed must be 'skip' or 'catch_up'")


def next_tick(cron: str, after: datetime) -> datetime:
    """The first tick strictly after ``after``."""
    tick: datetime = croniter(cron, after).get_next(datetime)
    return tick


def due_ticks(cron: str, next_run_at: datetime, now: datetime, missed: Missed) -> tuple[list[datetime], datetime]:
    """The ticks to run now and the new ``next_run_at``.

    Every tick in ``[next_run_at, now]`` is due. ``catch_up`` runs each of them (at most ``MAX_CATCH_UP``);
    ``skip`` runs only the latest, so a platform that was down for a day runs a ``*/5`` schedule once, not 288
    times. Nothing is due before ``next_run_at``.
    """
    if now < next_run_at:
        return [], next_run_at
    upcoming = next_tick(cron, now)
    if missed == "skip":
        latest = prev_tick(cron, now)  # found directly: an outage of any length costs one computation
        return ([max(latest, next_run_at)] if latest >= next_run_at else [next_run_at]), upcoming
    ticks = [next_run_at]
    while len(ticks) < MAX_CATCH_UP:
        following = next_tick(cron, ticks[-1])
        if following > now:
            break
        ticks.append(following)
    return ticks, upcoming


def prev_tick(cron: str, at: datetime) -> datetime:
    """The latest tick at or before ``at``."""
    tick: datetime = croniter(cron, at + timedelta(microseconds=1)).get_prev(datetime)
    return tick
