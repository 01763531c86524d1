"""What the queue returns: typed rows of ``pgmq.message_record``, ``queue_record`` and ``metrics_result``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class Message:
    """One message as read from a queue (the columns of ``pgmq.message_record``)."""

    msg_id: int
    read_ct: int
    enqueued_at: datetime
    last_read_at: datetime | None
    vt: datetime
    message: Any
    headers: dict[str, Any] | None

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> Message:
        return cls(*row)


@dataclass(frozen=True, slots=True)
class QueueInfo:
    """One row of ``pgmq.list_queues()``."""

    queue_name: str
    is_partitioned: bool
    is_unlogged: bool
    created_at: datetime


@dataclass(frozen=True, slots=True)
class QueueMetrics:
    """One row of ``pgmq.metrics()``; see the README for which counts are exact and which estimated."""

    queue_name: str
    queue_length: int
    newest_msg_age_sec: int | None
    oldest_msg_age_sec: int | None
    total_messages: int
    scrape_time: datetime
    queue_visible_length: int
    default_partition_length: int | None = None


@dataclass(frozen=True, slots=True)
class TopicBinding:
    """One row of ``pgmq.list_topic_bindings()``."""

    pattern: str
    queue_name: str
    bound_at: datetime
    compiled_regex: str
