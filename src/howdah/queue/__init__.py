"""A PGMQ-compatible message queue in Postgres (schema ``pgmq``), with sync and async clients.

>>> with Queue("postgresql://…") as q:
...     q.create("orders")
...     q.send("orders", {"id": 1})
"""

from howdah.queue._client import AsyncQueue, Queue
from howdah.queue._consumer import DETACH, Consumer
from howdah.queue._errors import (
    InvalidArgument,
    InvalidQueueName,
    QueueDatabaseError,
    QueueError,
    QueueNotFound,
)
from howdah.queue._names import MAX_QUEUE_NAME, validate_queue_name
from howdah.queue._options import DLQ_SUFFIX, ConsumeOptions, notify_channel
from howdah.queue._schema import COMPONENT
from howdah.queue._types import Message, QueueInfo, QueueMetrics, TopicBinding

__all__ = [
    "COMPONENT",
    "DETACH",
    "DLQ_SUFFIX",
    "MAX_QUEUE_NAME",
    "AsyncQueue",
    "ConsumeOptions",
    "Consumer",
    "InvalidArgument",
    "InvalidQueueName",
    "Message",
    "Queue",
    "QueueDatabaseError",
    "QueueError",
    "QueueInfo",
    "QueueMetrics",
    "QueueNotFound",
    "TopicBinding",
    "notify_channel",
    "validate_queue_name",
]
