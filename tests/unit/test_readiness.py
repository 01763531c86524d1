"""/readyz's decision: each check passes or fails, and a failure says in words what is missing."""

from __future__ import annotations

from howdah.control.readiness import STALE_AFTER_BEATS, ComponentBeat, PlaneBeat, assess, database_down

TICKING = [ComponentBeat("reconciler", 1.0, 5.0)]
LIVE = PlaneBeat("local", draining=False, registered=True, age_seconds=2.0, interval_seconds=5.0)


def _failed(checks: list) -> dict[str, str]:  # type: ignore[type-arg]
    return {c.name: c.detail for c in checks if not c.ok}


def test_ready_when_the_reconciler_ticks_and_a_live_plane_registered() -> None:
    checks = assess(TICKING, [LIVE])
    assert [c.name for c in checks] == ["database", "reconciler", "data_plane"]
    assert _failed(checks) == {}


def test_no_reconciler_yet() -> None:
    assert _failed(assess([], [LIVE])) == {"reconciler": "no reconciler has ticked yet"}


def test_a_reconciler_is_stale_after_three_of_its_intervals() -> None:
    assert _failed(assess([ComponentBeat("reconciler", STALE_AFTER_BEATS * 5.0, 5.0)], [LIVE])) == {}
    stale = _failed(assess([ComponentBeat("reconciler", STALE_AFTER_BEATS * 5.0 + 0.5, 5.0)], [LIVE]))
    assert stale["reconciler"].startswith("the reconciler last ticked 16s ago")


def test_no_data_plane_names_the_missing_conductor() -> None:
    assert _failed(assess(TICKING, [])) == {"data_plane": "no data plane is registered: no conductor has started yet"}


def test_a_plane_without_a_registered_conductor_or_draining_or_stale_does_not_count() -> None:
    unregistered = PlaneBeat("made-by-admin", draining=False, registered=False, age_seconds=None, interval_seconds=None)
    draining = PlaneBeat("old", draining=True, registered=True, age_seconds=1.0, interval_seconds=5.0)
    stale = PlaneBeat("local", draining=False, registered=True, age_seconds=600.0, interval_seconds=5.0)
    failed = _failed(assess(TICKING, [draining, unregistered, stale]))
    assert failed == {
        "data_plane": "no data plane can take a create: data plane 'old' is draining; data plane 'made-by-admin' "
        "has no conductor registered yet; the conductor of data plane 'local' was last seen 600s ago (it "
        "heartbeats every 5s; stale after 15s)"
    }
    assert _failed(assess(TICKING, [draining, unregistered, stale, LIVE])) == {}


def test_a_registration_that_promised_no_heartbeat_does_not_count() -> None:
    silent = PlaneBeat("local", draining=False, registered=True, age_seconds=0.0, interval_seconds=None)
    assert "has no conductor registered yet" in _failed(assess(TICKING, [silent]))["data_plane"]


def test_a_database_that_does_not_answer_fails_every_check() -> None:
    failed = _failed(database_down("connection refused"))
    assert failed["database"] == "the control database does not answer: connection refused"
    assert set(failed) == {"database", "reconciler", "data_plane"}
