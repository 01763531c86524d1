"""What ``/readyz`` decides, free of I/O: whether a create issued now would be accepted and acted on.

Ready means all three checks pass:

* ``database``: the control database answers (the caller runs the queries; a failure is reported as is);
* ``reconciler``: a reconciler ticked within :data:`STALE_AFTER_BEATS` times the interval it promised;
* ``data_plane``: at least one data plane that is not draining has registered what a create is checked against
  (its capacity, features and extension catalog: a conductor reports them together when it starts) and its
  conductor's heartbeat came within :data:`STALE_AFTER_BEATS` times the interval it promised.

Each check says in words why it failed, so a caller (``howdah status``, a script, a load balancer's log) can tell
what is missing."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "RECONCILER",
    "STALE_AFTER_BEATS",
    "Check",
    "ComponentBeat",
    "PlaneBeat",
    "assess",
    "database_down",
]

#: A heartbeat is stale once this many of its promised intervals passed without one: one late or lost beat (a
#: busy machine, a reconnect after a Postgres restart) does not flip readiness.
STALE_AFTER_BEATS = 3
RECONCILER = "reconciler"


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str

    def to_json(self) -> dict[str, object]:
        return {"ok": self.ok, "detail": self.detail}


@dataclass(frozen=True)
class ComponentBeat:
    """A control-plane loop's heartbeat: seconds since it ticked, and the interval it promised."""

    component: str
    age_seconds: float
    interval_seconds: float


@dataclass(frozen=True)
class PlaneBeat:
    """A data plane as readiness sees it (``age_seconds``, ``interval_seconds``: None when never heartbeating)."""

    name: str
    draining: bool
    registered: bool
    age_seconds: float | None
    interval_seconds: float | None


def _fresh(age: float | None, interval: float | None) -> bool:
    return age is not None and interval is not None and age <= STALE_AFTER_BEATS * interval


def _reconciler(beats: Iterable[ComponentBeat]) -> Check:
    beat = next((b for b in beats if b.component == RECONCILER), None)
    if beat is None:
        return Check("reconciler", False, "no reconciler has ticked yet")
    if not _fresh(beat.age_seconds, beat.interval_seconds):
        return Check(
            "reconciler", False,
            f"the reconciler last ticked {beat.age_seconds:.0f}s ago (it ticks every {beat.interval_seconds:g}s; "
            f"stale after {STALE_AFTER_BEATS * beat.interval_seconds:g}s)",
        )  # fmt: skip
    return Check("reconciler", True, f"ticked {beat.age_seconds:.0f}s ago")


def _plane_problem(plane: PlaneBeat) -> str | None:
    """Why a create cannot go to ``plane`` now (None: it can)."""
    if plane.draining:
        return f"data plane {plane.name!r} is draining"
    if not plane.registered or plane.interval_seconds is None or plane.age_seconds is None:
        return f"data plane {plane.name!r} has no conductor registered yet"
    if not _fresh(plane.age_seconds, plane.interval_seconds):
        return (
            f"the conductor of data plane {plane.name!r} was last seen {plane.age_seconds:.0f}s ago (it heartbeats "
            f"every {plane.interval_seconds:g}s; stale after {STALE_AFTER_BEATS * plane.interval_seconds:g}s)"
        )
    return None


def _data_plane(planes: Iterable[PlaneBeat]) -> Check:
    problems = []
    for plane in planes:
        problem = _plane_problem(plane)
        if problem is None:
            return Check("data_plane", True, f"data plane {plane.name!r}: conductor seen {plane.age_seconds:.0f}s ago")
        problems.append(problem)
    if not problems:
        return Check("data_plane", False, "no data plane is registered: no conductor has started yet")
    return Check("data_plane", False, "no data plane can take a create: " + "; ".join(problems))


def assess(components: Iterable[ComponentBeat], planes: Iterable[PlaneBeat]) -> list[Check]:
    """The checks, the database having answered with ``components`` and ``planes``."""
    return [Check("database", True, "answers"), _reconciler(components), _data_plane(planes)]


def database_down(reason: str) -> list[Check]:
    """The checks when the control database did not answer: the others cannot be told."""
    unknown = "unknown: the database did not answer"
    return [
        Check("database", False, f"the control database does not answer: {reason}"),
        Check("reconciler", False, unknown),
        Check("data_plane", False, unknown),
    ]
