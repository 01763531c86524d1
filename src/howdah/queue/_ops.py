"""Every queue operation as data: the SQL to run, its parameters and how to shape the rows (no I/O).

The sync :class:`~howdah.queue.Queue` and the async :class:`~howdah.queue.AsyncQueue` only execute these, so
the logic lives once. Each query names its overload with explicit casts, so Postgres never has to guess.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from howdah._json import has_non_string_key
from howdah.backoff import Backoff
from howdah.queue._errors import InvalidArgument
from howdah.queue._names import validate_queue_name
from howdah.queue._types import Message, QueueInfo, QueueMetrics, TopicBinding

T = TypeVar("T")
Rows = list[tuple[Any, ...]]
Delay = int | datetime


@dataclass(frozen=True, slots=True)
class Op(Generic[T]):
    """One statement to execute and the function that turns its rows into the caller's result."""

    query: str
    params: tuple[Any, ...]
    shape: Callable[[Rows], T]
    queue: str | None = None  # named in "queue does not exist" errors


# ----------------------------------------------------------------------------------------- argument checks
def to_json(value: Any, what: str = "message") -> str:
    """Serialise ``value`` as strict JSON text, or raise :class:`InvalidArgument` naming ``what``."""
    bad, key = has_non_string_key(value)
    if bad:
        raise InvalidArgument(f"{what} has a non-string object key {key!r}; JSON keys are strings")
    try:
        return json.dumps(value, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"{what} is not JSON-serialisable: {exc}") from exc


def _headers_json(headers: Any, what: str = "headers") -> str | None:
    if headers is None:
        return None
    if not isinstance(headers, dict):
        raise InvalidArgument(f"{what} must be a JSON object (a dict), not {type(headers).__name__}")
    return to_json(headers, what)


