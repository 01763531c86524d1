"""Pure decisions of a run's hold on its workflow: when to confirm the lease, how long a step attempt may run,
what stops a run (no database: the store is a stub that answers or fails as told)."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from psycopg import errors as pg_errors

from howdah.durable import DEFAULT_RETRY, DeadlineExceeded, LeaseLost, StepTimeout, TransientError
from howdah.durable._lease import RunLease, attempt_limit, must_renew, renewal_margin
from howdah.durable._store import DurableDatabaseError, is_outage
from howdah.queue import QueueDatabaseError


def test_the_margin_is_a_quarter_of_the_lease_but_never_tiny() -> None:
    assert renewal_margin(30) == 7.5
    assert renewal_margin(1) == 0.25
    assert renewal_margin(0.4) == 0.2


@pytest.mark.parametrize(
    ("now", "held_until", "renew"),
    [(0.0, 10.0, False), (7.4, 10.0, False), (7.5, 10.0, True), (9.0, 10.0, True), (11.0, 10.0, True)],
)
def test_a_run_asks_the_database_once_its_known_hold_gets_short(now: float, held_until: float, renew: bool) -> None:
    assert must_renew(now, held_until, lease=10) is renew


def test_a_lost_or_unknown_hold_always_asks() -> None:
    assert must_renew(0.0, float("-inf"), lease=30)


def test_attempt_limits_are_the_step_timeout_or_what_is_left_of_the_deadline() -> None:
    assert attempt_limit(None, 5.0, None) == (None, False)
    assert attempt_limit(2.0, 5.0, None) == (2.0, False)
    assert attempt_limit(2.0, 5.0, 10.0) == (2.0, False)
    assert attempt_limit(None, 5.0, 10.0) == (5.0, True)
    assert attempt_limit(8.0, 5.0, 10.0) == (5.0, True)
    assert attempt_limit(8.0, 12.0, 10.0) == (0.0, True)


def test_step_timeouts_are_retried_like_transient_errors() -> None:
    timeout = StepTimeout("charge", 1.5)
    assert isinstance(timeout, TransientError)
    assert DEFAULT_RETRY.should_retry(timeout, 1)
    assert "charge" in str(timeout) and "1.5s" in str(timeout)


def test_deadlines_cannot_be_swallowed_by_except_exception() -> None:
    assert not issubclass(DeadlineExceeded, Exception)


def wrapped(cause: BaseException, outer: BaseException) -> BaseException:
    try:
        raise outer from cause
    except BaseException as exc:
        return exc


@pytest.mark.parametrize(
    "exc",
    [
        psycopg.OperationalError("server closed the connection unexpectedly"),
        pg_errors.AdminShutdown("terminating connection due to administrator command"),
        pg_errors.CannotConnectNow("the database system is starting up"),
        pg_errors.ConnectionFailure("connection failure"),
        pg_errors.TooManyConnections("too many clients"),
        wrapped(pg_errors.AdminShutdown("x"), DurableDatabaseError("x")),
        wrapped(psycopg.OperationalError("x"), QueueDatabaseError("x")),
    ],
)
def test_outages_are_recognised_through_translations(exc: BaseException) -> None:
    assert is_outage(exc)


@pytest.mark.parametrize(
    "exc",
    [
        DurableDatabaseError("syntax"),
        wrapped(pg_errors.UndefinedFunction("no such function"), DurableDatabaseError("x")),
        pg_errors.QueryCanceled("canceling statement due to statement timeout"),
        pg_errors.ProgramLimitExceeded("jsonb too large"),
        ValueError("bug"),
        LeaseLost("lost"),
    ],
)
def test_other_errors_are_not_outages(exc: BaseException) -> None:
    assert not is_outage(exc)


class Store:
    """Answers ``hold`` with the queued answers (a tuple, or an exception to raise)."""

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.holds = 0

    async def hold(self, workflow_id: str, fence: int, lease: int, wait: float | None = None) -> tuple[float, bool]:
        self.holds += 1
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer  # type: ignore[no-any-return]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def lease(store: Store, clock: Clock, lease_left: float | None = 10.0, deadline_left: float | None = None) -> RunLease:
    return RunLease(
        store,  # type: ignore[arg-type]
        "wf",
        3,
        10,
        sent_at=clock.now,
        lease_left=lease_left,
        deadline_left=deadline_left,
        clock=clock,
    )


async def test_a_fresh_hold_starts_attempts_without_a_round_trip() -> None:
    store, clock = Store(), Clock()
    run = lease(store, clock)
    clock.now += 5
    assert await run.ensure() is False
    assert store.holds == 0


async def test_a_short_hold_is_confirmed_and_extended() -> None:
    store, clock = Store((10.0, False)), Clock()
    run = lease(store, clock)
    clock.now += 8  # frozen, or a long step: 2 s known left, less than the margin
    assert await run.ensure() is False
    assert store.holds == 1 and run.held_until == clock.now + 10
    assert await run.ensure() is False and store.holds == 1


async def test_a_confirmation_can_report_cancellation() -> None:
    run = lease(Store((10.0, True)), Clock(), lease_left=0.0)
    assert await run.ensure() is True


@pytest.mark.parametrize("failure", [LeaseLost("lost"), DurableDatabaseError("terminating connection")])
async def test_a_run_that_is_lost_or_cannot_tell_stops_for_good(failure: Exception) -> None:
    store, clock = Store(failure), Clock()
    run = lease(store, clock, lease_left=0.0)
    with pytest.raises(type(failure)):
        await run.ensure()
    with pytest.raises(type(failure)):  # every later attempt too, without asking again
        await run.ensure()
    assert store.holds == 1 and run.stopped is failure


async def test_a_checkpoint_that_finds_the_lease_lost_makes_the_next_attempt_ask() -> None:
    store, clock = Store(LeaseLost("lost")), Clock()
    run = lease(store, clock)
    run.confirmed(clock.now, None)
    with pytest.raises(LeaseLost):
        await run.ensure()


async def test_past_the_deadline_nothing_starts() -> None:
    store, clock = Store(), Clock()
    run = lease(store, clock, deadline_left=1.0)
    assert not run.deadline_passed()
    clock.now += 1
    with pytest.raises(DeadlineExceeded):
        await run.ensure()
    assert store.holds == 0
