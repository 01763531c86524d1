"""Named errors of the control plane, and the one table that gives every error the API can meet its HTTP status.

``HTTP_STATUS`` has a row for every :class:`~howdah.errors.HowdahError` subclass of the layers the API runs on
(``errors``, ``pg``, ``queue``, ``durable``, ``control``; a unit test keeps it complete). Whatever the class, an
error caused by a lost or refusing database connection (``psycopg.OperationalError`` anywhere in its chain) is
503 with ``Retry-After``: the caller can do nothing about it but try again.
"""

from __future__ import annotations

import psycopg

from howdah.control.fsm import IllegalTransition, TransitionError, UndefinedTransition
from howdah.control.sealing import SecretUnavailable
from howdah.control.stacks import (
    ExtensionConflict,
    ForbiddenSetting,
    InvalidSettingValue,
    StackError,
    UnknownExtension,
    UnknownStack,
)
from howdah.durable import (
    DuplicateStepName,
    DurableError,
    InvalidSchedule,
    NonDeterminismError,
    NotSerializable,
    PermanentError,
    StepFailed,
    StepTimeout,
    TransientError,
    UnknownWorkflow,
    WorkflowCancelled,
    WorkflowConflict,
    WorkflowFailed,
    WorkflowFinished,
    WorkflowNotFound,
)
from howdah.durable._store import DurableDatabaseError, LeaseLost
from howdah.errors import ConfigurationError, DatabaseError, HowdahError
from howdah.pg import MigrationError, SchemaConflict, ServerError
from howdah.pg.queries import QueryError
from howdah.queue import InvalidArgument, InvalidQueueName, QueueDatabaseError, QueueError, QueueNotFound

RETRY_AFTER_SECONDS = 5


class ControlError(HowdahError):
    """Root of the control plane's errors; ``retry_after`` (seconds) is sent as ``Retry-After`` when set."""

    def __init__(self, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class NotFound(ControlError):
    """Unknown, or another org's (never 403 for those: that would leak that they exist)."""


class Unauthorized(ControlError):
    """No token, or an unknown or revoked one."""


class Forbidden(ControlError):
    """The token's role is too weak for this."""


class Conflict(ControlError):
    """The resource's state refuses the request (busy, exists, over a limit)."""


class Invalid(ControlError):
    """The request names something impossible (a bad spec, an unknown data plane)."""


class Unavailable(ControlError):
    """Something the request needs is not there right now (the database, a data plane); retry later."""

    def __init__(self, message: str, retry_after: int | None = RETRY_AFTER_SECONDS) -> None:
        super().__init__(message, retry_after)


# (status, code) per class; a class not listed takes its nearest listed base class's row.
HTTP_STATUS: dict[type[HowdahError], tuple[int, str]] = {
    HowdahError: (500, "internal"),
    ConfigurationError: (500, "misconfigured"),
    DatabaseError: (500, "database_error"),
    # pg: the server or its schema is not ready (yet); SchemaConflict needs an operator
    ServerError: (503, "unavailable"),
    MigrationError: (503, "unavailable"),
    SchemaConflict: (500, "schema_conflict"),
    QueryError: (500, "internal"),  # a query file or name the code and the wheel disagree on: a bug
    # queue: a missing queue is a data plane that is not (or no longer) registered
    QueueError: (500, "internal"),
    InvalidQueueName: (422, "invalid"),
    InvalidArgument: (422, "invalid"),
    QueueNotFound: (503, "unavailable"),
    QueueDatabaseError: (500, "database_error"),
    # durable
    DurableError: (500, "internal"),
    DurableDatabaseError: (500, "database_error"),
    LeaseLost: (503, "unavailable"),
    TransientError: (503, "unavailable"),
    StepTimeout: (503, "unavailable"),
    PermanentError: (500, "internal"),
    NotSerializable: (422, "invalid"),
    UnknownWorkflow: (404, "not_found"),
    WorkflowNotFound: (404, "not_found"),
    WorkflowConflict: (409, "conflict"),
    WorkflowFinished: (410, "gone"),
    NonDeterminismError: (500, "internal"),
    DuplicateStepName: (500, "internal"),
    WorkflowFailed: (500, "workflow_failed"),
    WorkflowCancelled: (409, "cancelled"),
    StepFailed: (500, "internal"),
    InvalidSchedule: (422, "invalid"),
    # control
    ControlError: (400, "bad_request"),
    NotFound: (404, "not_found"),
    Unauthorized: (401, "unauthorized"),
    Forbidden: (403, "forbidden"),
    Conflict: (409, "conflict"),
    Invalid: (422, "invalid"),
    Unavailable: (503, "unavailable"),
    TransitionError: (409, "conflict"),
    IllegalTransition: (409, "conflict"),
    UndefinedTransition: (409, "conflict"),
    StackError: (422, "invalid"),
    UnknownStack: (404, "not_found"),
    ForbiddenSetting: (422, "invalid"),
    InvalidSettingValue: (422, "invalid"),
    UnknownExtension: (422, "invalid"),
    ExtensionConflict: (422, "invalid"),
    SecretUnavailable: (500, "secret_unavailable"),  # instance views leave the password out instead
}

_RETRYABLE = {503}


def _database_lost(exc: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, psycopg.OperationalError | psycopg.InterfaceError):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def http_error(exc: BaseException) -> tuple[int, str, int | None]:
    """(status, code, Retry-After seconds or None) for any exception reaching the API. A control-plane error
    is a decision already taken (whatever caused it); any other error caused by a lost database is a 503."""
    if not isinstance(exc, ControlError) and _database_lost(exc):
        return 503, "unavailable", RETRY_AFTER_SECONDS
    if not isinstance(exc, HowdahError):
        return 500, "internal", None
    status, code = next(HTTP_STATUS[c] for c in type(exc).__mro__ if c in HTTP_STATUS)
    retry_after = exc.retry_after if isinstance(exc, ControlError) else None
    if retry_after is None and status in _RETRYABLE:
        retry_after = RETRY_AFTER_SECONDS
    return status, code, retry_after


def message_of(exc: BaseException, status: int) -> str:
    """What the caller reads: the error's own message, but never database internals or a stack trace."""
    if status == 503 and not isinstance(exc, ControlError) and _database_lost(exc):
        return "the control-plane database is unreachable; retry shortly"
    if status >= 500 and not isinstance(exc, HowdahError | psycopg.Error):
        return "internal error; the server log has the details"
    if isinstance(exc, psycopg.Error) and not isinstance(exc, HowdahError):
        return "internal database error; the server log has the details"
    return str(exc)
