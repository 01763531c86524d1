"""Failure classification and the reconciler's verdict after an Error (pure)."""

from __future__ import annotations

import pytest

from howdah import durable, providers
from howdah.control.events import CrudEvent, StateEvent, retried_event
from howdah.control.failures import PERMANENT_ERRORS, after_error, classify, unanswered
from howdah.durable import RetryPolicy

POLICY = RetryPolicy(max_attempts=4, initial_delay=5.0, max_delay=12.0, jitter=False)


def test_provider_errors_are_classified_by_their_type() -> None:
    assert classify(providers.ProviderError.__name__) == "permanent"
    assert classify(providers.TransientProviderError.__name__) == "transient"
    assert classify(durable.PermanentError.__name__) == "permanent"
    assert classify(durable.TransientError.__name__) == "transient"
    assert classify("OperationalError") == "transient"  # unexpected: retried, within the cap
    assert classify(None) == "transient"


def test_the_permanent_names_are_real_exception_types() -> None:
    known = {providers.ProviderError, durable.PermanentError, durable.NotSerializable}
    assert {cls.__name__ for cls in known} == PERMANENT_ERRORS


def test_a_permanent_failure_is_never_retried() -> None:
    for attempts in range(5):
        verdict = after_error("permanent", attempts, 'invalid value for parameter "work_mem": "lots"', POLICY)
        assert verdict.retry_in is None and verdict.attempts == attempts + 1
        assert verdict.message == 'invalid value for parameter "work_mem": "lots"'  # Postgres's own, untouched


@pytest.mark.parametrize("failure", ["transient", None])
def test_a_transient_failure_backs_off_then_gives_up_with_the_reason(failure: str | None) -> None:
    verdicts = [after_error(failure, n, "port 20001 is taken", POLICY) for n in range(POLICY.max_attempts)]  # type: ignore[arg-type]
    assert [v.retry_in for v in verdicts] == [5.0, 10.0, 12.0, None]  # doubling, capped, then no more runs
    assert [v.attempts for v in verdicts] == [1, 2, 3, 4]
    assert verdicts[0].message == "port 20001 is taken"
    assert verdicts[-1].message == "port 20001 is taken (a transient failure; gave up after 4 attempts)"
    assert after_error(failure, 10, "x", POLICY).retry_in is None  # type: ignore[arg-type]


def test_a_retried_event_is_new_work_for_the_same_change() -> None:
    first = CrudEvent(
        kind="Update", instance_id="i", org_id="o", name="n", generation=3, spec={"name": "n"},
        settings={"work_mem": "8MB"}, extensions=["pg_trgm"],
    ).model_dump(mode="json")  # fmt: skip
    again = retried_event(first, generation=4)
    assert again["event_id"] != first["event_id"]  # a new workflow on the data plane, never the finished one
    assert again["generation"] == 4
    same = {k: v for k, v in first.items() if k not in ("event_id", "generation", "sent_at")}
    assert {k: again[k] for k in same} == same


def test_state_events_carry_the_classification() -> None:
    event = StateEvent.model_validate(
        {"instance_id": "i", "data_plane": "local", "event": "Error", "failure": "permanent", "error": "x"}
    )
    assert event.failure == "permanent"
    assert StateEvent.model_validate({"instance_id": "i", "data_plane": "local", "event": "Error"}).failure is None


def test_unanswered_work_is_sent_again_up_to_the_cap_then_given_up() -> None:
    assert [unanswered(n, 3, "Update", "local", 60) for n in range(3)] == [None, None, None]
    message = unanswered(3, 3, "Update", "local", 60)
    assert message is not None
    assert "'local' did not answer the Update" in message and "4 times over about 240 s" in message
    assert unanswered(0, 0, "Create", "k8s", 60) is not None  # no re-send at all
