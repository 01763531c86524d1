"""Queue-name rules, checked in Python before a round trip (the SQL functions check them again)."""

from __future__ import annotations

import re

from howdah.queue._errors import InvalidQueueName

MAX_QUEUE_NAME = 47  # PGMQ's limit: "q_" / "a_" prefixes plus index suffixes must fit in 63 bytes
_FORBIDDEN = ("$", ";", "--", "'")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def validate_queue_name(name: object) -> str:
    """Return ``name`` when it is a valid queue name, else raise :class:`InvalidQueueName` saying why."""
    if not isinstance(name, str):
        raise InvalidQueueName(f"a queue name must be a string, not {type(name).__name__}")
    if not name:
        raise InvalidQueueName("a queue name must not be empty")
    try:
        size = len(name.encode())
    except UnicodeEncodeError:
        raise InvalidQueueName(f"queue name {name!r} is not valid Unicode text") from None
    if size > MAX_QUEUE_NAME:
        raise InvalidQueueName(f"queue name {name!r} is longer than {MAX_QUEUE_NAME} bytes")
    for bad in _FORBIDDEN:
        if bad in name:
            raise InvalidQueueName(f"queue name {name!r} contains the forbidden sequence {bad!r}")
    if _CONTROL.search(name):
        raise InvalidQueueName(f"queue name {name!r} contains a control character")
    return name
