"""Every error the API can meet has one HTTP status, from one table; a database outage is always 503."""

from __future__ import annotations

import importlib
import pkgutil

import psycopg
import pytest

import howdah
from howdah.control.errors import HTTP_STATUS, Conflict, Unavailable, http_error
from howdah.durable import TransientError, WorkflowConflict
from howdah.errors import DatabaseError, HowdahError
from howdah.queue import QueueDatabaseError, QueueNotFound

# The layers the API runs on (control and below): only their errors can reach an HTTP response.
API_LAYERS = ("howdah.errors", "howdah.pg", "howdah.queue", "howdah.durable", "howdah.control")


def _subclasses(cls: type[HowdahError]) -> set[type[HowdahError]]:
    found = set()
    for sub in cls.__subclasses__():
        found |= {sub, *_subclasses(sub)}
    return found


def _api_errors() -> set[type[HowdahError]]:
    for module in pkgutil.walk_packages(howdah.__path__, "howdah."):
        if module.name.startswith(API_LAYERS):
            importlib.import_module(module.name)
    return {c for c in _subclasses(HowdahError) | {HowdahError} if c.__module__.startswith(API_LAYERS)}


def test_every_error_class_of_the_api_layers_has_its_own_row() -> None:
    missing = sorted(f"{c.__module__}.{c.__qualname__}" for c in _api_errors() if c not in HTTP_STATUS)
    assert not missing, f"add these to howdah.control.errors.HTTP_STATUS: {missing}"
    assert all(400 <= status <= 599 for status, _ in HTTP_STATUS.values())


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (Conflict("busy"), 409, "conflict"),
        (QueueNotFound("queue 'dp_x' does not exist"), 503, "unavailable"),
        (WorkflowConflict("one active per key"), 409, "conflict"),
        (TransientError("try again"), 503, "unavailable"),
        (DatabaseError("refused"), 500, "database_error"),
        (HowdahError("?"), 500, "internal"),
    ],
)
def test_statuses_that_fit(error: HowdahError, status: int, code: str) -> None:
    assert http_error(error)[:2] == (status, code)


def test_a_lost_database_below_any_wrapper_is_503_with_retry_after() -> None:
    try:
        try:
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        except psycopg.OperationalError as exc:
            raise QueueDatabaseError("send failed") from exc
    except QueueDatabaseError as wrapped:
        status, code, retry_after = http_error(wrapped)
    assert (status, code) == (503, "unavailable") and retry_after and retry_after > 0
    assert http_error(psycopg.OperationalError("down"))[:2] == (503, "unavailable")
    assert http_error(psycopg.errors.AdminShutdown())[:2] == (503, "unavailable")
    assert http_error(psycopg.InternalError("bug"))[:2] == (500, "internal")
    assert http_error(RuntimeError("bug"))[:2] == (500, "internal")


def test_retry_after_is_sent_when_retrying_can_help() -> None:
    assert http_error(Conflict("busy", retry_after=5))[2] == 5
    assert http_error(Conflict("exists"))[2] is None
    assert http_error(Unavailable("no data plane"))[2] is not None


def test_a_control_error_keeps_its_status_whatever_caused_it() -> None:
    try:
        try:
            raise psycopg.OperationalError("HW409: over the cap")
        except psycopg.OperationalError as exc:
            raise Conflict("over the cap") from exc
    except Conflict as decided:
        assert http_error(decided)[:2] == (409, "conflict")
