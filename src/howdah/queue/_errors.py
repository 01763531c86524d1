"""Named errors of the queue layer, and the one place where Postgres errors are translated into them."""

from __future__ import annotations

import psycopg
from psycopg import errors as pg_errors

from howdah.errors import DatabaseError, HowdahError


class QueueError(HowdahError):
    """Root of the queue layer's errors."""


class InvalidQueueName(QueueError, ValueError):
    """A queue name breaks PGMQ's naming rules."""


class InvalidArgument(QueueError, ValueError):
    """An argument is out of range, of the wrong type, or not serialisable as JSON."""


class QueueNotFound(QueueError, LookupError):
    """The queue does not exist."""

    def __init__(self, queue: str) -> None:
        super().__init__(f"queue {queue!r} does not exist")
        self.queue = queue


class QueueDatabaseError(QueueError, DatabaseError):
    """Postgres failed a queue operation for a reason other than bad input (connection lost, …)."""


def translate(exc: psycopg.Error, queue: str | None) -> QueueError:
    """Map a psycopg error raised by a ``pgmq`` call to the queue layer's named error."""
    message = (exc.diag.message_primary if exc.diag else None) or str(exc).strip()
    if queue is not None and _names_a_missing_queue(exc):
        return QueueNotFound(queue)
    if isinstance(
        exc,
        pg_errors.InvalidParameterValue
        | pg_errors.NullValueNotAllowed
        | pg_errors.InvalidTextRepresentation
        | pg_errors.NumericValueOutOfRange
        | pg_errors.RaiseException
        | pg_errors.CheckViolation
        | pg_errors.UntranslatableCharacter
        | pg_errors.CharacterNotInRepertoire,
    ):
        return InvalidArgument(message)
    if isinstance(exc, pg_errors.InvalidName | pg_errors.NameTooLong):
        return InvalidQueueName(message)
    return QueueDatabaseError(message)


def _names_a_missing_queue(exc: psycopg.Error) -> bool:
    """42P01, or PGMQ's own P0001 'Queue "x" does not exist. ...' (enable_notify_insert, bind_topic, ...): the
    schema names the missing queue table in the error's SCHEMA and TABLE fields, so no text is parsed."""
    if isinstance(exc, pg_errors.UndefinedTable):
        return True
    return isinstance(exc, pg_errors.RaiseException) and exc.diag.schema_name == "pgmq" and bool(exc.diag.table_name)
