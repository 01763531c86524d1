"""Pure logic of the durable layer, no database: retry policies, schedule ticks (skip / catch-up), schedule
validation, the JSON codec, error messages and what ``DurableApp`` checks when workflows are declared."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from howdah.durable import (
    DEFAULT_RETRY,
    NO_RETRY,
    DurableApp,
    DurableError,
    InvalidSchedule,
    NotSerializable,
    PermanentError,
    RetryPolicy,
    Schedule,
    StepFailed,
    TransientError,
    WorkflowConflict,
    WorkflowContext,
    WorkflowFailed,
    due_ticks,
)
from howdah.durable import __all__ as durable_all
from howdah.durable._codec import check_json, error_to_json
from howdah.durable._schedule import MAX_CATCH_UP, next_tick

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


class Glitch(Exception):
    pass


class TransientGlitch(TransientError):
    pass


# ---------------------------------------------------------------------------------------------- RetryPolicy
def test_delays_grow_exponentially_up_to_the_cap_without_jitter() -> None:
    policy = RetryPolicy(max_attempts=10, initial_delay=0.5, factor=2.0, max_delay=5.0, jitter=False)
    assert [policy.delay(n) for n in range(1, 8)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0]


def test_attempt_numbers_below_one_use_the_initial_delay() -> None:
    policy = RetryPolicy(initial_delay=0.25, jitter=False)
    assert policy.delay(0) == policy.delay(-3) == policy.delay(1) == 0.25


def test_factor_one_keeps_the_delay_constant() -> None:
    policy = RetryPolicy(initial_delay=0.3, factor=1.0, jitter=False)
    assert {policy.delay(n) for n in range(1, 20)} == {0.3}


def test_jitter_is_full_jitter_below_the_ceiling_and_reproducible_with_a_seed() -> None:
    policy = RetryPolicy(max_attempts=10, initial_delay=1.0, factor=3.0, max_delay=20.0)
    for attempt in range(1, 8):
        ceiling = min(20.0, 3.0 ** (attempt - 1))
        samples = [policy.delay(attempt, random.Random(seed)) for seed in range(200)]
        assert all(0 <= s <= ceiling for s in samples)
        assert max(samples) > ceiling / 2 and min(samples) < ceiling / 2  # spread over the range, not pinned
    assert policy.delay(4, random.Random(7)) == policy.delay(4, random.Random(7))


def test_zero_delays_are_allowed() -> None:
    policy = RetryPolicy(initial_delay=0, max_delay=0)
    assert policy.delay(5) == 0


@pytest.mark.parametrize(
    "options",
    [
        {"max_attempts": 0},
        {"max_attempts": -1},
        {"initial_delay": -0.1},
        {"max_delay": -1},
        {"factor": 0.5},
    ],
)
def test_invalid_policies_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**options)


def test_transient_errors_and_their_subclasses_are_retryable() -> None:
    policy = RetryPolicy()
    assert policy.retryable(TransientError("x"))
    assert policy.retryable(TransientGlitch("x"))
    assert not policy.retryable(Glitch("x"))
    assert not policy.retryable(ValueError("x"))


def test_retry_on_adds_types_but_never_permanent_errors() -> None:
    policy = RetryPolicy(retry_on=(Glitch, OSError))
    assert policy.retryable(Glitch("x"))
    assert policy.retryable(ConnectionResetError("x"))  # a subclass of a listed type
    assert policy.retryable(TransientError("x"))  # always, even when retry_on does not list it
    assert not policy.retryable(KeyError("x"))
    assert not RetryPolicy(retry_on=(Exception,)).retryable(PermanentError("x"))
    assert not RetryPolicy(retry_on=(PermanentError,)).retryable(PermanentError("x"))


def test_should_retry_counts_the_first_try_in_max_attempts() -> None:
    policy = RetryPolicy(max_attempts=3)
    error = TransientError("x")
    assert [policy.should_retry(error, n) for n in (1, 2, 3, 4)] == [True, True, False, False]
    assert not policy.should_retry(PermanentError("x"), 1)
    assert not policy.should_retry(Glitch("x"), 1)
    assert not NO_RETRY.should_retry(error, 1)
    assert DEFAULT_RETRY.should_retry(error, 1) and DEFAULT_RETRY.max_attempts == 3


def test_policies_are_immutable_values() -> None:
    policy = RetryPolicy()
    with pytest.raises(AttributeError):
        policy.max_attempts = 9  # type: ignore[misc]
    assert RetryPolicy() == policy and hash(RetryPolicy()) == hash(policy)


# ------------------------------------------------------------------------------------------ ticks and catch-up
def test_next_tick_is_strictly_after() -> None:
    assert next_tick("*/5 * * * *", T0) == T0 + 5 * MINUTE
    assert next_tick("*/5 * * * *", T0 + timedelta(seconds=1)) == T0 + 5 * MINUTE
    assert next_tick("0 * * * *", T0 - timedelta(microseconds=1)) == T0


def test_seconds_field_is_supported() -> None:
    assert next_tick("* * * * * */2", T0) == T0 + timedelta(seconds=2)


def test_nothing_is_due_before_next_run_at() -> None:
    assert due_ticks("*/5 * * * *", T0, T0 - timedelta(seconds=1), "skip") == ([], T0)
    assert due_ticks("*/5 * * * *", T0, T0 - timedelta(days=1), "catch_up") == ([], T0)


@pytest.mark.parametrize("missed", ["skip", "catch_up"])
def test_a_tick_exactly_now_is_due(missed: Any) -> None:
    assert due_ticks("*/5 * * * *", T0, T0, missed) == ([T0], T0 + 5 * MINUTE)


@pytest.mark.parametrize("missed", ["skip", "catch_up"])
def test_one_tick_due_between_ticks(missed: Any) -> None:
    now = T0 + 2 * MINUTE
    assert due_ticks("*/5 * * * *", T0, now, missed) == ([T0], T0 + 5 * MINUTE)


def test_catch_up_runs_every_missed_tick_in_order() -> None:
    now = T0 + 62 * MINUTE  # ticks at :00, :05, … :60
    ticks, upcoming = due_ticks("*/5 * * * *", T0, now, "catch_up")
    assert ticks == [T0 + 5 * k * MINUTE for k in range(13)]
    assert upcoming == T0 + 65 * MINUTE


def test_skip_runs_only_the_latest_missed_tick() -> None:
    now = T0 + 62 * MINUTE
    ticks, upcoming = due_ticks("*/5 * * * *", T0, now, "skip")
    assert ticks == [T0 + 60 * MINUTE]
    assert upcoming == T0 + 65 * MINUTE


def test_the_upcoming_tick_is_always_in_the_future() -> None:
    for minutes in (0, 1, 4, 5, 6, 59, 60, 61, 3000):
        now = T0 + minutes * MINUTE
        for missed in ("skip", "catch_up"):
            ticks, upcoming = due_ticks("*/5 * * * *", T0, now, missed)  # type: ignore[arg-type]
            assert upcoming > now
            assert all(T0 <= t <= now for t in ticks)


def test_catch_up_is_capped() -> None:
    now = T0 + 5000 * MINUTE
    ticks, upcoming = due_ticks("* * * * *", T0, now, "catch_up")
    assert len(ticks) == MAX_CATCH_UP
    assert ticks[0] == T0 and ticks == sorted(set(ticks))
    assert upcoming == now + MINUTE  # the ticks beyond the cap are dropped, not run later


def test_skip_runs_the_latest_tick_even_after_a_long_outage() -> None:
    now = T0 + 5000 * MINUTE
    ticks, upcoming = due_ticks("* * * * *", T0, now, "skip")
    assert ticks == [now]
    assert upcoming == now + MINUTE


def test_ticks_keep_the_time_zone_of_next_run_at() -> None:
    tokyo = timezone(timedelta(hours=9))
    start = T0.astimezone(tokyo)
    ticks, upcoming = due_ticks("*/5 * * * *", start, start + 11 * MINUTE, "catch_up")
    assert ticks == [T0, T0 + 5 * MINUTE, T0 + 10 * MINUTE]  # the same instants
    assert upcoming == T0 + 15 * MINUTE


# ----------------------------------------------------------------------------------------- schedule validation
@pytest.mark.parametrize("cron", ["*/5 * * * *", "0 3 * * 1-5", "@hourly", "* * * * * */2"])
def test_valid_schedules(cron: str) -> None:
    schedule = Schedule("nightly", cron, "report", {"region": "eu"})
    assert schedule.missed == "skip"


@pytest.mark.parametrize("cron", ["", "every day", "61 * * * *", "* * * *", "*/0 * * * *", "* * 32 * *"])
def test_invalid_cron_expressions_are_refused(cron: str) -> None:
    with pytest.raises(InvalidSchedule) as refused:
        Schedule("nightly", cron, "report", {})
    assert isinstance(refused.value, ValueError) and isinstance(refused.value, DurableError)
    assert "nightly" in str(refused.value)


def test_an_unknown_missed_policy_is_refused() -> None:
    with pytest.raises(InvalidSchedule, match="missed"):
        Schedule("nightly", "*/5 * * * *", "report", {}, "run_twice")  # type: ignore[arg-type]


def test_app_schedule_declares_the_workflow_and_the_schedule() -> None:
    app = DurableApp("postgresql://unused")

    @app.schedule("*/5 * * * *", args={"region": "eu"}, missed="catch_up")
    async def report(ctx: WorkflowContext, args: dict[str, Any]) -> None:
        return None

    assert "report" in app.workflows
    assert app.schedules["report"] == Schedule("report", "*/5 * * * *", "report", {"region": "eu"}, "catch_up")


def test_a_refused_schedule_declares_nothing() -> None:
    app = DurableApp("postgresql://unused")

    async def report(ctx: WorkflowContext, args: dict[str, Any]) -> None:
        return None

    with pytest.raises(InvalidSchedule):
        app.schedule("not a cron")(report)
    assert "report" not in app.workflows
    app.schedule("*/5 * * * *")(report)  # fixing the cron must work


# ------------------------------------------------------------------------------------------------------ codec
@pytest.mark.parametrize(
    "value",
    [None, True, 0, -3, 1.5, "text", "ünïcödé", [], {}, [1, "a", None], {"a": {"b": [1, 2, {"c": None}]}}],
)
def test_json_values_pass_unchanged(value: Any) -> None:
    assert check_json(value, "x") == value


@pytest.mark.parametrize(
    "value",
    [
        {1, 2},
        b"bytes",
        datetime(2030, 1, 1),
        object(),
        float("nan"),
        float("inf"),
        {"nested": [{"deep": {1, 2}}]},
        {("tuple", "key"): 1},
    ],
    ids=["set", "bytes", "datetime", "object", "nan", "inf", "nested-set", "tuple-key"],
)
def test_non_json_values_raise_not_serializable_naming_what(value: Any) -> None:
    with pytest.raises(NotSerializable, match="the args of workflow 'w' is not JSON-serialisable"):
        check_json(value, "the args of workflow 'w'")


def test_not_serializable_is_also_a_type_error() -> None:
    with pytest.raises(TypeError):
        check_json({1, 2}, "x")


def test_errors_become_json_with_type_message_and_traceback() -> None:
    try:
        raise PermanentError("card declined")
    except PermanentError as exc:
        data = error_to_json(exc)
    assert data["type"] == "PermanentError" and data["message"] == "card declined"
    assert "raise PermanentError" in data["traceback"]
    assert json.loads(json.dumps(data)) == data


def test_long_tracebacks_are_truncated_keeping_the_end() -> None:
    data = error_to_json(ValueError("x" * 10_000))
    assert len(data["traceback"]) == 4000
    assert data["traceback"].endswith("x\n")


# ---------------------------------------------------------------------------------------------------- errors
def test_workflow_failed_names_the_workflow_and_the_stored_error() -> None:
    failed = WorkflowFailed("wf-1", {"type": "TransientError", "message": "timeout", "step": "charge"})
    assert str(failed) == "workflow 'wf-1' failed: TransientError: timeout"
    assert failed.error["step"] == "charge"
    assert str(WorkflowFailed("wf-2", None)) == "workflow 'wf-2' failed: Error: failed"


def test_step_failed_names_the_step() -> None:
    failed = StepFailed("charge", {"type": "PermanentError", "message": "declined"})
    assert str(failed) == "step 'charge' failed: PermanentError: declined"
    assert failed.step == "charge"


def test_workflow_conflict_carries_the_key_and_the_active_workflow() -> None:
    conflict = WorkflowConflict("busy", key="i-1", active_id="wf-9")
    assert (conflict.key, conflict.active_id) == ("i-1", "wf-9")


def test_every_public_name_is_exported() -> None:
    import howdah.durable as durable

    assert sorted(durable_all) == sorted(set(durable_all))
    for name in durable_all:
        assert hasattr(durable, name), name


# ------------------------------------------------------------------------------------------- declaring workflows
def test_workflows_must_be_async() -> None:
    app = DurableApp("postgresql://unused")

    def sync_workflow(ctx: WorkflowContext, args: dict[str, Any]) -> None:
        return None

    with pytest.raises(DurableError, match="async"):
        app.workflow()(sync_workflow)  # type: ignore[type-var]


def test_workflow_names_are_unique_and_default_to_the_function_name() -> None:
    app = DurableApp("postgresql://unused")

    @app.workflow()
    async def provision(ctx: WorkflowContext, args: dict[str, Any]) -> None:
        return None

    @app.workflow(name="provision-v2")
    async def provision_again(ctx: WorkflowContext, args: dict[str, Any]) -> None:
        return None

    assert set(app.workflows) == {"provision", "provision-v2"}
    with pytest.raises(DurableError, match="already declared"):
        app.workflow(name="provision")(provision_again)


def test_bad_options_are_refused() -> None:
    with pytest.raises(DurableError):
        DurableApp("postgresql://unused", lease=0)
    app = DurableApp("postgresql://unused")
    with pytest.raises(DurableError, match="on_conflict"):
        app.workflow(on_conflict="wait")  # type: ignore[arg-type]


def test_keys_come_from_an_args_field_or_a_function() -> None:
    app = DurableApp("postgresql://unused")

    @app.workflow(key="instance_id")
    async def by_field(ctx: WorkflowContext, args: dict[str, Any]) -> None:
        return None

    @app.workflow(key=lambda args: f"{args['org']}/{args['name']}", on_conflict="queue")
    async def by_function(ctx: WorkflowContext, args: dict[str, Any]) -> None:
        return None

    @app.workflow()
    async def keyless(ctx: WorkflowContext, args: dict[str, Any]) -> None:
        return None

    assert app.workflows["by_field"].key_for({"instance_id": 42}) == "42"
    assert app.workflows["by_field"].key_for({"other": 1}) is None
    assert app.workflows["by_function"].key_for({"org": "acme", "name": "db"}) == "acme/db"
    assert app.workflows["by_function"].on_conflict == "queue"
    assert app.workflows["keyless"].key_for({"instance_id": 1}) is None


def test_an_unopened_app_says_so() -> None:
    app = DurableApp("postgresql://unused")
    with pytest.raises(DurableError, match="not open"):
        app.store  # noqa: B018
    with pytest.raises(DurableError, match="not open"):
        app.queue  # noqa: B018