def _non_negative(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(f"{name} must be an integer, not {type(value).__name__}")
    if value < 0:
        raise InvalidArgument(f"{name} must not be negative (got {value})")
    if value > 2**31 - 1:
        raise InvalidArgument(f"{name} is too large (got {value})")
    return value


def _positive(value: Any, name: str) -> int:
    if _non_negative(value, name) == 0:
        raise InvalidArgument(f"{name} must be at least 1")
    return int(value)


def _delay(delay: Any) -> tuple[str, Any]:
    """The SQL cast and value of a delay: seconds (integer) or an absolute time (timestamptz)."""
    if isinstance(delay, datetime):
        if delay.tzinfo is None:
            raise InvalidArgument("a delay given as a datetime must be timezone-aware")
        return "timestamptz", delay
    return "integer", _non_negative(delay, "delay")


def _ids(msg_ids: Sequence[int], name: str = "msg_ids") -> list[int]:
    if isinstance(msg_ids, str | bytes) or not isinstance(msg_ids, Sequence):
        raise InvalidArgument(f"{name} must be a list of integers")
    out = []
    for value in msg_ids:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidArgument(f"{name} must contain only integers, found {value!r}")
        out.append(value)
    return out


def _id(msg_id: Any) -> int:
    if isinstance(msg_id, bool) or not isinstance(msg_id, int):
        raise InvalidArgument(f"msg_id must be an integer, not {type(msg_id).__name__}")
    return msg_id


# ------------------------------------------------------------------------------------------------ shapers
def _none(rows: Rows) -> None:
    return None


def _scalar(rows: Rows) -> Any:
    return rows[0][0] if rows else None


def _bool(rows: Rows) -> bool:
    return bool(rows and rows[0][0])


def _column(rows: Rows) -> list[Any]:
    return [row[0] for row in rows]


def _messages(rows: Rows) -> list[Message]:
    return [Message(*row) for row in rows]


def _first_message(rows: Rows) -> Message | None:
    return Message(*rows[0]) if rows else None


def _metrics(rows: Rows) -> QueueMetrics:
    return QueueMetrics(*rows[0])


def _metrics_all(rows: Rows) -> list[QueueMetrics]:
    return [QueueMetrics(*row) for row in rows]


def _queues(rows: Rows) -> list[QueueInfo]:
    return [QueueInfo(*row) for row in rows]


def _bindings(rows: Rows) -> list[TopicBinding]:
    return [TopicBinding(*row) for row in rows]


_MESSAGE_COLUMNS = "msg_id, read_ct, enqueued_at, last_read_at, vt, message, headers"


# --------------------------------------------------------------------------------------------- operations
def create(queue: str, *, unlogged: bool = False) -> Op[None]:
    fn = "create_unlogged" if unlogged else "create"
    return Op(f"SELECT pgmq.{fn}(%s::text)", (validate_queue_name(queue),), _none)


def create_partitioned(
    queue: str, partition_interval: str | int = 10_000, retention_interval: str | int = 100_000
) -> Op[None]:
    return Op(
        "SELECT pgmq.create_partitioned(%s::text, %s::text, %s::text)",
        (validate_queue_name(queue), str(partition_interval), str(retention_interval)),
        _none,
    )


def drop(queue: str) -> Op[bool]:
    return Op("SELECT pgmq.drop_queue(%s::text)", (validate_queue_name(queue),), _bool, queue)


def purge(queue: str) -> Op[int]:
    return Op("SELECT pgmq.purge_queue(%s::text)", (validate_queue_name(queue),), _scalar, queue)


def send(queue: str, message: Any, headers: dict[str, Any] | None = None, delay: Delay = 0) -> Op[int]:
    cast, value = _delay(delay)
    return Op(
        f"SELECT * FROM pgmq.send(%s::text, %s::jsonb, %s::jsonb, %s::{cast})",
        (validate_queue_name(queue), to_json(message), _headers_json(headers), value),
        _scalar,
        queue,
    )


def send_batch(
    queue: str,
    messages: Sequence[Any],
    headers: Sequence[dict[str, Any] | None] | None = None,
    delay: Delay = 0,
) -> Op[list[int]]:
    if isinstance(messages, str | bytes | dict) or not isinstance(messages, Sequence):
        raise InvalidArgument("messages must be a list of JSON values")
    if not messages:
        raise InvalidArgument("messages must not be empty")
    bodies = [to_json(m, f"messages[{i}]") for i, m in enumerate(messages)]
    header_texts = None
    if headers is not None:
        if isinstance(headers, str | bytes | dict) or not isinstance(headers, Sequence):
            raise InvalidArgument("headers must be a list with one entry (a dict or None) per message")
        if len(headers) != len(messages):
            raise InvalidArgument(
                f"headers has {len(headers)} entries but messages has {len(messages)}; they must match"
            )
        header_texts = [_headers_json(h, f"headers[{i}]") for i, h in enumerate(headers)]
    cast, value = _delay(delay)
    return Op(
        f"SELECT * FROM pgmq.send_batch(%s::text, %b::jsonb[], %b::jsonb[], %s::{cast})",
        (validate_queue_name(queue), bodies, header_texts, value),
        _column,
        queue,
    )


def read(queue: str, vt: int = 30, qty: int = 1, conditional: dict[str, Any] | None = None) -> Op[list[Message]]:
    return Op(
        f"SELECT {_MESSAGE_COLUMNS} FROM pgmq.read(%s::text, %s::integer, %s::integer, %s::jsonb)",
        (
            validate_queue_name(queue),
            _non_negative(vt, "vt"),
            _positive(qty, "qty"),
            _headers_json(conditional or {}, "conditional"),
        ),
        _messages,
        queue,
    )


def read_with_poll(
    queue: str, vt: int = 30, qty: int = 1, max_poll_seconds: int = 5, poll_interval_ms: int = 100
) -> Op[list[Message]]:
    return Op(
        f"SELECT {_MESSAGE_COLUMNS} FROM pgmq.read_with_poll(%s::text, %s::integer, %s::integer, "
        "%s::integer, %s::integer)",
        (
            validate_queue_name(queue),
            _non_negative(vt, "vt"),
            _positive(qty, "qty"),
            _non_negative(max_poll_seconds, "max_poll_seconds"),
            _positive(poll_interval_ms, "poll_interval_ms"),
        ),
        _messages,
        queue,
    )


GroupMode = Literal["fifo", "round_robin", "head"]
_GROUP_FUNCTIONS: dict[str, str] = {
    "fifo": "read_grouped",
    "round_robin": "read_grouped_rr",
    "head": "read_grouped_head",
}


def read_grouped(queue: str, vt: int = 30, qty: int = 1, mode: GroupMode = "fifo") -> Op[list[Message]]:
    """FIFO reads by message group (the ``x-pgmq-group`` header), in PGMQ's three flavours."""
    if mode not in _GROUP_FUNCTIONS:
        raise InvalidArgument(f"mode must be one of {sorted(_GROUP_FUNCTIONS)}, not {mode!r}")
    return Op(
        f"SELECT {_MESSAGE_COLUMNS} FROM pgmq.{_GROUP_FUNCTIONS[mode]}(%s::text, %s::integer, %s::integer)",
        (validate_queue_name(queue), _non_negative(vt, "vt"), _positive(qty, "qty")),
        _messages,
        queue,
    )


def pop(queue: str, qty: int = 1) -> Op[list[Message]]:
    return Op(
        f"SELECT {_MESSAGE_COLUMNS} FROM pgmq.pop(%s::text, %s::integer)",
        (validate_queue_name(queue), _positive(qty, "qty")),
        _messages,
        queue,
    )


def delete(queue: str, msg_id: int) -> Op[bool]:
    return Op("SELECT pgmq.delete(%s::text, %s::bigint)", (validate_queue_name(queue), _id(msg_id)), _bool, queue)


def delete_batch(queue: str, msg_ids: Sequence[int]) -> Op[list[int]]:
    return Op(
        "SELECT * FROM pgmq.delete(%s::text, %b::bigint[])",
        (validate_queue_name(queue), _ids(msg_ids)),
        _column,
        queue,
    )


def archive(queue: str, msg_id: int) -> Op[bool]:
    return Op("SELECT pgmq.archive(%s::text, %s::bigint)", (validate_queue_name(queue), _id(msg_id)), _bool, queue)


def archive_batch(queue: str, msg_ids: Sequence[int]) -> Op[list[int]]:
    return Op(
        "SELECT * FROM pgmq.archive(%s::text, %b::bigint[])",
        (validate_queue_name(queue), _ids(msg_ids)),
        _column,
        queue,
    )


def _vt(vt: Any) -> tuple[str, Any]:
    if isinstance(vt, datetime):
        return _delay(vt)
    if isinstance(vt, bool) or not isinstance(vt, int):
        raise InvalidArgument(f"vt must be seconds (an integer) or a datetime, not {type(vt).__name__}")
    return "integer", vt


def set_vt(queue: str, msg_id: int, vt: Delay) -> Op[Message | None]:
    cast, value = _vt(vt)
    return Op(
        f"SELECT {_MESSAGE_COLUMNS} FROM pgmq.set_vt(%s::text, %s::bigint, %s::{cast})",
        (validate_queue_name(queue), _id(msg_id), value),
        _first_message,
        queue,
    )


def set_vt_batch(queue: str, msg_ids: Sequence[int], vt: Delay) -> Op[list[Message]]:
    cast, value = _vt(vt)
    return Op(
        f"SELECT {_MESSAGE_COLUMNS} FROM pgmq.set_vt(%s::text, %b::bigint[], %s::{cast})",
        (validate_queue_name(queue), _ids(msg_ids), value),
        _messages,
        queue,
    )


def list_queues() -> Op[list[QueueInfo]]:
    return Op(
        "SELECT queue_name, is_partitioned, is_unlogged, created_at FROM pgmq.list_queues() ORDER BY queue_name",
        (),
        _queues,
    )


_METRIC_COLUMNS = (
    "queue_name, queue_length, newest_msg_age_sec, oldest_msg_age_sec, total_messages, scrape_time, "
    "queue_visible_length, default_partition_length"
)


def metrics(queue: str) -> Op[QueueMetrics]:
    return Op(
        f"SELECT {_METRIC_COLUMNS} FROM pgmq.metrics(%s::text)",
        (validate_queue_name(queue),),
        _metrics,
        queue,
    )


def metrics_all() -> Op[list[QueueMetrics]]:
    return Op(f"SELECT {_METRIC_COLUMNS} FROM pgmq.metrics_all() ORDER BY queue_name", (), _metrics_all)


def enable_notify(queue: str, throttle_interval_ms: int = 0) -> Op[None]:
    return Op(
        "SELECT pgmq.enable_notify_insert(%s::text, %s::integer)",
        (validate_queue_name(queue), _non_negative(throttle_interval_ms, "throttle_interval_ms")),
        _none,
        queue,
    )


def disable_notify(queue: str) -> Op[None]:
    return Op("SELECT pgmq.disable_notify_insert(%s::text)", (validate_queue_name(queue),), _none, queue)


def notify_enabled(queue: str) -> Op[bool]:
    return Op(
        "SELECT EXISTS (SELECT 1 FROM pgmq.list_notify_insert_throttles() WHERE queue_name = %s::text)",
        (validate_queue_name(queue),),
        _bool,
    )


def bind_topic(pattern: str, queue: str) -> Op[None]:
    return Op("SELECT pgmq.bind_topic(%s::text, %s::text)", (pattern, validate_queue_name(queue)), _none, queue)


def unbind_topic(pattern: str, queue: str) -> Op[bool]:
    return Op("SELECT pgmq.unbind_topic(%s::text, %s::text)", (pattern, validate_queue_name(queue)), _bool)


def send_topic(routing_key: str, message: Any, headers: dict[str, Any] | None = None, delay: int = 0) -> Op[int]:
    """Send to every queue bound to a pattern matching ``routing_key``; returns how many queues got it."""
    return Op(
        "SELECT pgmq.send_topic(%s::text, %s::jsonb, %s::jsonb, %s::integer)",
        (routing_key, to_json(message), _headers_json(headers), _non_negative(delay, "delay")),
        _scalar,
    )


def list_topic_bindings(queue: str | None = None) -> Op[list[TopicBinding]]:
    columns = "pattern, queue_name, bound_at, compiled_regex"
    if queue is None:
        return Op(f"SELECT {columns} FROM pgmq.list_topic_bindings()", (), _bindings)
    return Op(f"SELECT {columns} FROM pgmq.list_topic_bindings(%s::text)", (validate_queue_name(queue),), _bindings)


def peek(queue: str, after_msg_id: int = 0, limit: int = 100) -> Op[list[Message]]:
    """Messages with ``msg_id > after_msg_id``, oldest first, WITHOUT reading them (no vt or read_ct change)."""
    return Op(
        f"SELECT {_MESSAGE_COLUMNS} FROM pgmq.howdah_peek(%s::text, %s::bigint, %s::integer)",
        (validate_queue_name(queue), _id(after_msg_id), _positive(limit, "limit")),
        _messages,
        queue,
    )


def last_msg_id(queue: str) -> Op[int]:
    """The highest msg_id currently in the queue (0 when empty): one backward index step, no scan."""
    return Op("SELECT pgmq.howdah_last_msg_id(%s::text)", (validate_queue_name(queue),), _scalar, queue)


def listen_channel(queue: str) -> Op[str]:
    """The NOTIFY channel of the queue's insert trigger, named by Postgres (its lower() decides the table)."""
    return Op(
        "SELECT 'pgmq.' || pgmq.format_table_name(%s::text, 'q') || '.INSERT'", (validate_queue_name(queue),), _scalar
    )


# ------------------------------------------------------------------------------- Howdah's consumer helpers
def release(queue: str, msg_id: int, delay: int, error: str | None) -> Op[bool]:
    """Make a message visible again after ``delay`` seconds, recording the handler's error in its headers."""
    return Op(
        "SELECT pgmq.howdah_release(%s::text, %s::bigint, %s::integer, %s::text)",
        (validate_queue_name(queue), _id(msg_id), _non_negative(delay, "delay"), error),
        _bool,
        queue,
    )


def settle_and_read(
    queue: str,
    done: Sequence[int],
    archive: bool,
    released: Sequence[tuple[int, int, str | None]],
    vt: int,
    qty: int,
) -> Op[list[Message]]:
    """In one statement: delete (or archive) ``done``, release each of ``released`` (msg_id, delay seconds,
    error) for a retry, then read up to ``qty`` messages (``qty`` = 0: settle only)."""
    return Op(
        f"SELECT {_MESSAGE_COLUMNS} FROM pgmq.howdah_settle_and_read(%s::text, %b::bigint[], %s::boolean, "
        "%b::bigint[], %b::integer[], %s::text[], %s::integer, %s::integer)",
        (
            validate_queue_name(queue),
            _ids(done, "done"),
            archive,
            _ids([r[0] for r in released], "released"),
            [_non_negative(r[1], "delay") for r in released],
            [r[2] for r in released],
            _non_negative(vt, "vt"),
            _non_negative(qty, "qty"),
        ),
        _messages,
        queue,
    )


def notify_throttle(queue: str) -> Op[int | None]:
    """The queue's ``throttle_interval_ms`` for insert notifications, or None when they are not enabled."""
    return Op(
        "SELECT throttle_interval_ms FROM pgmq.list_notify_insert_throttles() WHERE queue_name = %s::text",
        (validate_queue_name(queue),),
        _scalar,
    )


def dead_letter(queue: str, msg_ids: Sequence[int], dead_letter_queue: str, reason: str) -> Op[list[int]]:
    """Move messages to ``dead_letter_queue`` (reason in their headers) and remove them, atomically."""
    return Op(
        "SELECT * FROM pgmq.howdah_dead_letter(%s::text, %b::bigint[], %s::text, %s::text)",
        (validate_queue_name(queue), _ids(msg_ids), validate_queue_name(dead_letter_queue), reason),
        _column,
        queue,
    )


def maintain(queue: str | None = None) -> Op[int]:
    """Run partition maintenance for one partitioned queue (or all); returns how many actions it took."""
    return Op(
        "SELECT count(*) FROM pgmq.maintain_partitions(%s::text)",
        (None if queue is None else validate_queue_name(queue),),
        _scalar,
    )


def retry_delay(read_ct: int, base: float = 1.0, cap: float = 300.0) -> int:
    """Seconds before a failed message is retried: exponential in its read count, capped (whole seconds)."""
    return int(Backoff(initial=base, factor=2.0, cap=cap).delay(read_ct))
